// functions/_shared/tempo/trace.ts — Tempo's trace-by-id bodies to the normalized OTLP request the ingest code
// reads. Pure. Protobuf (`Accept: application/protobuf`) is tempopb.TraceByIDResponse {trace = 1, metrics = 2,
// status = 3, message = 4}, whose `Trace` has the wire layout of an OTLP ExportTraceServiceRequest, so the OTLP
// decoder reads it. JSON (v2 `{"trace": {...}}`, v1 `{"batches": [...]}`) uses base64 ids and enum names
// (gogo jsonpb), which are rewritten to OTLP/JSON before the ingest codec parses it.

import protobuf from "protobufjs";
import {
  base64ToHex,
  decodeProtobufRequest,
  OtlpDecodeError,
  type OtlpExportRequest,
  parseJsonRequest,
} from "../otlp/codec.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

/** A decoded trace-by-id answer. `partial` is Tempo's status PARTIAL (trace over max_bytes_per_trace, pruned …). */
export interface TempoTrace {
  request: OtlpExportRequest;
  partial: boolean;
  message: string;
}

// ============================================================== protobuf
// `trace` is declared as bytes: a length-delimited submessage reads as its raw bytes, which the OTLP decoder takes.
const tempopb = protobuf.Root.fromJSON({
  nested: {
    tempopb: {
      nested: {
        TraceByIDResponse: {
          fields: {
            trace: { type: "bytes", id: 1 },
            status: { type: "int32", id: 3 },
            message: { type: "string", id: 4 },
          },
        },
      },
    },
  },
});
const TraceByIDResponse = tempopb.lookupType("tempopb.TraceByIDResponse");
const PARTIAL = 1; // tempopb.PartialStatus: COMPLETE = 0, PARTIAL = 1

/** Decodes a protobuf tempopb.TraceByIDResponse. Throws OtlpDecodeError on malformed bytes. */
export function decodeTraceProtobuf(bytes: Uint8Array): TempoTrace {
  let msg: { trace?: Uint8Array; status?: number; message?: string };
  try {
    msg = TraceByIDResponse.decode(bytes) as unknown as typeof msg;
  } catch (e) {
    throw new OtlpDecodeError(`invalid protobuf TraceByIDResponse: ${(e as Error).message}`);
  }
  const request = msg.trace && msg.trace.length > 0
    ? decodeProtobufRequest(msg.trace)
    : { resourceSpans: [] };
  return { request, partial: msg.status === PARTIAL, message: msg.message ?? "" };
}

/** Encodes a TraceByIDResponse (used by the Tempo-shaped test server; `traceBytes` = an encoded OTLP request). */
export function encodeTraceProtobuf(traceBytes: Uint8Array, partial = false, message = ""): Uint8Array {
  const obj: Record<string, unknown> = { trace: traceBytes };
  if (partial) obj.status = PARTIAL;
  if (message) obj.message = message;
  return TraceByIDResponse.encode(TraceByIDResponse.fromObject(obj)).finish();
}

// ============================================================== JSON
/**
 * An id as OTLP/JSON wants it (lower-case hex of `bytes` bytes) from hex or base64 (Tempo). The two cannot be
 * confused: base64 of 16 bytes is 24 characters, of 8 bytes 12, while the hex forms are 32 and 16.
 */
export function normalizeId(value: unknown, bytes: number): string {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value !== "string") return String(value);
  if (value.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(value)) return value.toLowerCase();
  try {
    const hex = base64ToHex(value);
    return hex.length === bytes * 2 ? hex : value;
  } catch {
    return value; // left for the codec/normaliser to reject with its own message
  }
}

/** A copy of one resource-spans element with Tempo's legacy keys renamed and its ids in hex. */
export function normalizeResourceSpans(rs: Json): Json {
  if (rs === null || typeof rs !== "object") return rs;
  const scopes: Json[] = rs.scopeSpans ?? rs.instrumentationLibrarySpans ?? [];
  return {
    resource: rs.resource ?? {},
    scopeSpans: (Array.isArray(scopes) ? scopes : []).map((ss: Json) => ({
      scope: ss?.scope ?? ss?.instrumentationLibrary ?? {},
      spans: (Array.isArray(ss?.spans) ? ss.spans : []).map((s: Json) =>
        s === null || typeof s !== "object" ? s : {
          ...s,
          traceId: normalizeId(s.traceId, 16),
          spanId: normalizeId(s.spanId, 8),
          parentSpanId: normalizeId(s.parentSpanId, 8),
        }
      ),
    })),
  };
}

/** Which shape a trace document had. */
export type TraceDocShape = "otlp" | "tempo-v1" | "tempo-v2";

/** The OTLP/JSON request inside a parsed document, and its shape; null when it holds no trace data. */
export function toOtlpJson(doc: Json): { shape: TraceDocShape; request: Json } | null {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return null;
  let shape: TraceDocShape;
  let list: Json;
  if (Array.isArray(doc.resourceSpans)) {
    shape = "otlp";
    list = doc.resourceSpans;
  } else if (Array.isArray(doc.batches)) {
    shape = "tempo-v1";
    list = doc.batches;
  } else if (doc.trace && typeof doc.trace === "object") {
    shape = "tempo-v2";
    list = Array.isArray(doc.trace.resourceSpans) ? doc.trace.resourceSpans : doc.trace.batches ?? [];
  } else {
    return null;
  }
  return { shape, request: { resourceSpans: list.map(normalizeResourceSpans) } };
}

/** Decodes a JSON trace-by-id body (v2, or v1's `batches`). Throws OtlpDecodeError when it is not one. */
export function decodeTraceJson(text: string): TempoTrace {
  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new OtlpDecodeError(`invalid JSON: ${(e as Error).message}`);
  }
  const found = toOtlpJson(doc);
  if (!found) throw new OtlpDecodeError('not a Tempo trace (expected "trace" or "batches")');
  const request = parseJsonRequest(JSON.stringify(found.request));
  return {
    request,
    partial: doc.status === "PARTIAL" || doc.status === PARTIAL,
    message: typeof doc.message === "string" ? doc.message : "",
  };
}
