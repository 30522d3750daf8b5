-- 20261125000800_detection_engine.sql — the detection engine: series, signal points, incremental baselines,
-- a registry of detectors, per-run hit logging and the anomaly lifecycle, with the first two detectors
-- (trailing-window z-score on p95 latency and on error rate). The other detectors register in later migrations.
--
-- One cycle (anomaly.detect(), every minute):
--   1. extract_signals: complete minutes from the rollups become points of named series (latency p50/p95/p99,
--      error rate, throughput per operation and per service; cpu/memory per service); silent minutes of
--      recently active throughput series become explicit zeros.
--   2. for each new bucket, in time order: every enabled detector scores the points of that bucket against
--      state that holds only earlier buckets (no look-ahead), then update_baselines folds the bucket into the
--      per-series state (EWMA, Holt, CUSUM, seasonal profiles). A cycle costs O(new buckets x series).
--   3. apply_hits: hits become one open anomaly per fingerprint (type|subtype|service|operation|family);
--      several detectors agreeing raise confidence instead of opening duplicates; quiet anomalies resolve.

-- ============================================================== configuration
insert into anomaly.config_keys (key, spec, defaults, description) values
(
  'detect.zscore',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 10080},
    "threshold": {"type": "number", "min": 1, "max": 20},
    "min_points": {"type": "integer", "min": 3, "max": 10000},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_error_count": {"type": "integer", "min": 1, "max": 100000},
    "latency_quantile": {"type": "number", "min": 0.5, "max": 0.999},
    "min_relative_change": {"type": "number", "min": 0, "max": 10}}',
  '{"window_minutes": 60, "threshold": 3, "min_points": 15, "min_span_count": 5, "min_error_count": 3,
    "latency_quantile": 0.95, "min_relative_change": 0.2}',
  'Detectors latency_zscore and error_zscore: trailing-window z-score on p95 latency and error rate per operation. '
  'Fire when z >= threshold, the minute has at least min_span_count spans (min_error_count errors for error rate), '
  'the trailing window has min_points minutes, and the value moved by at least min_relative_change of the baseline.'
),
(
  'detect.engine',
  '{"max_catchup_minutes": {"type": "integer", "min": 5, "max": 20160},
    "initial_lookback_minutes": {"type": "integer", "min": 1, "max": 20160},
    "history_minutes": {"type": "integer", "min": 0, "max": 20160},
    "silence_lookback_minutes": {"type": "integer", "min": 1, "max": 1440},
    "signal_retention_days": {"type": "integer", "min": 1, "max": 90},
    "hits_retention_days": {"type": "integer", "min": 1, "max": 365}}',
  '{"max_catchup_minutes": 1440, "initial_lookback_minutes": 60, "history_minutes": 120, "silence_lookback_minutes": 30,
    "signal_retention_days": 8, "hits_retention_days": 30}',
  'Detection cycle: how far a cycle catches up after downtime, how much history the first cycle scores (and how much '
  'older history it only learns baselines from), how long a '
  'throughput series counts as active (its silent minutes become zeros), retention of signal points and detector hits.'
),
(
  'detect.baseline',
  '{"ewma_alpha": {"type": "number", "min": 0.001, "max": 1},
    "holt_alpha": {"type": "number", "min": 0.001, "max": 1},
    "holt_beta": {"type": "number", "min": 0, "max": 1},
    "cusum_slack_sigma": {"type": "number", "min": 0, "max": 5},
    "day_slot_minutes": {"type": "integer", "min": 1, "max": 60}}',
  '{"ewma_alpha": 0.1, "holt_alpha": 0.3, "holt_beta": 0.05, "cusum_slack_sigma": 0.5, "day_slot_minutes": 5}',
  'Per-series incremental baselines: EWMA mean/variance (alpha), Holt level/trend (alpha, beta), CUSUM slack k in '
  'sigmas, and the width of a minute-of-day seasonal slot (hour-of-week slots are one hour).'
),
(
  'detect.lifecycle',
  '{"quiet_minutes": {"type": "integer", "min": 1, "max": 1440},
    "severity_medium": {"type": "number", "min": 0, "max": 1000},
    "severity_high": {"type": "number", "min": 0, "max": 1000},
    "severity_critical": {"type": "number", "min": 0, "max": 1000},
    "escalate_after_minutes": {"type": "integer", "min": 1, "max": 1440},
    "breadth_services": {"type": "integer", "min": 2, "max": 1000},
    "min_agreeing_detectors": {"type": "integer", "min": 1, "max": 20},
    "single_detector_min_score": {"type": "number", "min": 0, "max": 1000},
    "sustained_minutes": {"type": "integer", "min": 1, "max": 60},
    "max_explanations_per_run": {"type": "integer", "min": 0, "max": 1000}}',
  '{"quiet_minutes": 5, "severity_medium": 4.5, "severity_high": 6, "severity_critical": 10,
    "escalate_after_minutes": 10, "breadth_services": 3, "min_agreeing_detectors": 2,
    "single_detector_min_score": 6, "sustained_minutes": 3, "max_explanations_per_run": 20}',
  'Anomaly lifecycle: a condition opens an anomaly when min_agreeing_detectors detectors of its family agree on it '
  '(at most all but one of the family''s enabled detectors), '
  'or one detector scores at least single_detector_min_score, or hits came in sustained_minutes of the last 10 '
  '(an open anomaly keeps updating on any hit); '
  'resolve after quiet_minutes without a hit; severity from the best detector score via the '
  'severity_* cut-offs, one level up when the anomaly lasted escalate_after_minutes, and one level up when '
  'breadth_services or more services opened anomalies within 5 minutes of it; how many new anomalies get a '
  'culprit/attribute explanation per run.'
);

