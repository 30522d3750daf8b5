// tests/unit/tempo-puller.test.ts — the pull algorithm with Tempo and the database replaced by in-memory fakes:
// ranges are searched left to right, a truncated answer is bisected until nothing is cut, the cursor moves only to
// the end of a range whose traces were all staged or skipped with a reason, budgets stop a run where the next one
// continues, and a trace that keeps failing holds the cursor until it is given up.

import { describe, expect, it } from "vitest";
import type { OtlpExportRequest } from "../../functions/_shared/otlp/codec.ts";
import { DEFAULT_INGEST_CONFIG } from "../../functions/_shared/redact.ts";
import type { StagedSpan } from "../../functions/_shared/spans.ts";
import { TempoHttpError, type TraceFetch } from "../../functions/_shared/tempo/client.ts";
import {
  type Counters,
  runSource,
  type Skip,
  type TempoApi,
  type TempoStore,
} from "../../functions/_shared/tempo/puller.ts";
import type { TempoSource } from "../../functions/_shared/tempo/source.ts";

const T0 = Date.parse("2026-11-25T09:00:00Z") / 1000;
const NOW = (T0 + 700) * 1000; // window [T0, T0 + 600) with lag 100

/** One trace per listed second, each with one span; ids are the second's offset in hex. */
function fakeTempo(seconds: number[], opts: { maxPerSearch?: number } = {}) {
  const traces = new Map<string, number>(
    seconds.map((s, i) => [(i + 1).toString(16).padStart(32, "0"), T0 + s]),
  );
  const searches: Array<[number, number, number]> = [];
  const failing = new Map<string, number>(); // id -> remaining failures
  const api: TempoApi & { searches: typeof searches; failing: typeof failing; traces: typeof traces } = {
    retries: 0,
    searches,
    failing,
    traces,
    search(_q: string, start: number, end: number, limit: number) {
      searches.push([start, end, limit]);
      const hits = [...traces].filter(([, at]) => at >= start && at <= end).map(([id]) => id);
      const cut = hits.slice(0, Math.min(limit, opts.maxPerSearch ?? Infinity));
      return Promise.resolve({
        traceIds: cut.map((id) => id.replace(/^0+/, "").padStart(32, "0")),
        returned: cut.length,
      });
    },
    trace(id: string): Promise<TraceFetch> {
      const left = failing.get(id) ?? 0;
      if (left > 0) {
        failing.set(id, left - 1);
        return Promise.reject(new TempoHttpError(`/api/v2/traces/${id}: HTTP 503`, 503, true));
      }
      const at = traces.get(id);
      if (at === undefined) return Promise.resolve({ kind: "vanished" });
      const ns = String(BigInt(at) * 1_000_000_000n);
      const request: OtlpExportRequest = {
        resourceSpans: [{
          resource: { attributes: [{ key: "service.name", value: { stringValue: "svc" } }] },
          scopeSpans: [{
            scope: { name: "", version: "" },
            spans: [{
              traceId: id,
              spanId: id.slice(16),
              parentSpanId: "",
              name: "op",
              kind: 2,
              startTimeUnixNano: ns,
              endTimeUnixNano: ns,
              attributes: [],
              events: [],
              status: { code: 0, message: "" },
            }],
          }],
        }],
      };
      return Promise.resolve({
        kind: "ok",
        trace: { request, partial: false, message: "" },
        bytes: 100,
        format: "json",
      });
    },
    queryRange() {
      return Promise.reject(new Error("not used"));
    },
  };
  return api;
}

function memoryStore() {
  const spans = new Map<string, StagedSpan>();
  const commits: Array<{ cursor: string | null; spans: number; skips: Skip[] }> = [];
  const failures = new Map<string, number>();
  let cursor: string | null = null;
  const store: TempoStore & { spans: typeof spans; commits: typeof commits; cursor(): string | null } = {
    spans,
    commits,
    cursor: () => cursor,
    commitSpans(batch: StagedSpan[], c: string | null, _counters: Counters, skips: Skip[]) {
      let inserted = 0;
      for (const s of batch) {
        const key = `${s.trace_id}/${s.span_id}`;
        if (!spans.has(key)) inserted++;
        spans.set(key, s);
      }
      if (c && (!cursor || c > cursor)) cursor = c;
      commits.push({ cursor: c, spans: batch.length, skips });
      return Promise.resolve(inserted);
    },
    noteFailure(traceId: string) {
      failures.set(traceId, (failures.get(traceId) ?? 0) + 1);
      return Promise.resolve((failures.get(traceId) ?? 0) >= 3);
    },
    storeMinutes() {
      return Promise.reject(new Error("not used"));
    },
  };
  return store;
}

const source = (over: Partial<TempoSource> = {}): TempoSource => ({
  name: "t",
  base_url: "http://tempo:3200",
  tenant: null,
  auth_kind: "none",
  auth_vault_secret: null,
  auth_env_var: null,
  mode: "traces",
  traceql: "{}",
  lag_seconds: 100,
  backfill_seconds: 0,
  max_window_seconds: 3600,
  search_limit: 4,
  max_traces_per_run: 1000,
  max_seconds_per_run: 30,
  max_trace_bytes: 1 << 20,
  request_timeout_ms: 1000,
  max_retries: 0,
  fetch_concurrency: 3,
  lease_seconds: 60,
  cursor: new Date(T0 * 1000).toISOString(),
  ...over,
});

const iso = (sec: number) => new Date(sec * 1000).toISOString();
const run = (src: TempoSource, api: TempoApi, store: TempoStore, now = () => NOW) =>
  runSource({ source: src, api, store, ingest: DEFAULT_INGEST_CONFIG, now });

