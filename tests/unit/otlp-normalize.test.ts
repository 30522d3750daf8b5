// tests/unit/otlp-normalize.test.ts — per-span validation and mapping to StagedSpan rows: bad spans
// are rejected and counted while good ones are kept, resource/span/event attributes are flattened,
// truncated and redacted, and nanosecond times become exact microsecond ISO strings.

import { describe, expect, it } from "vitest";
import type { OtlpAnyValue, OtlpExportRequest, OtlpSpan } from "../../functions/_shared/otlp/codec.ts";
import { MAX_ERRORS, MAX_EVENTS_PER_SPAN, toStagedSpans } from "../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_REDACTION_POLICY, type RedactionPolicy } from "../../functions/_shared/redact.ts";
import { StagedSpanSchema } from "../../functions/_shared/spans.ts";

const NOW = Date.parse("2026-11-25T12:00:00Z");
const START = "1795589536123456789"; // 2026-11-25T06:52:16.123456789Z
const NO_REDACTION: RedactionPolicy = { redactKeys: [], hashKeys: [], redactValuePatterns: [] };
const OPTS = { maxAttributeValueLength: 4096, redaction: DEFAULT_REDACTION_POLICY, now: NOW };

let counter = 0;
function span(over: Partial<OtlpSpan> = {}): OtlpSpan {
  counter++;
  return {
    traceId: "5b8efff798038103d269b633813fc60c",
    spanId: counter.toString(16).padStart(16, "a"),
    parentSpanId: "",
    name: "GET /items",
    kind: 2,
    startTimeUnixNano: START,
    endTimeUnixNano: "1795589536223456789",
    attributes: [],
    events: [],
    status: { code: 0, message: "" },
    ...over,
  };
}

function request(
  spans: OtlpSpan[],
  resource: Record<string, OtlpAnyValue> = { "service.name": { stringValue: "api" } },
) {
  return {
    resourceSpans: [{
      resource: { attributes: Object.entries(resource).map(([key, value]) => ({ key, value })) },
      scopeSpans: [{ scope: { name: "io.test", version: "1.0" }, spans }],
    }],
  } satisfies OtlpExportRequest;
}

const str = (stringValue: string): OtlpAnyValue => ({ stringValue });
const int = (v: number | string): OtlpAnyValue => ({ intValue: String(v) });

