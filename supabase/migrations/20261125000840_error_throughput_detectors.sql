-- 20261125000840_error_throughput_detectors.sql — error-rate and throughput detectors for the detection engine:
-- error rate by moving average with sigma bands, one-sided CUSUM and a one-sample proportion test; throughput by a
-- Holt / seasonal forecast with prediction bands, and a silence detector for series that stop reporting.
--
-- All five follow the contract of 20261125000800: anomaly.detect_<name>(p_bucket, p_config) returns only the
-- anomalous points of minute p_bucket, reads signal points with bucket < p_bucket and baselines that hold only
-- earlier minutes, and is configured by a validated key detect.<name>. Error-rate detectors fire upwards only (a
-- falling error rate is good news) under subtype 'error_rate'; throughput detectors use 'throughput_spike' and
-- 'throughput_drop', so detectors that agree on a condition raise one anomaly's confidence.
--
-- Cost per minute is bounded by the points of that minute: the sigma band and the proportion test read a trailing
-- window only for series with at least min_error_count errors in the minute; CUSUM keeps its running sum in
-- anomaly.error_cusum_runs (one row per series with a positive sum) and reads a window only where a run starts;
-- the forecast reads series_state and one seasonal slot by primary key; silence looks back only for zero minutes.
-- Each detector runs with jit = off: planned with generic parameters, their cost estimates pass jit_above_cost, and
-- compiling took ~40 ms, more than the queries themselves (10-20 ms for 2 000 error-rate + 2 000 throughput series).

