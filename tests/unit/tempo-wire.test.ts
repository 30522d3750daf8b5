// tests/unit/tempo-wire.test.ts — what tempo-ingest reads from Tempo, without a network: retry timing
// (Retry-After, backoff), search answers (left-padded hex ids, limit), trace-by-id bodies in Tempo's JSON
// (base64 ids, enum names, zero omission) and protobuf TraceByIDResponse, which must stage exactly the spans
// the OTLP receiver stages for the same request, and the run window / bisection rules.

import { describe, expect, it } from "vitest";
import {
  encodeProtobufRequest,
  OtlpDecodeError,
  type OtlpExportRequest,
} from "../../functions/_shared/otlp/codec.ts";
import { toStagedSpans } from "../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_REDACTION_POLICY } from "../../functions/_shared/redact.ts";
import { authorizationHeader } from "../../functions/_shared/tempo/client.ts";
import { backoffMs, isRetryableStatus, parseRetryAfter } from "../../functions/_shared/tempo/retry.ts";
import { padTraceId, parseSearchResponse, searchParams } from "../../functions/_shared/tempo/search.ts";
import { bisect, runWindow, type TempoSource } from "../../functions/_shared/tempo/source.ts";
import {
  decodeTraceJson,
  decodeTraceProtobuf,
  encodeTraceProtobuf,
  normalizeId,
} from "../../functions/_shared/tempo/trace.ts";
import { tempoJson } from "../fakes/tempo-server.ts";

const NOW = Date.parse("2026-11-25T10:00:30.500Z");

function sampleRequest(): OtlpExportRequest {
  const t0 = BigInt(NOW - 60_000) * 1_000_000n + 789n;
  return {
    resourceSpans: [{
      resource: {
        attributes: [
          { key: "service.name", value: { stringValue: "checkout" } },
          { key: "service.version", value: { stringValue: "1.4.2" } },
        ],
      },
      scopeSpans: [{
        scope: { name: "shop", version: "1" },
        spans: [
          {
            traceId: "00ab" + "c".repeat(28),
            spanId: "0102030405060708",
            parentSpanId: "",
            name: "POST /checkout",
            kind: 2,
            startTimeUnixNano: String(t0),
            endTimeUnixNano: String(t0 + 12_345_678n),
            attributes: [
              { key: "http.route", value: { stringValue: "/checkout" } },
              { key: "http.response.status_code", value: { intValue: "500" } },
              { key: "retry", value: { intValue: "0" } },
              { key: "ratio", value: { doubleValue: 0.25 } },
              { key: "cached", value: { boolValue: false } },
              { key: "user.email", value: { stringValue: "ann@example.com" } },
              { key: "tags", value: { arrayValue: { values: [{ stringValue: "a" }, { intValue: "2" }] } } },
            ],
            events: [{ timeUnixNano: String(t0 + 1000n), name: "exception", attributes: [] }],
            status: { code: 2, message: "boom" },
          },
          {
            traceId: "00ab" + "c".repeat(28),
            spanId: "1112131415161718",
            parentSpanId: "0102030405060708",
            name: "SELECT orders",
            kind: 0,
            startTimeUnixNano: String(t0 + 1_000_000n),
            endTimeUnixNano: String(t0 + 3_000_000n),
            attributes: [],
            events: [],
            status: { code: 0, message: "" },
          },
        ],
      }],
    }],
  };
}

const stage = (req: OtlpExportRequest) =>
  toStagedSpans(req, { maxAttributeValueLength: 4096, redaction: DEFAULT_REDACTION_POLICY, now: NOW }).spans;

describe("retry timing", () => {
  it("retries 429, 499 and 5xx, never other 4xx", () => {
    expect([429, 499, 500, 502, 503, 504].every(isRetryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 413].some(isRetryableStatus)).toBe(false);
  });
  it("reads Retry-After as seconds or an HTTP date, capped, and ignores garbage", () => {
    expect(parseRetryAfter("2", NOW)).toBe(2000);
    expect(parseRetryAfter("0.5", NOW)).toBe(500);
    expect(parseRetryAfter(new Date(NOW + 7000).toUTCString(), NOW)).toBeGreaterThanOrEqual(6000);
    expect(parseRetryAfter("3600", NOW, 60_000)).toBe(60_000);
    expect(parseRetryAfter("soon", NOW)).toBeNull();
    expect(parseRetryAfter(null, NOW)).toBeNull();
  });
  it("backs off exponentially with equal jitter and a ceiling", () => {
    expect(backoffMs(1, () => 0)).toBe(125);
    expect(backoffMs(1, () => 1)).toBe(250);
    expect(backoffMs(3, () => 1)).toBe(1000);
    expect(backoffMs(20, () => 1)).toBe(8000);
  });
  it("builds basic and bearer headers from the secret", () => {
    expect(authorizationHeader("none", null)).toBeNull();
    expect(authorizationHeader("bearer", "tok")).toBe("Bearer tok");
    expect(authorizationHeader("basic", "123:glc_x")).toBe(`Basic ${btoa("123:glc_x")}`);
    expect(() => authorizationHeader("basic", null)).toThrow(/needs a secret/);
  });
});

