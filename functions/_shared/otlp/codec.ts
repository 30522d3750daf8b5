// functions/_shared/otlp/codec.ts — OTLP/HTTP trace wire formats, no I/O: decodes
// ExportTraceServiceRequest bodies (protobuf or OTLP/JSON) into one normalized shape, and encodes
// ExportTraceServiceResponse and google.rpc.Status bodies. Both decoders throw OtlpDecodeError on
// malformed input; per-span validation happens later, in normalize.ts.

import protobuf from "protobufjs";
import { z } from "zod";
import descriptor from "./descriptor.generated.ts";

// ============================================================== normalized request shape

/** OTLP AnyValue after decoding: at most one field is set; none set means an empty value. */
export interface OtlpAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  /** int64 as a decimal string (exact beyond 2^53). */
  intValue?: string;
  /** May be NaN or ±Infinity (OTLP/JSON spells them "NaN", "Infinity", "-Infinity"). */
  doubleValue?: number;
  arrayValue?: { values: OtlpAnyValue[] };
  kvlistValue?: { values: OtlpKeyValue[] };
  /** Standard base64. */
  bytesValue?: string;
}

export interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

export interface OtlpEvent {
  /** fixed64 unix nanoseconds as a decimal string. */
  timeUnixNano: string;
  name: string;
  attributes: OtlpKeyValue[];
}

export interface OtlpSpan {
  /** Lower-case hex, as received: the length is checked per span in normalize.ts. */
  traceId: string;
  spanId: string;
  /** Lower-case hex, or "" for a root span. */
  parentSpanId: string;
  name: string;
  /** SpanKind number (0 unspecified … 5 consumer); unknown numbers are passed through. */
  kind: number;
  /** Decimal strings; may be "-…" if a JSON sender says so (rejected per span later). */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: OtlpKeyValue[];
  events: OtlpEvent[];
  status: { code: number; message: string };
}

export interface OtlpScopeSpans {
  scope: { name: string; version: string };
  spans: OtlpSpan[];
}

export interface OtlpResourceSpans {
  resource: { attributes: OtlpKeyValue[] };
  scopeSpans: OtlpScopeSpans[];
}

/** ExportTraceServiceRequest, normalized: every field present, ids hex, int64 as strings, enums as numbers. */
export interface OtlpExportRequest {
  resourceSpans: OtlpResourceSpans[];
}

export type OtlpFormat = "protobuf" | "json";

/** A request body that is not a well-formed ExportTraceServiceRequest (answer 400, store nothing). */
export class OtlpDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OtlpDecodeError";
  }
}

/** Nesting limit for array/kvlist attribute values; deeper bodies are refused (stack safety). */
export const MAX_ANY_VALUE_DEPTH = 32;

/** Number of spans in a decoded request (for a max-spans-per-request check before normalizing). */
export function countSpans(req: OtlpExportRequest): number {
  let n = 0;
  for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length;
  return n;
}

// ============================================================== protobuf

/** protobufjs Root built once from the generated descriptor (no .proto files read at run time). */
export const otlpRoot: protobuf.Root = protobuf.Root.fromJSON(descriptor as unknown as protobuf.INamespace);
const ExportRequestType = otlpRoot.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
);
const ExportResponseType = otlpRoot.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
);
const StatusType = otlpRoot.lookupType("google.rpc.Status");

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, bytes: String };

// deno-lint-ignore no-explicit-any
type Loose = any;

