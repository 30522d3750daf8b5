// scripts/bench/detect/state.ts — the synthetic state of `npm run bench:detect`: what 7 days of minute history
// leave behind in the incremental detection engine, generated set-based in SQL instead of replaying the history.
//
// For N operations (OPS_PER_SERVICE per service) it writes anomaly.series (3 signals per operation, 4 per service,
// 2 per service edge: each service calls the next two),
// anomaly.series_state and anomaly.seasonal_profiles as 7 days of minutes would have left them (n = 10080, every
// day and week slot filled with Welford n/mean/m2), and the trailing window of anomaly.operation_minutes,
// anomaly.resource_minutes and anomaly.signal_points that the detectors read. New minutes for the timed cycles come
// from the same model (bench.load_minute), with incidents switched on for a few operations.
//
// Model, per operation: spans/minute log-uniform 2..300 times a diurnal load (x0.4 at 02:00 UTC, x1.6 at 14:00, x0.7
// at weekends) with +-15 % noise; median latency log-uniform 1..128 ms, lognormal spread (sigma 0.5) with a heavier
// top 3 %; error rate 0.05..2 %. Histograms are real rollup histograms ({"<log bucket>": count}, as many keys as a
// minute of that many spans fills), taken from a library (bench.hist_lib) so millions of rows cost no per-row
// aggregation; the signal points carry the exact p50/p95/p99 that anomaly.extract_signals reads from them.
// Everything scratch lives in the schema `bench` of the throwaway benchmark database.
import type postgres from "postgres";

export type Sql = postgres.Sql;

export const HISTORY_DAYS = 7;
export const OPS_PER_SERVICE = 20;
/** Largest span count per operation-minute the histogram library holds (the model stays below it). */
const MAX_SPANS = 640;

/** Once, in the template database: the bench schema, the model's functions and the histogram library. */
export async function installBenchSchema(sql: Sql): Promise<void> {
  await sql.unsafe(BENCH_SCHEMA).simple();
}