-- ============================================================== configuration
insert into anomaly.config_keys (key, spec, defaults, description) values
(
  'detect.error_sigma_band',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 1440},
    "k_sigma": {"type": "number", "min": 1, "max": 20},
    "min_points": {"type": "integer", "min": 3, "max": 1440},
    "min_error_count": {"type": "integer", "min": 1, "max": 100000},
    "min_sigma": {"type": "number", "min": 0, "max": 0.5},
    "min_baseline_rate": {"type": "number", "min": 0, "max": 0.5}}',
  '{"window_minutes": 30, "k_sigma": 3.5, "min_points": 10, "min_error_count": 5, "min_sigma": 0.005,
    "min_baseline_rate": 0.001}',
  'Error rate vs its moving average over the trailing window_minutes: fires above mean + k_sigma * sigma, sigma being '
  'the larger of the window''s standard deviation, the binomial noise sqrt(p(1-p)/n) of this minute''s volume (p at '
  'least min_baseline_rate) and min_sigma (absolute, in rate units: 0.005 = half a percentage point). Needs '
  'min_error_count errors in the minute and min_points minutes of history. Raise k_sigma or min_sigma for fewer alarms.'
),
(
  'detect.error_cusum',
  '{"slack_k": {"type": "number", "min": 0, "max": 5},
    "decision_h": {"type": "number", "min": 0.5, "max": 100},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_run_errors": {"type": "integer", "min": 1, "max": 100000},
    "min_history_minutes": {"type": "integer", "min": 1, "max": 10080},
    "restart_headstart": {"type": "number", "min": 0, "max": 1},
    "baseline_window_minutes": {"type": "integer", "min": 10, "max": 1440},
    "max_run_minutes": {"type": "integer", "min": 5, "max": 1440},
    "min_baseline_rate": {"type": "number", "min": 0.0001, "max": 0.5}}',
  '{"slack_k": 0.5, "decision_h": 5, "restart_headstart": 0.5, "min_span_count": 10, "min_run_errors": 5,
    "min_history_minutes": 30, "baseline_window_minutes": 60, "max_run_minutes": 60, "min_baseline_rate": 0.001}',
  'One-sided upper CUSUM of the error rate in binomial sigmas of each minute''s volume against the baseline rate p0 '
  '(errors / spans pooled over the baseline_window_minutes before the run started, at least min_baseline_rate; '
  'frozen for the run): S = max(0, S + z - slack_k), signals when S > decision_h, the run holds min_run_errors '
  'errors and the minute is above p0, then restarts from decision_h * restart_headstart (0 = classic restart, 1 = '
  'signal again on every minute above p0 + slack_k sigma). Minutes with fewer than min_span_count spans carry S '
  'unchanged; a series is scored once it is min_history_minutes old. A run older than max_run_minutes restarts '
  'against a fresh baseline (the new level is accepted). Lower slack_k to catch smaller shifts, raise decision_h for '
  'fewer false alarms.'
),
(
  'detect.error_proportion',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 1440},
    "threshold": {"type": "number", "min": 1, "max": 20},
    "min_points": {"type": "integer", "min": 3, "max": 1440},
    "min_error_count": {"type": "integer", "min": 1, "max": 100000},
    "min_baseline_rate": {"type": "number", "min": 0.0001, "max": 0.5},
    "min_rate_increase": {"type": "number", "min": 0, "max": 1}}',
  '{"window_minutes": 30, "threshold": 4, "min_points": 10, "min_error_count": 5, "min_baseline_rate": 0.001,
    "min_rate_increase": 0.01}',
  'One-sample proportion z-test of this minute''s k errors out of n spans against the pooled error rate of the '
  'trailing window_minutes (at least min_baseline_rate): fires when z >= threshold, the rate rose by at least '
  'min_rate_increase (absolute; keeps tiny but significant shifts on very busy series quiet) and the minute has '
  'min_error_count errors.'
),
(
  'detect.throughput_forecast',
  '{"threshold": {"type": "number", "min": 1, "max": 20},
    "min_history_minutes": {"type": "integer", "min": 5, "max": 10080},
    "seasonal_min_periods": {"type": "integer", "min": 1, "max": 52},
    "seasonal_weight": {"type": "number", "min": 0, "max": 1},
    "min_relative_change": {"type": "number", "min": 0, "max": 10},
    "min_expected_for_drop": {"type": "number", "min": 0, "max": 1000000},
    "min_spike_count": {"type": "number", "min": 0, "max": 1000000}}',
  '{"threshold": 4, "min_history_minutes": 30, "seasonal_min_periods": 3, "seasonal_weight": 0.8,
    "min_relative_change": 0.5, "min_expected_for_drop": 20, "min_spike_count": 30}',
  'Spans per minute vs a forecast: the seasonal profile mean (day slot, else week slot, once the slot holds '
  'seasonal_min_periods days or weeks of minutes) blended with the Holt level + trend (seasonal_weight on the '
  'profile), else Holt alone. Band = expected +/- threshold * sqrt(residual variance (slot or EWMA) + expected (Poisson)). '
  'A spike also needs observed >= expected * (1 + min_relative_change) and min_spike_count spans; a drop needs '
  'observed <= expected * (1 - min_relative_change) and expected >= min_expected_for_drop, so quiet series never alarm.'
),
(
  'detect.throughput_silence',
  '{"active_window_minutes": {"type": "integer", "min": 5, "max": 1440},
    "min_active_rate": {"type": "number", "min": 0.1, "max": 1000000},
    "min_active_minutes": {"type": "integer", "min": 1, "max": 1440},
    "min_silent_minutes": {"type": "integer", "min": 1, "max": 1440},
    "score": {"type": "number", "min": 3, "max": 100},
    "respect_seasonal": {"type": "boolean"},
    "seasonal_min_periods": {"type": "integer", "min": 1, "max": 52}}',
  '{"active_window_minutes": 30, "min_active_rate": 10, "min_active_minutes": 10, "min_silent_minutes": 2,
    "score": 8, "respect_seasonal": true, "seasonal_min_periods": 3}',
  'A series that averaged min_active_rate spans a minute over the active_window_minutes before it stopped (with data '
  'in min_active_minutes of them) and has had 0 spans for min_silent_minutes consecutive minutes: a throughput_drop '
  'with a fixed score (8 = high: a service going silent is an anomaly). With respect_seasonal, a silence the day '
  'profile expects (slot mean below min_active_rate, slot holding seasonal_min_periods days) is not reported. '
  'Silent minutes exist as zeros only for detect.engine.silence_lookback_minutes after the last data.'
);

