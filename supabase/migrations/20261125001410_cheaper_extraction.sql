-- 20261125001410_cheaper_extraction.sql — anomaly.extract_signals does less per minute, same points.
-- Measured on bench:detect's 10k-operation state (extraction was 0.60 s of a 1.72 s cycle):
--   * p95 of every operation-minute was read back from its jsonb histogram by anomaly.histogram_rank_ms, 10,000
--     plpgsql calls a minute (~0.12 s). The rollup now stores it when it writes the row: anomaly.rollup() has the
--     minute's durations in hand, and the bucket of the ceil(0.95 n)-th smallest is the first bucket whose running
--     count reaches that rank — the same rule and the same bucket-middle value as histogram_rank_ms, so the points
--     are identical. For rows written without it (Tempo metrics mode, a user's backfill) and updates that change the
--     histogram but not the p95, a trigger reads it from the histogram, so it is never missing or stale; rows rolled
--     up before this migration keep a NULL and extraction computes theirs as before.
--   * anomaly.rollup() joins its per-key aggregates (counts, histogram, versions, exemplars) on one key value
--     instead of three columns: with three, their row estimates multiplied down to 1 and the planner nested-looped
--     the joins, re-running an aggregate per operation-minute. A first rollup after install (no statistics) took
--     1.6 s for the smoke demo's 2,250 series-minutes (quadratic: a larger backlog takes minutes), and adding p95
--     to the statement tipped it to 105 s; on one key it is 1.3 s with p95 (hash joins).
--   * the minute's keys were looked up in anomaly.series one index probe at a time (the planner expects 200 keys
--     from the grouped CTE and picks a nested loop): 34,000 probes, ~70 ms. extract_signals now plans with
--     enable_nestloop off, so the keys meet the series table in a hash join (every other join in it is a hash or
--     merge join already).

alter table anomaly.operation_minutes add column latency_p95_ms double precision
  constraint operation_minutes_p95_check check (latency_p95_ms >= 0);
comment on column anomaly.operation_minutes.latency_p95_ms is
  'p95 of the minute''s durations in ms as anomaly.histogram_rank_ms reads it from latency_histogram (rank ceil(0.95 '
  'n), bucket middle), stored by anomaly.rollup() (by a trigger for other writers); NULL only in rows written before '
  '20261125001410 (readers fall back to the histogram).';

create function anomaly.tg_operation_minutes__p95()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.latency_p95_ms := anomaly.histogram_rank_ms(new.latency_histogram,
                                                  greatest(1, ceil(0.95 * new.span_count))::bigint);
  return new;
end
$$;
comment on function anomaly.tg_operation_minutes__p95() is
  'Before insert or update on anomaly.operation_minutes, for rows whose writer did not compute latency_p95_ms (it is '
  'NULL, or the histogram changed and it did not): reads it from the histogram, so the stored p95 is never missing '
  'or stale (Tempo metrics mode, a user''s backfill). anomaly.rollup() computes it itself: no call for its rows.';
create trigger operation_minutes__p95_on_insert
before insert on anomaly.operation_minutes
for each row when (new.latency_p95_ms is null)
execute function anomaly.tg_operation_minutes__p95();
create trigger operation_minutes__p95_on_update
before update on anomaly.operation_minutes
for each row when (new.latency_p95_ms is null
                   or (new.latency_histogram is distinct from old.latency_histogram
                       and new.latency_p95_ms is not distinct from old.latency_p95_ms))
execute function anomaly.tg_operation_minutes__p95();

-- ============================================================== the rollup stores p95
create or replace function anomaly.rollup()
returns anomaly.rollup_result
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_cfg jsonb := anomaly.config('rollup');
  v_lateness interval := make_interval(secs => (v_cfg ->> 'allowed_lateness_seconds')::integer);
  v_idle interval := make_interval(secs => (v_cfg ->> 'trace_idle_seconds')::integer);
  v_limit integer := (v_cfg ->> 'max_dirty_keys_per_run')::integer;
  v_result anomaly.rollup_result;
  v_max_event timestamptz;
  v_state anomaly.rollup_state;
