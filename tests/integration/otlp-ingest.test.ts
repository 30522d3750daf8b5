// tests/integration/otlp-ingest.test.ts — the real otlp-ingest edge function end to end: Deno-served by the local
// runner on a fresh database of the PG15 test cluster, fed by the official OpenTelemetry JS SDK exporters and by
// hand-built OTLP/JSON and protobuf bodies; every case checks what anomaly.spans (and its bookkeeping) holds,
// including redaction, idempotence, refusals, partial success and a kill -9 of the function mid-batch.
import { createHash, randomBytes } from "node:crypto";
import process from "node:process";
import { gzipSync } from "node:zlib";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as OTLPJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OTLPProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  encodeProtobufRequest,
  type OtlpExportRequest,
  type OtlpKeyValue,
  otlpRoot,
} from "../../functions/_shared/otlp/codec.ts";
import { ensureIngestKey, prepareDatabase } from "../../scripts/local/migrate.ts";
import { type Runner, startRunner } from "../../scripts/local/runner.ts";
import { CLUSTER_URL, databaseUrl, dropDatabase, recreateDatabase, waitFor } from "./helpers.ts";

const StatusType = otlpRoot.lookupType("google.rpc.Status");
const ExportResponseType = otlpRoot.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
);

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const sha12 = (text: string) => "sha256:" + createHash("sha256").update(text).digest("hex").slice(0, 12);
const str = (key: string, value: string): OtlpKeyValue => ({ key, value: { stringValue: value } });
const int = (key: string, value: number): OtlpKeyValue => ({ key, value: { intValue: String(value) } });

interface SpanInput {
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  offsetNs?: bigint;
  durationNs?: bigint;
  attributes?: OtlpKeyValue[];
  status?: number;
}

/** A normalized OtlpExportRequest (the OTLP/JSON shape as well): one resource, one scope, one trace. */
function otlpRequest(service: string, traceId: string, spans: SpanInput[]): OtlpExportRequest {
  const base = BigInt(Date.now() - 5_000) * 1_000_000n + 123_456n; // sub-microsecond digits on purpose
  return {
    resourceSpans: [{
      resource: { attributes: [str("service.name", service), str("service.version", "2.0.1")] },
      scopeSpans: [{
        scope: { name: "otlp-ingest-test", version: "1" },
        spans: spans.map((s) => {
          const start = base + (s.offsetNs ?? 0n);
          return {
            traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind ?? 1,
            startTimeUnixNano: String(start),
            endTimeUnixNano: String(start + (s.durationNs ?? 2_500_000n)),
            attributes: s.attributes ?? [],
            events: [],
            status: { code: s.status ?? 0, message: "" },
          };
        }),
      }],
    }],
  };
}

/** A three-span trace: a server root and two children. */
function smallTrace(service: string, traceId = hex(16)) {
  const ids = [hex(8), hex(8), hex(8)];
  const req = otlpRequest(service, traceId, [
    {
      spanId: ids[0],
      name: "POST /pay",
      kind: 2,
      durationNs: 9_000_000n,
      attributes: [
        str("http.request.method", "POST"),
        str("http.route", "/pay"),
        int("http.response.status_code", 201),
      ],
    },
    { spanId: ids[1], parentSpanId: ids[0], name: "charge card", kind: 3, offsetNs: 1_000_000n },
    { spanId: ids[2], parentSpanId: ids[0], name: "INSERT payments", kind: 3, offsetNs: 4_000_000n },
  ]);
  return { traceId, ids, req };
}

