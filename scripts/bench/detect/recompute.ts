// scripts/bench/detect/recompute.ts — the "full recompute" side of `npm run bench:detect`: what it costs to rebuild
// the baselines from raw history instead of keeping them incrementally. Set-based, the best case for a recompute:
// the seasonal profiles (day and week slots: count, mean, m2 by GROUP BY) and the EWMA mean/variance (closed form,
// exponentially weighted sums by GROUP BY) of every series from 7 days of minute points, written as indexed tables.
// Holt level/trend and CUSUM are recursive and have no set-based form; they are left out (a lower bound). It runs
// with work_mem 64MB, as a batch job would set for itself (at the 4MB default every aggregate spills to disk).
//
// 7 days of points for every series do not fit a benchmark run beyond ~1k operations (10k operations = 500M
// points), so the history is measured on a budget of points: 7 days for all series when that fits, else 1 day for as
// many series as fit, and the time is scaled linearly to 7 days x all series (reported as extrapolated).
import type { Sql } from "./state.ts";

export interface Recompute {
  /** Measured seconds for the sample (profiles + state, each built and indexed). */
  measuredSeconds: number;
  /** Estimated seconds for 7 days of every series (= measured when nothing was extrapolated). */
  seconds: number;
  days: number;
  series: number;
  seriesTotal: number;
  points: number;
  extrapolated: boolean;
}

export async function fullRecompute(
  sql: Sql,
  t0: Date,
  budgetPoints: number,
  log: (line: string) => void,
): Promise<Recompute> {
  const [{ total }] = await sql<{ total: number }[]>`select count(*)::int as total from bench.series_stats`;
  const [cfg] = await sql<{ alpha: number; slot: number }[]>`
    select (anomaly.config('detect.baseline') ->> 'ewma_alpha')::float8 as alpha,
           (anomaly.config('detect.baseline') ->> 'day_slot_minutes')::int as slot`;
  const full = total * 7 * 1440 <= budgetPoints;
  const days = full ? 7 : 1;
  const series = full ? total : Math.max(1, Math.min(total, Math.floor(budgetPoints / 1440)));
  const started = performance.now();
  const [{ points }] = await sql<{ points: number }[]>`
    select bench.fill_history(${t0}, ${days}, ${series})::float8 as points`;
  await sql`alter table bench.history set (autovacuum_enabled = false)`;
  await sql`vacuum (analyze) bench.history`;
  log(
    `  history for the recompute: ${days} day(s) x ${series.toLocaleString("en-US")} series = ` +
      `${points.toLocaleString("en-US")} points (${((performance.now() - started) / 1000).toFixed(1)} s)`,
  );

  // Weights (1-alpha)^age underflow to an error in Postgres far out; beyond e^-700 they are 0 anyway.
  const maxAge = Math.floor(700 / -Math.log(1 - cfg.alpha));
  const asOf = new Date(t0.getTime() - 60_000);
  // A recompute is a batch job and would raise work_mem for itself; at the 4MB default every GROUP BY spills.
  await sql`set work_mem = '64MB'`;
  const t = performance.now();
  await sql.unsafe(`
    create table bench.rc_profiles as
    select series_id, 'day'::text as period, ((m % 1440) / ${cfg.slot})::smallint as slot,
           count(*) as n, avg(value) as mean, coalesce(var_pop(value), 0) * count(*) as m2
    from (select series_id, extract(epoch from bucket)::bigint / 60 as m, value from bench.history) h
    group by series_id, 3
    union all
    select series_id, 'week', ((((m / 1440) + 3) % 7) * 24 + (m % 1440) / 60)::smallint,
           count(*), avg(value), coalesce(var_pop(value), 0) * count(*)
    from (select series_id, extract(epoch from bucket)::bigint / 60 as m, value from bench.history) h
    group by series_id, 3`);
  await sql`alter table bench.rc_profiles add primary key (series_id, period, slot)`;
  await sql.unsafe(`
    create table bench.rc_state as
    select series_id, count(*) as n, max(bucket) as last_bucket, (array_agg(value order by bucket desc))[1] as last_value,
           sum(w * value) / sum(w) as ewma_mean,
           greatest(0, sum(w * value * value) / sum(w) - power(sum(w * value) / sum(w), 2)) as ewma_var
    from (select series_id, bucket, value,
                 case when age <= ${maxAge} then power(${1 - cfg.alpha}::float8, age) else 0 end as w
          from (select series_id, bucket, value, extract(epoch from '${asOf.toISOString()}'::timestamptz - bucket)::float8 / 60 as age
                from bench.history) a) h
    group by series_id`);
  await sql`alter table bench.rc_state add primary key (series_id)`;
  const measuredSeconds = (performance.now() - t) / 1000;
  await sql`reset work_mem`;
  await sql`drop table bench.rc_profiles, bench.rc_state`;
  await sql`truncate bench.history`;
  const scale = (7 / days) * (total / series);
  return {
    measuredSeconds,
    seconds: measuredSeconds * scale,
    days,
    series,
    seriesTotal: total,
    points,
    extrapolated: scale > 1.0001,
  };
}
