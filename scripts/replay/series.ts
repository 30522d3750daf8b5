// scripts/replay/series.ts — `npm run replay -- --series file.csv`: runs the SQL detectors over a univariate series
// as a stream would see it. Each minute becomes a synthetic anomaly.operation_minutes row of service "replay",
// operation "series"; the event-time watermark is advanced step by step and anomaly.detect() runs after each step,
// so a minute is scored with only the data up to it (no look-ahead). Returns a score in [0, 1] per input point.

import { type Aggregate, type MinutePoint, type SeriesPoint, type Spacing, toMinutes } from "./csv.ts";
import {
  detectorThresholds,
  type EngineCaps,
  q,
  readAnomalies,
  registeredDetectors,
  type Sql,
} from "./engine.ts";
import { type ReplayAnomaly, unitScore } from "./output.ts";

export const SERIES_SERVICE = "replay";
export const SERIES_OPERATION = "series";

export type Signal = "latency" | "throughput" | "errors";

/**
 * How a value becomes a minute of the series (documented in the README):
 * - latency: `base` spans (default 100), every one of them `value` ms — a latency histogram with all its mass in
 *   the bucket of `value`, so p50 = p95 = p99 ≈ value (within the histogram's 4.4 %) and the mean is exact.
 * - throughput: `round(value)` spans of 10 ms with no errors; a value of 0 is a minute with no row (no traffic).
 * - errors: `value` is an error rate 0..1: `base` spans of 10 ms of which round(value × base) failed.
 */
export const SIGNALS: Record<Signal, { aggregate: Aggregate; min: number; max?: number; what: string }> = {
  latency: { aggregate: "mean", min: 0, what: "latency in milliseconds" },
  throughput: { aggregate: "sum", min: 0, what: "requests per minute" },
  errors: { aggregate: "mean", min: 0, max: 1, what: "error rate as a fraction 0..1, e.g. 0.05 for 5 %" },
};

const FLAT_LATENCY_MS = 10;

/**
 * Default minutes per step when the engine logs detector_hits: 10k minutes in ~20 s instead of ~40 s, and no longer
 * than the lifecycle's default quiet_minutes (5), so anomaly episodes split where they would live.
 */
export const DEFAULT_STEP = 5;

export interface SeriesReplayOptions {
  signal: Signal;
  spacing: Spacing | "auto";
  /** Spans per minute behind a latency or error-rate value. Default 100. */
  base?: number;
  /**
   * Minutes per detection step. 1 is the live cadence. Larger steps are faster and give the same per-minute
   * verdicts when every detector scores a bucket from data up to that bucket only (the engine's per-bucket loop
   * does; tests check it); they need anomaly.detector_hits to know which minutes of a step fired. Default
   * DEFAULT_STEP with detector_hits, else 1.
   */
  step?: number;
  /**
   * Only these detectors' hits score the points (e.g. ["legacy_mean_ksigma"] to see the old rule). Default: every
   * detector except those the registry marks legacy (their hits open no anomalies).
   */
  detectors?: string[];
  /** Keep every registered detector on (default: those that cannot fire on this signal are switched off). */
  allDetectors?: boolean;
  log?: (m: string) => void;
}

export interface SeriesReplayResult {
  spacing: Spacing;
  /** "detector_hits" or "anomalies" (per-minute verdicts read from trace_anomalies, one minute per step). */
  source: "detector_hits" | "anomalies";
  step: number;
  minutes: number;
  /** Per input point (time order): score 0..1 and whether its minute fired. */
  scores: Array<{ score: number; isAnomaly: boolean }>;
  anomalies: ReplayAnomaly[];
  wallSeconds: number;
}

/** The synthetic operation_minutes row for one minute, or null for "no row" (zero throughput). */
export function minuteRow(
  signal: Signal,
  value: number,
  base: number,
): { spans: number; errors: number; latencyMs: number } | null {
  switch (signal) {
    case "latency":
      return { spans: base, errors: 0, latencyMs: value };
    case "throughput": {
      const n = Math.round(value);
      return n > 0 ? { spans: n, errors: 0, latencyMs: FLAT_LATENCY_MS } : null;
    }
    case "errors":
      return {
        spans: base,
        errors: Math.min(base, Math.max(0, Math.round(value * base))),
        latencyMs: FLAT_LATENCY_MS,
      };
  }
}

/**
 * Cuts the minutes into detection steps of at most `step` minutes, [start, end) index pairs. A step never holds a
 * silence followed by data (a gap between minutes, or a zero-throughput minute, then a minute with a row): live,
 * those arrive in different cycles, and a detector may only treat a minute as silent while nothing newer is known.
 */