describe("traces mode", () => {
  const seconds = [1, 2, 3, 50, 51, 52, 53, 54, 55, 300, 301, 599];

  it("bisects truncated answers until nothing is cut and stages every trace once", async () => {
    const api = fakeTempo(seconds);
    const store = memoryStore();
    const out = await run(source(), api, store);
    expect(out.status).toBe("ok");
    expect(store.spans.size).toBe(seconds.length);
    expect(out.counters.splits).toBeGreaterThan(0);
    expect(out.counters.traces_fetched).toBe(seconds.length);
    expect(store.cursor()).toBe(iso(T0 + 600));
    // every search that was acted on returned fewer than the limit
    const cursors = store.commits.map((c) => c.cursor).filter(Boolean) as string[];
    expect([...cursors].sort()).toEqual(cursors); // the cursor only moves forward
  });

  it("asks for a larger limit when one second holds more traces than the limit", async () => {
    const api = fakeTempo([5, 5, 5, 5, 5, 5]);
    const store = memoryStore();
    const out = await run(source({ search_limit: 2 }), api, store);
    expect(out.status).toBe("ok");
    expect(store.spans.size).toBe(6);
    expect(api.searches.some(([s, e, limit]) => e - s <= 1 && limit === 32)).toBe(true);
  });

  it("stages what Tempo lists when one second holds more than 16x the limit, and records that second", async () => {
    const api = fakeTempo(Array.from({ length: 40 }, () => 7));
    const store = memoryStore();
    const out = await run(source({ search_limit: 2 }), api, store);
    expect(out.status).toBe("ok");
    expect(store.spans.size).toBe(32); // 16 x 2: all Tempo would list for that second
    // the one-second ranges around second 7 (search ends are inclusive) are recorded as cut
    expect(out.details.truncated_seconds).toEqual(expect.arrayContaining([T0 + 7]));
    expect((out.details.truncated_seconds as number[]).every((s) => s === T0 + 6 || s === T0 + 7)).toBe(true);
    expect(store.cursor()).toBe(iso(T0 + 600));
  });

  it("stops at the trace budget and the next run continues without loss or duplicates", async () => {
    const api = fakeTempo(seconds);
    const store = memoryStore();
    const first = await run(source({ max_traces_per_run: 5 }), api, store);
    expect(first.status).toBe("incomplete");
    expect(store.spans.size).toBeLessThanOrEqual(5);
    const second = await run(source({ max_traces_per_run: 5, cursor: store.cursor() }), api, store);
    const third = await run(source({ max_traces_per_run: 5, cursor: store.cursor() }), api, store);
    expect([second.status, third.status]).toContain("ok");
    expect(store.spans.size).toBe(seconds.length);
  });

  it("stops at the time budget with the cursor at the last finished range", async () => {
    const api = fakeTempo(seconds);
    const store = memoryStore();
    let t = NOW;
    const out = await run(source({ max_seconds_per_run: 3 }), api, store, () => (t += 400));
    expect(out.status).toBe("incomplete");
    const cursor = store.cursor();
    // nothing at or after the cursor was claimed: every trace before it is staged
    for (const s of seconds.filter((s) => cursor && T0 + s < Date.parse(cursor) / 1000)) {
      expect([...store.spans.values()].some((x) => Date.parse(x.start_time) / 1000 === T0 + s)).toBe(true);
    }
  });

  it("skips a vanished trace with its reason and moves on", async () => {
    const api = fakeTempo([10, 20]);
    const store = memoryStore();
    const gone = [...api.traces.keys()][0];
    const realSearch = api.search.bind(api);
    api.search = async (...args) => {
      const r = await realSearch(...args);
      api.traces.delete(gone); // deleted between search and fetch
      return r;
    };
    const out = await run(source(), api, store);
    expect(out.status).toBe("ok");
    expect(out.counters.traces_skipped).toBe(1);
    expect(store.commits.flatMap((c) => c.skips)).toEqual([
      { trace_id: gone, reason: "vanished", detail: "404 between search and fetch" },
    ]);
    expect(store.cursor()).toBe(iso(T0 + 600));
  });

  it("a trace failing after retries holds the cursor, then is given up after three runs", async () => {
    const api = fakeTempo([10, 400]);
    const bad = [...api.traces.keys()][1];
    api.failing.set(bad, 100);
    const store = memoryStore();
    const r1 = await run(source({ search_limit: 100 }), api, store);
    expect(r1.status).toBe("failed");
    expect(r1.error).toMatch(/HTTP 503/);
    expect(store.cursor()).toBeNull(); // the range holding the failing trace is not done
    expect(store.spans.size).toBe(1); // but what was fetched is kept
    await run(source({ search_limit: 100 }), api, store);
    const r3 = await run(source({ search_limit: 100 }), api, store);
    expect(r3.status).toBe("ok");
    expect(store.commits.flatMap((c) => c.skips).map((s) => s.reason)).toContain("gave_up");
    expect(store.cursor()).toBe(iso(T0 + 600));
  });

  it("a search that fails ends the run as failed with the cursor untouched", async () => {
    const api = fakeTempo(seconds);
    api.search = () =>
      Promise.reject(new TempoHttpError("/api/search: HTTP 400 invalid TraceQL query", 400, false));
    const store = memoryStore();
    const out = await run(source(), api, store);
    expect(out).toMatchObject({ status: "failed", error: expect.stringMatching(/invalid TraceQL/) });
    expect(store.commits).toEqual([]);
  });

  it("has nothing to do inside the lag", async () => {
    const store = memoryStore();
    const out = await run(source({ cursor: iso(T0 + 650) }), fakeTempo(seconds), store);
    expect(out).toMatchObject({ status: "ok", window: null });
    expect(store.commits).toEqual([]);
  });
});
