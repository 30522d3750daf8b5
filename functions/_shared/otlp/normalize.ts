// functions/_shared/otlp/normalize.ts — turns a decoded OTLP request into StagedSpan rows for
// anomaly.ingest_spans(): validates each span (a bad span is rejected and counted, the rest kept),
// flattens and redacts attributes, and converts nanosecond times to exact microsecond ISO strings.
// Hot path: no zod and no per-span work beyond building the row; throughput is in PERF below.

import type { Attributes, AttributeValue, StagedSpan } from "../spans.ts";
import {
  compileRedaction,
  type KeyAction,
  REDACTED,
  type RedactionPolicy,
  type Redactor,
} from "../redact.ts";
import type { OtlpAnyValue, OtlpEvent, OtlpExportRequest, OtlpKeyValue } from "./codec.ts";

// PERF (throwaway benchmark, 2-vCPU dev machine, Node 20, 2026-11-25, other jobs running): batches of
// 50k-100k spans, 12 attributes + 1 event each, default redaction policy, every span with its own URL
// and client IP (so a SHA-256 and a pattern scan per span): 150k-190k spans/s (5-7 µs/span), about a
// third of it garbage collection. When attribute values repeat (scrub cache hits) about 380k spans/s.

export interface NormalizeOptions {
  /** Strings (attribute values, bytes as base64) longer than this are cut to this many UTF-16 units. */
  maxAttributeValueLength: number;
  redaction: RedactionPolicy;
  /** Clock for the "not more than a day in the future" rule, ms since epoch (default Date.now()). */
  now?: number | Date;
}

export interface NormalizeResult {
  spans: StagedSpan[];
  /** Spans refused by validation (report as partialSuccess.rejectedSpans). */
  rejected: number;
  /** Up to MAX_ERRORS distinct messages, e.g. "span 3a4b…: invalid span_id length 6 bytes". */
  errors: string[];
}

export const MAX_EVENTS_PER_SPAN = 32;
export const MAX_ERRORS = 10;
export const MAX_NAME_LENGTH = 1024;
const MAX_SHORT = 256; // service_name, service_version, service_instance, scope_name
const MAX_STATUS_MESSAGE = 4096;
const MAX_HTTP_METHOD = 32;

/** 2000-01-01T00:00:00Z in unix nanoseconds: anything earlier is a clock or encoding bug. */
const MIN_TIME_NS = 946_684_800_000_000_000n;
const FUTURE_SLACK_NS = 86_400_000_000_000n; // one day
const MAX_SAFE_NS = BigInt(Number.MAX_SAFE_INTEGER); // ≈ 104 days: longer spans are refused
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);
const HEX_RE = /^[0-9a-f]*$/;

