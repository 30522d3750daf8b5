// tests/unit/otlp-codec.test.ts — the OTLP wire codec: protobuf and OTLP/JSON bodies produced by the
// official OpenTelemetry JS serializers decode to the same request and the same staged spans; JSON
// leniencies (hex case, int64 as number, enum names) and every malformed-body path (OtlpDecodeError).

import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import {
  countSpans,
  decodeProtobufRequest,
  encodeExportResponse,
  encodeProtobufRequest,
  encodeStatus,
  MAX_ANY_VALUE_DEPTH,
  type OtlpAnyValue,
  OtlpDecodeError,
  type OtlpExportRequest,
  otlpRoot,
  parseJsonRequest,
} from "../../functions/_shared/otlp/codec.ts";
import { toStagedSpans } from "../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_REDACTION_POLICY } from "../../functions/_shared/redact.ts";

const T0_SEC = Math.floor(Date.parse("2026-11-25T06:52:16Z") / 1000);
const NOW = Date.parse("2026-11-25T12:00:00Z");

/** Real SDK spans: a SERVER span with an error status and a CLIENT child with an event. */
function sdkSpans(): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      "service.name": "shop",
      "service.version": "2.0.1",
      "service.instance.id": "pod-7",
    }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer("shop-tracer", "1.2.3");
  const parent = tracer.startSpan("GET /users/:id", {
    kind: SpanKind.SERVER,
    startTime: [T0_SEC, 123_456_789],
    attributes: {
      "http.request.method": "GET",
      "http.route": "/users/:id",
      "http.response.status_code": 500,
      "http.request.header.authorization": "Bearer abc",
      "client.address": "10.1.2.3",
      "app.tags": ["a", "b"],
      "app.ratio": 0.5,
      "app.cached": false,
    },
  });
  const child = tracer.startSpan(
    "SELECT users",
    {
      kind: SpanKind.CLIENT,
      startTime: [T0_SEC, 200_000_000],
      attributes: { "db.statement": "select * from users where id = 7 and name = 'bob'" },
    },
    trace.setSpan(context.active(), parent),
  );
  child.addEvent("retry", { attempt: 2, "user.email": "bob@example.com" }, [T0_SEC, 300_000_000]);
  child.end([T0_SEC, 400_000_001]);
  parent.setStatus({ code: SpanStatusCode.ERROR, message: "boom for jane@example.org" });
  parent.end([T0_SEC + 1, 5]);
  return exporter.getFinishedSpans();
}

const OPTS = { maxAttributeValueLength: 4096, redaction: DEFAULT_REDACTION_POLICY, now: NOW };

describe("protobuf and OTLP/JSON from the OpenTelemetry SDK serializers", () => {
  const spans = sdkSpans();
  const fromProto = decodeProtobufRequest(ProtobufTraceSerializer.serializeRequest(spans)!);
  const fromJson = parseJsonRequest(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)!));

  it("decode to the same normalized request", () => {
    expect(fromProto).toEqual(fromJson);
    expect(countSpans(fromProto)).toBe(2);
  });

  it("carry hex ids, string nanos and numeric enums", () => {
    const [rs] = fromProto.resourceSpans;
    expect(rs.scopeSpans[0].scope).toEqual({ name: "shop-tracer", version: "1.2.3" });
    const server = rs.scopeSpans[0].spans.find((s) => s.kind === 2)!;
    const client = rs.scopeSpans[0].spans.find((s) => s.kind === 3)!;
    expect(server.traceId).toBe(spans[0].spanContext().traceId);
    expect(server.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(server.parentSpanId).toBe("");
    expect(client.parentSpanId).toBe(server.spanId);
    expect(server.startTimeUnixNano).toBe(`${T0_SEC}123456789`);
    expect(server.endTimeUnixNano).toBe(`${T0_SEC + 1}000000005`);
    expect(server.status).toEqual({ code: 2, message: "boom for jane@example.org" });
    expect(server.attributes).toContainEqual({
      key: "http.response.status_code",
      value: { intValue: "500" },
    });
    expect(server.attributes).toContainEqual({
      key: "app.tags",
      value: { arrayValue: { values: [{ stringValue: "a" }, { stringValue: "b" }] } },
    });
    expect(client.events).toEqual([
      {
        timeUnixNano: `${T0_SEC}300000000`,
        name: "retry",
        attributes: [
          { key: "attempt", value: { intValue: "2" } },
          { key: "user.email", value: { stringValue: "bob@example.com" } },
        ],
      },
    ]);
  });

  it("give identical staged spans", () => {
    const a = toStagedSpans(fromProto, OPTS);
    const b = toStagedSpans(fromJson, OPTS);
    expect(a).toEqual(b);
    expect(a.rejected).toBe(0);
    const server = a.spans.find((s) => s.kind === 2)!;
    expect(server).toMatchObject({
      service_name: "shop",
      service_version: "2.0.1",
      service_instance: "pod-7",
      start_time: "2026-11-25T06:52:16.123456Z",
      end_time: "2026-11-25T06:52:17.000000Z",
      duration_ns: 876_543_216,
      status_code: 2,
      status_message: "boom for [email]",
      http_status_code: 500,
      http_method: "GET",
      http_route: "/users/:id",
      scope_name: "shop-tracer",
    });
    expect(server.attributes["http.request.header.authorization"]).toBe("[REDACTED]");
    expect(server.attributes["client.address"]).toMatch(/^sha256:[0-9a-f]{12}$/);
    const client = a.spans.find((s) => s.kind === 3)!;
    expect(client.attributes["db.statement"]).toBe("select * from users where id = ? and name = ?");
    expect(client.events).toEqual([
      {
        time: "2026-11-25T06:52:16.300000Z",
        name: "retry",
        attributes: { attempt: 2, "user.email": expect.stringMatching(/^sha256:/) },
      },
    ]);
  });
});