const BENCH_SCHEMA = `
create schema bench;
comment on schema bench is 'Scratch space of npm run bench:detect (scripts/bench/detect); not part of the product.';

-- uniform [0, 1) from an integer key: deterministic, so every run builds the same data
create function bench.u(p bigint) returns double precision
language sql immutable parallel safe
return (hashint8(p) & 2147483647)::double precision / 2147483648.0;

-- diurnal load of epoch minute p_minute: 0.4 at 02:00 UTC, 1.6 at 14:00, x0.7 on Saturday and Sunday
create function bench.load(p_minute bigint) returns double precision
language sql immutable parallel safe
return (1 + 0.6 * sin(2 * pi() * ((p_minute % 1440) - 480) / 1440.0))
       * case when ((p_minute / 1440) + 3) % 7 >= 5 then 0.7 else 1 end;

-- histogram shapes: n spans at lognormal positions (sigma 0.5 = 5.8 log buckets; logistic approximation of the
-- normal quantile), the top 3 % six buckets (x1.7) further out; offsets relative to the median bucket
create table bench.shape as
select n, off, count(*)::integer as cnt
from generate_series(1, ${MAX_SPANS}) n
cross join lateral (
  select round(3.2 * ln(p / (1 - p)) + case when p > 0.97 then 6 else 0 end)::integer as off
  from (select (i + 0.5)::double precision / n as p from generate_series(0, n - 1) i) s
) o
group by n, off;

-- p50/p95/p99 offsets with anomaly.histogram_quantile's rule: rank max(1, ceil(q * total)), first bucket reaching it
create table bench.shape_q (n integer primary key, q50 integer, q95 integer, q99 integer);
insert into bench.shape_q
select n, min(off) filter (where run >= greatest(1, ceil(0.50 * n))),
       min(off) filter (where run >= greatest(1, ceil(0.95 * n))),
       min(off) filter (where run >= greatest(1, ceil(0.99 * n)))
from (select n, off, sum(cnt) over (partition by n order by off) as run from bench.shape) s
group by n;

-- the library: one histogram per span count and median bucket (70 = 0.9 ms .. 170 = 2.5 s)
create table bench.hist_lib (n integer, c integer, hist jsonb not null, primary key (n, c));
insert into bench.hist_lib
select s.n, c, jsonb_object_agg((c + s.off)::text, s.cnt)
from bench.shape s cross join generate_series(70, 170) c
group by s.n, c;

create table bench.services (
  svc_id integer primary key, service text not null, version text not null, deploy_at timestamptz,
  sid_tp bigint, sid_err bigint, sid_cpu bigint, sid_mem bigint
);
-- incident: 0 none, 1 latency x4, 2 errors 40 %, 3 throughput x0.1, 4 silent (no spans)
create table bench.ops (
  op_id integer primary key, svc_id integer not null, service text not null, operation text not null,
  rate double precision not null, lat_c integer not null, err_p double precision not null, incident integer not null,
  sid_err bigint, sid_p95 bigint, sid_tp bigint
);
-- service edges: each service calls the next two (calls ~ a quarter of the caller's spans, errors alike)
create table bench.edges (
  caller_id integer not null, callee_id integer not null, caller text not null, callee text not null,
  sid_tp bigint, sid_err bigint, primary key (caller_id, callee_id)
);
create table bench.series_stats (
  series_id bigint primary key, signal text not null, points integer not null, mu double precision not null,
  var double precision not null, last_value double precision not null, lbar double precision not null
);
create unlogged table bench.history (like anomaly.signal_points);

-- The operations, services and every series of them (in anomaly.extract_signals' order), with p_incidents of the
-- operations spread evenly and cycling through the four incident kinds; a few services deploy a new version.
create function bench.populate(p_ops integer, p_ops_per_service integer, p_incidents integer, p_deploys integer,
                               p_t0 timestamptz, p_days integer)
returns void language plpgsql as $$
declare
  v_stride integer := greatest(1, p_ops / greatest(p_incidents, 1));
  v_services integer := (p_ops + p_ops_per_service - 1) / p_ops_per_service;
  v_deploy_stride integer := greatest(1, v_services / greatest(p_deploys, 1));
begin
  -- p_deploys services, spread evenly, rolled out a new version 20 minutes before p_t0
  insert into bench.services (svc_id, service, version, deploy_at)
  select s, format('svc-%s', lpad(s::text, 5, '0')), format('1.%s.%s', s % 17, s % 5),
         case when s % v_deploy_stride = 0 and s / v_deploy_stride <= p_deploys then p_t0 - interval '20 minutes' end
  from generate_series(1, v_services) s;

  insert into bench.edges (caller_id, callee_id, caller, callee)
  select c.svc_id, e.svc_id, c.service, e.service
  from bench.services c
  cross join generate_series(1, least(2, v_services - 1)) d
  join bench.services e on e.svc_id = (c.svc_id - 1 + d) % v_services + 1;

  insert into bench.ops (op_id, svc_id, service, operation, rate, lat_c, err_p, incident)
  select i, (i - 1) / p_ops_per_service + 1, format('svc-%s', lpad(((i - 1) / p_ops_per_service + 1)::text, 5, '0')),
         format('%s /api/v%s/r%s', (array['GET', 'POST', 'PUT', 'GET'])[1 + i % 4], 1 + i % 3,
                lpad(((i - 1) % p_ops_per_service + 1)::text, 3, '0')),
         exp(ln(2) + bench.u(i * 16 + 1) * ln(150)), 80 + floor(bench.u(i * 16 + 2) * 57)::integer,
         0.0005 + 0.02 * power(bench.u(i * 16 + 3), 2),
         case when p_incidents > 0 and i % v_stride = 0 and i / v_stride <= p_incidents
              then 1 + (i / v_stride) % 4 else 0 end
  from generate_series(1, p_ops) i;

  insert into anomaly.series (scope, service, operation, signal, first_bucket, last_active_bucket)
  select * from (
    select 'operation', o.service, o.operation, s.signal, p_t0 - make_interval(days => p_days),
           p_t0 - interval '1 minute'
    from bench.ops o
    cross join unnest(array['latency_p95', 'error_rate', 'throughput']) s(signal)
    union all
    select 'service', v.service, '', s.signal, p_t0 - make_interval(days => p_days), p_t0 - interval '1 minute'
    from bench.services v cross join unnest(array['throughput', 'error_rate', 'cpu', 'memory']) s(signal)
    union all
    select 'edge', e.caller, '→ ' || e.callee, s.signal, p_t0 - make_interval(days => p_days),
           p_t0 - interval '1 minute'
    from bench.edges e cross join unnest(array['throughput', 'error_rate']) s(signal)
  ) x (scope, service, operation, signal, first_bucket, last_active_bucket)
  order by 1, 2, 3, 4;

  update bench.ops o set sid_err = m.err, sid_p95 = m.p95, sid_tp = m.tp
  from (select service, operation, max(id) filter (where signal = 'error_rate') as err,
               max(id) filter (where signal = 'latency_p95') as p95, max(id) filter (where signal = 'throughput') as tp
        from anomaly.series where scope = 'operation' group by 1, 2) m
  where m.service = o.service and m.operation = o.operation;
  update bench.services v set sid_tp = m.tp, sid_err = m.err, sid_cpu = m.cpu, sid_mem = m.mem
  from (select service, max(id) filter (where signal = 'throughput') as tp,
               max(id) filter (where signal = 'error_rate') as err, max(id) filter (where signal = 'cpu') as cpu,
               max(id) filter (where signal = 'memory') as mem
        from anomaly.series where scope = 'service' group by 1) m
  where m.service = v.service;
  update bench.edges e set sid_tp = m.tp, sid_err = m.err
  from (select service, operation, max(id) filter (where signal = 'throughput') as tp,
               max(id) filter (where signal = 'error_rate') as err
        from anomaly.series where scope = 'edge' group by 1, 2) m
  where m.service = e.caller and m.operation = '→ ' || e.callee;
  analyze bench.ops;
  analyze bench.edges;
  analyze bench.services;
end
$$;

-- One minute of rollups as anomaly.rollup() would have written it (operation, resource and edge minutes), and with
-- p_points its signal points as anomaly.extract_signals would have (for the history window; the timed cycles
-- extract their own). p_incidents switches the incidents on. Returns the operation-minutes written.
create function bench.load_minute(p_bucket timestamptz, p_incidents boolean, p_points boolean)
returns integer language plpgsql as $$
declare
  v_m bigint := extract(epoch from p_bucket)::bigint / 60;
  v_load double precision := bench.load(extract(epoch from p_bucket)::bigint / 60);
  v_rows integer;
begin
  with g as materialized (
    select o.op_id, o.svc_id, o.service, o.operation, o.sid_err, o.sid_p95, o.sid_tp,
           case when v.deploy_at is not null and p_bucket >= v.deploy_at then v.version || '-r2' else v.version end
             as version,
           nn.n, cc.c, cc.k,
           power(2::double precision, (cc.c + q.q50 - 0.5) / 8.0) / 1000.0 as p50,
           power(2::double precision, (cc.c + q.q95 - 0.5) / 8.0) / 1000.0 as p95,
           power(2::double precision, (cc.c + q.q99 - 0.5) / 8.0) / 1000.0 as p99,
           lpad(to_hex(o.op_id), 16, '0') || lpad(to_hex(v_m), 16, '0') as tid,
           lpad(to_hex(o.op_id::bigint * 7919 + v_m), 16, '0') as spid
    from bench.ops o
    join bench.services v on v.svc_id = o.svc_id
    cross join lateral (select (o.op_id::bigint * 1000003 + v_m) * 8 as x, p_incidents and o.incident > 0 as inc) a
    cross join lateral (
      select least(${MAX_SPANS}, greatest(1, round(o.rate * v_load * (0.85 + 0.3 * bench.u(a.x + 1)))))::integer as base
    ) b
    cross join lateral (
      select case when a.inc and o.incident = 3 then greatest(1, b.base / 10) else b.base end as n
    ) nn
    cross join lateral (
      select o.lat_c + floor(3 * bench.u(a.x + 2))::integer - 1 + case when v_load > 1.3 then 1 else 0 end
             + case when a.inc and o.incident = 1 then 16 else 0 end as c,
             case when a.inc and o.incident = 2 then ceil(nn.n * 0.4)::integer
                  else least(nn.n, floor(nn.n * o.err_p * 2 * bench.u(a.x + 3) + bench.u(a.x + 4))::integer) end as k
    ) cc
    join bench.shape_q q on q.n = nn.n
    where not (a.inc and o.incident = 4)
  ),
  om as (
    insert into anomaly.operation_minutes (service_name, operation, bucket, span_count, error_count, http_5xx_count,
      duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram, latency_p95_ms, versions,
      slowest_trace_id, slowest_span_id, error_trace_id, error_span_id, updated_at)
    select g.service, g.operation, p_bucket, g.n, g.k, g.k / 2, g.n * g.p50 * 1.3, g.p50 / 3, g.p99 * 1.5, l.hist,
           g.p95, jsonb_build_object(g.version, g.n), g.tid, g.spid, case when g.k > 0 then g.tid end,
           case when g.k > 0 then g.spid end, p_bucket + interval '90 seconds'
    from g join bench.hist_lib l on l.n = g.n and l.c = g.c
    returning 1
  ),
  op_points as (
    insert into anomaly.signal_points (series_id, bucket, value, n, k)
    select s.series_id, p_bucket, s.value, g.n, s.k
    from g cross join lateral (values
      (g.sid_p95, g.p95, null::integer),
      (g.sid_err, g.k::double precision / g.n, g.k), (g.sid_tp, g.n::double precision, null)
    ) s (series_id, value, k)
    where p_points
    returning 1
  ),
  res as (
    insert into anomaly.resource_minutes (service_name, bucket, samples, cpu_utilization_avg, cpu_utilization_max,
      memory_usage_avg, memory_usage_max, updated_at)
    select v.service, p_bucket, 6, r.cpu, least(1, r.cpu * 1.3), r.mem, r.mem * 1.08, p_bucket + interval '90 seconds'
    from bench.services v
    cross join lateral (
      select least(1, (0.1 + 0.4 * bench.u(v.svc_id * 16 + 5)) * v_load / 1.6
                      * (0.95 + 0.1 * bench.u((v.svc_id::bigint * 1000003 + v_m) * 8 + 6))) as cpu,
             (2e8 + 8e8 * bench.u(v.svc_id * 16 + 7)) * (0.98 + 0.04 * bench.u((v.svc_id::bigint * 1000003 + v_m) * 8 + 7))
               as mem
    ) r
    returning service_name, samples, cpu_utilization_avg, memory_usage_avg
  ),
  svc as (
    select svc_id, sum(n)::integer as n, sum(k)::integer as k from g group by svc_id
  ),
  edge_calls as (
    select e.caller, e.callee, e.sid_tp, e.sid_err, c.calls, least(c.calls, ceil(t.k * 0.25))::integer as errors
    from bench.edges e join svc t on t.svc_id = e.caller_id
    cross join lateral (select greatest(1, ceil(t.n * 0.25))::integer as calls) c
  ),
  edge_minutes as (
    insert into anomaly.service_edge_minutes (caller_service, callee_service, bucket, call_count, error_count,
      duration_sum_ms)
    select caller, callee, p_bucket, calls, errors, calls * 20.0 from edge_calls
    returning 1
  ),
  edge_points as (
    insert into anomaly.signal_points (series_id, bucket, value, n, k)
    select s.series_id, p_bucket, s.value, c.calls, s.k
    from edge_calls c
    cross join lateral (values (c.sid_tp, c.calls::double precision, null::integer),
                               (c.sid_err, c.errors::double precision / c.calls, c.errors)) s (series_id, value, k)
    where p_points
    returning 1
  ),
  svc_points as (
    insert into anomaly.signal_points (series_id, bucket, value, n, k)
    select s.series_id, p_bucket, s.value, s.n, s.k
    from svc t
    join bench.services v using (svc_id)
    cross join lateral (values (v.sid_tp, t.n::double precision, t.n, null::integer),
                               (v.sid_err, t.k::double precision / t.n, t.n, t.k)) s (series_id, value, n, k)
    where p_points
    union all
    select s.series_id, p_bucket, s.value, r.samples, null
    from res r join bench.services v on v.service = r.service_name
    cross join lateral (values (v.sid_cpu, r.cpu_utilization_avg), (v.sid_mem, r.memory_usage_avg)) s (series_id, value)
    where p_points
    returning 1
  )
  select count(*) into v_rows from om;
  return v_rows;
end
$$;

-- Per series, what the trailing window says (level, spread, last value, mean load): the seed of the baselines.
create function bench.collect_stats(p_last timestamptz) returns void language sql as $$
  insert into bench.series_stats (series_id, signal, points, mu, var, last_value, lbar)
  select a.series_id, s.signal, a.points, a.mu, a.var, coalesce(l.value, a.mu), a.lbar
  from (select series_id, count(*)::integer as points, avg(value) as mu, coalesce(var_samp(value), 0) as var,
               avg(bench.load(extract(epoch from bucket)::bigint / 60)) as lbar
        from anomaly.signal_points group by series_id) a
  join anomaly.series s on s.id = a.series_id
  left join anomaly.signal_points l on l.series_id = a.series_id and l.bucket = p_last
  order by a.series_id;
$$;

-- anomaly.series_state as p_days of minutes up to p_t0 - 1 minute leave it: n, last value, EWMA mean/variance and
-- Holt level at the current level (throughput scaled by the diurnal load), no trend, CUSUM at rest, the rolling
-- window from the loaded points; and the cursors.
create function bench.fill_state(p_t0 timestamptz, p_days integer) returns void language plpgsql as $$
declare
  v_now_load double precision := bench.load(extract(epoch from p_t0)::bigint / 60 - 1);
begin
  insert into anomaly.series_state (series_id, n, last_bucket, last_value, ewma_mean, ewma_var, holt_level, holt_trend,
    cusum_pos, cusum_neg)
  select st.series_id, p_days * 1440, p_t0 - interval '1 minute', st.last_value, st.mu * f.f, st.var * f.f * f.f,
         st.mu * f.f, 0, 0, 0
  from bench.series_stats st
  cross join lateral (select case when st.signal = 'throughput' then v_now_load / st.lbar else 1 end as f) f
  order by st.series_id;

  -- the rolling trailing window (count, sum, sum of squares; errors and spans with their products) of the last
  -- window_minutes points, as folding leaves it
  update anomaly.series_state st set win_points = w.points, win_sum = w.sum, win_sumsq = w.sumsq, win_k = w.k,
    win_n = w.n, win_kk = w.kk, win_kn = w.kn, win_nn = w.nn
  from (select series_id, count(*)::integer as points, sum(value) as sum, sum(value * value) as sumsq,
               sum(coalesce(k, 0))::float8 as k, sum(n)::float8 as n, sum(coalesce(k, 0)::float8 * coalesce(k, 0)) as kk,
               sum(coalesce(k, 0)::float8 * n) as kn, sum(n::float8 * n) as nn
        from anomaly.signal_points
        where bucket > p_t0 - interval '1 minute'
                       - make_interval(mins => (anomaly.config('detect.baseline') ->> 'window_minutes')::integer)
          and bucket <= p_t0 - interval '1 minute' and n > 0
        group by 1) w
  where w.series_id = st.series_id;

  insert into anomaly.detector_state (detector, last_bucket) values
    ('engine', p_t0 - interval '1 minute'), ('signals', p_t0 - interval '1 minute'),
    ('window', p_t0 - interval '1 minute')
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();
  update anomaly.rollup_state set max_event_time = p_t0, watermark = p_t0, last_run_at = now();
end
$$;

-- One seasonal slot of every series as p_days of minutes leave it (Welford n, mean, m2): a day slot of
-- p_slot_minutes gets p_slot_minutes samples a day, an hour-of-week slot 60 a week; throughput follows the load.
create function bench.fill_slot(p_period text, p_slot integer, p_slot_minutes integer, p_days integer)
returns void language plpgsql as $$
declare
  v_monday bigint := 4 * 1440; -- epoch minute of Monday 1970-01-05 00:00 UTC
  v_n integer;
  v_load double precision;
begin
  if p_period = 'day' then
    v_n := p_days * p_slot_minutes;
    select avg(bench.load(v_monday + d * 1440 + p_slot * p_slot_minutes + p_slot_minutes / 2))
      into v_load from generate_series(0, p_days - 1) d;
  else
    v_n := 60 * greatest(1, p_days / 7);
    v_load := bench.load(v_monday + p_slot * 60 + 30);
  end if;
  insert into anomaly.seasonal_profiles (series_id, period, slot, n, mean, m2)
  select st.series_id, p_period, p_slot, v_n, st.mu * f.f, (v_n - 1) * st.var * f.f * f.f
  from bench.series_stats st
  cross join lateral (select case when st.signal = 'throughput' then v_load / st.lbar else 1 end as f) f
  order by st.series_id;
end
$$;

-- Raw history for the full recompute: p_days of minutes up to p_t0 - 1 minute for the first p_series series.
create function bench.fill_history(p_t0 timestamptz, p_days integer, p_series integer) returns bigint
language plpgsql as $$
declare
  v_rows bigint;
begin
  with st as materialized (
    select s.series_id, s.signal, s.mu, s.lbar
    from bench.series_stats s order by s.series_id limit p_series
  ),
  b as materialized (
    select bucket, extract(epoch from bucket)::bigint / 60 as m
    from generate_series(p_t0 - make_interval(days => p_days), p_t0 - interval '1 minute', interval '1 minute') bucket
  )
  insert into bench.history (series_id, bucket, value, n, k)
  select st.series_id, b.bucket,
         st.mu * case when st.signal = 'throughput' then bench.load(b.m) / st.lbar else 1 end
               * (0.9 + 0.2 * bench.u(st.series_id * 1000003 + b.m)),
         10, case when st.signal = 'error_rate' then 0 end
  from b cross join st;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;
`;