/** Validates, flattens and redacts every span of a decoded request. Pure: same input, same output. */
export function toStagedSpans(req: OtlpExportRequest, opts: NormalizeOptions): NormalizeResult {
  const redactor = compileRedaction(opts.redaction);
  const maxLen = Math.max(1, Math.floor(opts.maxAttributeValueLength));
  const nowMs = opts.now === undefined
    ? Date.now()
    : typeof opts.now === "number"
    ? opts.now
    : opts.now.getTime();
  const maxTimeNs = BigInt(Math.floor(nowMs)) * 1_000_000n + FUTURE_SLACK_NS;
  const flat = new Flattener(redactor, maxLen);
  const iso = new IsoClock();

  const spans: StagedSpan[] = [];
  const errors = new Set<string>();
  let rejected = 0;
  const reject = (spanId: string, message: string) => {
    rejected++;
    if (errors.size < MAX_ERRORS) {
      errors.add(`span ${spanId ? clip(spanId, 32) : "(no span_id)"}: ${message}`);
    }
  };

  for (const rs of req.resourceSpans) {
    const resourceAttributes = flat.attributes(rs.resource.attributes);
    const serviceName = stringAttr(resourceAttributes["service.name"], MAX_SHORT) || "unknown_service";
    const serviceVersion = stringAttr(resourceAttributes["service.version"], MAX_SHORT);
    const serviceInstance = stringAttr(resourceAttributes["service.instance.id"], MAX_SHORT);

    for (const ss of rs.scopeSpans) {
      const scopeName = ss.scope.name ? truncate(ss.scope.name, MAX_SHORT) : null;

      for (const s of ss.spans) {
        // ---- identity
        const traceProblem = idProblem(s.traceId, 32, ZERO_TRACE_ID);
        if (traceProblem) {
          reject(s.spanId, `invalid trace_id ${traceProblem}`);
          continue;
        }
        const spanProblem = idProblem(s.spanId, 16, ZERO_SPAN_ID);
        if (spanProblem) {
          reject(s.spanId, `invalid span_id ${spanProblem}`);
          continue;
        }
        let parent: string | null = null;
        if (s.parentSpanId !== "" && s.parentSpanId !== ZERO_SPAN_ID) {
          const parentProblem = idProblem(s.parentSpanId, 16, null);
          if (parentProblem) {
            reject(s.spanId, `invalid parent_span_id ${parentProblem}`);
            continue;
          }
          parent = s.parentSpanId;
        }

        // ---- times
        let start: bigint;
        let end: bigint;
        try {
          start = BigInt(s.startTimeUnixNano);
          end = BigInt(s.endTimeUnixNano);
        } catch {
          reject(s.spanId, "start/end time is not an integer");
          continue;
        }
        if (start < MIN_TIME_NS) {
          reject(s.spanId, `start_time_unix_nano ${s.startTimeUnixNano} is before 2000-01-01`);
          continue;
        }
        if (end < start) {
          reject(s.spanId, "end_time_unix_nano is before start_time_unix_nano");
          continue;
        }
        if (end > maxTimeNs) {
          reject(s.spanId, "span ends more than one day in the future");
          continue;
        }
        const duration = end - start;
        if (duration > MAX_SAFE_NS) {
          reject(s.spanId, "span lasts longer than 2^53 ns (104 days)");
          continue;
        }

        // ---- name
        if (s.name === "") {
          reject(s.spanId, "empty span name");
          continue;
        }

        const attributes = flat.attributes(s.attributes);
        spans.push({
          trace_id: s.traceId,
          span_id: s.spanId,
          parent_span_id: parent,
          start_time: iso.format(start),
          end_time: iso.format(end),
          duration_ns: Number(duration),
          service_name: serviceName,
          service_version: serviceVersion,
          service_instance: serviceInstance,
          name: truncate(redactor.scrub(s.name), MAX_NAME_LENGTH),
          kind: s.kind >= 0 && s.kind <= 5 && Number.isInteger(s.kind) ? s.kind : 0,
          status_code: s.status.code >= 0 && s.status.code <= 2 && Number.isInteger(s.status.code)
            ? s.status.code
            : 0,
          status_message: s.status.message
            ? truncate(redactor.scrub(s.status.message), MAX_STATUS_MESSAGE)
            : null,
          http_status_code: httpStatus(
            attributes["http.response.status_code"] ?? attributes["http.status_code"],
          ),
          http_route: stringAttr(attributes["http.route"], MAX_NAME_LENGTH),
          http_method: stringAttr(
            attributes["http.request.method"] ?? attributes["http.method"],
            MAX_HTTP_METHOD,
          ),
          scope_name: scopeName,
          resource_attributes: resourceAttributes, // shared by the spans of one resource
          attributes,
          events: s.events.length === 0 ? [] : events(s.events, flat, iso, redactor, maxTimeNs),
        });
      }
    }
  }
  return { spans, rejected, errors: [...errors] };
}

/** Why an id is unusable, or "" when it is fine. `hexLen` is 32 (trace) or 16 (span). */
function idProblem(id: string, hexLen: number, zero: string | null): string {
  if (id.length === hexLen && HEX_RE.test(id)) return id === zero ? "(all zero)" : "";
  if (!HEX_RE.test(id)) return "(not hex)";
  return `length ${id.length / 2} bytes`;
}