describe("toStagedSpans mapping", () => {
  it("maps every column and satisfies StagedSpanSchema", () => {
    const out = toStagedSpans(
      request(
        [span({
          spanId: "eee19b7ec3c1b174",
          parentSpanId: "0102030405060708",
          name: "GET /users/:id",
          kind: 2,
          attributes: [
            { key: "http.request.method", value: str("GET") },
            { key: "http.route", value: str("/users/:id") },
            { key: "http.response.status_code", value: int(503) },
          ],
          status: { code: 2, message: "upstream timeout" },
        })],
        {
          "service.name": str("checkout"),
          "service.version": str("3.1.0"),
          "service.instance.id": str("pod-42"),
          "host.name": str("node-a"),
        },
      ),
      OPTS,
    );
    expect(out).toMatchObject({ rejected: 0, errors: [] });
    expect(out.spans).toEqual([{
      trace_id: "5b8efff798038103d269b633813fc60c",
      span_id: "eee19b7ec3c1b174",
      parent_span_id: "0102030405060708",
      start_time: "2026-11-25T06:52:16.123456Z",
      end_time: "2026-11-25T06:52:16.223456Z",
      duration_ns: 100_000_000,
      service_name: "checkout",
      service_version: "3.1.0",
      service_instance: "pod-42",
      name: "GET /users/:id",
      kind: 2,
      status_code: 2,
      status_message: "upstream timeout",
      http_status_code: 503,
      http_route: "/users/:id",
      http_method: "GET",
      scope_name: "io.test",
      resource_attributes: {
        "service.name": "checkout",
        "service.version": "3.1.0",
        "service.instance.id": "pod-42",
        "host.name": "node-a",
      },
      attributes: {
        "http.request.method": "GET",
        "http.route": "/users/:id",
        "http.response.status_code": 503,
      },
      events: [],
    }]);
    expect(() => StagedSpanSchema.parse(out.spans[0])).not.toThrow();
  });

  it("uses unknown_service when service.name is missing or empty", () => {
    expect(toStagedSpans(request([span()], {}), OPTS).spans[0]).toMatchObject({
      service_name: "unknown_service",
      service_version: null,
      service_instance: null,
    });
    expect(toStagedSpans(request([span()], { "service.name": str("") }), OPTS).spans[0].service_name).toBe(
      "unknown_service",
    );
  });

  it("reads legacy HTTP attributes and ignores out-of-range status codes", () => {
    const one = (attrs: Record<string, OtlpAnyValue>) =>
      toStagedSpans(
        request([span({ attributes: Object.entries(attrs).map(([key, value]) => ({ key, value })) })]),
        OPTS,
      ).spans[0];
    expect(one({ "http.status_code": int(404), "http.method": str("DELETE") })).toMatchObject({
      http_status_code: 404,
      http_method: "DELETE",
      http_route: null,
    });
    expect(one({ "http.response.status_code": int(201), "http.status_code": int(500) }).http_status_code)
      .toBe(201);
    expect(one({ "http.response.status_code": str("302") }).http_status_code).toBe(302);
    expect(one({ "http.response.status_code": int(700) }).http_status_code).toBeNull();
    expect(one({ "http.response.status_code": int(99) }).http_status_code).toBeNull();
    expect(one({ "http.response.status_code": { doubleValue: 200.5 } }).http_status_code).toBeNull();
    expect(one({ "http.response.status_code": str("abc") }).http_status_code).toBeNull();
    expect(one({ "http.request.method": str("PATCH"), "http.method": str("GET") }).http_method).toBe("PATCH");
  });

  it("maps an empty scope name and status message to null and unknown enums to 0", () => {
    const req = request([span({ kind: 9, status: { code: 7, message: "" } })]);
    req.resourceSpans[0].scopeSpans[0].scope.name = "";
    expect(toStagedSpans(req, OPTS).spans[0]).toMatchObject({
      scope_name: null,
      status_message: null,
      kind: 0,
      status_code: 0,
    });
  });

  it("treats an all-zero parent_span_id as a root span", () => {
    expect(toStagedSpans(request([span({ parentSpanId: "0000000000000000" })]), OPTS).spans[0].parent_span_id)
      .toBeNull();
  });
});

describe("per-span validation", () => {
  it("rejects and counts bad ids while keeping the good spans", () => {
    const good1 = span();
    const good2 = span({ parentSpanId: "1111111111111111" });
    const out = toStagedSpans(
      request([
        good1,
        span({ spanId: "a1b2c3d4e5f6" }), // 6 bytes
        span({ traceId: "0102030405060708" }), // 8 bytes
        span({ traceId: "0".repeat(32) }),
        span({ spanId: "0".repeat(16) }),
        span({ spanId: "zz19b7ec3c1b1740" }),
        span({ parentSpanId: "01020304" }),
        span({ spanId: "" }),
        good2,
      ]),
      OPTS,
    );
    expect(out.spans.map((s) => s.span_id)).toEqual([good1.spanId, good2.spanId]);
    expect(out.rejected).toBe(7);
    expect(out.errors).toEqual([
      "span a1b2c3d4e5f6: invalid span_id length 6 bytes",
      expect.stringMatching(/^span a+[0-9a-f]+: invalid trace_id length 8 bytes$/),
      expect.stringMatching(/: invalid trace_id \(all zero\)$/),
      "span 0000000000000000: invalid span_id (all zero)",
      "span zz19b7ec3c1b1740: invalid span_id (not hex)",
      expect.stringMatching(/: invalid parent_span_id length 4 bytes$/),
      "span (no span_id): invalid span_id length 0 bytes",
    ]);
  });

  it("applies the time rules against the injected clock", () => {
    const nowNs = BigInt(NOW) * 1_000_000n;
    const day = 86_400_000_000_000n;
    const cases: [Partial<OtlpSpan>, string | null][] = [
      [{ endTimeUnixNano: START }, null], // zero duration is fine
      [{ startTimeUnixNano: "1795589536223456789", endTimeUnixNano: START }, "end_time_unix_nano is before"],
      [
        { startTimeUnixNano: "946684799999999999", endTimeUnixNano: "946684800000000000" },
        "before 2000-01-01",
      ],
      [{ startTimeUnixNano: "0", endTimeUnixNano: "0" }, "before 2000-01-01"],
      [{ startTimeUnixNano: `${nowNs + day}`, endTimeUnixNano: `${nowNs + day}` }, null],
      [{ startTimeUnixNano: `${nowNs + day + 1n}`, endTimeUnixNano: `${nowNs + day + 1n}` }, "future"],
      [{ startTimeUnixNano: `${nowNs - day * 200n}`, endTimeUnixNano: `${nowNs}` }, "longer than 2^53 ns"],
    ];
    for (const [over, problem] of cases) {
      const out = toStagedSpans(request([span(over)]), OPTS);
      if (problem === null) expect(out, JSON.stringify(over)).toMatchObject({ rejected: 0 });
      else expect(out.errors[0], JSON.stringify(over)).toContain(problem);
    }
  });

  it("rejects an empty name and truncates a long one to 1024", () => {
    const out = toStagedSpans(request([span({ name: "" }), span({ name: "x".repeat(5000) })]), OPTS);
    expect(out.rejected).toBe(1);
    expect(out.errors[0]).toMatch(/: empty span name$/);
    expect(out.spans[0].name).toHaveLength(1024);
  });

  it(`keeps at most ${MAX_ERRORS} distinct error messages but counts every rejected span`, () => {
    const bad = Array.from({ length: 25 }, (_, i) => span({ spanId: (i + 1).toString(16).padStart(8, "0") }));
    const out = toStagedSpans(request([...bad, span({ spanId: "00000001" })]), OPTS);
    expect(out.rejected).toBe(26);
    expect(out.errors).toHaveLength(MAX_ERRORS);
    expect(new Set(out.errors).size).toBe(MAX_ERRORS);
  });
});