export function chunks(minutes: MinutePoint[], step: number, signal: Signal): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  for (let i = 1; i <= minutes.length; i++) {
    const cut = i === minutes.length || i - start >= step ||
      minutes[i].bucketMs - minutes[i - 1].bucketMs > 60_000 ||
      (signal === "throughput" && minuteRow(signal, minutes[i - 1].value, 1) === null &&
        minuteRow(signal, minutes[i].value, 1) !== null);
    if (cut) {
      out.push([start, i]);
      start = i;
    }
  }
  return out;
}

/** Detector families that can fire on a replayed series of each signal (the other columns stay constant). */
export const SIGNAL_FAMILIES: Record<Signal, string[]> = {
  latency: ["latency"],
  throughput: ["throughput"],
  errors: ["error_rate"],
};

/**
 * In the throwaway database, switches off detectors that cannot fire on this series, because every other column of
 * the synthetic rows is constant (no resource samples, no version change, flat errors or traffic): they would only
 * cost time (the engine runs every enabled detector on every minute); legacy ones too, as their hits do not score.
 * With `detectors`, only those stay on.
 * Returns the names switched off; nothing without a registry that has families and an enabled flag.
 */
async function focusDetectors(
  sql: Sql,
  caps: EngineCaps,
  registered: Array<{ name: string; enabled: boolean; legacy: boolean; family: string | null }>,
  opts: SeriesReplayOptions,
): Promise<string[]> {
  const r = caps.registry;
  if (!r?.enabled || opts.allDetectors) return [];
  const keep = (d: { name: string; legacy: boolean; family: string | null }) =>
    opts.detectors && opts.detectors.length > 0
      ? opts.detectors.includes(d.name)
      : !d.legacy && (d.family === null || SIGNAL_FAMILIES[opts.signal].includes(d.family));
  const off = registered.filter((d) => d.enabled && !keep(d)).map((d) => d.name);
  const on = registered.filter((d) => !d.enabled && opts.detectors?.includes(d.name)).map((d) => d.name);
  if (off.length > 0) {
    await sql.unsafe(
      `update anomaly.${q(r.table)} set ${q(r.enabled)} = false where ${q(r.name)} = any($1::text[])`,
      [
        off,
      ],
    );
  }
  if (on.length > 0) {
    await sql.unsafe(
      `update anomaly.${q(r.table)} set ${q(r.enabled)} = true where ${q(r.name)} = any($1::text[])`,
      [
        on,
      ],
    );
  }
  return off;
}