-- ============================================================== error rate: moving average with sigma bands
create function anomaly.detect_error_sigma_band(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with cur as (
    -- Only minutes with enough errors to matter are scored: this is the sparse-series guard and keeps the trailing
    -- window read to the few series that had errors this minute.
    select p.series_id, p.value, p.n, p.k
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'error_rate'
    where p.bucket = p_bucket and p.k >= (p_config ->> 'min_error_count')::integer
  ),
  base as (
    -- one primary-key range scan per candidate (a lateral aggregate), not a scan of every series' window
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    cross join lateral (
      select count(*) as points, sum(h.k)::double precision / nullif(sum(h.n), 0) as mean,
             coalesce(stddev_samp(h.value), 0) as sd
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  ),
  scored as (
    select c.series_id, c.value, c.n, c.k, b.points, b.mean, b.sd,
           -- sigma floors: the binomial noise of a rate at this minute's volume (a window of identical minutes
           -- has sd 0) and an absolute floor so busy series do not alarm on fractions of a percentage point
           sqrt(greatest(b.mean, (p_config ->> 'min_baseline_rate')::double precision)
                * (1 - least(b.mean, 0.999)) / c.n) as binomial_sd
    from cur c join base b using (series_id)
    where b.points >= (p_config ->> 'min_points')::integer
  ),
  banded as (
    select s.*, greatest(s.sd, s.binomial_sd, (p_config ->> 'min_sigma')::double precision) as sd_eff,
           (p_config ->> 'k_sigma')::double precision as k_sigma
    from scored s
  )
  select b.series_id, p_bucket, 'error_rate', b.value, b.mean,
         greatest(0, b.mean - b.k_sigma * b.sd_eff), least(1, b.mean + b.k_sigma * b.sd_eff),
         (b.value - b.mean) / b.sd_eff,
         jsonb_build_object('direction', 'up', 'errors', b.k, 'spans', b.n, 'baseline_points', b.points,
                            'window_stddev', b.sd, 'binomial_stddev', b.binomial_sd, 'sigma', b.sd_eff,
                            'k_sigma', b.k_sigma)
  from banded b
  where b.value > b.mean + b.k_sigma * b.sd_eff
$$;
comment on function anomaly.detect_error_sigma_band(timestamptz, jsonb) is
  'Detector error_sigma_band: the error rate of an operation or service vs its moving average (errors / spans pooled '
  'over the trailing window_minutes) with sigma bands. sigma = max(window standard deviation, binomial noise '
  'sqrt(p(1-p)/n) at this minute''s volume, min_sigma). Fires (subtype error_rate, direction up) when the rate is '
  'above mean + k_sigma * sigma, the minute has min_error_count errors and the window min_points minutes; score = '
  'z. Config detect.error_sigma_band. Example: select * from anomaly.detect_error_sigma_band(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.error_sigma_band''));';

-- ============================================================== error rate: CUSUM
create table anomaly.error_cusum_runs (
  series_id bigint not null,
  bucket timestamptz not null,
  s double precision not null,
  signalled boolean not null,
  p0 double precision not null,
  run_start timestamptz not null,
  run_errors bigint not null,
  run_spans bigint not null,
  constraint error_cusum_runs_pkey primary key (series_id, bucket),
  constraint error_cusum_runs_s_check check (s > 0),
  constraint error_cusum_runs_p0_check check (p0 > 0 and p0 < 1),
  constraint error_cusum_runs_run_check check (run_start <= bucket and run_errors between 0 and run_spans)
);
comment on table anomaly.error_cusum_runs is
  'State of the error_cusum detector: one row per error-rate series and minute in which its upper CUSUM sum s (in '
  'binomial sigmas) is positive, whether that minute signalled, the baseline rate p0 frozen when the run (S leaving '
  '0) started, and the errors and spans of the run so far. A series without a row for the previous minute has S = 0. '
  'Written only by anomaly.detect_error_cusum for its own minute from the row of the minute before, so re-running a '
  'minute gives the same rows; rows older than an hour are dropped as it runs. No foreign key to anomaly.series: '
  'rows live an hour at most, and checking one for each of the ~1 000 rows a minute written for 2 000 series added '
  'about a fifth to the detector''s time.';
comment on column anomaly.error_cusum_runs.s is
  'CUSUM sum S_t = max(0, S_t-1 + z_t - slack_k), z_t = (rate - p0) / sqrt(p0 (1 - p0) / n_t), before any restart; '
  'after a signal the next minute starts from decision_h * restart_headstart instead of S_t.';
create index error_cusum_runs_bucket_idx on anomaly.error_cusum_runs (bucket);

create function anomaly.detect_error_cusum(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_k double precision := (p_config ->> 'slack_k')::double precision;
  v_h double precision := (p_config ->> 'decision_h')::double precision;
  v_headstart double precision := (p_config ->> 'decision_h')::double precision
                                  * (p_config ->> 'restart_headstart')::double precision;
  v_min_spans integer := (p_config ->> 'min_span_count')::integer;
  v_min_run_errors integer := (p_config ->> 'min_run_errors')::integer;
  v_min_history integer := (p_config ->> 'min_history_minutes')::integer;
  v_max_run interval := make_interval(mins => (p_config ->> 'max_run_minutes')::integer);
  v_window interval := make_interval(mins => (p_config ->> 'baseline_window_minutes')::integer);
  v_min_rate double precision := (p_config ->> 'min_baseline_rate')::double precision;
begin
  -- Re-running a minute replaces its rows (they derive only from the previous minute's rows and this minute's
  -- points); rows older than an hour are no longer needed (a step only reads the minute before it).
  delete from anomaly.error_cusum_runs
  where bucket = p_bucket or bucket < p_bucket - interval '60 minutes';

  insert into anomaly.error_cusum_runs (series_id, bucket, s, signalled, p0, run_start, run_errors, run_spans)
  select x.series_id, p_bucket, x.s,
         x.counted and x.s > v_h and x.run_errors >= v_min_run_errors and x.value > x.p0,
         x.p0, x.run_start, x.run_errors, x.run_spans
  from (
    select c.series_id, c.value, c.counted, c.p0, coalesce(c.run_start, p_bucket) as run_start,
           case when c.counted
                then greatest(0, coalesce(c.prev_s, 0) + (c.value - c.p0) / sqrt(c.p0 * (1 - c.p0) / c.n) - v_k)
                else coalesce(c.prev_s, 0) end as s,
           coalesce(c.run_errors, 0) + case when c.counted then c.k else 0 end as run_errors,
           coalesce(c.run_spans, 0) + case when c.counted then c.n else 0 end as run_spans
    from (
      select p.series_id, p.value, p.n, p.k, p.n >= v_min_spans as counted,
             -- restart after a signal (Page), from a head start (fast initial response, Lucas & Crosier 1982):
             -- a shift that goes on signals again within a few minutes, one that ended decays in a few
             -- minutes instead of reporting while a sum of many sigmas runs down
             case when r.signalled then v_headstart else r.s end as prev_s,
             r.run_start, r.run_errors, r.run_spans,
             -- Baseline, frozen for the run: errors / spans pooled over the baseline window before p_bucket. Not the
             -- engine's EWMA itself: a run tends to start just when a short EWMA dips (that is when a normal minute
             -- looks high), and freezing that dip made noise look like a shift. The window is read only where a
             -- run can start: no run yet, errors in this minute and a rate above the EWMA (about a third of the
             -- series with errors); elsewhere p0 stays null and no run starts.
             coalesce(r.p0, case when w.rate is not null then least(greatest(w.rate, v_min_rate), 0.99) end) as p0
      from anomaly.signal_points p
      join anomaly.series s
        on s.id = p.series_id and s.signal = 'error_rate'
       and s.first_bucket <= p_bucket - make_interval(mins => v_min_history)
      left join anomaly.series_state st on st.series_id = p.series_id
      -- a run longer than max_run_minutes ends: the new level is accepted and a new run starts from a fresh p0
      left join anomaly.error_cusum_runs r
        on r.series_id = p.series_id and r.bucket = p_bucket - interval '1 minute'
       and r.run_start > p_bucket - v_max_run
      left join lateral (
        select sum(h.k)::double precision / nullif(sum(h.n), 0) as rate
        from anomaly.signal_points h
        where r.series_id is null and p.k > 0 and p.n >= v_min_spans and p.value > coalesce(st.ewma_mean, 0)
          and h.series_id = p.series_id and h.n > 0
          and h.bucket >= p_bucket - v_window and h.bucket < p_bucket
      ) w on true
      where p.bucket = p_bucket and p.n > 0
    ) c
  ) x
  where x.s > 0
  order by x.series_id;

  return query
  select r.series_id, p_bucket, 'error_rate'::text, p.value, r.p0,
         greatest(0, r.p0 - v_k * sqrt(r.p0 * (1 - r.p0) / p.n)),
         r.p0 + v_k * sqrt(r.p0 * (1 - r.p0) / p.n),
         anomaly.proportion_z(r.run_errors, r.run_spans, r.p0),
         jsonb_build_object('direction', 'up', 'cusum', r.s, 'slack_k', v_k, 'decision_h', v_h,
                            'baseline_rate', r.p0, 'run_start', r.run_start,
                            'run_minutes', (extract(epoch from p_bucket - r.run_start) / 60)::integer + 1,
                            'run_errors', r.run_errors, 'run_spans', r.run_spans,
                            'run_rate', r.run_errors::double precision / r.run_spans,
                            'errors', p.k, 'spans', p.n)
  from anomaly.error_cusum_runs r
  join anomaly.signal_points p on p.series_id = r.series_id and p.bucket = r.bucket
  where r.bucket = p_bucket and r.signalled;
end
$$;
comment on function anomaly.detect_error_cusum(timestamptz, jsonb) is
  'Detector error_cusum: one-sided upper CUSUM (Page) of the error rate of an operation or service, in binomial '
  'sigmas of each minute''s volume against the baseline rate p0 (errors / spans pooled over the '
  'baseline_window_minutes before the run started, frozen for the run): S_t = max(0, S_t-1 + z_t - slack_k). '
  'Signals (subtype error_rate, direction up) when S > decision_h, the run holds min_run_errors errors and the '
  'minute is above p0, then restarts from decision_h * restart_headstart, so a sustained shift signals every few '
  'minutes and an ended one stops within minutes. Score = proportion z of the run (errors vs spans since S left 0), '
  'about 2 sqrt(slack_k * decision_h) ~ 3.2 or more at the alarm line. Catches sustained small increases (1 % -> 3 % '
  'at 100 spans/min signals in the 4th minute, then every 2nd) that a 3-sigma test misses; a run lasts at most '
  'max_run_minutes. Keeps its state in anomaly.error_cusum_runs, written for p_bucket from the row of p_bucket - 1 '
  'minute only (look-ahead free; re-running a minute is idempotent). Config detect.error_cusum. Example: select * '
  'from anomaly.detect_error_cusum(''2026-03-01 10:00+00'', anomaly.config(''detect.error_cusum''));';

-- ============================================================== error rate: proportion test
create function anomaly.detect_error_proportion(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with cur as (
    select p.series_id, p.value, p.n, p.k
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'error_rate'
    where p.bucket = p_bucket and p.k >= (p_config ->> 'min_error_count')::integer
  ),
  base as (
    -- one primary-key range scan per candidate (a lateral aggregate), not a scan of every series' window
    select c.series_id, w.points, w.errors, w.spans
    from cur c
    cross join lateral (
      select count(*) as points, sum(h.k) as errors, sum(h.n) as spans
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  ),
  tested as (
    select c.series_id, c.value, c.n, c.k, b.points, b.errors, b.spans,
           b.errors::double precision / b.spans as rate,
           least(greatest(b.errors::double precision / b.spans,
                          (p_config ->> 'min_baseline_rate')::double precision), 0.999) as p0
    from cur c join base b using (series_id)
    where b.points >= (p_config ->> 'min_points')::integer and b.spans > 0
  ),
  scored as (
    select t.*, anomaly.proportion_z(t.k, t.n, t.p0) as z
    from tested t
  )
  select s.series_id, p_bucket, 'error_rate', s.value, s.rate,
         greatest(0, s.p0 - (p_config ->> 'threshold')::double precision * sqrt(s.p0 * (1 - s.p0) / s.n)),
         s.p0 + (p_config ->> 'threshold')::double precision * sqrt(s.p0 * (1 - s.p0) / s.n),
         s.z,
         jsonb_build_object('direction', 'up', 'errors', s.k, 'spans', s.n, 'baseline_rate', s.rate,
                            'baseline_errors', s.errors, 'baseline_spans', s.spans, 'baseline_points', s.points,
                            'p_value', anomaly.normal_sf(s.z))
  from scored s
  where s.z >= (p_config ->> 'threshold')::double precision
    and s.value >= s.rate + (p_config ->> 'min_rate_increase')::double precision
$$;
comment on function anomaly.detect_error_proportion(timestamptz, jsonb) is
  'Detector error_proportion: one-sample proportion z-test (anomaly.proportion_z) of this minute''s k errors out of '
  'n spans of an operation or service against p0 = errors / spans pooled over the trailing window_minutes (at least '
  'min_baseline_rate). Fires (subtype error_rate, direction up) when z >= threshold, the rate rose by '
  'min_rate_increase and the minute has min_error_count errors; score = z, one-sided p-value in details. Config '
  'detect.error_proportion. Example: select * from anomaly.detect_error_proportion(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.error_proportion''));';

-- ============================================================== throughput: forecast with prediction bands
create function anomaly.detect_throughput_forecast(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with slots as materialized (
    -- the same slots anomaly.update_baselines folds minutes into (UTC minute of day / day_slot_minutes; hour of
    -- the ISO week, Monday 00h = 0); materialized, so the config is read once and not in every index probe
    select b.slot_minutes,
           ((extract(hour from p_bucket at time zone 'UTC') * 60
             + extract(minute from p_bucket at time zone 'UTC'))::integer / b.slot_minutes)::smallint as day_slot,
           (extract(isodow from p_bucket at time zone 'UTC')::integer * 24 - 24
             + extract(hour from p_bucket at time zone 'UTC')::integer)::smallint as week_slot,
           (p_config ->> 'seasonal_min_periods')::integer as periods
    from (select (anomaly.config('detect.baseline') ->> 'day_slot_minutes')::integer as slot_minutes) b
  ),
  cur as materialized (
    select p.series_id, p.value, p.n, st.ewma_var, greatest(0, st.holt_level + st.holt_trend) as holt,
           d.n as day_n, d.mean as day_mean, d.m2 as day_m2,
           -- the week slot is probed only while the day slot is not usable yet (CASE evaluates it lazily)
           case when d.n is null then
             (select sp from anomaly.seasonal_profiles sp
              where sp.series_id = p.series_id and sp.period = 'week' and sp.slot = sl.week_slot
                and sp.n >= sl.periods * 60)
           end as week
    from slots sl
    cross join anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'throughput'
    join anomaly.series_state st on st.series_id = p.series_id
     and st.n >= (p_config ->> 'min_history_minutes')::integer
    -- a slot counts once it holds seasonal_min_periods periods' worth of minutes (a day slot gets slot_minutes
    -- samples a day, a week slot 60 a week), so the profile is not just the last few minutes. Lateral lookups:
    -- one primary-key probe per series (two while the day slot is young), never a scan of every series' slot.
    left join lateral (
      select sp.n, sp.mean, sp.m2 from anomaly.seasonal_profiles sp
      where sp.series_id = p.series_id and sp.period = 'day' and sp.slot = sl.day_slot
        and sp.n >= sl.periods * sl.slot_minutes
    ) d on true
    where p.bucket = p_bucket
  ),
  model as (
    select c.series_id, c.value, c.n, c.holt,
           case when c.day_n is not null then 'day' when (c.week).n is not null then 'week' else 'holt' end as basis,
           coalesce(c.day_mean, (c.week).mean) as slot_mean,
           coalesce(c.day_m2 / nullif(c.day_n - 1, 0), (c.week).m2 / nullif((c.week).n - 1, 0), 0) as slot_var,
           coalesce(c.ewma_var, 0) as ewma_var
    from cur c
  ),
  forecast as (
    select m.*,
           case when m.basis = 'holt' then m.holt
                else (p_config ->> 'seasonal_weight')::double precision * m.slot_mean
                     + (1 - (p_config ->> 'seasonal_weight')::double precision) * m.holt end as expected,
           case when m.basis = 'holt' then m.ewma_var else m.slot_var end as resid_var
    from model m
  ),
  banded as (
    select f.*,
           -- residual spread plus Poisson counting noise; at least one span (a count is never more precise)
           sqrt(greatest(f.resid_var, 0) + greatest(f.expected, 1)) as sigma,
           (p_config ->> 'threshold')::double precision as threshold,
           (p_config ->> 'min_relative_change')::double precision as rel
    from forecast f
  )
  select b.series_id, p_bucket,
         case when b.value > b.expected then 'throughput_spike' else 'throughput_drop' end,
         b.value, b.expected, greatest(0, b.expected - b.threshold * b.sigma), b.expected + b.threshold * b.sigma,
         abs(b.value - b.expected) / b.sigma,
         jsonb_build_object('direction', case when b.value > b.expected then 'up' else 'down' end,
                            'basis', b.basis, 'holt_forecast', b.holt, 'seasonal_mean', b.slot_mean,
                            'sigma', b.sigma, 'residual_stddev', sqrt(greatest(b.resid_var, 0)),
                            'ratio', b.value / nullif(b.expected, 0))
  from banded b
  where (b.value > b.expected + b.threshold * b.sigma
         and b.value >= b.expected * (1 + b.rel)
         and b.value >= (p_config ->> 'min_spike_count')::double precision)
     or (b.value < b.expected - b.threshold * b.sigma
         and b.value <= b.expected * (1 - b.rel)
         and b.expected >= (p_config ->> 'min_expected_for_drop')::double precision)
$$;
comment on function anomaly.detect_throughput_forecast(timestamptz, jsonb) is
  'Detector throughput_forecast: spans per minute of an operation or service vs a forecast. Expected = the seasonal '
  'profile mean of this minute''s day slot (else its hour-of-week slot) once the slot holds seasonal_min_periods '
  'days (weeks) of samples, blended with the Holt level + trend (seasonal_weight on the profile); without a usable '
  'profile, Holt level + trend alone. Band = expected +/- threshold * sqrt(slot variance or EWMA variance + '
  'expected). Fires throughput_spike (observed above the band, >= (1 + min_relative_change) x expected, >= '
  'min_spike_count) or throughput_drop (below the band, <= (1 - min_relative_change) x expected, expected >= '
  'min_expected_for_drop); score = |z|; details.basis says which forecast was used. Config '
  'detect.throughput_forecast. Example: select * from anomaly.detect_throughput_forecast(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.throughput_forecast''));';

-- ============================================================== throughput: silence
create function anomaly.detect_throughput_silence(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with cfg as (
    select make_interval(mins => (p_config ->> 'active_window_minutes')::integer) as active_window,
           (p_config ->> 'active_window_minutes')::double precision as window_minutes,
           make_interval(mins => (anomaly.config('detect.engine') ->> 'silence_lookback_minutes')::integer)
             as lookback,
           (anomaly.config('detect.baseline') ->> 'day_slot_minutes')::integer as slot_minutes
  ),
  cur as (
    -- zero minutes exist only for throughput series that had data within detect.engine.silence_lookback_minutes
    select p.series_id
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'throughput'
    where p.bucket = p_bucket and p.n = 0
  ),
  last_active as (
    select c.series_id,
           (select max(h.bucket) from anomaly.signal_points h
            where h.series_id = c.series_id and h.n > 0
              and h.bucket >= p_bucket - f.lookback - interval '1 minute' and h.bucket < p_bucket) as last_bucket
    from cur c cross join cfg f
  ),
  activity as (
    select l.series_id, l.last_bucket, (extract(epoch from p_bucket - l.last_bucket) / 60)::integer as silent_minutes,
           a.spans / f.window_minutes as active_rate, a.minutes as active_minutes
    from last_active l
    cross join cfg f
    cross join lateral (
      select coalesce(sum(h.value), 0) as spans, count(*) filter (where h.n > 0) as minutes
      from anomaly.signal_points h
      where h.series_id = l.series_id
        and h.bucket > l.last_bucket - f.active_window and h.bucket <= l.last_bucket) a
    where l.last_bucket is not null
  )
  select a.series_id, p_bucket, 'throughput_drop', 0::double precision, a.active_rate, 1::double precision,
         null::double precision, (p_config ->> 'score')::double precision,
         jsonb_build_object('direction', 'down', 'silent_minutes', a.silent_minutes,
                            'last_active_bucket', a.last_bucket, 'active_rate', a.active_rate,
                            'active_minutes', a.active_minutes, 'seasonal_mean', sp.mean)
  from activity a
  cross join cfg f
  left join lateral (
    select sp.mean from anomaly.seasonal_profiles sp
    where (p_config ->> 'respect_seasonal')::boolean
      and sp.series_id = a.series_id and sp.period = 'day'
      and sp.slot = ((extract(hour from p_bucket at time zone 'UTC') * 60
                      + extract(minute from p_bucket at time zone 'UTC'))::integer / f.slot_minutes)::smallint
      and sp.n >= (p_config ->> 'seasonal_min_periods')::integer * f.slot_minutes
  ) sp on true
  where a.silent_minutes >= (p_config ->> 'min_silent_minutes')::integer
    and a.active_rate >= (p_config ->> 'min_active_rate')::double precision
    and a.active_minutes >= (p_config ->> 'min_active_minutes')::integer
    -- a silence the time of day explains (a nightly lull the profile has seen for days) is not an anomaly
    and (sp.mean is null or sp.mean >= (p_config ->> 'min_active_rate')::double precision)
$$;
comment on function anomaly.detect_throughput_silence(timestamptz, jsonb) is
  'Detector throughput_silence: an operation or service that was active (mean >= min_active_rate spans/min over the '
  'active_window_minutes before its last data, with data in min_active_minutes of them) and has had 0 spans for '
  'min_silent_minutes consecutive minutes up to this one. Fires throughput_drop with the fixed score (default 8, '
  'high: a service going silent is an anomaly) every silent minute while the engine still writes zeros '
  '(detect.engine.silence_lookback_minutes). With respect_seasonal, skips silences the day profile expects. Config '
  'detect.throughput_silence. Example: select * from anomaly.detect_throughput_silence(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.throughput_silence''));';

-- ============================================================== registry
insert into anomaly.detectors (name, family, signals, function_name, config_key, description) values
  ('error_sigma_band', 'error_rate', '{error_rate}', 'anomaly.detect_error_sigma_band', 'detect.error_sigma_band',
   'Error rate above its trailing moving average + k sigma (sigma floored at binomial noise), per operation and '
   'service.'),
  ('error_cusum', 'error_rate', '{error_rate}', 'anomaly.detect_error_cusum', 'detect.error_cusum',
   'One-sided CUSUM of the error rate in binomial sigmas: sustained small increases, per operation and service.'),
  ('error_proportion', 'error_rate', '{error_rate}', 'anomaly.detect_error_proportion', 'detect.error_proportion',
   'Proportion z-test of the minute''s errors against the trailing baseline rate, per operation and service.'),
  ('throughput_forecast', 'throughput', '{throughput}', 'anomaly.detect_throughput_forecast',
   'detect.throughput_forecast',
   'Spans per minute outside the Holt / seasonal forecast band: spikes and drops, per operation and service.'),
  ('throughput_silence', 'throughput', '{throughput}', 'anomaly.detect_throughput_silence',
   'detect.throughput_silence',
   'An active operation or service that stopped sending spans for a few minutes.');

grant select, insert, update, delete on anomaly.error_cusum_runs to service_role;
grant execute on function anomaly.detect_error_sigma_band(timestamptz, jsonb) to service_role;
grant execute on function anomaly.detect_error_cusum(timestamptz, jsonb) to service_role;
grant execute on function anomaly.detect_error_proportion(timestamptz, jsonb) to service_role;
grant execute on function anomaly.detect_throughput_forecast(timestamptz, jsonb) to service_role;
grant execute on function anomaly.detect_throughput_silence(timestamptz, jsonb) to service_role;