begin
  -- One rollup at a time; a second caller returns at once and the next tick catches up.
  if not pg_try_advisory_xact_lock(hashtext('anomaly.rollup')) then
    select 0, 0, 0, 0, watermark into v_result from anomaly.rollup_state;
    return v_result;
  end if;

  -- Autovacuum never analyzes a partitioned parent, and without any statistics the planner nested-loops the
  -- claimed minutes against the spans (45 s instead of 0.4 s for 680 series-minutes, measured). Analyze it once
  -- here when it has never been analyzed; the hourly retention job keeps the statistics fresh after that.
  if (select c.reltuples < 0 from pg_catalog.pg_class c where c.oid = 'anomaly.spans'::regclass) then
    analyze anomaly.spans;
  end if;

  -- ---------------------------------------------------------- operation and resource minutes
  with claimed as (
    delete from anomaly.rollup_dirty d
    where (d.bucket, d.service_name, d.operation) in (
      select bucket, service_name, operation from anomaly.rollup_dirty
      order by bucket limit v_limit for update skip locked)
    returning d.bucket, d.service_name, d.operation
  ),
  -- k, the (minute, service, operation) key as one value: the per-key aggregates below are joined on it. Joined on
  -- three columns, their row estimates multiplied to 1 and the planner nested-looped the joins, re-running an
  -- aggregate per operation-minute (quadratic: a first rollup without statistics took 1.6 s for 2,250 keys, and
  -- 105 s once p95 was added to it); on one column it hash-joins them.
  spans as materialized (
    select c.bucket, s.service_name, s.name as operation, s.trace_id, s.span_id, s.status_code,
           s.http_status_code, s.service_version, s.start_time, s.duration_ns / 1e6::double precision as ms,
           anomaly.latency_bucket(s.duration_ns / 1e6::double precision) as b,
           array[c.bucket::text, s.service_name, s.name] as k
    from claimed c
    join anomaly.spans s
      on s.service_name = c.service_name and s.name = c.operation
     and s.start_time >= c.bucket and s.start_time < c.bucket + interval '1 minute'
  ),
  agg as (
    select k, bucket, service_name, operation, count(*)::integer as span_count,
           (count(*) filter (where status_code = 2))::integer as error_count,
           (count(*) filter (where http_status_code >= 500))::integer as http_5xx_count,
           sum(ms) as duration_sum_ms, min(ms) as duration_min_ms, max(ms) as duration_max_ms,
           max(start_time) as max_start,
           -- p95 as the histogram gives it (anomaly.histogram_rank_ms): the bucket of the ceil(0.95 n)-th smallest
           -- duration (buckets grow with durations), at its middle
           power(2::double precision,
                 ((array_agg(b order by ms))[greatest(1, ceil(0.95 * count(*)))::integer]
                  - 0.5) / 8.0) / 1000.0 as p95_ms
    from spans group by k, bucket, service_name, operation
  ),
  hist as (
    select k, jsonb_object_agg(b, n) as histogram
    from (select k, b, count(*) as n from spans group by 1, 2) x
    group by k
  ),
  vers as (
    select k, jsonb_object_agg(v, n) as versions
    from (select k, coalesce(service_version, '') as v, count(*) as n from spans group by 1, 2) x
    group by k
  ),
  slowest as (
    select distinct on (k) k, trace_id, span_id from spans order by k, ms desc, trace_id
  ),
  errored as (
    select distinct on (k) k, trace_id, span_id from spans where status_code = 2 order by k, ms desc, trace_id
  ),
  ops_upserted as (
    insert into anomaly.operation_minutes as o (
      service_name, operation, bucket, span_count, error_count, http_5xx_count, duration_sum_ms,
      duration_min_ms, duration_max_ms, latency_histogram, latency_p95_ms, versions, slowest_trace_id,
      slowest_span_id, error_trace_id, error_span_id, updated_at)
    select a.service_name, a.operation, a.bucket, a.span_count, a.error_count, a.http_5xx_count, a.duration_sum_ms,
           a.duration_min_ms, a.duration_max_ms, h.histogram, a.p95_ms, v.versions, sl.trace_id, sl.span_id,
           er.trace_id, er.span_id, now()
    from agg a
    join hist h using (k)
    join vers v using (k)
    join slowest sl using (k)
    left join errored er using (k)
    order by a.service_name, a.operation, a.bucket
    on conflict (service_name, operation, bucket) do update set
      span_count = excluded.span_count, error_count = excluded.error_count,
      http_5xx_count = excluded.http_5xx_count, duration_sum_ms = excluded.duration_sum_ms,
      duration_min_ms = excluded.duration_min_ms, duration_max_ms = excluded.duration_max_ms,
      latency_histogram = excluded.latency_histogram, latency_p95_ms = excluded.latency_p95_ms,
      versions = excluded.versions,
      slowest_trace_id = excluded.slowest_trace_id, slowest_span_id = excluded.slowest_span_id,
      error_trace_id = excluded.error_trace_id, error_span_id = excluded.error_span_id, updated_at = now()
    returning 1
  ),
  touched as (
    select distinct bucket, service_name from claimed
  ),
  resource_samples as (
    select t.bucket, t.service_name,
           coalesce(s.attributes ->> 'process.cpu.utilization', s.resource_attributes ->> 'process.cpu.utilization') as cpu,
           coalesce(s.attributes ->> 'process.memory.usage', s.resource_attributes ->> 'process.memory.usage') as mem
    from touched t
    join anomaly.spans s
      on s.service_name = t.service_name
     and s.start_time >= t.bucket and s.start_time < t.bucket + interval '1 minute'
  ),
  numeric_samples as (
    select bucket, service_name,
           case when cpu ~ '^-?[0-9.]+(e-?[0-9]+)?$' then cpu::double precision end as cpu,
           case when mem ~ '^-?[0-9.]+(e-?[0-9]+)?$' then mem::double precision end as mem
    from resource_samples where cpu is not null or mem is not null
  ),
  res_upserted as (
    insert into anomaly.resource_minutes as r (service_name, bucket, samples, cpu_utilization_avg,
      cpu_utilization_max, memory_usage_avg, memory_usage_max, updated_at)
    select service_name, bucket, count(*), avg(cpu), max(cpu), avg(mem), max(mem), now()
    from numeric_samples group by service_name, bucket
    order by service_name, bucket
    on conflict (service_name, bucket) do update set
      samples = excluded.samples, cpu_utilization_avg = excluded.cpu_utilization_avg,
      cpu_utilization_max = excluded.cpu_utilization_max, memory_usage_avg = excluded.memory_usage_avg,
      memory_usage_max = excluded.memory_usage_max, updated_at = now()
    returning 1
  )
  select (select count(*) from ops_upserted), (select count(*) from res_upserted), (select max(max_start) from agg)
  into v_result.series_minutes, v_result.resource_minutes, v_max_event;

  -- ---------------------------------------------------------- watermark
  update anomaly.rollup_state set
    max_event_time = greatest(max_event_time, v_max_event),
    watermark = greatest(max_event_time, v_max_event) - v_lateness,
    last_run_at = now()
  returning * into v_state;

  -- ---------------------------------------------------------- finished traces: features and edges
  with finished as (
    delete from anomaly.open_traces t
    where t.trace_id in (
      select trace_id from anomaly.open_traces
      where last_ingested_at < now() - v_idle
         or last_end < v_state.max_event_time - v_idle
      limit v_limit for update skip locked)
    returning t.trace_id, t.first_start, t.last_end
  ),
  tspans as materialized (
    select s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, s.status_code,
           s.http_status_code, s.start_time, s.end_time, s.duration_ns / 1e6::double precision as ms
    from finished f
    join anomaly.spans s on s.trace_id = f.trace_id and s.start_time between f.first_start and f.last_end
  ),
  roots as (
    -- the root, or (for a trace whose root never arrived) the earliest span whose parent is missing
    select distinct on (c.trace_id) c.trace_id, c.service_name, c.name
    from tspans c
    left join tspans p on p.trace_id = c.trace_id and p.span_id = c.parent_span_id
    where p.span_id is null
    order by c.trace_id, (c.parent_span_id is null) desc, c.start_time
  ),
  features as (
    insert into anomaly.trace_features (trace_id, start_time, end_time, duration_ms, span_count, error_count,
      service_count, services, root_service, root_operation, has_root, max_http_status, shape_hash)
    select t.trace_id, min(t.start_time), max(t.end_time),
           extract(epoch from max(t.end_time) - min(t.start_time)) * 1000,
           count(*), count(*) filter (where t.status_code = 2),
           count(distinct t.service_name), array_agg(distinct t.service_name order by t.service_name),
           r.service_name, r.name, bool_or(t.parent_span_id is null), max(t.http_status_code),
           md5(string_agg(distinct t.service_name || ':' || t.name, '|' order by t.service_name || ':' || t.name))
    from tspans t left join roots r using (trace_id)
    group by t.trace_id, r.service_name, r.name
    order by t.trace_id
    on conflict (trace_id) do nothing
    returning trace_id
  ),
  edges as (
    insert into anomaly.service_edge_minutes as e (caller_service, callee_service, bucket, call_count,
      error_count, duration_sum_ms)
    select p.service_name, c.service_name, date_trunc('minute', c.start_time), count(*),
           count(*) filter (where c.status_code = 2), sum(c.ms)
    from tspans c
    join tspans p on p.trace_id = c.trace_id and p.span_id = c.parent_span_id
    where c.service_name <> p.service_name
      and c.trace_id in (select trace_id from features)
    group by 1, 2, 3
    order by 1, 2, 3
    on conflict (caller_service, callee_service, bucket) do update set
      call_count = e.call_count + excluded.call_count,
      error_count = e.error_count + excluded.error_count,
      duration_sum_ms = e.duration_sum_ms + excluded.duration_sum_ms
    returning 1
  )
  select (select count(*) from features), (select count(*) from edges)
  into v_result.traces_finished, v_result.edges;

  v_result.watermark := v_state.watermark;
  return v_result;