describe("times", () => {
  it("converts nanoseconds beyond 2^53 to microseconds exactly, truncating", () => {
    const cases: [string, string][] = [
      ["1795589536123456789", "2026-11-25T06:52:16.123456Z"],
      ["1795589536999999999", "2026-11-25T06:52:16.999999Z"], // no rounding into the next second
      ["1795589536000000999", "2026-11-25T06:52:16.000000Z"],
      ["1795589536000001000", "2026-11-25T06:52:16.000001Z"],
      ["946684800000000000", "2000-01-01T00:00:00.000000Z"],
    ];
    for (const [ns, iso] of cases) {
      // Float arithmetic cannot do this: Number(ns) is off by up to 256 ns at this magnitude.
      const out = toStagedSpans(request([span({ startTimeUnixNano: ns, endTimeUnixNano: ns })]), OPTS);
      expect(out.spans[0].start_time, ns).toBe(iso);
    }
    expect(Number("1795589536123456789")).toBe(Number("1795589536123456700")); // why BigInt is needed
  });

  it("computes durations from the exact nanoseconds", () => {
    const out = toStagedSpans(
      request([
        span({ startTimeUnixNano: "1795589536123456789", endTimeUnixNano: "1795589536123456790" }),
        span({ startTimeUnixNano: "1795589536123456789", endTimeUnixNano: "1795589537123457788" }),
      ]),
      OPTS,
    );
    expect(out.spans.map((s) => s.duration_ns)).toEqual([1, 1_000_000_999]);
  });
});

