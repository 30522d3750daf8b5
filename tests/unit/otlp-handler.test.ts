// tests/unit/otlp-handler.test.ts — the OTLP/HTTP receiver's answers, with an in-memory store:
// status codes, content types, partial success, limits, gzip, back-pressure and storage outages.

import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  createOtlpHandler,
  type IngestStore,
  StoreUnavailableError,
} from "../../functions/_shared/ingest/otlp-handler.ts";
import { otlpRoot } from "../../functions/_shared/otlp/codec.ts";
import { DEFAULT_INGEST_CONFIG, type IngestConfig } from "../../functions/_shared/redact.ts";
import type { StagedSpan } from "../../functions/_shared/spans.ts";

const KEY = "tsk_" + "ab".repeat(32);
const URL_TRACES = "http://localhost/otlp-ingest/v1/traces";

function memoryStore(overrides: Partial<IngestStore> = {}, config: Partial<IngestConfig> = {}) {
  const stored = new Map<string, StagedSpan>();
  const store: IngestStore = {
    authenticate: (key) => Promise.resolve(key === KEY),
    loadConfig: () => Promise.resolve({ ...DEFAULT_INGEST_CONFIG, ...config }),
    ingest: (spans) => {
      let inserted = 0;
      for (const s of spans) {
        const id = `${s.trace_id}/${s.span_id}`;
        if (!stored.has(id)) inserted++;
        stored.set(id, s);
      }
      return Promise.resolve({ received: spans.length, inserted });
    },
    ...overrides,
  };
  return { store, stored };
}

function jsonBody(spans: Array<{ traceId: string; spanId: string; attributes?: unknown[] }>) {
  return JSON.stringify({
    resourceSpans: [{
      resource: { attributes: [{ key: "service.name", value: { stringValue: "checkout" } }] },
      scopeSpans: [{
        scope: { name: "test" },
        spans: spans.map((s) => ({
          traceId: s.traceId,
          spanId: s.spanId,
          name: "POST /pay",
          kind: 2,
          startTimeUnixNano: "1764050000000000000",
          endTimeUnixNano: "1764050000250000000",
          attributes: s.attributes ?? [],
          status: {},
        })),
      }],
    }],
  });
}

const T1 = "0af7651916cd43dd8448eb211c80319c";
const post = (body: BodyInit, headers: Record<string, string> = {}) =>
  new Request(URL_TRACES, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "x-ingest-key": KEY, ...headers },
  });