export interface Population {
  operations: number;
  services: number;
  signalSeries: number;
  incidents: number;
  deployingServices: number;
}

/** Operations, services, their series and the incident plan (done before any minute is loaded). */
/**
 * Operations, services, their series and the incident plan (done before any minute is loaded). Incidents: "a
 * handful", 8 at 1k operations and 4 per thousand above, cycling latency/error/drop/silence. Deploys: 4 % of the
 * services rolled out a new version 20 minutes before the first timed minute, at most 10 services (200 operations)
 * unless `deploys` says otherwise: rollouts are events of a team, not of the series count.
 */
export async function populate(sql: Sql, ops: number, t0: Date, deploys?: number): Promise<Population> {
  const incidents = Math.max(8, Math.round((ops / 1000) * 4));
  const services = Math.ceil(ops / OPS_PER_SERVICE);
  const deploying = deploys ?? Math.min(10, Math.ceil(services * 0.04));
  await sql`select bench.populate(${ops}, ${OPS_PER_SERVICE}, ${incidents}, ${deploying}, ${t0}, ${HISTORY_DAYS})`;
  const [r] = await sql<{ services: number; series: number; incidents: number; deploying: number }[]>`
    select (select count(*)::int from bench.services) as services, (select count(*)::int from anomaly.series) as series,
           (select count(*)::int from bench.ops where incident > 0) as incidents,
           (select count(*)::int from bench.services where deploy_at is not null) as deploying`;
  return {
    operations: ops,
    services: r.services,
    signalSeries: r.series,
    incidents: r.incidents,
    deployingServices: r.deploying,
  };
}