function events(list: OtlpEvent[], flat: Flattener, iso: IsoClock, redactor: Redactor, maxTimeNs: bigint) {
  const n = Math.min(list.length, MAX_EVENTS_PER_SPAN);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const ev = list[i];
    let time: string | null = null;
    try {
      const t = BigInt(ev.timeUnixNano);
      if (t >= MIN_TIME_NS && t <= maxTimeNs) time = iso.format(t);
    } catch {
      time = null; // an unusable event time does not cost the span
    }
    out[i] = {
      time,
      name: truncate(redactor.scrub(ev.name), MAX_NAME_LENGTH),
      attributes: flat.attributes(ev.attributes),
    };
  }
  return out;
}

function httpStatus(v: AttributeValue | undefined): number | null {
  let n: number;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^\d{3}$/.test(v)) n = Number(v);
  else return null;
  return Number.isInteger(n) && n >= 100 && n <= 599 ? n : null;
}

function stringAttr(v: AttributeValue | undefined, max: number): string | null {
  if (typeof v === "string") return v === "" ? null : truncate(v, max);
  if (typeof v === "number" || typeof v === "boolean") return truncate(String(v), max);
  return null;
}

/** Cuts to `max` UTF-16 units without splitting a surrogate pair. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  let cut = max;
  const c = s.charCodeAt(cut - 1);
  if (c >= 0xd800 && c <= 0xdbff) cut--;
  return s.slice(0, cut);
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

// ------------------------------------------------------------ AnyValue → JSON, with redaction

class Flattener {
  constructor(private readonly r: Redactor, private readonly maxLen: number) {}

  attributes(list: OtlpKeyValue[]): Attributes {
    const out: Attributes = {};
    for (let i = 0; i < list.length; i++) {
      const kv = list[i];
      if (kv.key === "") continue;
      out[kv.key] = this.keyed(kv.key, kv.value);
    }
    return out;
  }

  private keyed(key: string, v: OtlpAnyValue): AttributeValue {
    const action = this.r.keyAction(key);
    if (action.mode === 1) return REDACTED;
    const value = this.value(key, v, action);
    if (action.mode === 2) return value === null ? null : this.r.hash(value);
    return value;
  }

  private value(key: string, v: OtlpAnyValue, action: KeyAction): AttributeValue {
    if (v.stringValue !== undefined) {
      const s = truncate(v.stringValue, this.maxLen);
      return action.mode === 0 ? this.r.scrub(s, action) : s;
    }
    if (v.intValue !== undefined) {
      const n = Number(v.intValue);
      return Number.isSafeInteger(n) ? n : v.intValue; // exact digits beat a rounded number
    }
    if (v.boolValue !== undefined) return v.boolValue;
    if (v.doubleValue !== undefined) {
      return Number.isFinite(v.doubleValue) ? v.doubleValue : String(v.doubleValue); // JSON has no NaN
    }
    if (v.arrayValue !== undefined) {
      const src = v.arrayValue.values;
      const out: AttributeValue[] = new Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = this.value(key, src[i], action);
      return out;
    }
    if (v.kvlistValue !== undefined) {
      const out: Record<string, AttributeValue> = {};
      for (const kv of v.kvlistValue.values) {
        if (kv.key === "") continue;
        // Nested keys are judged by their dotted path, so {"headers": {"authorization": …}} is caught.
        const childKey = `${key}.${kv.key}`;
        if (action.mode !== 0) out[kv.key] = this.value(childKey, kv.value, action);
        else out[kv.key] = this.keyed(childKey, kv.value);
      }
      return out;
    }
    if (v.bytesValue !== undefined) return truncate(v.bytesValue, this.maxLen);
    return null;
  }
}

// ------------------------------------------------------------ nanoseconds → ISO-8601 with microseconds

const US3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, "0"));

/** Exact BigInt arithmetic; remembers the last second's "YYYY-MM-DDTHH:MM:SS." prefix (spans cluster in time). */
class IsoClock {
  private sec = -1n;
  private prefix = "";

  format(ns: bigint): string {
    const sec = ns / 1_000_000_000n;
    if (sec !== this.sec) {
      this.sec = sec;
      this.prefix = new Date(Number(sec) * 1000).toISOString().slice(0, 20); // "2026-11-25T06:52:16."
    }
    const us = Number((ns % 1_000_000_000n) / 1000n); // 0 … 999999, truncated (never rounds up a second)
    return `${this.prefix}${US3[Math.floor(us / 1000)]}${US3[us % 1000]}Z`;
  }
}
