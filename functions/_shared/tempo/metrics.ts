// functions/_shared/tempo/metrics.ts — metrics mode: the TraceQL metrics queries a source runs and how their
// /api/metrics/query_range answers become anomaly.operation_minutes rows. Pure.
//
// Per (service, span name, minute) Tempo gives: the span rate (→ count = rate × step), the error-span rate, and
// p50/p95/p99 of span duration. operation_minutes stores a log-bucket latency histogram, so one is synthesised
// from the quantiles: ceil(.5n) spans in p50's bucket, up to ceil(.95n) in p95's, up to ceil(.99n) in p99's and
// the rest in p99's as well. Reading p50/p95/p99 back (anomaly.histogram_quantile, extract_signals) then gives
// Tempo's quantiles within one bucket (±4.4 %); the mean, min and max are estimates from those three points, and
// shapes between the quantiles are lost (README "Pulling from Grafana Tempo").
// A sample at timestamp T covers spans that started in [T, T + step) (Tempo's StepAggregator: interval =
// (start - alignedStart) / step), which is the minute bucket rollup() uses.

import { z } from "zod";

export const STEP_SECONDS = 60;
const QUANTILES = [0.5, 0.95, 0.99] as const;
const BY = "resource.service.name, name";

/** The three queries for a source's spanset filter (`{}` or `{ resource.service.name = "api" }`). */
export function metricsQueries(filter: string): { counts: string; errors: string; quantiles: string } {
  const inner = filter.trim().replace(/^\{/, "").replace(/\}$/, "").trim();
  const errors = inner ? `{ (${inner}) && status = error }` : "{ status = error }";
  const base = inner ? `{ ${inner} }` : "{}";
  return {
    counts: `${base} | rate() by (${BY}, resource.service.version)`,
    errors: `${errors} | rate() by (${BY})`,
    quantiles: `${base} | quantile_over_time(duration, ${QUANTILES.join(", ")}) by (${BY})`,
  };
}

/** Query string of one query_range call: window in unix seconds, a one-minute step, exemplars for trace links. */
export function queryRangeParams(q: string, startSec: number, endSec: number): URLSearchParams {
  return new URLSearchParams({
    q,
    start: String(startSec),
    end: String(endSec),
    step: `${STEP_SECONDS}s`,
    exemplars: "100",
  });
}

// ============================================================== response
const Num = z.union([z.number(), z.string().regex(/^-?(\d+(\.\d*)?([eE][+-]?\d+)?|NaN|Infinity|-Infinity)$/)])
  .transform(Number);
const AnyValue = z.object({
  stringValue: z.string().optional(),
  intValue: z.union([z.string(), z.number()]).optional(),
  doubleValue: Num.optional(),
  boolValue: z.boolean().optional(),
}).passthrough();
const Label = z.object({ key: z.string(), value: AnyValue.nullish() });
const Sample = z.object({ timestampMs: z.union([z.string(), z.number()]), value: Num.optional() });
const Exemplar = z.object({
  labels: z.array(Label).nullish(),
  value: Num.optional(),
  timestampMs: z.union([z.string(), z.number()]),
});
const Series = z.object({
  labels: z.array(Label).nullish(),
  samples: z.array(Sample).nullish(),
  exemplars: z.array(Exemplar).nullish(),
}).passthrough();
export const QueryRangeResponseSchema = z.object({
  series: z.array(Series).nullish(),
  status: z.string().optional(),
  message: z.string().optional(),
}).passthrough();
export type QueryRangeResponse = z.infer<typeof QueryRangeResponseSchema>;

function labelText(v: z.infer<typeof AnyValue> | null | undefined): string {
  if (!v) return "";
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return String(v.intValue);
  if (v.doubleValue !== undefined) return String(v.doubleValue);
  if (v.boolValue !== undefined) return String(v.boolValue);
  return "";
}

interface Point {
  service: string;
  operation: string;
  labels: Record<string, string>;
  minuteMs: number;
  value: number;
}