describe("search answers", () => {
  it("left-pads trace ids (Tempo drops leading zeros) and removes duplicates", () => {
    expect(padTraceId("8EFFF7")).toBe("0".repeat(26) + "8efff7");
    const r = parseSearchResponse({
      traces: [{ traceID: "abc" }, { traceID: "0abc" }, {
        traceID: "2f3e0cee77ae5dc9c17ade3689eb2e54",
        spanSets: [],
      }],
      metrics: { inspectedBytes: "292781", completedJobs: 1, somethingNew: true },
    });
    expect(r.returned).toBe(3);
    expect(r.traceIds).toEqual(["0".repeat(29) + "abc", "2f3e0cee77ae5dc9c17ade3689eb2e54"]);
  });
  it("accepts an empty answer and refuses one that is not a search answer", () => {
    expect(parseSearchResponse({ metrics: {} })).toEqual({ traceIds: [], returned: 0 });
    expect(() => parseSearchResponse({ traces: [{ traceID: "not-hex" }] })).toThrow(/traceID/);
    expect(() => parseSearchResponse({ traces: "x" })).toThrow();
  });
  it("asks for the window in unix seconds with one span per spanset", () => {
    const p = searchParams("{}", 100, 200, 500);
    expect(Object.fromEntries(p)).toEqual({ q: "{}", start: "100", end: "200", limit: "500", spss: "1" });
  });
});

describe("trace-by-id bodies", () => {
  const req = sampleRequest();
  const expected = stage(req);

  it("Tempo's v2 JSON (base64 ids, enum names, zeros left out) stages the same spans as OTLP", () => {
    const body = JSON.stringify({ trace: tempoJson(req), metrics: { inspectedBytes: "10" } });
    expect(body).toContain('"kind":"SPAN_KIND_SERVER"');
    expect(body).toContain('"code":"STATUS_CODE_ERROR"');
    expect(body).not.toContain("0102030405060708"); // ids are base64 in Tempo's JSON
    const t = decodeTraceJson(body);
    expect(t.partial).toBe(false);
    expect(stage(t.request)).toEqual(expected);
    expect(expected[0].attributes["user.email"]).toMatch(/^sha256:/); // the same redaction applies
  });
  it("v1 JSON (batches) is read too", () => {
    const t = decodeTraceJson(
      JSON.stringify({ batches: (tempoJson(req) as { resourceSpans: unknown[] }).resourceSpans }),
    );
    expect(stage(t.request)).toEqual(expected);
  });
  it("protobuf TraceByIDResponse stages the same spans, and carries PARTIAL", () => {
    const bytes = encodeTraceProtobuf(encodeProtobufRequest(req));
    expect(stage(decodeTraceProtobuf(bytes).request)).toEqual(expected);
    const partial = decodeTraceProtobuf(encodeTraceProtobuf(encodeProtobufRequest(req), true, "too big"));
    expect(partial).toMatchObject({ partial: true, message: "too big" });
    expect(
      decodeTraceJson(JSON.stringify({ trace: tempoJson(req), status: "PARTIAL", message: "m" })).partial,
    )
      .toBe(true);
  });
  it("malformed bodies throw OtlpDecodeError", () => {
    expect(() => decodeTraceJson('{"trace": ')).toThrow(OtlpDecodeError);
    expect(() => decodeTraceJson('{"hello": 1}')).toThrow(OtlpDecodeError);
    expect(() => decodeTraceProtobuf(new Uint8Array([0x0a, 0xff, 0xff, 0x01, 0x02]))).toThrow(
      OtlpDecodeError,
    );
  });
  it("normalizeId tells hex from base64", () => {
    expect(normalizeId("AQIDBAUGBwg=", 8)).toBe("0102030405060708");
    expect(normalizeId("0102030405060708", 8)).toBe("0102030405060708");
    expect(normalizeId("", 8)).toBe("");
  });
});

describe("run window and bisection", () => {
  const src = (over: Partial<TempoSource>): TempoSource => ({
    name: "t",
    base_url: "http://tempo:3200",
    tenant: null,
    auth_kind: "none",
    auth_vault_secret: null,
    auth_env_var: null,
    mode: "traces",
    traceql: "{}",
    lag_seconds: 60,
    backfill_seconds: 600,
    max_window_seconds: 3600,
    search_limit: 500,
    max_traces_per_run: 2000,
    max_seconds_per_run: 40,
    max_trace_bytes: 1 << 20,
    request_timeout_ms: 1000,
    max_retries: 3,
    fetch_concurrency: 4,
    lease_seconds: 60,
    cursor: null,
    ...over,
  });
  const sec = (iso: string) => Date.parse(iso) / 1000;

  it("a new source starts backfill_seconds ago and stops lag_seconds before now", () => {
    expect(runWindow(src({}), NOW)).toEqual({
      start: sec("2026-11-25T09:50:30Z"),
      end: sec("2026-11-25T09:59:30Z"),
    });
  });
  it("continues at the cursor, at most max_window_seconds", () => {
    expect(runWindow(src({ cursor: "2026-11-25T07:00:00+00:00", max_window_seconds: 600 }), NOW))
      .toEqual({ start: sec("2026-11-25T07:00:00Z"), end: sec("2026-11-25T07:10:00Z") });
  });
  it("has nothing to do while the cursor is within the lag", () => {
    expect(runWindow(src({ cursor: "2026-11-25T09:59:40Z" }), NOW)).toBeNull();
  });
  it("metrics mode works in whole minutes", () => {
    expect(runWindow(src({ mode: "metrics", cursor: "2026-11-25T09:40:00Z" }), NOW))
      .toEqual({ start: sec("2026-11-25T09:40:00Z"), end: sec("2026-11-25T09:59:00Z") });
  });
  it("bisects at the middle second and stops at one second", () => {
    expect(bisect({ start: 10, end: 15 })).toEqual([{ start: 10, end: 12 }, { start: 12, end: 15 }]);
    expect(bisect({ start: 10, end: 11 })).toBeNull();
  });
});