-- ============================================================== cursors and results
create table anomaly.detector_state (
  detector text primary key,
  last_bucket timestamptz not null,
  updated_at timestamptz not null default now()
);
comment on table anomaly.detector_state is
  'Cursors of the detection cycle: ''engine'' is the last minute scored, ''signals'' the last minute turned into '
  'signal points. A cycle scores only (engine.last_bucket, watermark], so it costs O(new minutes).';

create type anomaly.detect_result as (
  hits integer,
  anomalies_opened integer,
  anomalies_updated integer,
  anomalies_resolved integer,
  scored_through timestamptz
);
comment on type anomaly.detect_result is 'What one anomaly.detect() call did: detector hits, anomalies opened/updated/resolved, last minute scored.';

-- ============================================================== series and points
create table anomaly.series (
  id bigint generated always as identity primary key,
  scope text not null,
  service text not null,
  operation text not null default '',
  signal text not null,
  first_bucket timestamptz not null,
  last_active_bucket timestamptz not null,
  constraint series_scope_check check (scope in ('operation', 'service')),
  constraint series_signal_check check (signal in
    ('latency_p50', 'latency_p95', 'latency_p99', 'error_rate', 'throughput', 'cpu', 'memory')),
  constraint series_operation_check check ((scope = 'service') = (operation = '')),
  constraint series_identity_key unique (scope, service, operation, signal)
);
comment on table anomaly.series is
  'Every time series the detectors watch: a signal (latency quantile, error rate, throughput, cpu, memory) of an '
  'operation (service + span name) or of a whole service. last_active_bucket is the newest minute with real data, '
  'kept current for throughput series (silence detection); for other signals it is the newest minute of the batch '
  'that created the series.';

create table anomaly.signal_points (
  series_id bigint not null references anomaly.series (id) on delete cascade,
  bucket timestamptz not null,
  value double precision not null,
  n integer not null,
  k integer,
  exemplar_trace_id text,
  exemplar_span_id text,
  -- covering: trailing-window detectors read (value, n, k) of one series' last minutes by index only
  constraint signal_points_pkey primary key (series_id, bucket) include (value, n, k),
  constraint signal_points_n_check check (n >= 0 and (k is null or k between 0 and n))
);
comment on table anomaly.signal_points is
  'One value per series and complete minute, written by anomaly.extract_signals. n is the number of spans (or '
  'resource samples) behind it, 0 for a silent minute of a throughput series; k the errors for error_rate. Kept '
  'detect.engine.signal_retention_days; long-term history lives in the incremental baselines.';
create index signal_points_bucket_idx on anomaly.signal_points (bucket, series_id);

create table anomaly.series_state (
  series_id bigint primary key references anomaly.series (id) on delete cascade,
  n bigint not null default 0,
  last_bucket timestamptz,
  last_value double precision,
  ewma_mean double precision,
  ewma_var double precision,
  holt_level double precision,
  holt_trend double precision,
  cusum_pos double precision not null default 0,
  cusum_neg double precision not null default 0
);
comment on table anomaly.series_state is
  'Incremental baseline per series, as of last_bucket: EWMA mean and variance, Holt (double exponential) level and '
  'trend, one-sided CUSUM sums (in sigmas of the EWMA baseline). Detectors read it before their bucket is folded in.';

create table anomaly.seasonal_profiles (
  series_id bigint not null references anomaly.series (id) on delete cascade,
  period text not null,
  slot smallint not null,
  n bigint not null,
  mean double precision not null,
  m2 double precision not null,
  -- (period, slot, series_id): each minute's upserts touch one slot of every series, so they land on neighbouring
  -- leaf pages instead of one page per series (2.5 s -> 1.3-1.9 s at 52k signal series, bench:detect)
  constraint seasonal_profiles_pkey primary key (period, slot, series_id),
  constraint seasonal_profiles_period_check check (period in ('day', 'week'))
);
comment on table anomaly.seasonal_profiles is
  'Seasonal baseline per series: running mean and sum of squared deviations (Welford) of the values seen in the same '
  'minute-of-day slot (period day, detect.baseline.day_slot_minutes wide) and the same hour of the week (period week). '
  'Seasonal detectors use a slot once it has enough samples and fall back to non-seasonal baselines before that.';

-- ============================================================== detectors
create table anomaly.detectors (
  name text primary key,
  family text not null,
  signals text[] not null,
  function_name text not null,
  config_key text not null references anomaly.config_keys (key),
  enabled boolean not null default true,
  legacy boolean not null default false,
  description text not null,
  constraint detectors_name_check check (name ~ '^[a-z][a-z0-9_]{1,40}$'),
  constraint detectors_family_check check (family in ('latency', 'error_rate', 'throughput', 'resource', 'deploy')),
  constraint detectors_function_check check (function_name ~ '^anomaly\.detect_[a-z0-9_]+$')
);
comment on table anomaly.detectors is
  'Registry of detectors. Each is a function anomaly.detect_<name>(p_bucket timestamptz, p_config jsonb) returning '
  'setof anomaly.detector_hit for the points of one complete minute, configured by its config_key. legacy = kept for '
  'comparison (the old mean + k*sigma rule): its hits are logged and reported but do not open anomalies.';

