// scripts/replay/otlp-files.ts — reads trace files for `npm run replay -- --traces DIR`: OTLP/JSON
// ExportTraceServiceRequest bodies (one per file, or one per line as the Collector's file exporter writes them),
// Tempo's trace-by-id JSON (v1 `{"batches": [...]}`, v2 `{"trace": {"resourceSpans": [...]}}`, base64 ids, enum
// names, `instrumentationLibrarySpans`), normalised to the OTLP/JSON shape and decoded with the ingest codec. Pure.

import {
  OtlpDecodeError,
  type OtlpExportRequest,
  parseJsonRequest,
} from "../../functions/_shared/otlp/codec.ts";
import { toOtlpJson, type TraceDocShape } from "../../functions/_shared/tempo/trace.ts";

export { normalizeId, toOtlpJson } from "../../functions/_shared/tempo/trace.ts";
export type { TraceDocShape } from "../../functions/_shared/tempo/trace.ts";

/** A file (or a line of it) that is not a trace document we understand. */
export class TraceFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "TraceFileError";
  }
}

export interface ParsedTraceFile {
  requests: OtlpExportRequest[];
  shapes: TraceDocShape[];
}

/**
 * Parses the text of one trace file: a single JSON document, an array of documents, or JSON lines (one document
 * per line). Throws TraceFileError naming the file (and line) when something cannot be read.
 */
export function parseTraceFile(name: string, text: string): ParsedTraceFile {
  const docs: Array<{ where: string; doc: Json }> = [];
  const trimmed = text.trim();
  if (trimmed === "") throw new TraceFileError(name, "the file is empty");
  let whole: Json;
  let wholeOk = false;
  try {
    whole = JSON.parse(trimmed);
    wholeOk = true;
  } catch {
    // maybe JSON lines
  }
  if (wholeOk) {
    if (Array.isArray(whole)) whole.forEach((d, i) => docs.push({ where: `element ${i}`, doc: d }));
    else docs.push({ where: "", doc: whole });
  } else {
    const lines = text.split(/\r?\n/);
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        docs.push({ where: `line ${i + 1}`, doc: JSON.parse(line) });
      } catch (e) {
        throw new TraceFileError(
          name,
          `line ${i + 1} is not JSON (${
            (e as Error).message
          }); expected an OTLP/JSON or Tempo trace document`,
        );
      }
    });
  }
  const out: ParsedTraceFile = { requests: [], shapes: [] };
  for (const { where, doc } of docs) {
    const found = toOtlpJson(doc);
    const at = where ? `${where}: ` : "";
    if (!found) {
      throw new TraceFileError(
        name,
        `${at}not a trace document (expected "resourceSpans", Tempo's "batches", or Tempo v2's "trace")`,
      );
    }
    try {
      out.requests.push(parseJsonRequest(JSON.stringify(found.request)));
    } catch (e) {
      if (e instanceof OtlpDecodeError) throw new TraceFileError(name, `${at}${e.message}`);
      throw e;
    }
    out.shapes.push(found.shape);
  }
  return out;
}

/**
 * Moves every time of a request by `deltaNs` nanoseconds (span start/end, event times); returns a new request.
 * Used by `--shift-to-now` with whole minutes so minute buckets keep their alignment.
 */
export function shiftRequest(req: OtlpExportRequest, deltaNs: bigint): OtlpExportRequest {
  if (deltaNs === 0n) return req;
  const move = (t: string) => (t === "0" || t === "" ? t : String(BigInt(t) + deltaNs));
  return {
    resourceSpans: req.resourceSpans.map((rs) => ({
      ...rs,
      scopeSpans: rs.scopeSpans.map((ss) => ({
        ...ss,
        spans: ss.spans.map((s) => ({
          ...s,
          startTimeUnixNano: move(s.startTimeUnixNano),
          endTimeUnixNano: move(s.endTimeUnixNano),
          events: s.events.map((ev) => ({ ...ev, timeUnixNano: move(ev.timeUnixNano) })),
        })),
      })),
    })),
  };
}

/** The latest span end (unix ns) in a set of requests, or null when there are no spans. */
export function latestEndNs(reqs: OtlpExportRequest[]): bigint | null {
  let max: bigint | null = null;
  for (const r of reqs) {
    for (const rs of r.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          if (!/^\d+$/.test(s.endTimeUnixNano)) continue;
          const t = BigInt(s.endTimeUnixNano);
          if (max === null || t > max) max = t;
        }
      }
    }
  }
  return max;
}
