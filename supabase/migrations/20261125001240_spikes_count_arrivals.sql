-- 20261125001240_spikes_count_arrivals.sql — a throughput spike must be improbable as a count of arrivals.
-- throughput_forecast flags a minute outside expected +- 4 sigma, sigma from the residual variance plus Poisson
-- noise: a normal band. A service's spans come in clumps (each trace calls it several times), so its counts are far
-- heavier-tailed than a normal band: on the clean day of the quality corpus (seed 23) checkout, forecast at 17
-- spans, had a minute of 61 (z 4.9) — 16 arrivals where about 4 were expected if a trace brings ~4 spans, p ~ 1e-5,
-- an event of most days at 1,440 minutes a day. A spike now also needs P(Poisson(expected / D) >= observed / D) <=
-- max_p_value (1e-6), D = residual variance / expected (>= 1), the index of dispersion the residuals show. A spike of
-- steady traffic (D ~ 1) is judged as before; drops are unchanged.

update anomaly.config_keys
   set spec = spec || '{"max_p_value": {"type": "number", "min": 1e-12, "max": 1}}',
       defaults = defaults || '{"max_p_value": 0.000001}',
       description = description || ' A spike must also be improbable as a count of arrivals: P(Poisson(expected / '
         'D) >= observed / D) <= max_p_value, D = residual variance / expected (>= 1), spans per arrival.'
 where key = 'detect.throughput_forecast';

create or replace function anomaly.detect_throughput_forecast(p_bucket timestamptz, p_config jsonb)
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
           greatest(1, greatest(f.resid_var, 0) / greatest(f.expected, 1)) as dispersion,
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
                            'ratio', b.value / nullif(b.expected, 0), 'dispersion', b.dispersion)
  from banded b
  where (b.value > b.expected + b.threshold * b.sigma
         and b.value >= b.expected * (1 + b.rel)
         and b.value >= (p_config ->> 'min_spike_count')::double precision
         -- Spans arrive in clumps (a trace calls a service several times), so counts are heavier-tailed than the
         -- normal band says: the spike must also be improbable as a Poisson count of arrivals, arrivals = spans /
         -- dispersion, dispersion = residual variance / expected (>= 1). Poisson tail as a binomial of 1e9 trials.
         and anomaly.binomial_upper_tail(b.value / b.dispersion, 1e9, b.expected / b.dispersion / 1e9)
             <= (p_config ->> 'max_p_value')::double precision)
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
  'min_spike_count and, as a Poisson count of arrivals (spans / D, D = residual variance / expected >= 1, in '
  'details.dispersion), p <= max_p_value) or throughput_drop (below the band, <= (1 - min_relative_change) x '
  'expected, expected >= min_expected_for_drop); score = |z|; details.basis says which forecast was used. Config '
  'detect.throughput_forecast. Example: select * from anomaly.detect_throughput_forecast(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.throughput_forecast''));';

