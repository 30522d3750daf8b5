// tests/integration/tempo-ingest.test.ts — the real tempo-ingest edge function, Deno-served by the local runner on a
// fresh database of the PG15 test cluster, pulling from a local server that speaks Tempo's documented API
// (tests/fakes/tempo-server.ts) fed by the OpenTelemetry SDK simulator. Proves: (a) the same simulated traffic
// stages the same anomaly.spans rows whether pushed over OTLP or pulled from Tempo (protobuf and JSON); (b) a
// kill -9 of the function mid-run loses and duplicates nothing; (c) Tempo down / slow / 429 / 5xx / malformed /
// vanished / too large / partial / clock skew / auth, each retried or skipped with a recorded reason and the
// cursor never past unfetched data; (d) truncated searches are split; (e) metrics mode fills operation_minutes.
import process from "node:process";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OtlpExportRequest, OtlpSpan } from "../../functions/_shared/otlp/codec.ts";
import { ensureIngestKey, prepareDatabase } from "../../scripts/local/migrate.ts";
import { type Runner, startRunner } from "../../scripts/local/runner.ts";
import { simulate } from "../../scripts/simulate/index.ts";
import { TempoServer } from "../fakes/tempo-server.ts";
import { CLUSTER_URL, databaseUrl, dropDatabase, recreateDatabase, waitFor } from "./helpers.ts";