/** A one-span OTLP/JSON body; `span` fields override the defaults. */
function jsonBody(span: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: "api" } }] },
        scopeSpans: [
          {
            scope: { name: "s" },
            spans: [{
              traceId: "5b8efff798038103d269b633813fc60c",
              spanId: "eee19b7ec3c1b174",
              name: "op",
              kind: 2,
              startTimeUnixNano: "1795589536123456789",
              endTimeUnixNano: "1795589536223456789",
              ...span,
            }],
          },
        ],
        ...extra,
      },
    ],
  });
}

function firstSpan(req: OtlpExportRequest) {
  return req.resourceSpans[0].scopeSpans[0].spans[0];
}

describe("parseJsonRequest leniency (OTLP/JSON rules)", () => {
  it("reads ids case-insensitively and returns them lower-case", () => {
    const s = firstSpan(parseJsonRequest(jsonBody({
      traceId: "5B8EFFF798038103D269B633813FC60C",
      spanId: "EeE19b7Ec3C1b174",
      parentSpanId: "AAAAAAAAAAAAAAAA",
    })));
    expect(s.traceId).toBe("5b8efff798038103d269b633813fc60c");
    expect(s.spanId).toBe("eee19b7ec3c1b174");
    expect(s.parentSpanId).toBe("aaaaaaaaaaaaaaaa");
  });

  it("accepts int64 as a string or a JSON number", () => {
    const s = firstSpan(parseJsonRequest(jsonBody({
      startTimeUnixNano: 1795589536000000000,
      endTimeUnixNano: "1795589536000001000",
      attributes: [
        { key: "n", value: { intValue: 42 } },
        { key: "s", value: { intValue: "-9007199254740993" } },
      ],
      events: [{ timeUnixNano: 1795589536000000500, name: "e" }],
    })));
    expect(s.startTimeUnixNano).toBe("1795589536000000000");
    expect(s.endTimeUnixNano).toBe("1795589536000001000");
    expect(s.attributes).toEqual([
      { key: "n", value: { intValue: "42" } },
      { key: "s", value: { intValue: "-9007199254740993" } },
    ]);
    // 1795589536000000500 is not a double: JSON.parse already rounded it, and the decoder keeps that value.
    expect(s.events[0].timeUnixNano).toBe(BigInt(1795589536000000500).toString());
  });

  it("accepts enum names as well as numbers", () => {
    const s = firstSpan(parseJsonRequest(jsonBody({
      kind: "SPAN_KIND_CONSUMER",
      status: { code: "STATUS_CODE_ERROR", message: "x" },
    })));
    expect(s.kind).toBe(5);
    expect(s.status).toEqual({ code: 2, message: "x" });
    expect(firstSpan(parseJsonRequest(jsonBody({ kind: 3, status: { code: 1 } }))).status.code).toBe(1);
  });

  it("ignores unknown fields and treats null or missing fields as defaults", () => {
    const req = parseJsonRequest(jsonBody(
      {
        flags: 257,
        traceState: "x",
        links: [],
        parentSpanId: null,
        attributes: null,
        status: null,
        kind: null,
      },
      { schemaUrl: "https://opentelemetry.io/schemas/1.4.0", whatever: { deep: true } },
    ));
    const s = firstSpan(req);
    expect(s).toEqual({
      traceId: "5b8efff798038103d269b633813fc60c",
      spanId: "eee19b7ec3c1b174",
      parentSpanId: "",
      name: "op",
      kind: 0,
      startTimeUnixNano: "1795589536123456789",
      endTimeUnixNano: "1795589536223456789",
      attributes: [],
      events: [],
      status: { code: 0, message: "" },
    });
    expect(parseJsonRequest("{}")).toEqual({ resourceSpans: [] });
    expect(parseJsonRequest('{"resourceSpans":[{}]}')).toEqual({
      resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [] }],
    });
  });

  it("decodes every AnyValue form", () => {
    const s = firstSpan(parseJsonRequest(jsonBody({
      attributes: [
        { key: "d", value: { doubleValue: 1.5 } },
        { key: "nan", value: { doubleValue: "NaN" } },
        { key: "b", value: { boolValue: false } },
        { key: "bytes", value: { bytesValue: "AQID" } },
        { key: "kv", value: { kvlistValue: { values: [{ key: "x", value: { stringValue: "y" } }] } } },
        { key: "empty", value: {} },
        { key: "novalue" },
      ],
    })));
    expect(s.attributes).toEqual([
      { key: "d", value: { doubleValue: 1.5 } },
      { key: "nan", value: { doubleValue: NaN } },
      { key: "b", value: { boolValue: false } },
      { key: "bytes", value: { bytesValue: "AQID" } },
      { key: "kv", value: { kvlistValue: { values: [{ key: "x", value: { stringValue: "y" } }] } } },
      { key: "empty", value: {} },
      { key: "novalue", value: {} },
    ]);
  });
});

