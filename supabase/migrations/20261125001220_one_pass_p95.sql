-- 20261125001220_one_pass_p95.sql — the p95 of a minute's histogram in one pass over its keys.
-- extract_signals read each histogram's p95 by sorting its buckets and a running-sum window per histogram: 0.17 s a
-- minute at 10k operations. jsonb stores an object's keys shortest first, then bytewise, which for our bucket numbers
-- (non-negative integers, anomaly.latency_bucket) is numeric order; one pass in storage order with an early exit
-- gives the same bucket (equal on 650k bench histograms) in 0.07 s.

create function anomaly.histogram_rank_ms(p_histogram jsonb, p_rank bigint)
returns double precision
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
declare
  v_key text;
  v_count text;
  v_bucket integer;
  v_previous integer := -1;
  v_running bigint := 0;
begin
  -- jsonb keeps an object's keys shortest first, then bytewise: for bucket numbers (non-negative integers without
  -- leading zeros) that is numeric order, so one pass in storage order finds the bucket
  for v_key, v_count in select e.key, e.value from jsonb_each_text(p_histogram) e loop
    v_bucket := v_key::integer;
    if v_bucket <= v_previous then
      raise exception using errcode = 'TSH01', message = 'histogram bucket keys must be increasing integers',
        detail = format('bucket %s after %s', v_key, v_previous), hint = 'Build histograms with anomaly.latency_bucket.';
    end if;
    v_previous := v_bucket;
    v_running := v_running + v_count::bigint;
    if v_running >= p_rank then
      return power(2::double precision, (v_bucket - 0.5) / 8.0) / 1000.0;
    end if;
  end loop;
  return null;
end
$$;
comment on function anomaly.histogram_rank_ms(jsonb, bigint) is
  'The value (ms, bucket middle) of the p_rank-th smallest duration in a latency histogram, null past its total: '
  'anomaly.histogram_quantile with the rank given, e.g. the p95 of n spans is rank ceil(0.95 n). Keys must be '
  'increasing integers in jsonb order (anomaly.latency_bucket numbers); raises TSH01 otherwise. Example: select '
  'anomaly.histogram_rank_ms(latency_histogram, ceil(0.95 * span_count)::bigint) from anomaly.operation_minutes;';
grant execute on function anomaly.histogram_rank_ms(jsonb, bigint) to service_role;

create or replace function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_silence interval := make_interval(mins => (anomaly.config('detect.engine') ->> 'silence_lookback_minutes')::integer);
  v_points bigint;
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
  'idempotent), registering new '
  'series: per operation p95 latency, error rate and throughput; per service throughput, error rate, cpu and memory. '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';

