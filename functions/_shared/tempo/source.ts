// functions/_shared/tempo/source.ts — one anomaly.tempo_sources row as tempo-ingest reads it (zod-validated: the
// database already checked it, this guards the boundary), the window a run covers, and how a range is bisected.
// Pure.

import { z } from "zod";

export const TempoSourceSchema = z.object({
  name: z.string().min(1),
  base_url: z.string().url(),
  tenant: z.string().nullable(),
  auth_kind: z.enum(["none", "basic", "bearer"]),
  auth_vault_secret: z.string().nullable(),
  auth_env_var: z.string().regex(/^TEMPO_[A-Z0-9_]+$/).nullable(),
  mode: z.enum(["traces", "metrics"]),
  traceql: z.string().min(2),
  lag_seconds: z.number().int().min(0),
  backfill_seconds: z.number().int().min(0),
  max_window_seconds: z.number().int().min(60),
  search_limit: z.number().int().min(2),
  max_traces_per_run: z.number().int().min(1),
  max_seconds_per_run: z.number().int().min(1),
  max_trace_bytes: z.number().int().min(1),
  request_timeout_ms: z.number().int().min(1),
  max_retries: z.number().int().min(0),
  fetch_concurrency: z.number().int().min(1),
  lease_seconds: z.number().int().min(1),
  cursor: z.string().nullable(),
}).passthrough();
export type TempoSource = z.infer<typeof TempoSourceSchema>;

/** A half-open range of unix seconds [start, end). */
export interface Range {
  start: number;
  end: number;
}

/**
 * The window a run covers: from the cursor (or now - backfill for a new source) to now - lag, at most
 * max_window_seconds long; null when there is nothing to do yet. Metrics mode works in whole minutes.
 */
export function runWindow(src: TempoSource, nowMs: number): Range | null {
  const nowSec = Math.floor(nowMs / 1000);
  const minute = src.mode === "metrics" ? 60 : 1;
  const align = (sec: number) => Math.floor(sec / minute) * minute;
  const start = src.cursor !== null
    ? align(Math.floor(Date.parse(src.cursor) / 1000))
    : align(nowSec - src.backfill_seconds);
  const end = align(Math.min(nowSec - src.lag_seconds, start + src.max_window_seconds));
  return end > start ? { start, end } : null;
}

/** Splits a range at its middle second; null when it is one second long (the search granularity). */
export function bisect(r: Range): [Range, Range] | null {
  if (r.end - r.start < 2) return null;
  const mid = Math.floor((r.start + r.end) / 2);
  return [{ start: r.start, end: mid }, { start: mid, end: r.end }];
}

export const isoOfSeconds = (sec: number) => new Date(sec * 1000).toISOString();