describe("otlp-ingest edge function on the local runner (PG15 cluster)", () => {
  const dbName = `ts_otlp_${hex(4)}`;
  const dbUrl = databaseUrl(CLUSTER_URL, dbName);
  const sql = postgres(dbUrl, { max: 2, onnotice: () => {} });
  const logs: string[] = [];
  let runner: Runner;
  let key: string;
  let tracesUrl: string;

  const ingestFn = () => runner.functions().find((f) => f.name === "otlp-ingest")!;

  async function post(
    body: string | Uint8Array,
    opts: { type?: string; key?: string | null; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      "content-type": opts.type ?? "application/json",
      ...opts.headers,
    };
    const k = opts.key === undefined ? key : opts.key;
    if (k !== null) headers["x-ingest-key"] = k;
    return await fetch(tracesUrl, { method: "POST", body, headers });
  }

  /** The google.rpc.Status body of a refusal, in whichever format it came. */
  async function rpcStatus(res: Response): Promise<{ code: number; message: string }> {
    if (res.headers.get("content-type") === "application/x-protobuf") {
      const bytes = new Uint8Array(await res.arrayBuffer());
      return StatusType.toObject(StatusType.decode(bytes), { defaults: true }) as {
        code: number;
        message: string;
      };
    }
    return await res.json();
  }

  async function countTrace(traceId: string): Promise<number> {
    const [{ n }] = await sql`select count(*)::int as n from anomaly.spans where trace_id = ${traceId}`;
    return n;
  }

  async function totalSpans(): Promise<number> {
    const [{ n }] = await sql`select count(*)::int as n from anomaly.spans`;
    return n;
  }

  /** kill -9 of the function's Deno process; the runner starts a new one on the next request. */
  async function killIngest(): Promise<number> {
    const fn = ingestFn();
    expect(fn.state).toBe("ready");
    process.kill(fn.pid!, "SIGKILL");
    await waitFor("the runner to see otlp-ingest exit", () => ingestFn().state === "exited" || undefined);
    return fn.pid!;
  }

  beforeAll(async () => {
    await recreateDatabase(CLUSTER_URL, dbName);
    await prepareDatabase(dbUrl);
    // Keep the database still: no rollup/detect runs from the runner's cron stand-in.
    await sql`update anomaly.jobs set enabled = false`;
    key = await ensureIngestKey(dbUrl, "otlp-ingest-test");
    runner = await startRunner({
      dbUrl,
      port: 0,
      // All sixteen requests of the kill test in flight at once (the default 8 would answer half with 429).
      env: { OTLP_INGEST_MAX_CONCURRENT: "16" },
      log: (line) => {
        logs.push(line);
        if (logs.length > 200) logs.shift();
      },
    });
    tracesUrl = `${runner.url}/functions/v1/otlp-ingest/v1/traces`;
  }, 240_000);

  afterAll(async () => {
    await runner?.stop();
    await sql.end({ timeout: 5 });
    await dropDatabase(CLUSTER_URL, dbName);
  }, 60_000);

  // ------------------------------------------------------------------ 1. the OpenTelemetry JS SDK as client

  /** Records what the SDK exporter sent and how each export ended. */
  class RecordingExporter implements SpanExporter {
    sent: ReadableSpan[] = [];
    results: number[] = [];
    constructor(private readonly inner: SpanExporter) {}
    export(spans: ReadableSpan[], done: Parameters<SpanExporter["export"]>[1]): void {
      this.sent.push(...spans);
      this.inner.export(spans, (result) => {
        this.results.push(result.code);
        if (result.error) logs.push(`exporter error: ${result.error.message}`);
        done(result);
      });
    }
    shutdown(): Promise<void> {
      return this.inner.shutdown();
    }
    forceFlush(): Promise<void> {
      return this.inner.forceFlush?.() ?? Promise.resolve();
    }
  }

  async function sdkTrace(exporter: SpanExporter, batch: boolean, service: string) {
    const recorder = new RecordingExporter(exporter);
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        "service.name": service,
        "service.version": "1.4.2",
        "service.instance.id": "pod-7",
        "process.cpu.utilization": 0.42,
      }),
      spanProcessors: [batch ? new BatchSpanProcessor(recorder) : new SimpleSpanProcessor(recorder)],
    });
    const tracer = provider.getTracer("trace-sentinel-test", "0.1.0");
    const server = tracer.startSpan("GET /orders/:id", {
      kind: SpanKind.SERVER,
      attributes: {
        "http.request.method": "GET",
        "http.route": "/orders/:id",
        "url.path": "/orders/42",
        "http.response.status_code": 200,
        "http.request.header.authorization": ["Bearer s3cr3t-t0ken-value"],
        "user.email": "alice@example.com",
        "client.address": "203.0.113.7",
      },
    });
    server.addEvent("login", { "enduser.id": "user-8812", "note": "welcome back dave@example.org" });
    const ctx = trace.setSpan(context.active(), server);
    const client = tracer.startSpan("GET inventory", {
      kind: SpanKind.CLIENT,
      attributes: {
        "http.request.method": "GET",
        "http.response.status_code": 503,
        "server.address": "inventory",
      },
    }, ctx);
    client.setStatus({ code: SpanStatusCode.ERROR, message: "inventory said 503 to alice@example.com" });
    client.end();
    const db = tracer.startSpan("SELECT shop.orders", {
      kind: SpanKind.CLIENT,
      attributes: {
        "db.system": "postgresql",
        "db.statement":
          "/* app=checkout user=carol@example.net */ SELECT id, total FROM shop.orders WHERE customer_name = 'Zebulon Quux' AND id = 4711",
      },
    }, ctx);
    db.end();
    server.setStatus({ code: SpanStatusCode.OK });
    server.end();
    await provider.forceFlush();
    await provider.shutdown();
    return { recorder, traceId: server.spanContext().traceId, server, client, db };
  }

  async function expectSdkTraceStored(run: Awaited<ReturnType<typeof sdkTrace>>, service: string) {
    const { recorder, traceId } = run;
    expect(recorder.sent).toHaveLength(3);
    expect(
      recorder.results.every((code) => code === 0),
      `export results ${recorder.results}: ${logs.slice(-5)}`,
    )
      .toBe(true);
    const rows = await sql`
      select s.*, (extract(epoch from start_time) * 1000000)::bigint::text as start_us,
             s::text as whole_row
      from anomaly.spans s where trace_id = ${traceId}`;
    expect(rows).toHaveLength(3);
    const byId = new Map(rows.map((r) => [r.span_id as string, r]));
    const server = byId.get(run.server.spanContext().spanId)!;
    const client = byId.get(run.client.spanContext().spanId)!;
    const db = byId.get(run.db.spanContext().spanId)!;

    for (const row of rows) {
      expect(row.service_name).toBe(service);
      expect(row.service_version).toBe("1.4.2");
      expect(row.service_instance).toBe("pod-7");
      expect(row.scope_name).toBe("trace-sentinel-test");
      expect(row.resource_attributes).toMatchObject({
        "service.name": service,
        "service.version": "1.4.2",
        "process.cpu.utilization": 0.42,
      });
      // Times survive the wire exactly (to the microsecond the column keeps; duration to the nanosecond).
      const sent = recorder.sent.find((s) => s.spanContext().spanId === row.span_id)!;
      expect(row.start_us).toBe(
        String(BigInt(sent.startTime[0]) * 1_000_000n + BigInt(sent.startTime[1]) / 1000n),
      );
      expect(row.duration_ns).toBe(
        String(BigInt(sent.duration[0]) * 1_000_000_000n + BigInt(sent.duration[1])),
      );
      expect(row.name).toBe(sent.name);
    }
    expect(server).toMatchObject({
      parent_span_id: null,
      kind: 2,
      status_code: 1,
      http_status_code: 200,
      http_route: "/orders/:id",
      http_method: "GET",
    });
    expect(client).toMatchObject({
      parent_span_id: server.span_id,
      kind: 3,
      status_code: 2,
      status_message: "inventory said 503 to [email]",
      http_status_code: 503,
      http_route: null,
    });
    expect(db).toMatchObject({
      parent_span_id: server.span_id,
      kind: 3,
      status_code: 0,
      http_status_code: null,
    });

    // Redaction happened before storage.
    expect(server.attributes["http.request.header.authorization"]).toBe("[REDACTED]");
    expect(server.attributes["user.email"]).toBe(sha12("alice@example.com"));
    expect(server.attributes["client.address"]).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(server.attributes["url.path"]).toBe("/orders/42");
    expect(server.events).toHaveLength(1);
    expect(server.events[0].name).toBe("login");
    expect(server.events[0].attributes).toEqual({
      "enduser.id": sha12("user-8812"),
      note: "welcome back [email]",
    });
    expect(db.attributes["db.statement"]).toBe(
      "/* app=checkout user=[email] */ SELECT id, total FROM shop.orders WHERE customer_name = ? AND id = ?",
    );
    expect(db.attributes["db.system"]).toBe("postgresql");
    for (const row of rows) {
      for (const secret of ["s3cr3t", "alice@", "carol@", "dave@", "Zebulon", "203.0.113.7", "user-8812"]) {
        expect(row.whole_row, `${secret} stored in span ${row.name}`).not.toContain(secret);
      }
    }
    // Ingest bookkeeping: the trace is open with its three spans, counted once.
    const [open] = await sql`select span_count from anomaly.open_traces where trace_id = ${traceId}`;
    expect(open.span_count).toBe(3);
  }

  it("stores a trace from the OpenTelemetry SDK's protobuf exporter, typed and redacted", async () => {
    const exporter = new OTLPProtoExporter({ url: tracesUrl, headers: { "x-ingest-key": key } });
    const run = await sdkTrace(exporter, true, "checkout-proto");
    await expectSdkTraceStored(run, "checkout-proto");
  });

  it("stores a trace from the OpenTelemetry SDK's JSON exporter (one request per span), typed and redacted", async () => {
    const exporter = new OTLPJsonExporter({ url: tracesUrl, headers: { "x-ingest-key": key } });
    const run = await sdkTrace(exporter, false, "checkout-json");
    await expectSdkTraceStored(run, "checkout-json");
  });

  // ------------------------------------------------------------------ 2. duplicates

  it("acknowledges a re-sent body (JSON, protobuf, and across formats) without storing anything twice", async () => {
    const json = smallTrace("dup-json");
    const jsonBody = JSON.stringify(json.req);
    for (let i = 0; i < 2; i++) {
      const res = await post(jsonBody);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(await res.json()).toEqual({});
      expect(await countTrace(json.traceId)).toBe(3);
    }

    const proto = smallTrace("dup-proto");
    const protoBody = encodeProtobufRequest(proto.req);
    for (let i = 0; i < 2; i++) {
      const res = await post(protoBody, { type: "application/x-protobuf" });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/x-protobuf");
      const decoded = ExportResponseType.toObject(
        ExportResponseType.decode(new Uint8Array(await res.arrayBuffer())),
      );
      expect(decoded.partialSuccess).toBeUndefined();
      expect(await countTrace(proto.traceId)).toBe(3);
    }

    // The JSON trace again, now as protobuf: both decoders give the same key (start time to the microsecond).
    const before = await totalSpans();
    expect((await post(encodeProtobufRequest(json.req), { type: "application/x-protobuf" })).status).toBe(
      200,
    );
    expect(await totalSpans()).toBe(before);

    const open = await sql`
      select trace_id, span_count from anomaly.open_traces where trace_id in ${
      sql([json.traceId, proto.traceId])
    }`;
    expect(open.map((r) => r.span_count)).toEqual([3, 3]);
    const [row] =
      await sql`select * from anomaly.spans where trace_id = ${json.traceId} and parent_span_id is null`;
    expect(row).toMatchObject({
      service_name: "dup-json",
      service_version: "2.0.1",
      kind: 2,
      http_status_code: 201,
      http_route: "/pay",
      http_method: "POST",
      duration_ns: "9000000",
    });
  });

  // ------------------------------------------------------------------ 3. malformed bodies

  it("answers malformed JSON and protobuf with 400 and a google.rpc.Status, storing nothing", async () => {
    const before = await totalSpans();
    const good = smallTrace("malformed");
    const goodJson = JSON.parse(JSON.stringify(good.req));

    // Not JSON at all.
    let res = await post('{"resourceSpans": [');
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/json");
    let status = await rpcStatus(res);
    expect(status.code).toBe(3);
    expect(status.message).toMatch(/invalid JSON/);

    // Valid JSON, wrong structure: a good resource and a bad one in the same request (nothing of it is kept).
    const wrong = {
      resourceSpans: [
        goodJson.resourceSpans[0],
        {
          resource: { attributes: [] },
          scopeSpans: [{ spans: [{ ...goodJson.resourceSpans[0].scopeSpans[0].spans[0], kind: "SERVER" }] }],
        },
      ],
    };
    res = await post(JSON.stringify(wrong));
    expect(res.status).toBe(400);
    status = await rpcStatus(res);
    expect(status.code).toBe(3);
    expect(status.message).toContain("resourceSpans[1].scopeSpans[0].spans[0].kind");

    for (const body of ['{"resourceSpans": {"spans": []}}', "[]", '"resourceSpans"']) {
      res = await post(body);
      expect(res.status, body).toBe(400);
      expect((await rpcStatus(res)).code).toBe(3);
    }
    // Not UTF-8.
    res = await post(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
    expect(res.status).toBe(400);
    expect((await rpcStatus(res)).code).toBe(3);

    // Garbage protobuf, and a real request cut short: answered in protobuf.
    const protoBody = encodeProtobufRequest(good.req);
    for (
      const body of [
        new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
        protoBody.slice(0, protoBody.length - 7),
      ]
    ) {
      res = await post(body, { type: "application/x-protobuf" });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/x-protobuf");
      status = await rpcStatus(res);
      expect(status.code).toBe(3);
      expect(status.message).toMatch(/malformed OTLP protobuf body/);
    }

    expect(await countTrace(good.traceId)).toBe(0);
    expect(await totalSpans()).toBe(before);
  });

  // ------------------------------------------------------------------ 5. encodings, content types, keys

  it("accepts a gzip JSON body; refuses text/plain with 415 and a missing or wrong key with 401", async () => {
    const zipped = smallTrace("gzip");
    const res = await post(gzipSync(JSON.stringify(zipped.req)), { headers: { "content-encoding": "gzip" } });
    expect(res.status).toBe(200);
    expect(await countTrace(zipped.traceId)).toBe(3);

    const refused = smallTrace("refused");
    const body = JSON.stringify(refused.req);
    // Says gzip, is not: 400, nothing stored.
    let r = await post(body, { headers: { "content-encoding": "gzip" } });
    expect(r.status).toBe(400);
    expect(await rpcStatus(r)).toMatchObject({
      code: 3,
      message: expect.stringContaining("unreadable body"),
    });
    r = await post(body, { type: "text/plain" });
    expect(r.status).toBe(415);
    expect(await rpcStatus(r)).toMatchObject({ code: 3, message: expect.stringContaining("text/plain") });

    for (
      const k of [null, "", `tsk_${hex(32)}`, "not-a-key", key.slice(0, -1) + (key.endsWith("0") ? "1" : "0")]
    ) {
      r = await post(body, { key: k });
      expect(r.status, `key ${k}`).toBe(401);
      expect((await rpcStatus(r)).code).toBe(16);
    }
    r = await post(encodeProtobufRequest(refused.req), {
      type: "application/x-protobuf",
      key: `tsk_${hex(32)}`,
    });
    expect(r.status).toBe(401);
    expect((await rpcStatus(r)).code).toBe(16);
    expect(await countTrace(refused.traceId)).toBe(0);

    // The key may also come as a bearer token (collectors that only set Authorization).
    const bearer = smallTrace("bearer");
    r = await post(JSON.stringify(bearer.req), { key: null, headers: { authorization: `Bearer ${key}` } });
    expect(r.status).toBe(200);
    expect(await countTrace(bearer.traceId)).toBe(3);
  });

  // ------------------------------------------------------------------ 6. partial success

  it("reports a span with a bad span_id as partial success and stores the good ones", async () => {
    const traceId = hex(16);
    const root = hex(8);
    const spans: SpanInput[] = [
      { spanId: root, name: "GET /a", kind: 2 },
      { spanId: hex(6), parentSpanId: root, name: "bad id", offsetNs: 1_000n },
      { spanId: hex(8), parentSpanId: root, name: "good child", offsetNs: 2_000n },
    ];
    const res = await post(JSON.stringify(otlpRequest("partial-json", traceId, spans)));
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.partialSuccess.rejectedSpans).toBe("1");
    expect(body.partialSuccess.errorMessage).toMatch(/invalid span_id length 6 bytes/);
    const rows = await sql`select name from anomaly.spans where trace_id = ${traceId} order by name`;
    expect(rows.map((r) => r.name)).toEqual(["GET /a", "good child"]);

    const protoTrace = hex(16);
    const pres = await post(encodeProtobufRequest(otlpRequest("partial-proto", protoTrace, spans)), {
      type: "application/x-protobuf",
    });
    expect(pres.status).toBe(200);
    const decoded = ExportResponseType.toObject(
      ExportResponseType.decode(new Uint8Array(await pres.arrayBuffer())),
      { longs: String },
    );
    expect(decoded.partialSuccess.rejectedSpans).toBe("1");
    expect(decoded.partialSuccess.errorMessage).toMatch(/invalid span_id length 6 bytes/);
    expect(await countTrace(protoTrace)).toBe(2);
  });

  // ------------------------------------------------------------------ strings Postgres cannot hold

  it("stores U+0000 and unpaired surrogates (legal OTLP, refused by Postgres text/jsonb) as U+FFFD, not a 500", async () => {
    const traceId = hex(16);
    const root = hex(8);
    const child = hex(8);
    const req = otlpRequest("nul\u0000service", traceId, [
      {
        spanId: root,
        name: "GET /nul\u0000name",
        kind: 2,
        attributes: [str("note", "a\u0000b"), str("k\u0000ey", "v")],
      },
      { spanId: child, parentSpanId: root, name: "child", offsetNs: 1_000n },
    ]);
    // OTLP/JSON may spell a lone surrogate as an escape; JSON.parse then yields one.
    const jsonBody = JSON.stringify(req).replace('"child"', '"child \\ud800"');
    const res = await post(jsonBody);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toEqual({});
    const rows = await sql`select * from anomaly.spans where trace_id = ${traceId} order by start_time`;
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ service_name: "nul\ufffdservice", name: "GET /nul\ufffdname" });
    expect(rows[0].attributes).toEqual({ note: "a\ufffdb", "k\ufffdey": "v" });
    expect(rows[1].name).toBe("child \ufffd");

    const protoTrace = hex(16);
    const pres = await post(
      encodeProtobufRequest(otlpRequest("nul-proto", protoTrace, [{ spanId: hex(8), name: "x\u0000y" }])),
      { type: "application/x-protobuf" },
    );
    expect(pres.status).toBe(200);
    const [p] = await sql`select name from anomaly.spans where trace_id = ${protoTrace}`;
    expect(p.name).toBe("x\ufffdy");
  });

  // ------------------------------------------------------------------ 4. body size limit from config

  it("refuses a body over ingest.max_body_bytes with 413 (declared, streamed or gzip-inflated), storing nothing", async () => {
    const big = smallTrace("oversized");
    for (const s of big.req.resourceSpans[0].scopeSpans[0].spans) {
      s.attributes.push(str("padding", "p".repeat(1800)));
    }
    const bigBody = JSON.stringify(big.req);
    expect(bigBody.length).toBeGreaterThan(4096 + 1000);
    const before = await totalSpans();

    await sql`
      insert into public.anomaly_detection_config (key, value) values ('ingest', '{"max_body_bytes": 4096}')
      on conflict (key) do update set value = excluded.value`;
    try {
      // The handler caches config for 30 s per instance: a fresh instance reads the new limit.
      await killIngest();

      // Content-Length says it all.
      let res = await post(bigBody);
      expect(res.status).toBe(413);
      expect(ingestFn().restarts).toBeGreaterThanOrEqual(1);
      let status = await rpcStatus(res);
      expect(status.code).toBe(8);
      expect(status.message).toMatch(/exceeds 4096 bytes/);

      // No Content-Length (chunked upload): the limit is enforced while reading.
      const bytes = new TextEncoder().encode(bigBody);
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < bytes.length; i += 1024) controller.enqueue(bytes.slice(i, i + 1024));
          controller.close();
        },
      });
      res = await fetch(tracesUrl, {
        method: "POST",
        body: stream,
        duplex: "half",
        headers: { "content-type": "application/json", "x-ingest-key": key },
      } as RequestInit);
      expect(res.status).toBe(413);
      expect((await rpcStatus(res)).code).toBe(8);

      // Small on the wire, too big once inflated.
      const zipped = gzipSync(bigBody);
      expect(zipped.length).toBeLessThan(4096);
      res = await post(zipped, { headers: { "content-encoding": "gzip" } });
      expect(res.status).toBe(413);
      status = await rpcStatus(res);
      expect(status.message).toMatch(/exceeds 4096 bytes/);

      // Protobuf is answered in protobuf.
      const protoBig = encodeProtobufRequest(big.req);
      res = await post(protoBig, { type: "application/x-protobuf" });
      expect(res.status).toBe(413);
      expect(res.headers.get("content-type")).toBe("application/x-protobuf");
      expect((await rpcStatus(res)).code).toBe(8);

      expect(await countTrace(big.traceId)).toBe(0);
      expect(await totalSpans()).toBe(before);

      // Under the limit still works on this instance.
      const small = smallTrace("under-limit");
      expect((await post(JSON.stringify(small.req))).status).toBe(200);
      expect(await countTrace(small.traceId)).toBe(3);
    } finally {
      await sql`delete from public.anomaly_detection_config where key = 'ingest'`;
      await killIngest();
    }
    // Back to the default limit (16 MiB) on the next instance: the same body is now accepted.
    const res = await post(bigBody);
    expect(res.status).toBe(200);
    expect(await countTrace(big.traceId)).toBe(3);
  });

  // ------------------------------------------------------------------ 7. kill -9 mid-batch

  it("loses nothing that was acknowledged when the function is killed mid-batch; resends complete every trace once", async () => {
    const REQUESTS = 16;
    const SPANS = 800;
    const batches = Array.from({ length: REQUESTS }, (_, r) => {
      const traceId = hex(16);
      const id = (i: number) => (i + 1).toString(16).padStart(16, "0");
      const spans: SpanInput[] = Array.from({ length: SPANS }, (_, i) => ({
        spanId: id(i),
        parentSpanId: i === 0 ? undefined : id(Math.floor((i - 1) / 8)),
        name: i === 0 ? "GET /bulk" : `step ${i % 12}`,
        kind: i === 0 ? 2 : 1,
        offsetNs: BigInt(i) * 10_000n,
        durationNs: BigInt(SPANS - i) * 10_000n,
        attributes: [
          str("http.route", "/bulk"),
          int("step.index", i),
          str("db.statement", `select ${i} from t`),
        ],
      }));
      const req = otlpRequest(`bulk-${r % 4}`, traceId, spans);
      const protobuf = r % 2 === 1;
      return {
        traceId,
        protobuf,
        body: protobuf ? encodeProtobufRequest(req) : JSON.stringify(req),
      };
    });
    const send = async (b: (typeof batches)[number]): Promise<number | string> => {
      try {
        const res = await post(b.body, { type: b.protobuf ? "application/x-protobuf" : "application/json" });
        await res.arrayBuffer();
        return res.status;
      } catch (err) {
        return `network error: ${(err as Error).message}`; // the connection died with the function
      }
    };

    // Warm: the instance that will be killed is up (the previous case restarted it).
    const warm = smallTrace("warm-up");
    expect((await post(JSON.stringify(warm.req))).status).toBe(200);
    const victim = ingestFn().pid!;

    // kill -9 once KILL_AFTER requests are acknowledged: several transactions are then mid-flight.
    const KILL_AFTER = 4;
    let acks = 0;
    let killedAt: Date | undefined;
    const outcomes = await Promise.all(batches.map(async (b) => {
      const outcome = await send(b);
      if (outcome === 200 && ++acks === KILL_AFTER) {
        killedAt = new Date();
        process.kill(victim, "SIGKILL");
      }
      return outcome;
    }));
    expect(killedAt, `fewer than ${KILL_AFTER} acknowledged: ${outcomes.join(", ")}`).toBeDefined();
    const acknowledged = batches.filter((_, i) => outcomes[i] === 200);
    const failed = batches.filter((_, i) => outcomes[i] !== 200);
    expect(failed.length, `the kill hit nothing in flight: ${outcomes.join(", ")}`).toBeGreaterThan(0);
    for (const o of outcomes) {
      expect(o === 200 || o === 502 || String(o).startsWith("network error"), String(o)).toBe(true);
    }

    // Let the killed instance's sessions end (an interrupted transaction rolls back when its socket closes).
    await waitFor("the killed instance's database sessions to end", async () => {
      const [{ n }] = await sql`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name = 'trace-sentinel' and backend_start <= ${killedAt!}`;
      return n === 0 || undefined;
    }, 15_000);

    const countsOf = async () => {
      const rows = await sql`
        select s.trace_id, count(*)::int as n, count(distinct s.span_id)::int as distinct_ids,
               min(o.span_count) as open_count
        from anomaly.spans s left join anomaly.open_traces o using (trace_id)
        where s.trace_id in ${sql(batches.map((b) => b.traceId))}
        group by s.trace_id`;
      return new Map(rows.map((r) => [r.trace_id as string, r]));
    };
    let counts = await countsOf();
    for (const b of acknowledged) expect(counts.get(b.traceId)?.n, `acknowledged ${b.traceId}`).toBe(SPANS);
    for (const [traceId, row] of counts) {
      expect(row.n, `trace ${traceId} is partly stored`).toBe(SPANS); // complete or absent, never half
      expect(row.open_count, `open_traces bookkeeping of ${traceId}`).toBe(SPANS);
    }

    // Resend what was not acknowledged: the runner starts a new instance on the first request.
    const retried = await Promise.all(failed.map(send));
    expect(retried).toEqual(failed.map(() => 200));
    expect(ingestFn().pid).not.toBe(victim);

    counts = await countsOf();
    expect(counts.size).toBe(REQUESTS);
    for (const [, row] of counts) {
      expect(row).toMatchObject({ n: SPANS, distinct_ids: SPANS, open_count: SPANS });
    }
    const [{ n }] = await sql`
      select count(*)::int as n from anomaly.spans where trace_id in ${sql(batches.map((b) => b.traceId))}`;
    expect(n).toBe(REQUESTS * SPANS);
  });
});