create type anomaly.detector_hit as (
  series_id bigint,
  bucket timestamptz,
  subtype text,
  observed double precision,
  expected double precision,
  lower_bound double precision,
  upper_bound double precision,
  score double precision,
  details jsonb
);
comment on type anomaly.detector_hit is
  'What a detector returns for each anomalous point: the series and minute, a subtype naming the condition (e.g. '
  'latency_p95, error_rate, throughput_drop), observed vs expected with the band, a score on a z-like scale (3 = '
  'the usual alarm line; it drives severity) and free-form details.';

create table anomaly.detection_runs (
  id bigint generated always as identity primary key,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  scored_from timestamptz,
  scored_through timestamptz,
  watermark timestamptz,
  rows_read bigint not null default 0,
  hits integer not null default 0,
  anomalies_opened integer not null default 0,
  anomalies_updated integer not null default 0,
  anomalies_resolved integer not null default 0,
  errors jsonb not null default '[]'::jsonb,
  constraint detection_runs_finish_check check (finished_at is null or finished_at >= started_at)
);
comment on table anomaly.detection_runs is
  'One row per anomaly.detect() call: the minutes it scored, points read, detector hits, anomalies opened/updated/'
  'resolved, and errors of detectors that failed (a failing detector is skipped, the others still run).';
create index detection_runs_started_idx on anomaly.detection_runs (started_at desc);

create table anomaly.detector_hits (
  run_id bigint not null references anomaly.detection_runs (id) on delete cascade,
  detector text not null,
  series_id bigint not null references anomaly.series (id) on delete cascade,
  bucket timestamptz not null,
  subtype text not null,
  observed double precision,
  expected double precision,
  lower_bound double precision,
  upper_bound double precision,
  score double precision not null,
  details jsonb not null default '{}'::jsonb,
  constraint detector_hits_pkey primary key (detector, series_id, bucket)
);
comment on table anomaly.detector_hits is
  'Every hit of every detector, by run: the raw material of anomalies, replay and the per-detector quality benchmark.';
create index detector_hits_run_idx on anomaly.detector_hits (run_id);
create index detector_hits_bucket_idx on anomaly.detector_hits (bucket);

alter table public.trace_anomalies add column confidence double precision not null default 1;
alter table public.trace_anomalies add column detected_event_at timestamptz;
alter table public.trace_anomalies add column series_signal text;
comment on column public.trace_anomalies.confidence is
  'Share (0..1) of the enabled detectors of this family that agreed on the condition.';
comment on column public.trace_anomalies.detected_event_at is
  'Event time at which live detection would first have fired: the end of the first anomalous minute plus the '
  'rollup''s allowed lateness (the watermark must pass it). Replay and the quality benchmark measure delay with it.';
comment on column public.trace_anomalies.series_signal is 'The signal the anomaly is about (latency_p95, error_rate, throughput, cpu, ...).';

create function anomaly.tg_detectors__validate()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if to_regprocedure(new.function_name || '(timestamp with time zone, jsonb)') is null then
    raise exception using errcode = 'TSD01',
      message = format('detector "%s" needs a function %s(timestamptz, jsonb)', new.name, new.function_name),
      hint = 'Create the function returning setof anomaly.detector_hit before registering the detector.';
  end if;
  return new;
end
$$;
comment on function anomaly.tg_detectors__validate() is
  'BEFORE INSERT/UPDATE trigger on anomaly.detectors: the detector function must exist with the (timestamptz, jsonb) signature (TSD01).';
create trigger tg_10_validate before insert or update on anomaly.detectors
  for each row execute function anomaly.tg_detectors__validate();

