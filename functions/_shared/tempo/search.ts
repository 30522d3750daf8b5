// functions/_shared/tempo/search.ts — Tempo's /api/search: the query parameters a pull sends and the answer it
// reads (zod-validated). Pure. Search answers give trace ids as hex strings with leading zeros dropped (unless
// left_pad_trace_ids is on), so ids are left-padded to 32 characters before they are compared or fetched.

import { z } from "zod";

/** Tempo's default query_frontend.search.max_result_limit: a larger `limit` is answered 400. */
export const MAX_RESULT_LIMIT = 262_144;

const TraceMeta = z.object({
  traceID: z.string().regex(/^[0-9a-fA-F]{1,32}$/, "traceID must be 1-32 hex digits"),
  rootServiceName: z.string().optional(),
  rootTraceName: z.string().optional(),
  startTimeUnixNano: z.union([z.string(), z.number()]).optional(),
  durationMs: z.number().optional(),
}).passthrough();

export const SearchResponseSchema = z.object({
  traces: z.array(TraceMeta).nullish(),
  metrics: z.record(z.string(), z.unknown()).nullish(),
}).passthrough();

export interface SearchResult {
  /** Distinct 32-hex lower-case trace ids, in answer order. */
  traceIds: string[];
  /** Entries in the answer (before de-duplication): `>= limit` means Tempo may have cut the list. */
  returned: number;
}

/** Left-pads a search trace id to 32 lower-case hex characters. */
export function padTraceId(id: string): string {
  return id.toLowerCase().padStart(32, "0");
}

/** Validates a parsed /api/search body. Throws a zod error naming the field when it is not a search answer. */
export function parseSearchResponse(body: unknown): SearchResult {
  const parsed = SearchResponseSchema.parse(body);
  const traces = parsed.traces ?? [];
  const seen = new Set<string>();
  const traceIds: string[] = [];
  for (const t of traces) {
    const id = padTraceId(t.traceID);
    if (id === "0".repeat(32) || seen.has(id)) continue;
    seen.add(id);
    traceIds.push(id);
  }
  return { traceIds, returned: traces.length };
}

/** Query string of one search: TraceQL `q`, the window in unix seconds, `limit` and `spss` (spans per spanset). */
export function searchParams(q: string, startSec: number, endSec: number, limit: number): URLSearchParams {
  return new URLSearchParams({
    q,
    start: String(startSec),
    end: String(endSec),
    limit: String(limit),
    spss: "1", // we fetch every trace whole; matched spans in the answer are only overhead
  });
}
