-- 20261125001300_edge_series.sql — calls between services become series the detectors watch.
-- anomaly.service_edge_minutes counts calls caller -> callee per minute (a span whose parent span is in another
-- service), when a trace finishes. Each edge now has two series, scope 'edge': throughput (calls a minute) and error
-- rate (failed calls / calls), named after the caller with the operation '→ <callee>'. The error-rate and throughput
-- detectors that watch every scope (error_sigma_band, error_proportion, error_cusum, throughput_forecast,
-- throughput_silence) score them like operation series: "frontend's calls to checkout fail", "frontend stopped
-- calling payments". Edge latency is not a series: a call's duration is the callee operation's span, whose p95 is
-- scored per operation already.
--
-- Timing: a trace is finished trace_idle_seconds after its last span (by event time), a minute is final
-- allowed_lateness_seconds after the newest span start. With trace_idle_seconds <= allowed_lateness_seconds (the
-- defaults: 60 and 60) the rollup run that makes a minute final has also finished the traces that ended in it, so
-- the minute's edges are counted when it is scored (traces still running at the minute's end are counted into it
-- later and miss its points: about trace duration / 60 s of calls). With a longer trace_idle_seconds they would
-- not be, and every edge would look like a drop: edges are then not extracted.

update anomaly.config_keys
   set spec = spec || '{"score_service_edges": {"type": "boolean"}}',
       defaults = defaults || '{"score_service_edges": true}',
       description = description || ' score_service_edges: calls between services (anomaly.service_edge_minutes) '
         'become series of scope edge (needs rollup.trace_idle_seconds <= allowed_lateness_seconds).'
 where key = 'detect.engine';

alter table anomaly.series drop constraint series_scope_check;
alter table anomaly.series add constraint series_scope_check check (scope in ('operation', 'service', 'edge'));
alter table anomaly.series add constraint series_edge_operation_check
  check (scope <> 'edge' or operation like '→ %');
comment on table anomaly.series is
  'Every time series the detectors watch: a signal (latency quantile, error rate, throughput, cpu, memory) of an '
  'operation (service + span name), of a whole service, or of the calls from one service to another (scope edge: '
  'service is the caller, operation ''→ <callee>''). last_active_bucket is the newest minute with real data, '
  'kept current for throughput series (silence detection); for other signals it is the newest minute of the batch '
  'that created the series.';

create or replace function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
returns bigint
language plpgsql
set search_path = ''
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
  'throughput, error rate, cpu and memory. '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';

comment on function anomaly.extract_signals(timestamptz, timestamptz) is
  'Turns the rollups of minutes in (p_from, p_through] into signal points (the minutes are deleted and rewritten: '
  'idempotent), registering new series: per operation p95 latency, error rate and throughput; per service '
  'throughput, error rate, cpu and memory; per service edge (scope edge: the caller, operation ''→ callee'') calls '
  'and their error rate, when detect.engine.score_service_edges and traces finish before their minutes are final '
  '(rollup.trace_idle_seconds <= allowed_lateness_seconds). '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';