/** A table's own indexes and constraints, so a bulk load can drop them and rebuild them afterwards (by sort). */
async function detachIndexes(sql: Sql, table: string): Promise<() => Promise<void>> {
  const referenced = await sql`select 1 from pg_constraint where confrelid = ${table}::regclass`;
  if (referenced.length > 0) return () => Promise.resolve(); // another table points at it: load with indexes
  const constraints = await sql<{ name: string; def: string; type: string }[]>`
    select conname as name, pg_get_constraintdef(oid) as def, contype as type
    from pg_constraint where conrelid = ${table}::regclass and contype in ('p', 'u', 'f', 'x')
    order by contype = 'f', conname`;
  const indexes = await sql<{ name: string; def: string }[]>`
    select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
    from pg_index i
    where i.indrelid = ${table}::regclass
      and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.conrelid = i.indrelid)`;
  for (const c of [...constraints].reverse()) {
    await sql.unsafe(`alter table ${table} drop constraint ${c.name}`);
  }
  for (const i of indexes) await sql.unsafe(`drop index ${i.name}`);
  return async () => {
    for (const i of indexes) await sql.unsafe(i.def);
    for (const c of constraints) await sql.unsafe(`alter table ${table} add constraint ${c.name} ${c.def}`);
  };
}

/** Runs `tasks` on `sql` with at most `concurrency` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], concurrency: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  }));
  return results;
}

export interface BuiltState {
  windowMinutes: number;
  operationMinutes: number;
  signalPoints: number;
  profileRows: number;
  seconds: number;
  sizeBytes: number;
}

/**
 * The trailing window (rollups and signal points), then baselines as 7 days leave them: series_state, and every
 * day and week slot of the seasonal profiles. Written the way the engine grows them physically (minute after minute,
 * slot after slot), loaded without indexes and indexed afterwards, then analyzed (see "settle" below) and a
 * CHECKPOINT, so the timed cycles start from a settled database (as a long-running one is), not from a bulk load's
 * aftermath.
 * `sql` should allow 2 connections (both CPUs load).
 */
