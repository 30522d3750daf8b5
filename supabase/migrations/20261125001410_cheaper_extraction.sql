-- 20261125001410_cheaper_extraction.sql — anomaly.extract_signals plans its joins as hash joins, same points.
-- The minute's keys were looked up in anomaly.series one index probe at a time: the planner expects ~200 keys from
-- the grouped CTE and picks a nested loop, for ~34,000 keys at 10k operations (~70 ms a minute). extract_signals
-- now plans with enable_nestloop off, so the keys meet the series table in a hash join (every other join in it is
-- a hash or merge join already). Measured on bench:detect's 10k-operation state: extraction 0.60 -> 0.52 s.
-- Tried and left out: storing each minute's p95 in anomaly.operation_minutes from the rollup (it would save the
-- ~0.12 s of 10,000 histogram_rank_ms calls a minute). Computed inside anomaly.rollup()'s statement (a window over
-- the bucket counts, or an ordered array_agg of the durations), it changed the plan of that statement's six-way
-- join: a first rollup without statistics nested-looped it and re-ran a CTE per operation-minute (the smoke demo's
-- 2,250 series-minutes: 2.7 s -> 105 s with the window, 5.2 s with array_agg, against 1.6 s without).

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
    select m.service_name, m.operation, m.bucket, m.span_count, m.error_count, m.latency_histogram
    from anomaly.operation_minutes m
    where m.bucket > p_from and m.bucket <= p_through
  ),
  -- p95 of every histogram: the first bucket whose running count reaches ceil(0.95 n), bucket middle (the rule of
  -- anomaly.histogram_quantile), in one pass over the histogram's keys (a sort and window per histogram cost 2.4x)
  ops as (
    select m.*, anomaly.histogram_rank_ms(m.latency_histogram, greatest(1, ceil(0.95 * m.span_count))::bigint) as p95
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
  'idempotent), registering new series: per operation p95 latency, error rate and throughput; per service '
  'throughput, error rate, cpu and memory; per service edge (scope edge: the caller, operation ''→ callee'') calls '
  'and their error rate, when detect.engine.score_service_edges and traces finish before their minutes are final '
  '(rollup.trace_idle_seconds <= allowed_lateness_seconds). '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';