/** Every (series, sample) of an answer with its labels; a sample without `value` is 0 (jsonpb leaves zeros out). */
function points(res: QueryRangeResponse): Point[] {
  const out: Point[] = [];
  for (const s of res.series ?? []) {
    const labels: Record<string, string> = {};
    for (const l of s.labels ?? []) labels[l.key] = labelText(l.value);
    const service = labels["resource.service.name"] ?? "";
    const operation = labels["name"] ?? labels["span:name"] ?? "";
    if (!service || !operation) continue; // spans without a service or name cannot form a series row
    for (const p of s.samples ?? []) {
      const value = p.value ?? 0;
      if (!Number.isFinite(value)) continue;
      const ms = Number(p.timestampMs);
      out.push({ service, operation, labels, minuteMs: Math.floor(ms / 60_000) * 60_000, value });
    }
  }
  return out;
}

/** The trace id of the largest exemplar per (service, operation, minute) of the quantile answer. */
function exemplars(res: QueryRangeResponse): Map<string, { value: number; traceId: string }> {
  const best = new Map<string, { value: number; traceId: string }>();
  for (const s of res.series ?? []) {
    const labels: Record<string, string> = {};
    for (const l of s.labels ?? []) labels[l.key] = labelText(l.value);
    const service = labels["resource.service.name"] ?? "";
    const operation = labels["name"] ?? "";
    for (const e of s.exemplars ?? []) {
      const el: Record<string, string> = {};
      for (const l of e.labels ?? []) el[l.key] = labelText(l.value);
      const traceId = (el["trace:id"] ?? el["traceID"] ?? el["trace_id"] ?? "").toLowerCase().padStart(
        32,
        "0",
      );
      if (!/^[0-9a-f]{32}$/.test(traceId) || traceId === "0".repeat(32)) continue;
      const key = rowKey(service, operation, Math.floor(Number(e.timestampMs) / 60_000) * 60_000);
      const value = e.value ?? 0;
      const cur = best.get(key);
      if (!cur || value > cur.value) best.set(key, { value, traceId });
    }
  }
  return best;
}

const rowKey = (service: string, operation: string, minuteMs: number) =>
  `${service}\u0000${operation}\u0000${minuteMs}`;

// ============================================================== histogram
/** Same bucket as SQL anomaly.latency_bucket(ms): ceil(8·log2(µs)), bucket 0 for ≤ 1 µs. */
export function latencyBucket(ms: number): number {
  if (!(ms > 0.001)) return 0;
  return Math.ceil((8 * Math.log(ms * 1000)) / Math.LN2 - 1e-13);
}

/** Geometric middle of a bucket in ms (what anomaly.histogram_quantile reads back). */
export function bucketMiddleMs(bucket: number): number {
  return 2 ** ((bucket - 0.5) / 8) / 1000;
}

/**
 * A histogram of `n` spans whose p50/p95/p99 read back (nearest-rank, as extract_signals does) as the buckets of
 * the given quantiles in ms. Quantiles are made monotone first.
 */
export function histogramFromQuantiles(
  n: number,
  p50: number,
  p95: number,
  p99: number,
): Record<string, number> {
  const b50 = latencyBucket(p50);
  const b95 = Math.max(b50, latencyBucket(p95));
  const b99 = Math.max(b95, latencyBucket(p99));
  const r50 = Math.max(1, Math.ceil(0.5 * n));
  const r95 = Math.max(r50, Math.ceil(0.95 * n));
  const h: Record<string, number> = {};
  const add = (b: number, k: number) => {
    if (k > 0) h[String(b)] = (h[String(b)] ?? 0) + k;
  };
  add(b50, r50);
  add(b95, r95 - r50);
  add(b99, n - r95);
  return h;
}