export async function buildState(
  sql: Sql,
  t0: Date,
  windowMinutes: number,
  slotMinutes: number,
  log: (line: string) => void,
): Promise<BuiltState> {
  const started = performance.now();
  const window = ["anomaly.operation_minutes", "anomaly.signal_points"];
  const restoreWindow: (() => Promise<void>)[] = [];
  for (const table of window) restoreWindow.push(await detachIndexes(sql, table));
  const minutes = Array.from(
    { length: windowMinutes },
    (_, i) => new Date(t0.getTime() - (windowMinutes - i) * 60_000),
  );
  await pool(minutes.map((m) => () => sql`select bench.load_minute(${m}, false, true)`), 2);
  await Promise.all(restoreWindow.map((restore) => restore()));
  log(`  window: ${windowMinutes} minutes of rollups and signal points, indexed (${fmtS(started)})`);

  await sql`select bench.collect_stats(${new Date(t0.getTime() - 60_000)})`;
  await sql`analyze bench.series_stats`;
  await sql`select bench.fill_state(${t0}, ${HISTORY_DAYS})`;
  const restoreProfiles = await detachIndexes(sql, "anomaly.seasonal_profiles");
  const slots = [
    ...Array.from({ length: Math.ceil(1440 / slotMinutes) }, (_, s) => ["day", s] as const),
    ...Array.from({ length: 168 }, (_, s) => ["week", s] as const),
  ];
  await pool(
    slots.map(([period, slot]) => () =>
      sql`select bench.fill_slot(${period}, ${slot}, ${slotMinutes}, ${HISTORY_DAYS})`
    ),
    2,
  );
  await restoreProfiles();
  log(`  baselines: series_state, ${slots.length} seasonal slots per series, indexed (${fmtS(started)})`);

  // Settle as a long-running database is: the small, update-heavy tables vacuumed (autovacuum gets to them every
  // few minutes); the bulk tables only analyzed, with autovacuum off for the run. Production vacuums signal_points
  // and operation_minutes about every 20 % of their rows (days), so recent points are not all-visible and the
  // covering index still visits the heap, as here; and a post-load vacuum of gigabytes must not run in the cycles.
  const bulk = [...window, "anomaly.seasonal_profiles"];
  for (const table of bulk) await sql.unsafe(`alter table ${table} set (autovacuum_enabled = false)`);
  const small = [
    "anomaly.series",
    "anomaly.series_state",
    "anomaly.resource_minutes",
    "anomaly.service_edge_minutes",
    "anomaly.detector_state",
  ];
  await pool(
    [
      ...bulk.map((t) => `analyze ${t}`),
      ...[...small, "anomaly.rollup_state"].map((t) => `vacuum (analyze) ${t}`),
    ]
      .map((command) => () => sql.unsafe(command)),
    2,
  );
  await sql`checkpoint`.catch(() => {}); // needs superuser or pg_checkpoint; without it the run is only noisier
  const [r] = await sql<{ om: number; sp: number; prof: number; bytes: number }[]>`
    select (select count(*)::int from anomaly.operation_minutes) as om,
           (select count(*)::int from anomaly.signal_points) as sp,
           (select count(*)::int from anomaly.seasonal_profiles) as prof,
           pg_database_size(current_database())::float8 as bytes`;
  log(`  settled: analyze, vacuum of the small tables, checkpoint (${fmtS(started)})`);
  return {
    windowMinutes,
    operationMinutes: r.om,
    signalPoints: r.sp,
    profileRows: r.prof,
    seconds: (performance.now() - started) / 1000,
    sizeBytes: r.bytes,
  };
}