/** Decodes an application/x-protobuf ExportTraceServiceRequest body. */
export function decodeProtobufRequest(bytes: Uint8Array): OtlpExportRequest {
  let obj: Loose;
  try {
    obj = ExportRequestType.toObject(ExportRequestType.decode(bytes), TO_OBJECT);
  } catch (e) {
    throw new OtlpDecodeError(`invalid protobuf ExportTraceServiceRequest: ${errorText(e)}`);
  }
  return {
    resourceSpans: arr(obj.resourceSpans).map((rs: Loose) => ({
      resource: { attributes: protoAttributes(rs.resource?.attributes) },
      scopeSpans: arr(rs.scopeSpans).map((ss: Loose) => ({
        scope: { name: ss.scope?.name ?? "", version: ss.scope?.version ?? "" },
        spans: arr(ss.spans).map((s: Loose): OtlpSpan => ({
          traceId: base64ToHex(s.traceId),
          spanId: base64ToHex(s.spanId),
          parentSpanId: base64ToHex(s.parentSpanId),
          name: s.name ?? "",
          kind: s.kind ?? 0,
          startTimeUnixNano: s.startTimeUnixNano ?? "0",
          endTimeUnixNano: s.endTimeUnixNano ?? "0",
          attributes: protoAttributes(s.attributes),
          events: arr(s.events).map((ev: Loose): OtlpEvent => ({
            timeUnixNano: ev.timeUnixNano ?? "0",
            name: ev.name ?? "",
            attributes: protoAttributes(ev.attributes),
          })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
        })),
      })),
    })),
  };
}

function arr(v: Loose): Loose[] {
  return Array.isArray(v) ? v : [];
}

function protoAttributes(list: Loose, depth = 0): OtlpKeyValue[] {
  if (!Array.isArray(list)) return [];
  const out: OtlpKeyValue[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    out[i] = { key: list[i].key ?? "", value: protoAnyValue(list[i].value, depth) };
  }
  return out;
}

function protoAnyValue(v: Loose, depth: number): OtlpAnyValue {
  if (v == null) return {};
  if (v.stringValue !== undefined) return { stringValue: v.stringValue };
  if (v.intValue !== undefined) return { intValue: String(v.intValue) };
  if (v.boolValue !== undefined) return { boolValue: v.boolValue };
  if (v.doubleValue !== undefined) return { doubleValue: Number(v.doubleValue) };
  if (v.bytesValue !== undefined) return { bytesValue: v.bytesValue };
  if (v.arrayValue !== undefined || v.kvlistValue !== undefined) {
    if (depth >= MAX_ANY_VALUE_DEPTH) {
      throw new OtlpDecodeError(`attribute value nested deeper than ${MAX_ANY_VALUE_DEPTH} levels`);
    }
    if (v.arrayValue !== undefined) {
      return { arrayValue: { values: arr(v.arrayValue?.values).map((x) => protoAnyValue(x, depth + 1)) } };
    }
    return { kvlistValue: { values: protoAttributes(v.kvlistValue?.values, depth + 1) } };
  }
  return {};
}

/** Encodes a normalized request as protobuf (for tests, the simulator and replay). */
export function encodeProtobufRequest(req: OtlpExportRequest): Uint8Array {
  const obj = {
    resourceSpans: req.resourceSpans.map((rs) => ({
      resource: rs.resource,
      scopeSpans: rs.scopeSpans.map((ss) => ({
        scope: ss.scope,
        spans: ss.spans.map((s) => ({
          ...s,
          traceId: hexToBytes(s.traceId),
          spanId: hexToBytes(s.spanId),
          parentSpanId: hexToBytes(s.parentSpanId),
        })),
      })),
    })),
  };
  const msg = ExportRequestType.fromObject(obj);
  return ExportRequestType.encode(msg).finish();
}

// ============================================================== responses

/** ExportTraceServiceResponse: `null` is full success; otherwise a partial success (HTTP 200 either way). */
export function encodeExportResponse(
  partial: { rejectedSpans: number; errorMessage: string } | null,
  format: "protobuf",
): Uint8Array;
export function encodeExportResponse(
  partial: { rejectedSpans: number; errorMessage: string } | null,
  format: "json",
): string;
export function encodeExportResponse(
  partial: { rejectedSpans: number; errorMessage: string } | null,
  format: OtlpFormat,
): Uint8Array | string;
export function encodeExportResponse(
  partial: { rejectedSpans: number; errorMessage: string } | null,
  format: OtlpFormat,
): Uint8Array | string {
  if (format === "json") {
    if (partial === null) return "{}";
    // OTLP/JSON writes int64 as a decimal string.
    return JSON.stringify({
      partialSuccess: { rejectedSpans: String(partial.rejectedSpans), errorMessage: partial.errorMessage },
    });
  }
  if (partial === null) return new Uint8Array(0);
  const msg = ExportResponseType.fromObject({
    partialSuccess: { rejectedSpans: partial.rejectedSpans, errorMessage: partial.errorMessage },
  });
  return ExportResponseType.encode(msg).finish();
}

/** google.rpc.Status body for a failed request (`code` is a google.rpc.Code, e.g. 3 INVALID_ARGUMENT). */
export function encodeStatus(code: number, message: string, format: "protobuf"): Uint8Array;
export function encodeStatus(code: number, message: string, format: "json"): string;
export function encodeStatus(code: number, message: string, format: OtlpFormat): Uint8Array | string;
export function encodeStatus(code: number, message: string, format: OtlpFormat): Uint8Array | string {
  if (format === "json") return JSON.stringify({ code, message });
  return StatusType.encode(StatusType.fromObject({ code, message })).finish();
}

// ============================================================== OTLP/JSON

// Each leaf schema carries the message a sender sees, prefixed by the JSON path (see zodPath).
const INT64_MESSAGE = "expected string or integer";
const Int64 = z
  .union([z.string(), z.number()], { error: INT64_MESSAGE })
  .transform((v, ctx) => {
    if (typeof v === "string") {
      if (/^-?\d+$/.test(v)) return v;
    } else if (Number.isInteger(v)) {
      return BigInt(v).toString(); // exact digits of the double JSON.parse produced
    }
    ctx.issues.push({ code: "custom", message: INT64_MESSAGE, input: v });
    return z.NEVER;
  });

const DOUBLE_MESSAGE = 'expected number, "NaN", "Infinity" or "-Infinity"';
const Double = z
  .union([z.number(), z.string()], { error: DOUBLE_MESSAGE })
  .transform((v, ctx) => {
    if (typeof v === "number") return v;
    if (v === "NaN" || v === "Infinity" || v === "-Infinity" || /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) {
      return Number(v);
    }
    ctx.issues.push({ code: "custom", message: DOUBLE_MESSAGE, input: v });
    return z.NEVER;
  });

function enumSchema(names: readonly string[], what: string) {
  return z
    .union([z.number(), z.string()], { error: `expected integer or ${what} name` })
    .transform((v, ctx) => {
      if (typeof v === "number") {
        if (Number.isInteger(v)) return v;
      } else {
        const i = names.indexOf(v);
        if (i >= 0) return i;
        if (/^\d+$/.test(v)) return Number(v);
      }
      ctx.issues.push({ code: "custom", message: `expected integer or ${what} name`, input: v });
      return z.NEVER;
    });
}
const SPAN_KIND_NAMES = [
  "SPAN_KIND_UNSPECIFIED",
  "SPAN_KIND_INTERNAL",
  "SPAN_KIND_SERVER",
  "SPAN_KIND_CLIENT",
  "SPAN_KIND_PRODUCER",
  "SPAN_KIND_CONSUMER",
] as const;
const STATUS_CODE_NAMES = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"] as const;
const SpanKind = enumSchema(SPAN_KIND_NAMES, "SpanKind");
const StatusCode = enumSchema(STATUS_CODE_NAMES, "StatusCode");

const Str = z.string().nullish();
const HexId = z.string().nullish().transform((v) => (v ? v.toLowerCase() : ""));

type JsonAnyValue = {
  stringValue?: string | null;
  boolValue?: boolean | null;
  intValue?: string | null;
  doubleValue?: number | null;
  arrayValue?: { values?: JsonAnyValue[] | null } | null;
  kvlistValue?: { values?: JsonKeyValue[] | null } | null;
  bytesValue?: string | null;
};
type JsonKeyValue = { key?: string | null; value?: JsonAnyValue | null };

const AnyValueJson: z.ZodType<JsonAnyValue> = z.object({
  stringValue: Str,
  boolValue: z.boolean().nullish(),
  intValue: Int64.nullish(),
  doubleValue: Double.nullish(),
  arrayValue: z.object({ values: z.array(z.lazy(() => AnyValueJson)).nullish() }).nullish(),
  kvlistValue: z.object({ values: z.array(z.lazy(() => KeyValueJson)).nullish() }).nullish(),
  bytesValue: Str,
}) as unknown as z.ZodType<JsonAnyValue>;

const KeyValueJson: z.ZodType<JsonKeyValue> = z.object({
  key: Str,
  value: AnyValueJson.nullish(),
}) as unknown as z.ZodType<JsonKeyValue>;

const Attributes = z.array(KeyValueJson).nullish();

const EventJson = z.object({
  timeUnixNano: Int64.nullish(),
  name: Str,
  attributes: Attributes,
});

const SpanJson = z.object({
  traceId: HexId,
  spanId: HexId,
  parentSpanId: HexId,
  name: Str,
  kind: SpanKind.nullish(),
  startTimeUnixNano: Int64.nullish(),
  endTimeUnixNano: Int64.nullish(),
  attributes: Attributes,
  events: z.array(EventJson).nullish(),
  status: z.object({ code: StatusCode.nullish(), message: Str }).nullish(),
});

const RequestJson = z.object({
  resourceSpans: z
    .array(
      z.object({
        resource: z.object({ attributes: Attributes }).nullish(),
        scopeSpans: z
          .array(
            z.object({
              scope: z.object({ name: Str, version: Str }).nullish(),
              spans: z.array(SpanJson).nullish(),
            }),
          )
          .nullish(),
      }),
    )
    .nullish(),
});

/** Parses an application/json OTLP ExportTraceServiceRequest body (the OTLP/JSON encoding). */
export function parseJsonRequest(text: string): OtlpExportRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new OtlpDecodeError(`invalid JSON: ${errorText(e)}`);
  }
  let parsed: z.infer<typeof RequestJson>;
  try {
    const r = RequestJson.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problems)` : "";
      throw new OtlpDecodeError(
        `${zodPath(issue.path)}: ${issue.message.replace(/^Invalid input: /, "")}${more}`,
      );
    }
    parsed = r.data;
  } catch (e) {
    if (e instanceof OtlpDecodeError) throw e;
    throw new OtlpDecodeError(`invalid OTLP/JSON request: ${errorText(e)}`); // e.g. stack overflow
  }
  return {
    resourceSpans: (parsed.resourceSpans ?? []).map((rs) => ({
      resource: { attributes: jsonAttributes(rs.resource?.attributes, 0) },
      scopeSpans: (rs.scopeSpans ?? []).map((ss) => ({
        scope: { name: ss.scope?.name ?? "", version: ss.scope?.version ?? "" },
        spans: (ss.spans ?? []).map((s): OtlpSpan => ({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId,
          name: s.name ?? "",
          kind: s.kind ?? 0,
          startTimeUnixNano: s.startTimeUnixNano ?? "0",
          endTimeUnixNano: s.endTimeUnixNano ?? "0",
          attributes: jsonAttributes(s.attributes, 0),
          events: (s.events ?? []).map((ev) => ({
            timeUnixNano: ev.timeUnixNano ?? "0",
            name: ev.name ?? "",
            attributes: jsonAttributes(ev.attributes, 0),
          })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
        })),
      })),
    })),
  };
}

function jsonAttributes(list: JsonKeyValue[] | null | undefined, depth: number): OtlpKeyValue[] {
  if (!list) return [];
  const out: OtlpKeyValue[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    out[i] = { key: list[i].key ?? "", value: jsonAnyValue(list[i].value, depth) };
  }
  return out;
}

function jsonAnyValue(v: JsonAnyValue | null | undefined, depth: number): OtlpAnyValue {
  if (v == null) return {};
  if (v.stringValue != null) return { stringValue: v.stringValue };
  if (v.intValue != null) return { intValue: v.intValue };
  if (v.boolValue != null) return { boolValue: v.boolValue };
  if (v.doubleValue != null) return { doubleValue: v.doubleValue };
  if (v.bytesValue != null) return { bytesValue: v.bytesValue };
  if (v.arrayValue != null || v.kvlistValue != null) {
    if (depth >= MAX_ANY_VALUE_DEPTH) {
      throw new OtlpDecodeError(`attribute value nested deeper than ${MAX_ANY_VALUE_DEPTH} levels`);
    }
    if (v.arrayValue != null) {
      return { arrayValue: { values: (v.arrayValue.values ?? []).map((x) => jsonAnyValue(x, depth + 1)) } };
    }
    return { kvlistValue: { values: jsonAttributes(v.kvlistValue!.values, depth + 1) } };
  }
  return {};
}

/** `["resourceSpans", 0, "scopeSpans", 1]` → `resourceSpans[0].scopeSpans[1]`. */
function zodPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || "request body";
}

// ============================================================== bytes helpers

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const B64 = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".charCodeAt(i)] = i;
}
B64["-".charCodeAt(0)] = 62; // base64url, in case a sender uses it
B64["_".charCodeAt(0)] = 63;

/** Standard (or url-safe) base64, padding optional, to lower-case hex. */
export function base64ToHex(b64: string | undefined | null): string {
  if (!b64) return "";
  let out = "";
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < b64.length; i++) {
    const c = b64.charCodeAt(i);
    if (c === 61) break; // '='
    const v = c < 128 ? B64[c] : -1;
    if (v < 0) throw new OtlpDecodeError("invalid base64 in bytes field");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += HEX[(acc >> bits) & 0xff];
    }
  }
  return out;
}

/** Lower- or upper-case hex to bytes; throws on odd length or a non-hex digit. */
export function hexToBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`not a hex string: ${hex}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
