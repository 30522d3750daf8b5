-- 20261125000940_fewer_writes_per_minute.sql — fewer rows written per detection minute.
-- At 10k operations (bench:detect) a cycle spent 2.2 s in extract_signals and 1.1 s in update_baselines, most of it
-- writing: five signal points per operation, every throughput series row rewritten each minute to move
-- last_active_bucket (10k updates), and every signal point upserted into two seasonal profile rows. Now:
--   * one latency signal per operation, p95: every latency detector scores p95 (0830 header), so p50 and p99 were 40 %
--     of each minute's points, baselines and profiles for nothing that read them. The histograms stay in
--     anomaly.operation_minutes for any quantile of any minute (anomaly.histogram_quantile); the p50/p99 series are
--     deleted below with their points, state, profiles and hits (foreign keys cascade);
--   * the newest minute with data is kept in anomaly.series_state (rewritten each minute anyway), so a series row is
--     written only when the series is new (or older data arrives);
--   * the day and hour-of-week slot in progress gather in series_state (Welford), and a profile row is written once
--     per finished slot (Chan's parallel merge): on average 0.22 instead of 2 profile writes per point and minute;
--   * p95 is read from each histogram on its own instead of one sort of all buckets of all minutes.
-- update_baselines also keeps the rolling trailing window that anomaly.trailing_moments (20261125000930) serves.

alter table anomaly.series_state
  add column last_active_bucket timestamptz,
  add column day_slot smallint,
  add column day_n integer not null default 0,
  add column day_mean double precision,
  add column day_m2 double precision,
  add column week_slot smallint,
  add column week_n integer not null default 0,
  add column week_mean double precision,
  add column week_m2 double precision;
comment on column anomaly.series_state.last_active_bucket is
  'Newest minute folded in with data (n > 0); extract_signals writes zeros for the silent minutes after it '
  '(detect.engine.silence_lookback_minutes). anomaly.series.last_active_bucket only records it at registration.';
comment on column anomaly.series_state.day_slot is
  'Minute-of-day slot (detect.baseline.day_slot_minutes) in progress; day_n, day_mean, day_m2 are its Welford sums, '
  'merged into anomaly.seasonal_profiles when the series'' first point of another slot is folded.';
comment on column anomaly.series_state.day_n is 'Points of the day slot in progress (not yet in seasonal_profiles).';
comment on column anomaly.series_state.day_mean is 'Mean of the points of the day slot in progress.';
comment on column anomaly.series_state.day_m2 is 'Sum of squared deviations of the points of the day slot in progress.';
comment on column anomaly.series_state.week_slot is
  'Hour-of-week slot in progress; week_n, week_mean, week_m2 as for the day slot.';
comment on column anomaly.series_state.week_n is 'Points of the hour-of-week slot in progress.';
comment on column anomaly.series_state.week_mean is 'Mean of the points of the hour-of-week slot in progress.';
comment on column anomaly.series_state.week_m2 is 'Sum of squared deviations of the hour-of-week slot in progress.';
comment on column anomaly.series.last_active_bucket is
  'Newest minute with data when the series was registered; the current one is anomaly.series_state.last_active_bucket.';

update anomaly.series_state st set last_active_bucket = s.last_active_bucket
from anomaly.series s where s.id = st.series_id;

delete from anomaly.series where signal in ('latency_p50', 'latency_p99');

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
  -- p95 of every histogram: the first bucket whose running count reaches ceil(0.95 n), bucket middle (the rule of
  -- anomaly.histogram_quantile), each histogram's ~30 buckets sorted on their own (one sort of all buckets of all
  -- histograms by service, operation and minute cost 0.3 s of 1.3 s at 10k operations)
  ops as (
    select m.*, power(2::double precision, (q.b - 0.5) / 8.0) / 1000.0 as p95
    from minutes m
    cross join lateral (
      select min(c.b) as b
      from (select e.key::integer as b, sum(e.value::bigint) over (order by e.key::integer) as running
            from jsonb_each_text(m.latency_histogram) e) c
      where c.running >= greatest(1, ceil(0.95 * m.span_count))
    ) q
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
  'Turns the rollups of minutes in (p_from, p_through] into signal points (idempotent upserts), registering new '
  'series: per operation p95 latency, error rate and throughput; per service throughput, error rate, cpu and memory. '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';

create or replace function anomaly.update_baselines(p_bucket timestamptz)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.baseline');
  v_alpha double precision := (v_cfg ->> 'ewma_alpha')::double precision;
  v_ha double precision := (v_cfg ->> 'holt_alpha')::double precision;
  v_hb double precision := (v_cfg ->> 'holt_beta')::double precision;
  v_slack double precision := (v_cfg ->> 'cusum_slack_sigma')::double precision;
  v_slot_minutes integer := (v_cfg ->> 'day_slot_minutes')::integer;
  v_day_slot smallint := ((extract(hour from p_bucket at time zone 'UTC') * 60
                           + extract(minute from p_bucket at time zone 'UTC'))::integer / v_slot_minutes)::smallint;
  v_week_slot smallint := (extract(isodow from p_bucket at time zone 'UTC')::integer * 24 - 24
                           + extract(hour from p_bucket at time zone 'UTC')::integer)::smallint;
  v_rows integer;
  v_window interval := make_interval(mins => (v_cfg ->> 'window_minutes')::integer);
  v_cursor timestamptz;
  v_cursor_at timestamptz;
begin
  -- Seasonal profiles take whole slots: the minutes of the slot in progress gather in the series' state (Welford),
  -- and when a series' first point of a new slot comes, the gathered slot is merged into its profile (Chan et al.'s
  -- parallel update). A profile row is written once per slot instead of once per minute (5x fewer day-slot writes,
  -- 60x fewer hour-of-week ones); profiles hold whole slots only, which is all the seasonal detectors compare with.
  with pts as (
    select p.series_id, p.value from anomaly.signal_points p where p.bucket = p_bucket
  ),
  gathered as (
    select st.series_id, 'day'::text as period, st.day_slot as slot, st.day_n as n, st.day_mean as mean,
           st.day_m2 as m2
    from pts join anomaly.series_state st using (series_id)
    where (st.last_bucket is null or st.last_bucket < p_bucket)
      and st.day_n > 0 and st.day_slot is distinct from v_day_slot
    union all
    select st.series_id, 'week', st.week_slot, st.week_n, st.week_mean, st.week_m2
    from pts join anomaly.series_state st using (series_id)
    where (st.last_bucket is null or st.last_bucket < p_bucket)
      and st.week_n > 0 and st.week_slot is distinct from v_week_slot
  )
  insert into anomaly.seasonal_profiles as sp (series_id, period, slot, n, mean, m2)
  select series_id, period, slot, n, mean, m2 from gathered
  order by period, slot, series_id
  on conflict (period, slot, series_id) do update set
    n = sp.n + excluded.n,
    mean = sp.mean + (excluded.mean - sp.mean) * excluded.n / (sp.n + excluded.n),
    m2 = sp.m2 + excluded.m2 + power(excluded.mean - sp.mean, 2) * sp.n * excluded.n / (sp.n + excluded.n);

  with pts as (
    select p.series_id, p.value, p.n from anomaly.signal_points p where p.bucket = p_bucket
  ),
  state as (
    insert into anomaly.series_state as st (series_id, n, last_bucket, last_value, ewma_mean, ewma_var,
      holt_level, holt_trend, cusum_pos, cusum_neg, last_active_bucket,
      day_slot, day_n, day_mean, day_m2, week_slot, week_n, week_mean, week_m2)
    select series_id, 1, p_bucket, value, value, 0, value, 0, 0, 0, case when n > 0 then p_bucket end,
           v_day_slot, 1, value, 0, v_week_slot, 1, value, 0
    from pts
    order by series_id
    on conflict (series_id) do update set
      n = st.n + 1,
      last_bucket = p_bucket,
      last_value = excluded.last_value,
      last_active_bucket = coalesce(excluded.last_active_bucket, st.last_active_bucket),
      -- EWMA (West 1979 incremental form): the variance uses the deviation from the previous mean.
      ewma_mean = st.ewma_mean + v_alpha * (excluded.last_value - st.ewma_mean),
      ewma_var = (1 - v_alpha) * (st.ewma_var + v_alpha * power(excluded.last_value - st.ewma_mean, 2)),
      -- Holt linear trend
      holt_level = v_ha * excluded.last_value + (1 - v_ha) * (st.holt_level + st.holt_trend),
      holt_trend = v_hb * (v_ha * excluded.last_value + (1 - v_ha) * (st.holt_level + st.holt_trend) - st.holt_level)
                   + (1 - v_hb) * st.holt_trend,
      -- CUSUM on the standardised deviation from the EWMA baseline (k = slack sigmas), reset at 0
      cusum_pos = greatest(0, st.cusum_pos + (excluded.last_value - st.ewma_mean)
                  / greatest(sqrt(st.ewma_var), abs(st.ewma_mean) * 0.01, 1e-9) - v_slack),
      cusum_neg = greatest(0, st.cusum_neg - (excluded.last_value - st.ewma_mean)
                  / greatest(sqrt(st.ewma_var), abs(st.ewma_mean) * 0.01, 1e-9) - v_slack),
      -- the slot in progress (Welford); a new slot starts from this point (the old one was merged above)
      day_slot = v_day_slot,
      day_n = case when st.day_slot is distinct from v_day_slot then 1 else st.day_n + 1 end,
      day_mean = case when st.day_slot is distinct from v_day_slot or st.day_n = 0 then excluded.last_value
                      else st.day_mean + (excluded.last_value - st.day_mean) / (st.day_n + 1) end,
      day_m2 = case when st.day_slot is distinct from v_day_slot or st.day_n = 0 then 0
                    else st.day_m2 + (excluded.last_value - st.day_mean)
                         * (excluded.last_value - (st.day_mean + (excluded.last_value - st.day_mean) / (st.day_n + 1)))
               end,
      week_slot = v_week_slot,
      week_n = case when st.week_slot is distinct from v_week_slot then 1 else st.week_n + 1 end,
      week_mean = case when st.week_slot is distinct from v_week_slot or st.week_n = 0 then excluded.last_value
                       else st.week_mean + (excluded.last_value - st.week_mean) / (st.week_n + 1) end,
      week_m2 = case when st.week_slot is distinct from v_week_slot or st.week_n = 0 then 0
                     else st.week_m2 + (excluded.last_value - st.week_mean)
                          * (excluded.last_value - (st.week_mean + (excluded.last_value - st.week_mean) / (st.week_n + 1)))
                end
    where st.last_bucket is null or st.last_bucket < p_bucket
    returning 1
  )
  select count(*) into v_rows from state;

  -- Rolling trailing window (count, sum, sum of squares of the points of (p_bucket - window, p_bucket]): add this
  -- minute, drop the one that leaves. Incremental only right after the minute before and with an unchanged
  -- detect.baseline; otherwise (first cycle, a catch-up gap, a new window_minutes) rebuilt from the points, so it
  -- cannot drift from them.
  select last_bucket, updated_at into v_cursor, v_cursor_at
  from anomaly.detector_state where detector = 'window' for update;
  if v_cursor = p_bucket then
    return v_rows;
  elsif v_cursor = p_bucket - interval '1 minute'
        and v_cursor_at >= coalesce((select c.updated_at from public.anomaly_detection_config c
                                     where c.key = 'detect.baseline'), '-infinity') then
    with added as (
      select p.series_id, p.value from anomaly.signal_points p where p.bucket = p_bucket and p.n > 0
    ),
    dropped as (
      select p.series_id, p.value from anomaly.signal_points p where p.bucket = p_bucket - v_window and p.n > 0
    ),
    delta as (
      select coalesce(a.series_id, d.series_id) as series_id,
             (a.series_id is not null)::integer - (d.series_id is not null)::integer as points,
             coalesce(a.value, 0) - coalesce(d.value, 0) as sum,
             coalesce(a.value * a.value, 0) - coalesce(d.value * d.value, 0) as sumsq
      from added a full join dropped d using (series_id)
    )
    update anomaly.series_state st
       set win_points = st.win_points + d.points, win_sum = st.win_sum + d.sum, win_sumsq = st.win_sumsq + d.sumsq
      from delta d
     where d.series_id = st.series_id;
  else
    update anomaly.series_state st
       set win_points = coalesce(w.points, 0), win_sum = coalesce(w.sum, 0), win_sumsq = coalesce(w.sumsq, 0)
      from anomaly.series_state s0
      left join (
        select p.series_id, count(*)::integer as points, sum(p.value) as sum, sum(p.value * p.value) as sumsq
        from anomaly.signal_points p
        where p.bucket > p_bucket - v_window and p.bucket <= p_bucket and p.n > 0
        group by p.series_id
      ) w on w.series_id = s0.series_id
     where s0.series_id = st.series_id
       and (st.win_points, st.win_sum, st.win_sumsq)
           is distinct from (coalesce(w.points, 0), coalesce(w.sum, 0), coalesce(w.sumsq, 0));
  end if;
  insert into anomaly.detector_state (detector, last_bucket) values ('window', p_bucket)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();
  return v_rows;
end
$$;
comment on function anomaly.update_baselines(timestamptz) is
  'Folds the signal points of one minute into anomaly.series_state (EWMA, Holt, CUSUM, last minute with data, the '
  'rolling trailing window of detect.baseline.window_minutes, and the day and hour-of-week slot in progress) and, '
  'when a series enters a new slot, merges the finished slot into anomaly.seasonal_profiles. Called by '
  'anomaly.detect() after the detectors scored that minute, so detectors never see their own bucket in a baseline. '
  'A minute already folded in is skipped; the rolling window is rebuilt from the points after a gap or a change of '
  'detect.baseline. Returns the series updated.';