/** Replays the time-ordered points on a prepared, empty database. */
export async function replaySeries(
  sql: Sql,
  caps: EngineCaps,
  points: SeriesPoint[],
  opts: SeriesReplayOptions,
): Promise<SeriesReplayResult> {
  const started = performance.now();
  const log = opts.log ?? (() => {});
  const base = opts.base ?? 100;
  const { spacing, minutes } = toMinutes(points, opts.spacing, SIGNALS[opts.signal].aggregate);
  const source = caps.hits ? "detector_hits" : "anomalies";
  let step = Math.max(1, Math.floor(opts.step ?? (caps.hits ? DEFAULT_STEP : 1)));
  if (source === "anomalies" && step > 1) {
    log(`--step ${step} needs anomaly.detector_hits, which this engine lacks; stepping one minute at a time`);
    step = 1;
  }
  const lateness = caps.latenessSeconds * 1000;
  /** minute bucket (ms) -> max unit score and fired flag */
  const verdicts = new Map<number, { score: number; fired: boolean }>();
  const thresholds = new Map<string, number>();
  const thresholdOf = async (detector: string) => {
    if (!thresholds.has(detector)) {
      for (const [k, v] of await detectorThresholds(sql, caps, [detector])) thresholds.set(k, v);
    }
    return thresholds.get(detector) ?? 3;
  };
  const note = (bucketMs: number, score: number, fired: boolean) => {
    const v = verdicts.get(bucketMs) ?? { score: 0, fired: false };
    v.score = Math.max(v.score, score);
    v.fired ||= fired;
    verdicts.set(bucketMs, v);
  };
  const observed = new Map<string, number>();
  let before = new Map<string, { occurrences: number; score: number }>();
  const registered = await registeredDetectors(sql, caps);
  const legacy = new Set(registered.filter((d) => d.legacy).map((d) => d.name));
  const off = await focusDetectors(sql, caps, registered, opts);
  if (off.length > 0) {
    log(
      `switched off ${off.length} detectors that do not score this ${opts.signal} series: ${off.join(", ")}`,
    );
  }
  const counts = (detector: string) =>
    opts.detectors && opts.detectors.length > 0 ? opts.detectors.includes(detector) : !legacy.has(detector);

  for (const [i, j] of chunks(minutes, step, opts.signal)) {
    const chunk = minutes.slice(i, j);
    const rows = chunk.map((m) => ({ m, row: minuteRow(opts.signal, m.value, base) }))
      .filter((x): x is { m: MinutePoint; row: NonNullable<ReturnType<typeof minuteRow>> } => x.row !== null);
    const lastBucket = chunk[chunk.length - 1].bucketMs;
    const watermark = new Date(lastBucket + 60_000);
    const prevThrough = i === 0 ? -Infinity : minutes[i - 1].bucketMs;
    await sql.begin((tx) => {
      const statements = [];
      if (rows.length > 0) {
        statements.push(tx`
          insert into anomaly.operation_minutes as o (service_name, operation, bucket, span_count, error_count,
            duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram, versions)
          select ${SERIES_SERVICE}, ${SERIES_OPERATION}, to_timestamp(t.b / 1000.0), t.n, t.e, t.lat * t.n, t.lat,
                 t.lat, jsonb_build_object(anomaly.latency_bucket(t.lat)::text, t.n), jsonb_build_object('', t.n)
          from unnest(${rows.map((r) => r.m.bucketMs)}::float8[], ${rows.map((r) => r.row.spans)}::int[],
                      ${rows.map((r) => r.row.errors)}::int[], ${rows.map((r) => r.row.latencyMs)}::float8[])
               as t(b, n, e, lat)
          on conflict (service_name, operation, bucket) do nothing`);
      }
      // As rollup() would leave it after seeing data up to the end of this step's last minute.
      statements.push(tx`
        update anomaly.rollup_state
           set max_event_time = ${new Date(watermark.getTime() + lateness)}::timestamptz,
               watermark = ${watermark}::timestamptz`);
      statements.push(tx`select * from anomaly.detect()`);
      return statements;
    });

    if (caps.hits) {
      const h = caps.hits;
      const hits = await sql.unsafe(
        `select (extract(epoch from ${q(h.bucket)}) * 1000)::float8 as b, ${q(h.detector)}::text as d,
                ${q(h.score)}::float8 as s${h.fired ? `, ${q(h.fired)}::boolean as f` : ""}
         from anomaly.detector_hits
         where ${q(h.bucket)} > $1::timestamptz and ${q(h.bucket)} <= $2::timestamptz`,
        [new Date(Number.isFinite(prevThrough) ? prevThrough : 0), new Date(lastBucket)],
      );
      for (const r of hits) {
        if (!counts(String(r.d))) continue;
        const fired = h.fired ? r.f === true : true;
        note(
          Math.floor(Number(r.b) / 60_000) * 60_000,
          unitScore(Number(r.s), await thresholdOf(r.d)),
          fired,
        );
      }
    } else {
      // One minute per step: a row that is new or whose occurrences grew was hit by this minute; its score is
      // the open anomaly's running maximum (the engine keeps no per-minute score without detector_hits).
      const now = await sql<{ id: string; occurrences: number; score: number; detector: string }[]>`
        select id::text, occurrences, score, detector from public.trace_anomalies
        where service = ${SERIES_SERVICE}`;
      const after = new Map<string, { occurrences: number; score: number }>();
      for (const r of now) {
        after.set(r.id, { occurrences: r.occurrences, score: r.score });
        const prev = before.get(r.id);
        if (!prev) observed.set(r.id, watermark.getTime());
        if ((!prev || r.occurrences > prev.occurrences) && counts(r.detector)) {
          note(lastBucket, unitScore(Number(r.score), await thresholdOf(r.detector)), true);
        }
      }
      before = after;
    }
    if (caps.hits && !caps.detectedEventAt) {
      const fresh = await sql<{ id: string }[]>`
        select id::text from public.trace_anomalies where not (id = any(${[...observed.keys()]}::uuid[]))`;
      for (const { id } of fresh) observed.set(id, watermark.getTime());
    }
    if (Math.floor(j / 2000) > Math.floor(i / 2000)) log(`scored ${j} of ${minutes.length} minutes`);
  }

  const scores = points.map(() => ({ score: 0, isAnomaly: false }));
  for (const m of minutes) {
    const v = verdicts.get(m.bucketMs);
    if (!v) continue;
    for (const p of m.points) scores[p] = { score: v.score, isAnomaly: v.fired };
  }
  const anomalies = await readAnomalies(sql, caps, observed);
  return {
    spacing,
    source,
    step,
    minutes: minutes.length,
    scores,
    anomalies: anomalies.map(({ id: _id, detectedMs: _d, firstSeenMs: _f, observedMs: _o, ...a }) => a),
    wallSeconds: (performance.now() - started) / 1000,
  };
}