end
$$;
comment on function anomaly.rollup() is
  'Incremental rollup. Consumes the series-minutes ingest marked dirty and rewrites their anomaly.operation_minutes and '
  'anomaly.resource_minutes rows from the staged spans (idempotent upserts), advances the event-time watermark, and for '
  'traces idle longer than rollup.trace_idle_seconds writes anomaly.trace_features and counts anomaly.service_edge_minutes '
  'exactly once; an operation-minute''s p95 is stored with its histogram (latency_p95_ms). Concurrent calls do not '
  'overlap (advisory lock). Example: select * from anomaly.rollup();';


-- ============================================================== extraction reads it
create or replace function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
returns bigint
language plpgsql
set search_path = ''
-- hash joins of the minute's keys with anomaly.series instead of one index probe per key (estimates from CTEs are
-- far below the ~34,000 keys of 10k operations)
set enable_nestloop = off
as $$
declare
  v_engine jsonb := anomaly.config('detect.engine');
  v_rollup jsonb := anomaly.config('rollup');
  v_silence interval := make_interval(mins => (v_engine ->> 'silence_lookback_minutes')::integer);
  v_points bigint;
  -- Calls between services are counted when a trace finishes (anomaly.rollup, trace_idle_seconds after its last
  -- span), the minute's other rollups when the watermark passes (allowed_lateness_seconds after the newest span
  -- start). Only when a trace is finished by the time its minutes are final are an edge's minutes complete when they
  -- are scored; otherwise every edge would look like a drop.
  v_edges boolean := (v_engine ->> 'score_service_edges')::boolean
    and (v_rollup ->> 'trace_idle_seconds')::integer <= (v_rollup ->> 'allowed_lateness_seconds')::integer;