/** Rollups of one new minute for every operation, incidents on (what anomaly.rollup() leaves before a cycle). */
export async function loadMinute(sql: Sql, bucket: Date): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select bench.load_minute(${bucket}, true, false) as n`;
  return r.n;
}

/**
 * A partial outage in the minute just loaded: every `every`-th service sends nothing (its operation, resource and
 * edge minutes are removed; data-modifying CTEs run whether read or not), while the watermark still advances.
 * Returns the operations silenced.
 */
export async function silenceServices(sql: Sql, bucket: Date, every: number): Promise<number> {
  const [r] = await sql<{ n: number }[]>`
    with silent as (select service from bench.services where svc_id % ${every} = 0),
    ops as (
      delete from anomaly.operation_minutes m using silent s where m.bucket = ${bucket} and m.service_name = s.service
      returning 1
    ),
    res as (
      delete from anomaly.resource_minutes m using silent s where m.bucket = ${bucket} and m.service_name = s.service
    ),
    edges as (
      delete from anomaly.service_edge_minutes e using silent s
      where e.bucket = ${bucket} and (e.caller_service = s.service or e.callee_service = s.service)
    )
    select count(*)::int as n from ops`;
  return r.n;
}

function fmtS(started: number): string {
  return `${((performance.now() - started) / 1000).toFixed(1)} s`;
}