// ============================================================== rows
export interface MinuteRow {
  service_name: string;
  operation: string;
  bucket: string;
  span_count: number;
  error_count: number;
  duration_sum_ms: number;
  duration_min_ms: number;
  duration_max_ms: number;
  latency_histogram: Record<string, number>;
  versions: Record<string, number>;
  slowest_trace_id: string | null;
}

export interface MinuteRowsResult {
  rows: MinuteRow[];
  /** Minutes with a span count but no quantile samples (no latency to store): left out. */
  withoutQuantiles: number;
}

/**
 * Joins the three answers into one row per (service, operation, minute) with spans, for minutes in
 * [fromMs, toMs). Counts are rate × step rounded; errors are capped at the count.
 */
export function minuteRows(
  answers: { counts: QueryRangeResponse; errors: QueryRangeResponse; quantiles: QueryRangeResponse },
  fromMs: number,
  toMs: number,
): MinuteRowsResult {
  const inWindow = (m: number) => m >= fromMs && m < toMs;
  const counts = new Map<
    string,
    { service: string; operation: string; minuteMs: number; n: number; versions: Record<string, number> }
  >();
  for (const p of points(answers.counts)) {
    if (!inWindow(p.minuteMs)) continue;
    const n = Math.round(p.value * STEP_SECONDS);
    if (n <= 0) continue;
    const key = rowKey(p.service, p.operation, p.minuteMs);
    let c = counts.get(key);
    if (!c) {
      counts.set(
        key,
        c = { service: p.service, operation: p.operation, minuteMs: p.minuteMs, n: 0, versions: {} },
      );
    }
    c.n += n;
    const version = p.labels["resource.service.version"] ?? "";
    c.versions[version] = (c.versions[version] ?? 0) + n;
  }
  const errors = new Map<string, number>();
  for (const p of points(answers.errors)) {
    if (!inWindow(p.minuteMs)) continue;
    const key = rowKey(p.service, p.operation, p.minuteMs);
    errors.set(key, (errors.get(key) ?? 0) + Math.round(p.value * STEP_SECONDS));
  }
  const quantiles = new Map<string, Record<string, number>>();
  for (const p of points(answers.quantiles)) {
    if (!inWindow(p.minuteMs)) continue;
    const q = p.labels["p"];
    if (q === undefined) continue;
    const key = rowKey(p.service, p.operation, p.minuteMs);
    let m = quantiles.get(key);
    if (!m) quantiles.set(key, m = {});
    m[String(Number(q))] = p.value * 1000; // seconds -> ms
  }
  const slowest = exemplars(answers.quantiles);

  const rows: MinuteRow[] = [];
  let withoutQuantiles = 0;
  for (const [key, c] of counts) {
    const q = quantiles.get(key);
    const p50 = q?.["0.5"];
    if (p50 === undefined) {
      withoutQuantiles++;
      continue;
    }
    const p95 = Math.max(p50, q?.["0.95"] ?? p50);
    const p99 = Math.max(p95, q?.["0.99"] ?? p95);
    const hist = histogramFromQuantiles(c.n, p50, p95, p99);
    let sum = 0;
    for (const [b, k] of Object.entries(hist)) sum += bucketMiddleMs(Number(b)) * k;
    rows.push({
      service_name: c.service,
      operation: c.operation,
      bucket: new Date(c.minuteMs).toISOString(),
      span_count: c.n,
      error_count: Math.min(c.n, Math.max(0, errors.get(key) ?? 0)),
      duration_sum_ms: sum,
      duration_min_ms: Math.min(p50, bucketMiddleMs(latencyBucket(p50))),
      duration_max_ms: p99,
      latency_histogram: hist,
      versions: c.versions,
      slowest_trace_id: slowest.get(key)?.traceId ?? null,
    });
  }
  rows.sort((a, b) =>
    a.bucket.localeCompare(b.bucket) || a.service_name.localeCompare(b.service_name) ||
    a.operation.localeCompare(b.operation)
  );
  return { rows, withoutQuantiles };
}