-- ============================================================== 1. signals
create function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
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
  -- p50/p95/p99 of every histogram in one set-based pass (same rank and bucket-middle rule as
  -- anomaly.histogram_quantile, which costs a plpgsql loop per call: ~10x slower at 10k series).
  cumulative as (
    select m.service_name, m.operation, m.bucket, m.span_count, e.key::integer as b,
           sum(e.value::bigint) over (partition by m.service_name, m.operation, m.bucket
                                      order by e.key::integer) as running
    from minutes m, jsonb_each_text(m.latency_histogram) e
  ),
  quantiles as (
    select service_name, operation, bucket,
           power(2::double precision, (min(b) filter (where running >= greatest(1, ceil(0.50 * span_count))) - 0.5) / 8.0) / 1000.0 as p50,
           power(2::double precision, (min(b) filter (where running >= greatest(1, ceil(0.95 * span_count))) - 0.5) / 8.0) / 1000.0 as p95,
           power(2::double precision, (min(b) filter (where running >= greatest(1, ceil(0.99 * span_count))) - 0.5) / 8.0) / 1000.0 as p99
    from cumulative group by 1, 2, 3
  ),
  ops as (
    select m.*, q.p50, q.p95, q.p99
    from minutes m join quantiles q using (service_name, operation, bucket)
  ),
  raw as (
    select 'operation' as scope, service_name as service, operation, s.signal, bucket, s.value, s.n, s.k,
           s.trace_id, s.span_id
    from ops,
    lateral (values
      ('latency_p50', p50, span_count, null::integer, slowest_trace_id, slowest_span_id),
      ('latency_p95', p95, span_count, null, slowest_trace_id, slowest_span_id),
      ('latency_p99', p99, span_count, null, slowest_trace_id, slowest_span_id),
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
  'series, and writes explicit zeros for silent minutes of recently active throughput series. Returns points written.';

-- ============================================================== 2. baselines
create function anomaly.update_baselines(p_bucket timestamptz)
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
begin
  with pts as (
    select p.series_id, p.value from anomaly.signal_points p where p.bucket = p_bucket
  ),
  state as (
    insert into anomaly.series_state as st (series_id, n, last_bucket, last_value, ewma_mean, ewma_var,
      holt_level, holt_trend, cusum_pos, cusum_neg)
    select series_id, 1, p_bucket, value, value, 0, value, 0, 0, 0 from pts
    order by series_id
    on conflict (series_id) do update set
      n = st.n + 1,
      last_bucket = p_bucket,
      last_value = excluded.last_value,
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
                  / greatest(sqrt(st.ewma_var), abs(st.ewma_mean) * 0.01, 1e-9) - v_slack)
    where st.last_bucket is null or st.last_bucket < p_bucket
    returning 1
  ),
  seasonal as (
    insert into anomaly.seasonal_profiles as sp (series_id, period, slot, n, mean, m2)
    select series_id, period, slot, 1, value, 0
    from pts, (values ('day', v_day_slot), ('week', v_week_slot)) as s(period, slot)
    order by 1, 2, 3
    on conflict (series_id, period, slot) do update set
      n = sp.n + 1,
      mean = sp.mean + (excluded.mean - sp.mean) / (sp.n + 1),
      m2 = sp.m2 + (excluded.mean - sp.mean) * (excluded.mean - (sp.mean + (excluded.mean - sp.mean) / (sp.n + 1)))
    returning 1
  )
  select count(*) into v_rows from state;
  return v_rows;
end
$$;
comment on function anomaly.update_baselines(timestamptz) is
  'Folds the signal points of one minute into anomaly.series_state (EWMA, Holt, CUSUM) and the day/week seasonal '
  'profiles (Welford). Called by anomaly.detect() after the detectors scored that minute, so detectors never see '
  'their own bucket in the baseline. A minute already folded in is skipped. Returns the series updated.';

-- ============================================================== 3. lifecycle
create function anomaly.severity_rank(p_severity text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select array_position(array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], p_severity)
$$;
comment on function anomaly.severity_rank(text) is 'Orders severities: LOW 1, MEDIUM 2, HIGH 3, CRITICAL 4.';

create function anomaly.apply_hits(p_run_id bigint, p_through timestamptz)
returns table (opened integer, updated integer, resolved integer)
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.lifecycle');
  v_lateness interval := make_interval(secs => (anomaly.config('rollup') ->> 'allowed_lateness_seconds')::integer);
  v_quiet interval := make_interval(mins => (v_cfg ->> 'quiet_minutes')::integer);
  v_escalate integer := (v_cfg ->> 'escalate_after_minutes')::integer;
  v_breadth integer := (v_cfg ->> 'breadth_services')::integer;
  v_max_explain integer := (v_cfg ->> 'max_explanations_per_run')::integer;
  v_new record;
begin
  with hits as (
    select h.*, d.family, d.name as detector_name, s.service, s.operation, s.signal, s.scope,
           case d.family when 'latency' then 'LATENCY' when 'error_rate' then 'ERROR_RATE'
                         when 'throughput' then 'THROUGHPUT' when 'resource' then 'RESOURCE'
                         else 'DEPLOY_REGRESSION' end as anomaly_type,
           p.exemplar_trace_id, p.exemplar_span_id, p.n
    from anomaly.detector_hits h
    join anomaly.detectors d on d.name = h.detector and not d.legacy
    join anomaly.series s on s.id = h.series_id
    left join anomaly.signal_points p on p.series_id = h.series_id and p.bucket = h.bucket
    where h.run_id = p_run_id
  ),
  keyed as (
    select *, anomaly_type || '|' || subtype || '|' || service || '|' || operation || '|' || family as fingerprint
    from hits
  ),
  per_detector as (
    select fingerprint, detector_name, max(score) as score, count(distinct bucket) as buckets
    from keyed group by 1, 2
  ),
  enabled as (
    select family, count(*) as n from anomaly.detectors where enabled and not legacy group by 1
  ),
  fp_stats as (
    select fingerprint, min(bucket) as first_bucket, max(bucket) as last_bucket,
           count(distinct bucket)::integer as hit_minutes
    from keyed group by 1
  ),
  grouped as (
    select distinct on (k.fingerprint)
           k.fingerprint, k.anomaly_type, k.subtype, k.service, k.operation, k.family, k.signal,
           k.bucket as worst_bucket, k.observed, k.expected, k.lower_bound, k.upper_bound, k.score, k.details,
           k.detector_name as top_detector, k.exemplar_trace_id, k.exemplar_span_id, k.n,
           f.first_bucket, f.last_bucket, f.hit_minutes
    from keyed k join fp_stats f using (fingerprint)
    order by k.fingerprint, k.score desc, k.detector_name
  ),
  assembled as (
    select g.*,
           (select jsonb_agg(jsonb_build_object('name', pd.detector_name, 'score', round(pd.score::numeric, 3),
                                                'minutes', pd.buckets) order by pd.score desc)
            from per_detector pd where pd.fingerprint = g.fingerprint) as detectors,
           (select count(*) from per_detector pd where pd.fingerprint = g.fingerprint)::double precision
             / greatest((select e.n from enabled e where e.family = g.family), 1) as confidence
    from grouped g
  ),
  recent as (
    -- minutes with a (non-legacy) hit on the same series and subtype in the 10 minutes up to the last hit
    select f.fingerprint, count(distinct h.bucket) as minutes
    from fp_stats f
    join (select distinct fingerprint, series_id, subtype from keyed) ks using (fingerprint)
    join anomaly.detector_hits h
      on h.series_id = ks.series_id and h.subtype = ks.subtype
     and h.bucket > f.last_bucket - interval '10 minutes' and h.bucket <= f.last_bucket
    join anomaly.detectors d on d.name = h.detector and not d.legacy
    group by f.fingerprint
  ),
  gated as (
    -- Open what enough detectors agree on, what one detector is very sure of, or what persists; keep updating
    -- what is open. One-minute blips of a single detector stay in anomaly.detector_hits only.
    -- Families with only one or two detectors (throughput, deploy) cannot be asked for agreement.
    select x.* from assembled x
    where (select count(*) from per_detector pd where pd.fingerprint = x.fingerprint)
            >= least((v_cfg ->> 'min_agreeing_detectors')::integer,
                     greatest(1, coalesce((select e.n from enabled e where e.family = x.family), 1) - 1))
       or x.score >= (v_cfg ->> 'single_detector_min_score')::double precision
       or (select r.minutes from recent r where r.fingerprint = x.fingerprint)
            >= (v_cfg ->> 'sustained_minutes')::integer
       or exists (select 1 from public.trace_anomalies o where o.fingerprint = x.fingerprint and o.status <> 'RESOLVED')
  ),
  upserted as (
    insert into public.trace_anomalies as a (
      trace_id, anomaly_type, subtype, severity, status, description, fingerprint, service, operation, detector,
      score, observed_value, expected_value, first_seen, last_seen, occurrences, explanation, exemplar_span_id,
      confidence, detected_event_at, series_signal)
    select x.exemplar_trace_id, x.anomaly_type, x.subtype,
           case when x.score >= (v_cfg ->> 'severity_critical')::double precision then 'CRITICAL'
                when x.score >= (v_cfg ->> 'severity_high')::double precision then 'HIGH'
                when x.score >= (v_cfg ->> 'severity_medium')::double precision then 'MEDIUM'
                else 'LOW' end,
           'OPEN',
           format('%s of %s%s is %s, expected %s (band %s..%s); %s',
                  x.subtype, x.service, case when x.operation <> '' then ' ' || x.operation else '' end,
                  round(x.observed::numeric, 3), round(x.expected::numeric, 3),
                  round(x.lower_bound::numeric, 3), round(x.upper_bound::numeric, 3),
                  (select string_agg(d ->> 'name', ', ') from jsonb_array_elements(x.detectors) d)),
           x.fingerprint, x.service, nullif(x.operation, ''), x.top_detector, x.score, x.observed, x.expected,
           x.first_bucket, x.last_bucket + interval '1 minute', x.hit_minutes,
           jsonb_build_object(
             'observed', x.observed, 'expected', x.expected,
             'band', jsonb_build_array(x.lower_bound, x.upper_bound),
             'signal', x.signal,
             'detectors', x.detectors,
             'confidence', round(x.confidence::numeric, 3),
             'window', jsonb_build_object('first_bucket', x.first_bucket, 'last_bucket', x.last_bucket,
                                          'worst_bucket', x.worst_bucket),
             'span_count', x.n,
             'details', x.details,
             'exemplar', jsonb_build_object('trace_id', x.exemplar_trace_id, 'span_id', x.exemplar_span_id)),
           x.exemplar_span_id, least(x.confidence, 1), x.first_bucket + interval '1 minute' + v_lateness, x.signal
    from gated x
    order by x.fingerprint
    on conflict (fingerprint) where status <> 'RESOLVED' do update set
      last_seen = greatest(a.last_seen, excluded.last_seen),
      occurrences = a.occurrences + excluded.occurrences,
      confidence = greatest(a.confidence, excluded.confidence),
      score = greatest(a.score, excluded.score),
      severity = case when anomaly.severity_rank(excluded.severity) > anomaly.severity_rank(a.severity)
                      then excluded.severity else a.severity end,
      observed_value = case when excluded.score > a.score then excluded.observed_value else a.observed_value end,
      expected_value = case when excluded.score > a.score then excluded.expected_value else a.expected_value end,
      trace_id = case when excluded.score > a.score then excluded.trace_id else a.trace_id end,
      exemplar_span_id = case when excluded.score > a.score then excluded.exemplar_span_id else a.exemplar_span_id end,
      detector = case when excluded.score > a.score then excluded.detector else a.detector end,
      description = case when excluded.score > a.score then excluded.description else a.description end,
      -- keep what earlier runs explained (culprit, attributes); merge the detector list
      explanation = (case when excluded.score > a.score then excluded.explanation else a.explanation end)
        || jsonb_build_object('detectors', (
             select jsonb_agg(d order by (d ->> 'score')::numeric desc)
             from (select distinct on (e ->> 'name') e as d
                   from jsonb_array_elements(coalesce(a.explanation -> 'detectors', '[]') ||
                                             coalesce(excluded.explanation -> 'detectors', '[]')) e
                   order by e ->> 'name', (e ->> 'score')::numeric desc) m))
        || coalesce(a.explanation - array['observed', 'expected', 'band', 'detectors', 'window', 'span_count',
                                          'details', 'exemplar', 'signal', 'confidence'], '{}'),
      updated_at = now()
    returning (xmax = 0) as inserted
  )
  select count(*) filter (where inserted)::integer, count(*) filter (where not inserted)::integer
  into opened, updated from upserted;

  -- Escalation by duration and by breadth: severity = max(current, severity of the score + bonuses), so
  -- re-running it changes nothing; it only ever raises severity while the anomaly is open.
  with touched as (
    select a.id, a.severity, a.occurrences,
           case when a.score >= (v_cfg ->> 'severity_critical')::double precision then 4
                when a.score >= (v_cfg ->> 'severity_high')::double precision then 3
                when a.score >= (v_cfg ->> 'severity_medium')::double precision then 2 else 1 end as base_rank,
           (select count(distinct b.service) from public.trace_anomalies b
            where b.status <> 'RESOLVED'
              and b.first_seen between a.first_seen - interval '5 minutes' and a.first_seen + interval '5 minutes')
             as breadth
    from public.trace_anomalies a
    where a.status <> 'RESOLVED' and a.updated_at = now()
  ),
  target as (
    select id, severity, occurrences, breadth,
           least(4, base_rank + (case when occurrences >= v_escalate then 1 else 0 end)
                              + (case when breadth >= v_breadth then 1 else 0 end)) as target_rank
    from touched
  )
  update public.trace_anomalies a set
    severity = (array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'])[t.target_rank],
    explanation = a.explanation || jsonb_build_object('escalation', jsonb_build_object(
      'duration_minutes', t.occurrences, 'services_affected_together', t.breadth))
  from target t
  where a.id = t.id and t.target_rank > anomaly.severity_rank(t.severity);

  -- Explain new latency and error anomalies (bounded per run): culprit and over-represented attributes.
  -- An explanation that fails is recorded in the anomaly, never fatal to the cycle.
  for v_new in
    select a.id, a.service, a.operation, a.first_seen, a.last_seen, a.anomaly_type
    from public.trace_anomalies a
    where a.status = 'OPEN' and a.created_at = now()
      and a.operation is not null and not (a.explanation ? 'culprit')
      and a.anomaly_type in ('LATENCY', 'ERROR_RATE')
    order by a.score desc
    limit v_max_explain
  loop
    begin
      update public.trace_anomalies set explanation = explanation || jsonb_strip_nulls(jsonb_build_object(
        'culprit', case when v_new.anomaly_type = 'LATENCY' then
                     anomaly.explain_latency_culprit(v_new.service, v_new.operation, v_new.first_seen,
                       v_new.last_seen, v_new.first_seen - interval '60 minutes', v_new.first_seen) end,
        'attributes', anomaly.explain_overrepresented_attributes(v_new.service, v_new.operation, v_new.first_seen,
                       v_new.last_seen, v_new.first_seen - interval '60 minutes', v_new.first_seen,
                       p_anomalous_predicate => case when v_new.anomaly_type = 'LATENCY' then 'slow' else 'error' end)))
      where id = v_new.id;
    exception when others then
      update public.trace_anomalies
         set explanation = explanation || jsonb_build_object('explanation_error', sqlerrm)
       where id = v_new.id;
    end;
  end loop;

  -- Quiet for quiet_minutes in event time: resolve.
  with r as (
    update public.trace_anomalies
       set status = 'RESOLVED', resolved_at = now(), updated_at = now()
     where status <> 'RESOLVED'
       and last_seen <= p_through + interval '1 minute' - v_quiet
    returning 1
  )
  select count(*)::integer into resolved from r;
  return next;
end
$$;
comment on function anomaly.apply_hits(bigint, timestamptz) is
  'Anomaly lifecycle for one detection run: groups the run''s hits by fingerprint (type|subtype|service|operation|'
  'family), opens (when min_agreeing_detectors agree, or one scores single_detector_min_score) or updates one '
  'public.trace_anomalies row each (detectors agreeing raise confidence, severity only '
  'escalates while open: by score, duration and breadth), explains new latency/error anomalies (culprit, '
  'over-represented attributes; bounded by max_explanations_per_run) and resolves anomalies quiet for quiet_minutes.';

-- ============================================================== the cycle
create function anomaly.detect()
returns anomaly.detect_result
language plpgsql
set search_path = ''
-- JIT compilation of the detectors' large plans costs more than running them (3.7 s vs ms, measured)
set jit = off
as $$
declare
  v_engine jsonb := anomaly.config('detect.engine');
  v_run bigint;
  v_watermark timestamptz;
  v_from timestamptz;
  v_through timestamptz;
  v_signals_from timestamptz;
  v_bucket timestamptz;
  v_det record;
  v_rows bigint := 0;
  v_hits integer := 0;
  v_n integer;
  v_errors jsonb := '[]'::jsonb;
  v_life record;
  v_result anomaly.detect_result;
begin
  if not pg_try_advisory_xact_lock(hashtext('anomaly.detect')) then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;
  select watermark into v_watermark from anomaly.rollup_state;
  if v_watermark is null then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;
  v_through := date_trunc('minute', v_watermark) - interval '1 minute';
  select last_bucket into v_from from anomaly.detector_state where detector = 'engine';
  v_from := greatest(
    coalesce(v_from, v_through - make_interval(mins => (v_engine ->> 'initial_lookback_minutes')::integer)),
    v_through - make_interval(mins => (v_engine ->> 'max_catchup_minutes')::integer));
  if v_through <= v_from then
    return (0, 0, 0, 0, v_from)::anomaly.detect_result;
  end if;

  insert into anomaly.detection_runs (scored_from, scored_through, watermark)
  values (v_from, v_through, v_watermark) returning id into v_run;

  -- Signals have their own cursor: on the first cycle they start history_minutes before the first scored minute,
  -- so trailing windows and baselines have history; those earlier minutes are folded into the baselines unscored.
  select last_bucket into v_signals_from from anomaly.detector_state where detector = 'signals';
  if v_signals_from is null then
    v_signals_from := v_from - make_interval(mins => (v_engine ->> 'history_minutes')::integer);
    v_rows := anomaly.extract_signals(v_signals_from, v_through);
    for v_bucket in select generate_series(v_signals_from + interval '1 minute', v_from, interval '1 minute') loop
      perform anomaly.update_baselines(v_bucket);
    end loop;
  else
    v_rows := anomaly.extract_signals(least(v_signals_from, v_from), v_through);
  end if;
  insert into anomaly.detector_state (detector, last_bucket) values ('signals', v_through)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();

  for v_bucket in select generate_series(v_from + interval '1 minute', v_through, interval '1 minute') loop
    for v_det in
      select d.name, d.function_name, anomaly.config(d.config_key) as cfg
      from anomaly.detectors d where d.enabled order by d.name
    loop
      begin
        execute format(
          'insert into anomaly.detector_hits (run_id, detector, series_id, bucket, subtype, observed, expected, '
          'lower_bound, upper_bound, score, details) '
          'select $1, $2, h.series_id, h.bucket, h.subtype, h.observed, h.expected, h.lower_bound, h.upper_bound, '
          'h.score, coalesce(h.details, ''{}'') from %s($3, $4) h '
          'on conflict (detector, series_id, bucket) do update set run_id = excluded.run_id, score = excluded.score, '
          'observed = excluded.observed, expected = excluded.expected, lower_bound = excluded.lower_bound, '
          'upper_bound = excluded.upper_bound, details = excluded.details, subtype = excluded.subtype',
          v_det.function_name)
        using v_run, v_det.name, v_bucket, v_det.cfg;
        get diagnostics v_n = row_count;
        v_hits := v_hits + v_n;
      exception when others then
        v_errors := v_errors || jsonb_build_object('detector', v_det.name, 'bucket', v_bucket,
                                                   'sqlstate', sqlstate, 'message', sqlerrm);
      end;
    end loop;
    perform anomaly.update_baselines(v_bucket);
  end loop;

  select * into v_life from anomaly.apply_hits(v_run, v_through);

  insert into anomaly.detector_state (detector, last_bucket) values ('engine', v_through)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();

  update anomaly.detection_runs set
    finished_at = clock_timestamp(), rows_read = v_rows, hits = v_hits,
    anomalies_opened = v_life.opened, anomalies_updated = v_life.updated, anomalies_resolved = v_life.resolved,
    errors = v_errors
  where id = v_run;

  v_result := (v_hits, v_life.opened, v_life.updated, v_life.resolved, v_through);
  return v_result;
end
$$;
comment on function anomaly.detect() is
  'One detection cycle (job rollup-detect, every minute): extracts signal points for the complete minutes since the '
  'last cycle (up to the rollup watermark), runs every enabled detector of anomaly.detectors on each new minute in '
  'time order and folds the minute into the baselines afterwards (no look-ahead), logs hits in anomaly.detector_hits, '
  'applies the anomaly lifecycle and records the run in anomaly.detection_runs. A failing detector is skipped and '
  'logged. Returns (hits, opened, updated, resolved, scored_through). Example: select * from anomaly.detect();';

create function anomaly.drop_old_detection_data()
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.engine');
  v_n integer;
  v_total integer := 0;
begin
  delete from anomaly.signal_points
  where bucket < now() - make_interval(days => (v_cfg ->> 'signal_retention_days')::integer);
  get diagnostics v_n = row_count; v_total := v_total + v_n;
  delete from anomaly.detection_runs
  where started_at < now() - make_interval(days => (v_cfg ->> 'hits_retention_days')::integer);
  get diagnostics v_n = row_count; v_total := v_total + v_n;
  return v_total;
end
$$;
comment on function anomaly.drop_old_detection_data() is
  'Retention: signal points older than detect.engine.signal_retention_days, detection runs (and their hits) older '
  'than hits_retention_days. Returns rows deleted. Scheduled by the retention job.';

update anomaly.jobs set command = command || ' select anomaly.drop_old_detection_data();' where name = 'retention';

-- ============================================================== the z-score detectors, ported
create function anomaly.detect_latency_zscore(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with cur as (
    select p.series_id, p.value, p.n, s.operation, s.service
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    where p.bucket = p_bucket and s.signal = 'latency_p95' and s.scope = 'operation'
      and p.n >= (p_config ->> 'min_span_count')::integer
  ),
  base as (
    select c.series_id, count(h.value) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
    from cur c
    join anomaly.signal_points h
      on h.series_id = c.series_id and h.n > 0
     and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
     and h.bucket < p_bucket
    group by c.series_id
  ),
  scored as (
    select c.*, b.points, b.mean, b.sd,
           greatest(b.sd, b.mean * 0.05, 1.0) as sd_eff,
           (c.value - b.mean) / greatest(b.sd, b.mean * 0.05, 1.0) as z
    from cur c join base b using (series_id)
    where b.points >= (p_config ->> 'min_points')::integer
  )
  select s.series_id, p_bucket, 'latency_p95', s.value, s.mean,
         s.mean - (p_config ->> 'threshold')::double precision * s.sd_eff,
         s.mean + (p_config ->> 'threshold')::double precision * s.sd_eff,
         s.z, jsonb_build_object('baseline_points', s.points, 'stddev', s.sd, 'direction', 'up')
  from scored s
  join anomaly.series se on se.id = s.series_id
  join anomaly.operation_minutes m on m.service_name = se.service and m.operation = se.operation and m.bucket = p_bucket
  where s.z >= (p_config ->> 'threshold')::double precision
    and s.value >= s.mean * (1 + (p_config ->> 'min_relative_change')::double precision)
    -- a shifted quantile, not one slow outlier: at least 2 spans (and the quantile's share) above the band
    and anomaly.histogram_count_above(m.latency_histogram, s.mean + (p_config ->> 'threshold')::double precision * s.sd_eff)
        >= greatest(2, ceil((1 - (p_config ->> 'latency_quantile')::double precision) * s.n))
$$;
comment on function anomaly.detect_latency_zscore(timestamptz, jsonb) is
  'Detector latency_zscore: p95 latency of an operation vs the mean and sigma of its trailing window_minutes '
  '(config detect.zscore; sigma floored at 5 % of the mean or 1 ms). Fires when z >= threshold, the value moved by '
  'min_relative_change, the minute has min_span_count spans and at least 2 spans lie above the band.';

create function anomaly.detect_error_zscore(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with cur as (
    select p.series_id, p.value, p.n, p.k
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    where p.bucket = p_bucket and s.signal = 'error_rate' and s.scope = 'operation'
      and p.k >= (p_config ->> 'min_error_count')::integer
  ),
  base as (
    select c.series_id, count(h.value) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
    from cur c
    join anomaly.signal_points h
      on h.series_id = c.series_id and h.n > 0
     and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
     and h.bucket < p_bucket
    group by c.series_id
  ),
  scored as (
    select c.*, b.points, b.mean, b.sd,
           -- sigma floor: the binomial noise of a rate at this volume, and 1 percentage point
           greatest(b.sd, sqrt(greatest(b.mean, 0.001) * (1 - least(b.mean, 0.999)) / c.n), 0.01) as sd_eff
    from cur c join base b using (series_id)
    where b.points >= (p_config ->> 'min_points')::integer
  )
  select series_id, p_bucket, 'error_rate', value, mean,
         greatest(0, mean - (p_config ->> 'threshold')::double precision * sd_eff),
         mean + (p_config ->> 'threshold')::double precision * sd_eff,
         (value - mean) / sd_eff,
         jsonb_build_object('baseline_points', points, 'stddev', sd, 'errors', k, 'spans', n, 'direction', 'up')
  from scored
  where (value - mean) / sd_eff >= (p_config ->> 'threshold')::double precision
    and value >= mean * (1 + (p_config ->> 'min_relative_change')::double precision) + 0.01
$$;
comment on function anomaly.detect_error_zscore(timestamptz, jsonb) is
  'Detector error_zscore: error rate of an operation vs the mean and sigma of its trailing window (config '
  'detect.zscore; sigma floored at the binomial noise sqrt(p(1-p)/n) and 0.01). Fires when z >= threshold with at '
  'least min_error_count errors in the minute.';

insert into anomaly.detectors (name, family, signals, function_name, config_key, description) values
  ('latency_zscore', 'latency', '{latency_p95}', 'anomaly.detect_latency_zscore', 'detect.zscore',
   'Trailing-window z-score of p95 latency per operation (3 sigma by default).'),
  ('error_zscore', 'error_rate', '{error_rate}', 'anomaly.detect_error_zscore', 'detect.zscore',
   'Trailing-window z-score of the error rate per operation, sigma floored at binomial noise.');

grant select, insert, update, delete on anomaly.detector_state, anomaly.series, anomaly.signal_points, anomaly.series_state,
  anomaly.seasonal_profiles, anomaly.detectors, anomaly.detection_runs, anomaly.detector_hits to service_role;
grant execute on function anomaly.extract_signals(timestamptz, timestamptz), anomaly.update_baselines(timestamptz),
  anomaly.apply_hits(bigint, timestamptz), anomaly.severity_rank(text), anomaly.drop_old_detection_data(),
  anomaly.detect(),
  anomaly.detect_latency_zscore(timestamptz, jsonb), anomaly.detect_error_zscore(timestamptz, jsonb) to service_role;