begin
  -- Extraction rewrites whole minutes: the points of (p_from, p_through] go, then come back from the rollups (a
  -- re-extracted minute, after late spans, gets the new values; normally the range is new and nothing is deleted).
  delete from anomaly.signal_points p where p.bucket > p_from and p.bucket <= p_through;

  -- Real points of buckets in (p_from, p_through], from the rollups.
  with minutes as (
    select m.service_name, m.operation, m.bucket, m.span_count, m.error_count, m.latency_histogram, m.latency_p95_ms
    from anomaly.operation_minutes m
    where m.bucket > p_from and m.bucket <= p_through
  ),
  -- p95 of every histogram: stored by the rollup; else the first bucket whose running count reaches ceil(0.95 n),
  -- bucket middle (the rule of anomaly.histogram_quantile), in one pass over the histogram's keys
  ops as (
    select m.*, coalesce(m.latency_p95_ms,
                         anomaly.histogram_rank_ms(m.latency_histogram, greatest(1, ceil(0.95 * m.span_count))::bigint))
                  as p95
    from minutes m
  ),
  raw as (
    select 'operation' as scope, service_name as service, operation, s.signal, bucket, s.value, s.n, s.k
    from ops,
    lateral (values
      ('latency_p95', p95, span_count, null::integer),
      ('error_rate', error_count::double precision / span_count, span_count, error_count),
      ('throughput', span_count::double precision, span_count, null)
    ) as s(signal, value, n, k)
    union all
    select 'service', service_name, '', s.signal, bucket, s.value, s.n, s.k
    from (select service_name, bucket, sum(span_count)::integer as spans, sum(error_count)::integer as errors
          from ops group by 1, 2) svc,
    lateral (values
      ('throughput', spans::double precision, spans, null::integer),
      ('error_rate', errors::double precision / spans, spans, errors)
    ) as s(signal, value, n, k)
    union all
    select 'service', r.service_name, '', s.signal, r.bucket, s.value, r.samples, null
    from anomaly.resource_minutes r,
    lateral (values ('cpu', r.cpu_utilization_avg), ('memory', r.memory_usage_avg)) as s(signal, value)
    where r.bucket > p_from and r.bucket <= p_through and s.value is not null
    union all
    -- calls caller -> callee: the series of the caller, named after the callee ('→ checkout'), so an edge's
    -- anomaly reads "frontend → checkout" and never shares a fingerprint with the caller's own series
    select 'edge', e.caller_service, '→ ' || e.callee_service, s.signal, e.bucket, s.value, e.call_count, s.k
    from anomaly.service_edge_minutes e,
    lateral (values
      ('throughput', e.call_count::double precision, null::integer),
      ('error_rate', e.error_count::double precision / e.call_count, e.error_count)
    ) as s(signal, value, k)
    where v_edges and e.bucket > p_from and e.bucket <= p_through and e.call_count > 0
  ),
  keys as (
    select scope, service, operation, signal, min(bucket) as first_bucket, max(bucket) as last_bucket
    from raw group by 1, 2, 3, 4
  ),
  known as materialized (
    -- one lookup of each key in anomaly.series serves the three uses below (series that existed before this
    -- statement: its snapshot sees them)
    select s.id, k.scope, k.service, k.operation, k.signal, s.first_bucket as series_first, k.first_bucket
    from keys k
    join anomaly.series s using (scope, service, operation, signal)
  ),
  new_series as (
    -- only new series are written: the newest minute with data lives in series_state.last_active_bucket, updated
    -- with the rest of the state, not in a series row rewritten every minute; and known keys are not even offered
    -- to ON CONFLICT (its conflict check locks every existing row: 0.1 s a minute at 10k operations)
    insert into anomaly.series as s (scope, service, operation, signal, first_bucket, last_active_bucket)
    select k.scope, k.service, k.operation, k.signal, k.first_bucket, k.last_bucket
    from keys k
    left join known n using (scope, service, operation, signal)
    where n.id is null
    order by 1, 2, 3, 4
    on conflict (scope, service, operation, signal) do nothing
    returning id, scope, service, operation, signal
  ),
  older as (
    -- data older than a series' first minute (a late backfill) moves first_bucket back
    update anomaly.series s set first_bucket = n.first_bucket
    from known n
    where s.id = n.id and n.first_bucket < n.series_first
    returning 1
  ),
  ids as (
    select id, scope, service, operation, signal from known
    union all
    select id, scope, service, operation, signal from new_series
  ),
  inserted as (
    -- the minutes were emptied above: a plain insert (an upsert's conflict check cost 0.26 s a minute at 10k
    -- operations)
    insert into anomaly.signal_points as p (series_id, bucket, value, n, k)
    select ns.id, r.bucket, r.value, r.n, r.k
    from raw r
    join ids ns using (scope, service, operation, signal)
    where r.value is not null
    order by 1, 2
    returning 1
  )
  select count(*) into v_points from inserted;

  -- Silent minutes: a throughput series with data within silence_lookback_minutes but none in a minute gets a zero.
  -- Its newest minute with data: as folded into its state, or among the points just extracted.
  with minutes as (
    select generate_series(date_trunc('minute', p_from) + interval '1 minute', p_through, interval '1 minute') as bucket
  ),
  active as (
    select s.id, greatest(s.last_active_bucket, st.last_active_bucket, x.last_bucket) as last_active
    from anomaly.series s
    left join anomaly.series_state st on st.series_id = s.id
    left join (
      select p.series_id, max(p.bucket) as last_bucket
      from anomaly.signal_points p
      where p.bucket > p_from and p.bucket <= p_through and p.n > 0
      group by p.series_id
    ) x on x.series_id = s.id
    where s.signal = 'throughput'
  ),
  silent as (
    insert into anomaly.signal_points (series_id, bucket, value, n)
    select a.id, m.bucket, 0, 0
    from active a
    join minutes m on m.bucket > a.last_active and m.bucket <= a.last_active + v_silence
    order by 1, 2
    on conflict (series_id, bucket) do nothing
    returning 1
  )
  select v_points + count(*) into v_points from silent;
  return v_points;
end
$$;
comment on function anomaly.extract_signals(timestamptz, timestamptz) is
  'Turns the rollups of minutes in (p_from, p_through] into signal points (the minutes are deleted and rewritten: '
  'idempotent), registering new series: per operation p95 latency (operation_minutes.latency_p95_ms, or read from '
  'the histogram where it is NULL), error rate and throughput; per service throughput, error rate, cpu and memory; '
  'per service edge (scope edge: the caller, operation ''→ callee'') calls '
  'and their error rate, when detect.engine.score_service_edges and traces finish before their minutes are final '
  '(rollup.trace_idle_seconds <= allowed_lateness_seconds). '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';