const hex = (bytes: number) =>
  [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
const MIN = 60_000;

describe("tempo-ingest edge function against a Tempo-shaped server (PG15 cluster)", () => {
  const dbName = `ts_tempo_${hex(4)}`;
  const dbUrl = databaseUrl(CLUSTER_URL, dbName);
  const sql = postgres(dbUrl, { max: 3, onnotice: () => {} });
  const logs: string[] = [];
  const SIM_START = Math.floor(Date.now() / MIN) * MIN - 12 * MIN;
  const SIM = { start: SIM_START, minutes: 5, rate: 30, seed: 11, truthPath: null } as const;
  let runner: Runner;
  let tempo: TempoServer;
  let key: string;
  let reference: Row[] = []; // anomaly.spans after the OTLP push

  type Row = Record<string, unknown>;
  const fn = () => runner.functions().find((f) => f.name === "tempo-ingest")!;

  async function invoke(body: unknown = {}, auth: string | null = runner.serviceRoleKey): Promise<Response> {
    return await fetch(runner.functionUrl("tempo-ingest"), {
      method: "POST",
      headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
      body: JSON.stringify(body),
    });
  }
  async function pull(source: string): Promise<Record<string, unknown>> {
    const res = await invoke({ source });
    expect(res.status).toBe(200);
    const { sources } = await res.json();
    expect(sources).toHaveLength(1);
    return sources[0];
  }
  /** Pulls until the source reports ok (a run may be incomplete by budget). */
  async function pullUntilOk(source: string, max = 40): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (let i = 0; i < max; i++) {
      const r = await pull(source);
      if (r.status === "busy") {
        await new Promise((resolve) => setTimeout(resolve, 500)); // a dead run's lease has not expired yet
        continue;
      }
      out.push(r);
      if (r.status === "ok") return out;
      if (r.status === "failed") throw new Error(`run failed: ${r.error}`);
    }
    throw new Error(`${source} did not catch up in ${max} runs: ${JSON.stringify(out.at(-1))}`);
  }
  async function addSource(name: string, over: Record<string, unknown> = {}): Promise<void> {
    const row = {
      name,
      base_url: tempo.url,
      lag_seconds: 0,
      max_retries: 2,
      request_timeout_ms: 2000,
      ...over,
    };
    await sql`delete from anomaly.tempo_sources where name = ${name}`;
    await sql`insert into anomaly.tempo_sources ${sql(row)}`;
  }
  async function spans(): Promise<Row[]> {
    return await sql`
      select start_time, trace_id, span_id, parent_span_id, end_time, duration_ns, service_name, service_version,
             service_instance, name, kind, status_code, status_message, http_status_code, http_route, http_method,
             scope_name, resource_attributes, attributes, events
      from anomaly.spans order by trace_id, span_id`;
  }
  async function clearSpans(): Promise<void> {
    await sql`truncate anomaly.spans, anomaly.rollup_dirty, anomaly.open_traces, anomaly.operation_minutes`;
  }
  async function skips(source: string) {
    return await sql`select trace_id, reason, detail, attempts from anomaly.tempo_skipped_traces
                     where source = ${source} order by reason, trace_id`;
  }
  async function cursorOf(source: string): Promise<string | null> {
    const [r] = await sql`select cursor from anomaly.tempo_sources where name = ${source}`;
    return r.cursor ? new Date(r.cursor).toISOString() : null;
  }

  /** A one-resource request: `spans` start `agoMs` before now (negative: in the future). */
  function handmade(service: string, agoMs: number, n = 3, traceId = hex(16)): OtlpExportRequest {
    const t0 = BigInt(Date.now() - agoMs) * 1_000_000n;
    const ids = Array.from({ length: n }, () => hex(8));
    const list: OtlpSpan[] = ids.map((id, i) => ({
      traceId,
      spanId: id,
      parentSpanId: i === 0 ? "" : ids[0],
      name: i === 0 ? "GET /x" : `step ${i}`,
      kind: i === 0 ? 2 : 1,
      startTimeUnixNano: String(t0 + BigInt(i) * 1_000_000n),
      endTimeUnixNano: String(t0 + BigInt(i) * 1_000_000n + 500_000n),
      attributes: [{ key: "user.email", value: { stringValue: "bob@example.com" } }],
      events: [],
      status: { code: 0, message: "" },
    }));
    return {
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
        scopeSpans: [{ scope: { name: "t", version: "1" }, spans: list }],
      }],
    };
  }

  beforeAll(async () => {
    await recreateDatabase(CLUSTER_URL, dbName);
    await prepareDatabase(dbUrl);
    // The test drives every run itself: no cron stand-in calls meanwhile.
    await sql`update anomaly.jobs set enabled = false`;
    key = await ensureIngestKey(dbUrl, "tempo-test");
    tempo = await TempoServer.start();
    runner = await startRunner({
      dbUrl,
      port: 0,
      env: { TEMPO_TEST_TOKEN: "env-token-123" },
      log: (line) => {
        logs.push(line);
        if (logs.length > 300) logs.shift();
      },
    });
  }, 240_000);

  afterAll(async () => {
    await runner?.stop();
    await tempo?.stop();
    await sql.end({ timeout: 5 });
    await dropDatabase(CLUSTER_URL, dbName);
  }, 60_000);

  // ------------------------------------------------------------------ (a) + (d)
  it(
    "(a) stages the same spans pulled from Tempo (protobuf, with split searches) as pushed over OTLP",
    async () => {
      const pushed = await simulate({ ...SIM, endpoint: runner.functionUrl("otlp-ingest"), key });
      expect(pushed.ok).toBe(true);
      reference = await spans();
      expect(reference.length).toBe(pushed.spans);
      await clearSpans();

      const fed = await simulate({ ...SIM, endpoint: tempo.url, key: null });
      expect(fed.ok).toBe(true);
      expect(tempo.spanCount()).toBe(pushed.spans);
      expect(tempo.traces.size).toBe(pushed.traces);

      await addSource("sim", { cursor: new Date(SIM_START - MIN).toISOString(), search_limit: 40 });
      const reports = await pullUntilOk("sim");
      expect(await spans()).toEqual(reference);

      const [run] = await sql`select * from anomaly.tempo_runs where source = 'sim' order by id desc limit 1`;
      const [totals] = await sql`select sum(traces_fetched)::int as fetched, sum(spans_staged)::int as staged,
                                      sum(splits)::int as splits from anomaly.tempo_runs where source = 'sim'`;
      expect(run.status).toBe("ok");
      expect(totals).toEqual({ fetched: pushed.traces, staged: pushed.spans, splits: expect.any(Number) });
      // (d) 150 traces against a limit of 40: answers that hit the limit were split, never used
      expect(totals.splits).toBeGreaterThan(0);
      const searches = tempo.requests.filter((r) => r.endpoint === "search");
      // some answers were cut at the limit; the answers that were used (under the limit) tile the window
      expect(searches.some((r) => r.hits === 40)).toBe(true);
      const used = searches.filter((r) => r.hits! < 40).map((
        r,
      ) => [Number(r.query.start), Number(r.query.end)])
        .sort((x, y) => x[0] - y[0]);
      expect(used[0][0]).toBe((SIM_START - MIN) / 1000);
      for (let i = 1; i < used.length; i++) expect(used[i][0]).toBe(used[i - 1][1]);
      const notProtobuf = tempo.requests.filter((r) =>
        r.endpoint === "trace" && !/application\/protobuf/.test(r.accept ?? "")
      );
      expect(notProtobuf).toEqual([]);
      expect(new Date(reports.at(-1)!.cursor as string).getTime()).toBeGreaterThan(
        SIM_START + SIM.minutes * MIN,
      );
    },
    120_000,
  );

  it("(a) the JSON answers of a Tempo that does not serve protobuf stage the same spans", async () => {
    await clearSpans();
    tempo.options = { protobuf: false };
    try {
      await addSource("sim-json", { cursor: new Date(SIM_START - MIN).toISOString(), search_limit: 1000 });
      await pullUntilOk("sim-json");
      expect(await spans()).toEqual(reference);
    } finally {
      tempo.options = { protobuf: true };
      await sql`update anomaly.tempo_sources set enabled = false where name = 'sim-json'`;
    }
  }, 60_000);

  // ------------------------------------------------------------------ (e)
  it(
    "(e) metrics mode fills operation_minutes like the rollup of the same spans, and detection runs on it",
    async () => {
      // The reference: rollup of the pulled spans.
      for (;;) {
        const [r] = await sql`select * from anomaly.rollup()`;
        const [{ n }] = await sql`select count(*)::int as n from anomaly.rollup_dirty`;
        if (n === 0 && r.series_minutes === 0) break;
      }
      const minutesOf = () =>
        sql`select service_name, operation, bucket, span_count, error_count, versions,
                 anomaly.histogram_quantile(latency_histogram, 0.5) as p50,
                 anomaly.histogram_quantile(latency_histogram, 0.95) as p95,
                 anomaly.histogram_quantile(latency_histogram, 0.99) as p99
          from anomaly.operation_minutes order by 1, 2, 3`;
      const fromSpans = await minutesOf();
      expect(fromSpans.length).toBeGreaterThan(20);
      await sql`truncate anomaly.operation_minutes`;
      await sql`update anomaly.rollup_state set max_event_time = null, watermark = null`;

      await addSource("metrics", { mode: "metrics", cursor: new Date(SIM_START - 2 * MIN).toISOString() });
      const [report] = await pullUntilOk("metrics");
      expect(report.series_minutes).toBe(fromSpans.length);
      const fromTempo = await minutesOf();
      expect(
        fromTempo.map((
          r,
        ) => [r.service_name, r.operation, r.bucket.toISOString(), r.span_count, r.error_count, r.versions]),
      )
        .toEqual(
          fromSpans.map((
            r,
          ) => [
            r.service_name,
            r.operation,
            r.bucket.toISOString(),
            r.span_count,
            r.error_count,
            r.versions,
          ]),
        );
      for (let i = 0; i < fromSpans.length; i++) {
        for (const q of ["p50", "p95", "p99"]) {
          // both sides are within one log bucket (4.4 %) of the exact quantile
          expect(Math.abs(fromTempo[i][q] / fromSpans[i][q] - 1)).toBeLessThan(0.1);
        }
      }
      const [state] = await sql`select watermark from anomaly.rollup_state`;
      expect(state.watermark).not.toBeNull();
      const [d] = await sql`select * from anomaly.detect()`;
      expect(d.scored_through).not.toBeNull();
      const [dr] = await sql`select errors from anomaly.detection_runs order by id desc limit 1`;
      expect(dr.errors).toEqual([]);

      // Idempotent per (series, minute): reading the same minutes again changes nothing.
      await sql`update anomaly.tempo_sources set cursor = ${new Date(
        SIM_START - 2 * MIN,
      )} where name = 'metrics'`;
      await pullUntilOk("metrics");
      expect((await minutesOf()).map((r) => [r.span_count, r.p95])).toEqual(
        fromTempo.map((r) => [r.span_count, r.p95]),
      );
      await sql`update anomaly.tempo_sources set enabled = false where name = 'metrics'`;
    },
    120_000,
  );

  // ------------------------------------------------------------------ (b)
  it("(b) a kill -9 of the function mid-run loses and duplicates nothing", async () => {
    await clearSpans();
    await addSource("killme", {
      cursor: new Date(SIM_START - MIN).toISOString(),
      search_limit: 20,
      fetch_concurrency: 1,
      lease_seconds: 5,
    });
    tempo.faults.push({ endpoint: "trace", delayMs: 25, times: 1_000_000 });
    try {
      const running = invoke({ source: "killme" }).then((r) => r.status, () => "connection lost");
      await waitFor(
        "a first committed range",
        async () => {
          const [r] =
            await sql`select traces_fetched from anomaly.tempo_runs where source = 'killme' and status = 'running'`;
          return r && r.traces_fetched >= 10 ? true : undefined;
        },
        60_000,
        20,
      );
      const pid = fn().pid!;
      process.kill(pid, "SIGKILL");
      await waitFor("the runner to see the function exit", () => fn().state === "exited" || undefined);
      expect(await running).not.toBe(200);
      const partway = (await spans()).length;
      expect(partway).toBeGreaterThan(0);
      expect(partway).toBeLessThan(reference.length);

      // The lease of the dead run blocks others until it expires (busy), then the next run continues at its cursor.
      tempo.faults.length = 0;
      await pullUntilOk("killme");
    } finally {
      tempo.faults.length = 0;
    }
    expect(await spans()).toEqual(reference);
    const runs =
      await sql`select status, spans_staged from anomaly.tempo_runs where source = 'killme' order by id`;
    expect(runs[0].status).toBe("abandoned");
    // Every span was inserted exactly once across the runs (re-fetched spans are received, not staged).
    expect(runs.reduce((a, r) => a + r.spans_staged, 0)).toBe(reference.length);
    await sql`update anomaly.tempo_sources set enabled = false where name = 'killme'`;
  }, 120_000);

  // ------------------------------------------------------------------ (c)
  describe("(c) resilience", () => {
    beforeAll(async () => {
      tempo.clear();
      await clearSpans();
    });

    it("retries 429 (honouring Retry-After), 5xx and timeouts, then stages everything", async () => {
      tempo.clear();
      const a = handmade("api", 60_000);
      const b = handmade("api", 50_000);
      tempo.add(a);
      tempo.add(b);
      const slowId = b.resourceSpans[0].scopeSpans[0].spans[0].traceId;
      tempo.faults.push(
        { endpoint: "search", status: 429, retryAfter: "1", times: 1 },
        {
          endpoint: "trace",
          status: 503,
          times: 1,
          traceId: a.resourceSpans[0].scopeSpans[0].spans[0].traceId,
        },
        { endpoint: "trace", delayMs: 1500, times: 1, traceId: slowId },
      );
      await addSource("flaky", {
        cursor: new Date(Date.now() - 5 * MIN).toISOString(),
        request_timeout_ms: 600,
      });
      const started = Date.now();
      const r = await pull("flaky");
      expect(r).toMatchObject({ status: "ok", traces_fetched: 2, spans_staged: 6 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000); // waited out Retry-After: 1
      const [run] = await sql`select retries, error from anomaly.tempo_runs where id = ${r.run_id as number}`;
      expect(run).toEqual({ retries: 3, error: null });
      expect(tempo.requests.filter((x) => x.endpoint === "search").map((x) => x.status)).toEqual([429, 200]);
    }, 30_000);

    it(
      "Tempo down: the run fails with the reason and the cursor stays; it catches up once Tempo is back",
      async () => {
        tempo.clear();
        tempo.add(handmade("api", 30_000));
        const cursor = new Date(Date.now() - 5 * MIN).toISOString();
        await addSource("down", { base_url: "http://127.0.0.1:9", cursor, max_retries: 1 });
        const r = await pull("down");
        expect(r.status).toBe("failed");
        expect(String(r.error)).toMatch(/after 2 attempts/);
        expect(await cursorOf("down")).toBe(cursor);
        const [src] = await sql`select last_error from anomaly.tempo_sources where name = 'down'`;
        expect(src.last_error).toMatch(/search/);
        await sql`update anomaly.tempo_sources set base_url = ${tempo.url} where name = 'down'`;
        expect(await pull("down")).toMatchObject({ status: "ok", traces_fetched: 1 });
      },
      30_000,
    );

    it(
      "a malformed search answer fails the run without moving the cursor; the next run succeeds",
      async () => {
        tempo.clear();
        tempo.add(handmade("api", 30_000));
        const cursor = new Date(Date.now() - 5 * MIN).toISOString();
        await addSource("garbled", { cursor });
        tempo.faults.push({ endpoint: "search", malformed: true, times: 1 });
        const r = await pull("garbled");
        expect(r.status).toBe("failed");
        expect(String(r.error)).toMatch(/TempoProtocolError: search answer is not JSON/);
        expect(await cursorOf("garbled")).toBe(cursor);
        expect(await pull("garbled")).toMatchObject({ status: "ok", traces_fetched: 1 });
      },
      30_000,
    );

    it("skips vanished, malformed and too large traces with their reason and stages the rest", async () => {
      tempo.clear();
      await clearSpans();
      const id = (r: OtlpExportRequest) => r.resourceSpans[0].scopeSpans[0].spans[0].traceId;
      const ok = handmade("api", 40_000);
      const gone = handmade("api", 40_000);
      const garbled = handmade("api", 40_000);
      const huge = handmade("api", 40_000, 400);
      const ok2 = handmade("api", 40_000, 3);
      for (const r of [ok, gone, garbled, huge, ok2]) tempo.add(r);
      tempo.faults.push(
        { endpoint: "trace", traceId: id(gone), vanish: true, times: 1 },
        { endpoint: "trace", traceId: id(garbled), malformed: true, times: 2 }, // protobuf, then the JSON fallback
      );
      // huge: 400 spans are ~40 KB of protobuf, over a 16 KiB cap
      await addSource("skips", {
        cursor: new Date(Date.now() - 5 * MIN).toISOString(),
        max_trace_bytes: 16_384,
      });
      const r = await pull("skips");
      expect(r).toMatchObject({ status: "ok", traces_found: 5, traces_fetched: 2, traces_skipped: 3 });
      const got = await skips("skips");
      expect(got.map((s) => [s.trace_id, s.reason])).toEqual(
        [[id(garbled), "malformed"], [id(huge), "too_large"], [id(gone), "vanished"]]
          .sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0])),
      );
      expect(got.find((s) => s.reason === "too_large")!.detail).toMatch(/> max_trace_bytes 16384/);
      const staged = await sql`select trace_id, count(*)::int as n from anomaly.spans group by 1`;
      expect(Object.fromEntries(staged.map((s) => [s.trace_id, s.n]))).toEqual({ [id(ok)]: 3, [id(ok2)]: 3 });
      // redaction is the OTLP receiver's: e-mails are hashed
      const [span] = await sql`select attributes from anomaly.spans limit 1`;
      expect(span.attributes["user.email"]).toMatch(/^sha256:[0-9a-f]{12}$/);
      expect(await cursorOf("skips")).not.toBeNull();
    }, 30_000);

    it("a PARTIAL trace is staged as far as Tempo sent it and recorded as partial", async () => {
      tempo.clear();
      await clearSpans();
      const big = handmade("api", 40_000, 5);
      tempo.add(big);
      tempo.options = { maxSpansPerTrace: 2 };
      try {
        await addSource("partial", { cursor: new Date(Date.now() - 5 * MIN).toISOString() });
        expect(await pull("partial")).toMatchObject({ status: "ok", traces_fetched: 1, spans_staged: 2 });
      } finally {
        tempo.options = { maxSpansPerTrace: undefined };
      }
      const [s] = await skips("partial");
      expect(s).toMatchObject({
        reason: "partial",
        detail: expect.stringMatching(/staged 2 spans of a partial trace/),
      });
    }, 30_000);

    it(
      "clock skew: spans far in the past or future are staged, the cursor follows Tempo's time",
      async () => {
        tempo.clear();
        await clearSpans();
        const receivedAt = Date.now() - 2 * MIN;
        const past = handmade("skewed", 3 * 60 * MIN); // 3 h ago
        const future = handmade("skewed", -20 * MIN); // 20 min ahead
        const absurd = handmade("skewed", -2 * 24 * 60 * MIN, 1); // 2 days ahead: refused like OTLP ingest does
        for (const r of [past, future, absurd]) tempo.add(r, { searchAtMs: receivedAt });
        const cursor = Date.now() - 5 * MIN;
        await addSource("skew", { cursor: new Date(cursor).toISOString(), lag_seconds: 30 });
        const r = await pull("skew");
        expect(r).toMatchObject({ status: "ok", traces_fetched: 3, spans_staged: 6 });
        const [run] = await sql`select spans_rejected from anomaly.tempo_runs where id = ${r
          .run_id as number}`;
        expect(run.spans_rejected).toBe(1);
        const [{ n }] = await sql`select count(*)::int as n from anomaly.spans where service_name = 'skewed'`;
        expect(n).toBe(6);
        const c = Date.parse((await cursorOf("skew"))!);
        expect(c).toBeGreaterThan(receivedAt); // moved by Tempo's time, not by the spans' own timestamps
        expect(c).toBeLessThanOrEqual(Date.now() - 30_000);
      },
      30_000,
    );

    it(
      "a trace that keeps failing holds the cursor, then is given up after tempo.max_fetch_attempts runs",
      async () => {
        tempo.clear();
        await clearSpans();
        const good = handmade("api", 40_000);
        const bad = handmade("api", 30_000);
        tempo.add(good);
        tempo.add(bad);
        const badId = bad.resourceSpans[0].scopeSpans[0].spans[0].traceId;
        tempo.faults.push({
          endpoint: "trace",
          traceId: badId,
          status: 502,
          body: "bad gateway",
          times: 1000,
        });
        const cursor = new Date(Date.now() - 5 * MIN).toISOString();
        await addSource("stuck", { cursor, max_retries: 0 });
        for (let i = 1; i <= 2; i++) {
          const r = await pull("stuck");
          expect(r.status).toBe("failed");
          expect(String(r.error)).toMatch(/HTTP 502 bad gateway/);
          expect(await cursorOf("stuck")).toBe(cursor);
          expect((await skips("stuck"))[0]).toMatchObject({
            trace_id: badId,
            reason: "failing",
            attempts: i,
          });
        }
        expect(await pull("stuck")).toMatchObject({ status: "ok" });
        expect((await skips("stuck"))[0]).toMatchObject({ trace_id: badId, reason: "gave_up", attempts: 3 });
        expect(await cursorOf("stuck")).not.toBe(cursor);
        tempo.faults.length = 0;
      },
      30_000,
    );

    it(
      "sends the tenant and the credential from Vault or a TEMPO_* env var, and never stores the secret",
      async () => {
        tempo.clear();
        tempo.add(handmade("api", 30_000));
        tempo.options = { tenant: "team-a", authorization: "Bearer vault-secret-xyz" };
        try {
          await sql`select vault.create_secret('vault-secret-xyz', 'tempo_test_token', 'test')`;
          await addSource("authed", {
            cursor: new Date(Date.now() - 5 * MIN).toISOString(),
            tenant: "team-a",
            auth_kind: "bearer",
            auth_vault_secret: "tempo_test_token",
          });
          expect(await pull("authed")).toMatchObject({ status: "ok", traces_fetched: 1 });
          expect(tempo.requests.every((r) => r.tenant === "team-a" && r.authorized)).toBe(true);

          await addSource("env-authed", {
            cursor: new Date(Date.now() - 5 * MIN).toISOString(),
            tenant: "team-a",
            auth_kind: "basic",
            auth_env_var: "TEMPO_TEST_TOKEN",
          });
          const r = await pull("env-authed"); // Basic env-token-123 is not what the proxy wants
          expect(r.status).toBe("failed");
          expect(String(r.error)).toMatch(/HTTP 401/);
          const stored = JSON.stringify(await sql`select * from anomaly.tempo_runs`) +
            JSON.stringify(await sql`select * from anomaly.tempo_sources`) + logs.join("\n");
          expect(stored).not.toContain("vault-secret-xyz");
          expect(stored).not.toContain("env-token-123");
          expect(stored).not.toContain(btoa("env-token-123"));
        } finally {
          tempo.options = { tenant: undefined, authorization: undefined };
        }
      },
      30_000,
    );

    it("the registered job reaches the function through cron, pg_net and the Vault service key", async () => {
      tempo.clear();
      const req = handmade("api", 30_000);
      tempo.add(req);
      const wereEnabled = (await sql`select name from anomaly.tempo_sources where enabled`).map((r) =>
        r.name
      );
      await sql`update anomaly.tempo_sources set enabled = false`; // the job pulls every enabled source
      await addSource("via-cron", { cursor: new Date(Date.now() - 5 * MIN).toISOString() });
      // Registered, but on a schedule that will not fire by itself during the test.
      await sql`update anomaly.jobs set enabled = true, schedule = '0 0 1 1 *' where name = 'tempo-ingest'`;
      try {
        const job = await runner.runCronJobNow("trace-sentinel:tempo-ingest");
        expect(job.status).toBe("succeeded");
        await runner.drainNetQueue();
        const res = await waitFor("the pg_net response", async () => {
          const [r] =
            await sql`select status_code, content from net._http_response order by created desc limit 1`;
          return r;
        }, 20_000);
        expect(res.status_code).toBe(200);
        expect(JSON.parse(res.content).sources).toEqual([
          expect.objectContaining({ source: "via-cron", status: "ok", traces_fetched: 1, spans_staged: 3 }),
        ]);
      } finally {
        await sql`update anomaly.jobs set enabled = false where name = 'tempo-ingest'`;
        await sql`update anomaly.tempo_sources set enabled = true where name = any(${wereEnabled})`;
      }
    }, 30_000);

    it("answers 401 without the service key, 400 for a bad body, and busy while another run holds the lease", async () => {
      expect((await invoke({}, null)).status).toBe(401);
      expect((await invoke({}, "not-the-key")).status).toBe(401);
      expect((await invoke({ source: "Bad Name!" })).status).toBe(400);
      expect((await invoke({ surprise: 1 })).status).toBe(400);
      await sql`update anomaly.tempo_sources set lease_owner = gen_random_uuid(), lease_until = now() + interval '1 minute'
                where name = 'authed'`;
      expect(await pull("authed")).toMatchObject({ status: "busy", run_id: null });
    });
  });
});