describe("attributes", () => {
  function attrs(list: Record<string, OtlpAnyValue>, opts = { ...OPTS, redaction: NO_REDACTION }) {
    return toStagedSpans(
      request([span({ attributes: Object.entries(list).map(([key, value]) => ({ key, value })) })]),
      opts,
    ).spans[0].attributes;
  }

  it("flattens every AnyValue form to plain JSON", () => {
    expect(attrs({
      s: str("text"),
      i: int(42),
      neg: int(-7),
      big: int("9007199254740993"), // beyond 2^53: kept exact as a string
      d: { doubleValue: 0.25 },
      nan: { doubleValue: NaN },
      inf: { doubleValue: -Infinity },
      b: { boolValue: true },
      arr: { arrayValue: { values: [str("a"), int(1), { boolValue: false }] } },
      kv: {
        kvlistValue: {
          values: [{ key: "x", value: int(1) }, { key: "y", value: { arrayValue: { values: [] } } }],
        },
      },
      bytes: { bytesValue: "3q2+7w==" },
      empty: {},
    })).toEqual({
      s: "text",
      i: 42,
      neg: -7,
      big: "9007199254740993",
      d: 0.25,
      nan: "NaN",
      inf: "-Infinity",
      b: true,
      arr: ["a", 1, false],
      kv: { x: 1, y: [] },
      bytes: "3q2+7w==",
      empty: null,
    });
  });

  it("drops attributes with an empty key", () => {
    expect(attrs({ "": str("x"), k: str("v") })).toEqual({ k: "v" });
  });

  it("truncates string values (also nested and bytes) to maxAttributeValueLength", () => {
    const opts = { ...OPTS, redaction: NO_REDACTION, maxAttributeValueLength: 16 };
    expect(attrs({
      long: str("abcdefghijklmnopqrstuvwxyz"),
      short: str("abc"),
      nested: { arrayValue: { values: [str("0123456789abcdefXYZ")] } },
      bytes: { bytesValue: "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" },
      emoji: str("123456789012345😀x"), // the pair starts at unit 15: cut before it, never through it
    }, opts)).toEqual({
      long: "abcdefghijklmnop",
      short: "abc",
      nested: ["0123456789abcdef"],
      bytes: "QUJDREVGR0hJSktM",
      emoji: "123456789012345",
    });
  });

  it("redacts resource, span and event attributes with the policy", () => {
    const out = toStagedSpans(
      request(
        [span({
          attributes: [
            { key: "http.request.header.authorization", value: str("Bearer xyz") },
            { key: "enduser.id", value: str("u-1") },
            { key: "url.full", value: str("https://x.io/?mail=ann@example.com") },
            {
              key: "http.request.headers",
              value: {
                kvlistValue: {
                  values: [{ key: "Cookie", value: str("sid=1") }, { key: "accept", value: str("*/*") }],
                },
              },
            },
          ],
          events: [{
            timeUnixNano: START,
            name: "login from 10.9.8.7",
            attributes: [{ key: "app.password", value: str("hunter2") }, {
              key: "peer",
              value: str("10.9.8.7"),
            }],
          }],
          status: { code: 2, message: "denied for ann@example.com" },
        })],
        { "service.name": str("api"), "host.ip": str("192.168.10.20"), "app.api_key": str("k") },
      ),
      OPTS,
    );
    const s = out.spans[0];
    expect(s.resource_attributes).toEqual({
      "service.name": "api",
      "host.ip": "192.168.10.x",
      "app.api_key": "[REDACTED]",
    });
    expect(s.attributes).toEqual({
      "http.request.header.authorization": "[REDACTED]",
      "enduser.id": expect.stringMatching(/^sha256:[0-9a-f]{12}$/),
      "url.full": "https://x.io/?mail=[email]",
      "http.request.headers": { Cookie: "[REDACTED]", accept: "*/*" },
    });
    expect(s.events).toEqual([{
      time: "2026-11-25T06:52:16.123456Z",
      name: "login from 10.9.8.x",
      attributes: { "app.password": "[REDACTED]", peer: "10.9.8.x" },
    }]);
    expect(s.status_message).toBe("denied for [email]");
  });
});

describe("events", () => {
  it(`keeps at most ${MAX_EVENTS_PER_SPAN} events, in order, with a null time when unusable`, () => {
    const events = Array.from({ length: 40 }, (_, i) => ({
      timeUnixNano: i === 1 ? "5" : (BigInt(START) + BigInt(i) * 1000n).toString(),
      name: `e${i}`,
      attributes: [{ key: "i", value: int(i) }],
    }));
    const s = toStagedSpans(request([span({ events })]), OPTS).spans[0];
    expect(s.events).toHaveLength(MAX_EVENTS_PER_SPAN);
    expect(s.events[0]).toEqual({ time: "2026-11-25T06:52:16.123456Z", name: "e0", attributes: { i: 0 } });
    expect(s.events[1]).toEqual({ time: null, name: "e1", attributes: { i: 1 } });
    expect(s.events[31]).toEqual({ time: "2026-11-25T06:52:16.123487Z", name: "e31", attributes: { i: 31 } });
  });
});