describe("OTLP/HTTP receiver", () => {
  it("stores valid JSON spans and answers 200 with an empty ExportTraceServiceResponse", async () => {
    const { store, stored } = memoryStore();
    const res = await createOtlpHandler(store)(post(jsonBody([{ traceId: T1, spanId: "b7ad6b7169203331" }])));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({});
    expect(stored.size).toBe(1);
    expect([...stored.values()][0].service_name).toBe("checkout");
  });

  it("accepts the bare function path as well as /v1/traces", async () => {
    const { store } = memoryStore();
    const req = new Request("http://localhost/otlp-ingest", {
      method: "POST",
      body: jsonBody([{ traceId: T1, spanId: "b7ad6b7169203331" }]),
      headers: { "content-type": "application/json", "x-ingest-key": KEY },
    });
    expect((await createOtlpHandler(store)(req)).status).toBe(200);
  });

  it("reports rejected spans as partial success and keeps the good ones", async () => {
    const { store, stored } = memoryStore();
    const res = await createOtlpHandler(store)(post(jsonBody([
      { traceId: T1, spanId: "b7ad6b7169203331" },
      { traceId: T1, spanId: "b7ad" },
    ])));
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.partialSuccess.rejectedSpans).toBe("1");
    expect(body.partialSuccess.errorMessage).toMatch(/span/i);
    expect(stored.size).toBe(1);
  });

  it("answers protobuf with protobuf", async () => {
    const { store, stored } = memoryStore();
    const Req = otlpRoot.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");
    const bytes = Req.encode(Req.fromObject({
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: "api" } }] },
        scopeSpans: [{
          spans: [{
            traceId: Buffer.from(T1, "hex"),
            spanId: Buffer.from("b7ad6b7169203331", "hex"),
            name: "GET /",
            kind: 2,
            startTimeUnixNano: "1764050000000000000",
            endTimeUnixNano: "1764050000100000000",
          }],
        }],
      }],
    })).finish();
    const res = await createOtlpHandler(store)(post(bytes, { "content-type": "application/x-protobuf" }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-protobuf");
    expect(stored.size).toBe(1);
  });

  it("refuses a malformed body with 400 and a google.rpc.Status, storing nothing", async () => {
    const { store, stored } = memoryStore();
    const res = await createOtlpHandler(store)(post("{not json"));
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.code).toBe(3);
    expect(body.message).toMatch(/malformed OTLP json/);
    expect(stored.size).toBe(0);

    const bad = await createOtlpHandler(store)(
      post(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f]), { "content-type": "application/x-protobuf" }),
    );
    expect(bad.status).toBe(400);
    expect(bad.headers.get("content-type")).toBe("application/x-protobuf");
  });

  it("answers 415 for an unknown content type and 401 without a valid key", async () => {
    const { store } = memoryStore();
    const handler = createOtlpHandler(store);
    expect((await handler(post("x", { "content-type": "text/plain" }))).status).toBe(415);
    expect((await handler(post(jsonBody([]), { "x-ingest-key": "tsk_wrong" }))).status).toBe(401);
  });

  it("answers 413 for a body over the limit, declared or streamed, and after gunzip", async () => {
    const { store } = memoryStore({}, { max_body_bytes: 2048 });
    const handler = createOtlpHandler(store);
    const big = jsonBody(Array.from({ length: 40 }, (_, i) => ({
      traceId: T1,
      spanId: (i + 1).toString(16).padStart(16, "0"),
    })));
    expect(big.length).toBeGreaterThan(2048);
    expect((await handler(post(big))).status).toBe(413);
    const zipped = gzipSync(big);
    expect(zipped.length).toBeLessThan(2048);
    expect((await handler(post(zipped, { "content-encoding": "gzip" }))).status).toBe(413);
  });

  it("gunzips a gzip body", async () => {
    const { store, stored } = memoryStore();
    const res = await createOtlpHandler(store)(
      post(gzipSync(jsonBody([{ traceId: T1, spanId: "b7ad6b7169203331" }])), { "content-encoding": "gzip" }),
    );
    expect(res.status).toBe(200);
    expect(stored.size).toBe(1);
  });

  it("redacts sensitive attributes before they reach the store", async () => {
    const { store, stored } = memoryStore();
    await createOtlpHandler(store)(post(jsonBody([{
      traceId: T1,
      spanId: "b7ad6b7169203331",
      attributes: [
        { key: "http.request.header.authorization", value: { stringValue: "Bearer s3cr3t" } },
        { key: "user.email", value: { stringValue: "ada@example.com" } },
      ],
    }])));
    const attrs = [...stored.values()][0].attributes;
    expect(JSON.stringify(attrs)).not.toContain("s3cr3t");
    expect(JSON.stringify(attrs)).not.toContain("ada@example.com");
  });

  it("answers 503 with Retry-After when storage is unavailable", async () => {
    const { store } = memoryStore({
      ingest: () => Promise.reject(new StoreUnavailableError("too many connections", 7)),
    });
    const res = await createOtlpHandler(store)(post(jsonBody([{ traceId: T1, spanId: "b7ad6b7169203331" }])));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("7");
  });

  it("answers 429 with Retry-After when too many exports are in flight", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { store } = memoryStore({
      ingest: async (spans) => {
        await gate;
        return { received: spans.length, inserted: spans.length };
      },
    });
    const handler = createOtlpHandler(store, { maxConcurrent: 1 });
    const first = handler(post(jsonBody([{ traceId: T1, spanId: "b7ad6b7169203331" }])));
    await new Promise((r) => setTimeout(r, 20));
    const second = await handler(post(jsonBody([{ traceId: T1, spanId: "c7ad6b7169203331" }])));
    expect(second.status).toBe(429);
    expect(second.headers.get("retry-after")).toBe("1");
    release();
    expect((await first).status).toBe(200);
  });

  it("answers 404 off the route and 405 for other methods", async () => {
    const { store } = memoryStore();
    const handler = createOtlpHandler(store);
    expect((await handler(new Request("http://localhost/otlp-ingest/v1/metrics", { method: "POST" }))).status)
      .toBe(404);
    expect((await handler(new Request(URL_TRACES, { method: "GET" }))).status).toBe(405);
  });
});
