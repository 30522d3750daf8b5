-- 20261125000920_p95_signals.sql — one latency signal per operation: p95.
-- Every latency detector scores the p95 point (0830 header); extracting p50 and p99 as series as well wrote 40 % of
-- each minute's signal points, their baselines and their seasonal profiles (bench:detect: ~1.3 s of a 5.9 s cycle
-- at 10k operations) for nothing that read them. The histograms stay in anomaly.operation_minutes, so any quantile
-- of any minute can still be read there (anomaly.histogram_quantile). The dropped series are deleted here with their
-- points, state, profiles and hits (foreign keys cascade).

create or replace function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_silence interval := make_interval(mins => (anomaly.config('detect.engine') ->> 'silence_lookback_minutes')::integer);
  v_points bigint;
begin
  -- Real points of buckets in (p_from, p_through], from the rollups.
  with minutes as (
    select m.service_name, m.operation, m.bucket, m.span_count, m.error_count, m.latency_histogram,
           m.slowest_trace_id, m.slowest_span_id, m.error_trace_id, m.error_span_id
    from anomaly.operation_minutes m
    where m.bucket > p_from and m.bucket <= p_through
  ),
  -- p95 of every histogram in one set-based pass (same rank and bucket-middle rule as
  -- anomaly.histogram_quantile, which costs a plpgsql loop per call: ~10x slower at 10k series).
  cumulative as (
    select m.service_name, m.operation, m.bucket, m.span_count, e.key::integer as b,
           sum(e.value::bigint) over (partition by m.service_name, m.operation, m.bucket
                                      order by e.key::integer) as running
    from minutes m, jsonb_each_text(m.latency_histogram) e
  ),
  quantiles as (
    select service_name, operation, bucket,
           power(2::double precision, (min(b) filter (where running >= greatest(1, ceil(0.95 * span_count))) - 0.5) / 8.0) / 1000.0 as p95
    from cumulative group by 1, 2, 3
  ),
  ops as (
    select m.*, q.p95
    from minutes m join quantiles q using (service_name, operation, bucket)
  ),
  raw as (
    select 'operation' as scope, service_name as service, operation, s.signal, bucket, s.value, s.n, s.k,
           s.trace_id, s.span_id
    from ops,
    lateral (values
      ('latency_p95', p95, span_count, null::integer, slowest_trace_id, slowest_span_id),
      ('error_rate', error_count::double precision / span_count, span_count, error_count,
        coalesce(error_trace_id, slowest_trace_id), coalesce(error_span_id, slowest_span_id)),
      ('throughput', span_count::double precision, span_count, null, slowest_trace_id, slowest_span_id)
    ) as s(signal, value, n, k, trace_id, span_id)
    union all
    select 'service', service_name, '', s.signal, bucket, s.value, s.n, s.k, null, null
    from (select service_name, bucket, sum(span_count)::integer as spans, sum(error_count)::integer as errors
          from ops group by 1, 2) svc,
    lateral (values
      ('throughput', spans::double precision, spans, null::integer),
      ('error_rate', errors::double precision / spans, spans, errors)
    ) as s(signal, value, n, k)
    union all
    select 'service', r.service_name, '', s.signal, r.bucket, s.value, r.samples, null, null, null
    from anomaly.resource_minutes r,
    lateral (values ('cpu', r.cpu_utilization_avg), ('memory', r.memory_usage_avg)) as s(signal, value)
    where r.bucket > p_from and r.bucket <= p_through and s.value is not null
  ),
  keys as (
    select scope, service, operation, signal, min(bucket) as first_bucket, max(bucket) as last_bucket
    from raw group by 1, 2, 3, 4
  ),
  new_series as (
    -- Rewriting every series row each minute cost 0.75 s at 52k series (bench:detect): only new series are
    -- inserted, and only what changes is updated (last_active_bucket of throughput series, which silence
    -- detection needs; first_bucket when older data arrives).
    insert into anomaly.series as s (scope, service, operation, signal, first_bucket, last_active_bucket)
    select scope, service, operation, signal, first_bucket, last_bucket from keys
    order by 1, 2, 3, 4
    on conflict (scope, service, operation, signal) do update
      set last_active_bucket = greatest(s.last_active_bucket, excluded.last_active_bucket),
          first_bucket = least(s.first_bucket, excluded.first_bucket)
      where (s.signal = 'throughput' and excluded.last_active_bucket > s.last_active_bucket)
         or excluded.first_bucket < s.first_bucket
    returning id, scope, service, operation, signal
  ),
  ids as (
    -- series that existed before this statement (its snapshot sees them) plus the ones it just inserted
    select s.id, s.scope, s.service, s.operation, s.signal
    from anomaly.series s join keys k using (scope, service, operation, signal)
    union
    select id, scope, service, operation, signal from new_series
  ),
  upserted as (
    insert into anomaly.signal_points as p (series_id, bucket, value, n, k, exemplar_trace_id, exemplar_span_id)
    select ns.id, r.bucket, r.value, r.n, r.k, r.trace_id, r.span_id
    from raw r
    join ids ns using (scope, service, operation, signal)
    where r.value is not null
    order by 1, 2
    on conflict (series_id, bucket) do update set
      value = excluded.value, n = excluded.n, k = excluded.k,
      exemplar_trace_id = excluded.exemplar_trace_id, exemplar_span_id = excluded.exemplar_span_id
    returning 1
  )
  select count(*) into v_points from upserted;

  -- Silent minutes: a throughput series active within silence_lookback_minutes but without data is a zero.
  with minutes as (
    select generate_series(date_trunc('minute', p_from) + interval '1 minute', p_through, interval '1 minute') as bucket
  ),
  silent as (
    insert into anomaly.signal_points (series_id, bucket, value, n)
    select s.id, m.bucket, 0, 0
    from anomaly.series s
    join minutes m on m.bucket > s.last_active_bucket and m.bucket <= s.last_active_bucket + v_silence
    where s.signal = 'throughput'
    order by 1, 2
    on conflict (series_id, bucket) do nothing
    returning 1
  )
  select v_points + count(*) into v_points from silent;
  return v_points;
end
$$;
comment on function anomaly.extract_signals(timestamptz, timestamptz) is
  'Turns the rollups of minutes in (p_from, p_through] into signal points (idempotent upserts), registering new '
  'series: per operation p95 latency, error rate and throughput; per service throughput, error rate, cpu and memory. '
  'Writes explicit zeros for silent minutes of recently active throughput series. Returns points written.';

delete from anomaly.series where signal in ('latency_p50', 'latency_p99');