describe("malformed bodies throw OtlpDecodeError", () => {
  it("names the JSON path of a structural error", () => {
    const body = JSON.parse(jsonBody({}));
    const spans = Array.from({ length: 4 }, () => ({ ...body.resourceSpans[0].scopeSpans[0].spans[0] }));
    spans[3].startTimeUnixNano = true;
    body.resourceSpans[0].scopeSpans = [{ spans: [] }, { spans }];
    expect(() => parseJsonRequest(JSON.stringify(body))).toThrow(
      new OtlpDecodeError(
        "resourceSpans[0].scopeSpans[1].spans[3].startTimeUnixNano: expected string or integer",
      ),
    );
  });

  it.each([
    ["not JSON", "{resourceSpans", /^invalid JSON: /],
    ["a JSON array", "[]", /^request body: expected object, received array/],
    ["resourceSpans not an array", '{"resourceSpans":{}}', /^resourceSpans: expected array/],
    [
      "a fractional int64",
      jsonBody({ endTimeUnixNano: 1.5 }),
      /spans\[0\]\.endTimeUnixNano: expected string or integer/,
    ],
    [
      "a non-numeric int64 string",
      jsonBody({ startTimeUnixNano: "12abc" }),
      /startTimeUnixNano: expected string/,
    ],
    [
      "an unknown kind name",
      jsonBody({ kind: "SERVER" }),
      /spans\[0\]\.kind: expected integer or SpanKind name/,
    ],
    [
      "an unknown status name",
      jsonBody({ status: { code: "ERROR" } }),
      /status\.code: expected integer or StatusCode/,
    ],
    ["a numeric span name", jsonBody({ name: 7 }), /spans\[0\]\.name: expected string, received number/],
    ["a string attribute list", jsonBody({ attributes: "a=b" }), /spans\[0\]\.attributes: expected array/],
    [
      "a non-string stringValue",
      jsonBody({ attributes: [{ key: "k", value: { stringValue: 1 } }] }),
      /attributes\[0\]\.value\.stringValue: expected string/,
    ],
  ])("JSON: %s", (_what, body, message) => {
    let err: unknown;
    try {
      parseJsonRequest(body);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OtlpDecodeError);
    expect((err as Error).message).toMatch(message);
  });

  it("refuses attribute values nested deeper than the limit, in both encodings", () => {
    const nested = (arrays: number): OtlpExportRequest => {
      let value: OtlpAnyValue = { stringValue: "leaf" };
      for (let i = 0; i < arrays; i++) value = { arrayValue: { values: [value] } };
      const span = { ...firstSpan(parseJsonRequest(jsonBody({}))), attributes: [{ key: "deep", value }] };
      return {
        resourceSpans: [{
          resource: { attributes: [] },
          scopeSpans: [{ scope: { name: "", version: "" }, spans: [span] }],
        }],
      };
    };
    const ok = nested(MAX_ANY_VALUE_DEPTH);
    expect(decodeProtobufRequest(encodeProtobufRequest(ok))).toEqual(ok);
    expect(parseJsonRequest(JSON.stringify(ok))).toEqual(ok);
    const deep = nested(MAX_ANY_VALUE_DEPTH + 1);
    expect(() => decodeProtobufRequest(encodeProtobufRequest(deep))).toThrow(/nested deeper than 32 levels/);
    expect(() => parseJsonRequest(JSON.stringify(deep))).toThrow(/nested deeper than 32 levels/);
    const hostile = '{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":' +
      '{"arrayValue":{"values":['.repeat(5000) + "]}}".repeat(5000) + "}]}}]}";
    expect(() => parseJsonRequest(hostile)).toThrow(OtlpDecodeError);
  });

  it.each([
    ["a length prefix past the end", [0x0a, 0xff, 0x01, 0x00]],
    ["an invalid wire type", [0x0f]],
    ["a truncated varint", [0x08, 0xff]],
    ["a JSON body sent as protobuf", [...new TextEncoder().encode('{"resourceSpans":[]}')]],
  ])("protobuf: %s", (_what, bytes) => {
    expect(() => decodeProtobufRequest(new Uint8Array(bytes))).toThrow(OtlpDecodeError);
  });

  it("protobuf: a valid body cut short", () => {
    const bytes = ProtobufTraceSerializer.serializeRequest(sdkSpans())!;
    expect(() => decodeProtobufRequest(bytes.subarray(0, bytes.length - 7))).toThrow(
      /^invalid protobuf ExportTraceServiceRequest: /,
    );
  });

  it("an empty protobuf body is an empty request", () => {
    expect(decodeProtobufRequest(new Uint8Array(0))).toEqual({ resourceSpans: [] });
  });
});

describe("protobuf round trip", () => {
  it("encodeProtobufRequest and decodeProtobufRequest are inverse on the normalized shape", () => {
    const req = parseJsonRequest(jsonBody({
      parentSpanId: "0102030405060708",
      attributes: [
        { key: "big", value: { intValue: "-9223372036854775808" } },
        { key: "bytes", value: { bytesValue: "3q2+7w==" } },
        { key: "arr", value: { arrayValue: { values: [{ doubleValue: 2.25 }, { boolValue: true }] } } },
      ],
      events: [{ timeUnixNano: "1795589536123456790", name: "e", attributes: [] }],
      status: { code: 2, message: "bad" },
    }));
    expect(decodeProtobufRequest(encodeProtobufRequest(req))).toEqual(req);
  });

  it("keeps ids of any length for per-span validation later", () => {
    const req = parseJsonRequest(jsonBody({ spanId: "a1b2c3d4e5f6" }));
    expect(firstSpan(decodeProtobufRequest(encodeProtobufRequest(req))).spanId).toBe("a1b2c3d4e5f6");
  });
});

describe("responses", () => {
  const Response = otlpRoot.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse");
  const Status = otlpRoot.lookupType("google.rpc.Status");

  it("encodes full success as {} or an empty protobuf message", () => {
    expect(encodeExportResponse(null, "json")).toBe("{}");
    expect(encodeExportResponse(null, "protobuf")).toHaveLength(0);
  });

  it("encodes partial success with rejectedSpans as an int64 string in JSON", () => {
    expect(encodeExportResponse({ rejectedSpans: 3, errorMessage: "3 bad spans" }, "json")).toBe(
      '{"partialSuccess":{"rejectedSpans":"3","errorMessage":"3 bad spans"}}',
    );
    const bytes = encodeExportResponse({ rejectedSpans: 3, errorMessage: "3 bad spans" }, "protobuf");
    expect(Response.toObject(Response.decode(bytes), { longs: String })).toEqual({
      partialSuccess: { rejectedSpans: "3", errorMessage: "3 bad spans" },
    });
  });

  it("the official exporter reads our partial success", () => {
    const bytes = encodeExportResponse({ rejectedSpans: 2, errorMessage: "why" }, "protobuf");
    const seen = ProtobufTraceSerializer.deserializeResponse(bytes) as { partialSuccess?: unknown };
    expect(JSON.parse(JSON.stringify(seen.partialSuccess))).toMatchObject({ errorMessage: "why" });
  });

  it("encodes google.rpc.Status error bodies", () => {
    expect(JSON.parse(encodeStatus(3, "bad span data", "json"))).toEqual({
      code: 3,
      message: "bad span data",
    });
    const bytes = encodeStatus(3, "bad span data", "protobuf");
    expect(Status.toObject(Status.decode(bytes))).toEqual({ code: 3, message: "bad span data" });
  });
});
