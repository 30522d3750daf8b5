-- 20261125000850_resource_deploy_detectors.sql — detectors for resources (cpu, memory per service) and for
-- regressions on deploy (a new service.version of an operation compared with the version it replaced).
-- They plug into the engine of 20261125000800: anomaly.detect_<name>(bucket, config) returning detector hits.
--
-- Resources (family resource, subtype = the signal, 'cpu' or 'memory'; config keys detect.<detector name>):
--   resource_deviation            the minute vs the series' history (seasonal slot when it is deep enough, else EWMA)
--   resource_rate_of_change       a sudden jump: the change over the last minutes vs the usual minute-to-minute change
--   resource_latency_correlation  explanatory: a deviation that moves together with the service's p95 latency
-- Deploys (family deploy, subtype version_regression; config key detect.deploy_regression):
--   deploy_regression             rank test (Mann-Whitney) and error-rate test of the new version vs the previous one

-- ============================================================== configuration
insert into anomaly.config_keys (key, spec, defaults, description) values
(
  'detect.resource_deviation',
  '{"directions": {"type": "enum", "values": ["up", "down", "both"]},
    "threshold": {"type": "number", "min": 1, "max": 50},
    "min_samples": {"type": "integer", "min": 1, "max": 1000000},
    "min_history": {"type": "integer", "min": 2, "max": 100000},
    "seasonal_min_days": {"type": "integer", "min": 2, "max": 365},
    "cpu_sigma_floor": {"type": "number", "min": 0.001, "max": 1},
    "memory_sigma_floor_ratio": {"type": "number", "min": 0.001, "max": 1}}',
  '{"directions": "up", "threshold": 3, "min_samples": 3, "min_history": 30, "seasonal_min_days": 3,
    "cpu_sigma_floor": 0.02, "memory_sigma_floor_ratio": 0.02}',
  'CPU (process.cpu.utilization, 0..1) or memory (process.memory.usage, bytes) of a service vs its history: fires at '
  '|z| >= threshold against the minute-of-day seasonal slot once it holds seasonal_min_days days of samples, else '
  'against the EWMA mean/variance after min_history minutes. Sigma is floored at cpu_sigma_floor (absolute, 0.02 = '
  'two points of utilisation) and memory_sigma_floor_ratio of the mean (0.02 = 2 %). directions: up (default), down '
  'or both. Minutes with fewer than min_samples samples are skipped. Raise threshold or the floors for fewer alarms.'
),
(
  'detect.resource_rate_of_change',
  '{"directions": {"type": "enum", "values": ["up", "down", "both"]},
    "threshold": {"type": "number", "min": 1, "max": 50},
    "minutes": {"type": "integer", "min": 1, "max": 60},
    "window_minutes": {"type": "integer", "min": 5, "max": 1440},
    "min_points": {"type": "integer", "min": 3, "max": 1440},
    "min_samples": {"type": "integer", "min": 1, "max": 1000000},
    "cpu_sigma_floor": {"type": "number", "min": 0.001, "max": 1},
    "memory_sigma_floor_ratio": {"type": "number", "min": 0.001, "max": 1}}',
  '{"directions": "up", "threshold": 4, "minutes": 3, "window_minutes": 30, "min_points": 10, "min_samples": 3,
    "cpu_sigma_floor": 0.02, "memory_sigma_floor_ratio": 0.02}',
  'Sudden CPU/memory jumps of a service: the change over the last `minutes` minutes, minus the usual drift, in '
  'sigmas of the adjacent minute-to-minute changes of the trailing window_minutes (at least min_points of them; '
  'sigma per minute floored at cpu_sigma_floor, or memory_sigma_floor_ratio of the level). Fires at |z| >= '
  'threshold in the allowed directions. Steady growth is its own drift and does not fire. Lower `minutes` to '
  'react to one-minute jumps only; raise threshold or the floors for fewer alarms.'
),
(
  'detect.resource_latency_correlation',
  '{"window_minutes": {"type": "integer", "min": 5, "max": 1440},
    "min_points": {"type": "integer", "min": 5, "max": 1440},
    "min_abs_correlation": {"type": "number", "min": 0, "max": 1},
    "min_latency_change": {"type": "number", "min": 0, "max": 100},
    "latency_aggregate": {"type": "enum", "values": ["mean", "max"]},
    "max_series": {"type": "integer", "min": 1, "max": 100000}}',
  '{"window_minutes": 30, "min_points": 10, "min_abs_correlation": 0.6, "min_latency_change": 0.1,
    "latency_aggregate": "mean", "max_series": 50}',
  'Explanatory: where resource_deviation fires (with its own config), correlate the resource with the service''s '
  'p95 latency (mean or max over its operations) over the trailing window_minutes; emit a hit carrying r when '
  '|r| >= min_abs_correlation on at least min_points minutes and this minute''s latency moved by at least '
  'min_latency_change (0.1 = 10 %) against the window. Never fires on its own. At most max_series deviations '
  '(the strongest) are explained per minute, which bounds the work when many services deviate at once.'
),
(
  'detect.deploy_regression',
  '{"lookback_minutes": {"type": "integer", "min": 1, "max": 1440},
    "baseline_minutes": {"type": "integer", "min": 5, "max": 1440},
    "alpha": {"type": "number", "min": 0.000000001, "max": 0.2},
    "min_effect": {"type": "number", "min": 0.5, "max": 1},
    "min_ratio": {"type": "number", "min": 1, "max": 100},
    "min_spans": {"type": "integer", "min": 5, "max": 1000000},
    "max_spans_per_version": {"type": "integer", "min": 50, "max": 1000000},
    "min_error_count": {"type": "integer", "min": 1, "max": 1000000},
    "max_score": {"type": "number", "min": 3, "max": 1000}}',
  '{"lookback_minutes": 30, "baseline_minutes": 60, "alpha": 0.001, "min_effect": 0.65, "min_ratio": 1.2,
    "min_spans": 30, "max_spans_per_version": 2000, "min_error_count": 5, "max_score": 12}',
  'For lookback_minutes after a service.version first appears on an operation (absent in the baseline_minutes '
  'before), compare it with the previous version''s spans of those baseline_minutes. Fires when the new version is '
  'slower (Mann-Whitney one-sided p < alpha, P(new > previous) >= min_effect, p50 or p95 ratio >= min_ratio) or '
  'fails more often (proportion test p < alpha, min_error_count errors, rate ratio >= min_ratio), with at least '
  'min_spans spans of each version. Minutes served by one version only are read from the rollup; of minutes where '
  'versions mixed (rolling deploy, canary) at most max_spans_per_version recent spans per version are read (2000: '
  '~50 ms of bucketing). The score is the test''s z capped at max_score (12: critical, but thousands of slow spans '
  'do not outrank everything else).'
);

-- ============================================================== resource_deviation
create function anomaly.detect_resource_deviation(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
rows 10
set search_path = ''
set jit = off
as $$
  with cfg as (
    select (p_config ->> 'threshold')::double precision as threshold,
           p_config ->> 'directions' as directions,
           (p_config ->> 'min_samples')::integer as min_samples,
           (p_config ->> 'min_history')::integer as min_history,
           (p_config ->> 'cpu_sigma_floor')::double precision as cpu_floor,
           (p_config ->> 'memory_sigma_floor_ratio')::double precision as mem_floor,
           -- a day slot is day_slot_minutes wide, so it gains that many samples per day: require seasonal_min_days
           -- days so that today's (possibly anomalous) minutes are at most 1/seasonal_min_days of the slot
           (p_config ->> 'seasonal_min_days')::integer * b.slot_minutes as seasonal_min_n,
           -- the same slot arithmetic as anomaly.update_baselines
           ((extract(hour from p_bucket at time zone 'UTC') * 60 + extract(minute from p_bucket at time zone 'UTC'))::integer
             / b.slot_minutes)::smallint as day_slot
    from (select (anomaly.config('detect.baseline') ->> 'day_slot_minutes')::integer as slot_minutes) b
  ),
  cur as (
    select p.series_id, s.signal, p.value, p.n
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    cross join cfg
    where p.bucket = p_bucket and s.signal in ('cpu', 'memory') and s.scope = 'service' and p.n >= cfg.min_samples
  ),
  base as (
    select c.series_id, c.signal, c.value, c.n,
           case when sp.n >= cfg.seasonal_min_n then 'seasonal' else 'ewma' end as baseline,
           case when sp.n >= cfg.seasonal_min_n then sp.n else st.n end as baseline_samples,
           case when sp.n >= cfg.seasonal_min_n then sp.mean else st.ewma_mean end as mean,
           case when sp.n >= cfg.seasonal_min_n then sqrt(greatest(sp.m2, 0) / (sp.n - 1)) else sqrt(greatest(st.ewma_var, 0)) end as sd
    from cur c
    cross join cfg
    left join anomaly.series_state st on st.series_id = c.series_id
    left join anomaly.seasonal_profiles sp
      on sp.series_id = c.series_id and sp.period = 'day' and sp.slot = cfg.day_slot
    where sp.n >= cfg.seasonal_min_n or st.n >= cfg.min_history
  ),
  scored as (
    select b.*,
           -- sigma floor: cpu utilisation jitters by a couple of points even on an idle host; memory by ~2 %
           greatest(b.sd, case when b.signal = 'cpu' then cfg.cpu_floor else cfg.mem_floor * abs(b.mean) end, 1e-9)
             as sd_eff
    from base b cross join cfg
  ),
  zed as (
    select s.*, (s.value - s.mean) / s.sd_eff as z from scored s
  )
  select z.series_id, p_bucket, z.signal, z.value, z.mean,
         greatest(0, z.mean - cfg.threshold * z.sd_eff), z.mean + cfg.threshold * z.sd_eff,
         abs(z.z),
         jsonb_build_object('direction', case when z.z > 0 then 'up' else 'down' end,
                            'z', round(z.z::numeric, 3), 'baseline', z.baseline,
                            'baseline_samples', z.baseline_samples, 'stddev', z.sd, 'sigma_used', z.sd_eff,
                            'samples', z.n)
  from zed z cross join cfg
  where (z.z >= cfg.threshold and cfg.directions in ('up', 'both'))
     or (z.z <= -cfg.threshold and cfg.directions in ('down', 'both'))
$$;
comment on function anomaly.detect_resource_deviation(timestamptz, jsonb) is
  'Detector resource_deviation (family resource, subtype cpu|memory): a service''s cpu utilisation or memory usage of '
  'one minute against its history. History is the minute-of-day seasonal slot (anomaly.seasonal_profiles, period '
  'day) once it holds seasonal_min_days x day_slot_minutes samples, otherwise the EWMA mean/variance of '
  'anomaly.series_state after min_history minutes. The EWMA follows slow growth (on a steady ramp its z settles near '
  '1/sqrt(1 - alpha)), so slow leaks are found against the seasonal slot, sudden ones against either. Sigma is '
  'floored at cpu_sigma_floor (absolute) or memory_sigma_floor_ratio x mean; minutes with fewer than min_samples '
  'samples are skipped; directions (up by default) picks which side alarms. Config detect.resource_deviation. Example: '
  'select * from anomaly.detect_resource_deviation(''2026-03-02 10:00+00'', anomaly.config(''detect.resource_deviation''));';

-- ============================================================== resource_rate_of_change
create function anomaly.detect_resource_rate_of_change(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
rows 10
set search_path = ''
set jit = off
as $$
  with cfg as (
    select (p_config ->> 'threshold')::double precision as threshold,
           p_config ->> 'directions' as directions,
           (p_config ->> 'min_samples')::integer as min_samples,
           make_interval(mins => (p_config ->> 'minutes')::integer) as roc,
           make_interval(mins => (p_config ->> 'window_minutes')::integer) as win,
           (p_config ->> 'min_points')::integer as min_points,
           (p_config ->> 'cpu_sigma_floor')::double precision as cpu_floor,
           (p_config ->> 'memory_sigma_floor_ratio')::double precision as mem_floor
  ),
  cur as (
    select p.series_id, s.signal, p.value, p.n
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    cross join cfg
    where p.bucket = p_bucket and s.signal in ('cpu', 'memory') and s.scope = 'service' and p.n >= cfg.min_samples
  ),
  jumps as (
    -- the change since the oldest point within the last `minutes` minutes (one index probe per series)
    select c.*, r.bucket as from_bucket, r.value as from_value, c.value - r.value as change,
           extract(epoch from p_bucket - r.bucket)::double precision / 60 as minutes,
           case when c.signal = 'cpu' then cfg.cpu_floor else cfg.mem_floor * abs(r.value) end as floor
    from cur c
    cross join cfg
    cross join lateral (
      select h.bucket, h.value from anomaly.signal_points h
      where h.series_id = c.series_id and h.bucket >= p_bucket - cfg.roc and h.bucket < p_bucket
      order by h.bucket
      limit 1
    ) r
  ),
  candidates as (
    -- A jump must itself clear threshold x sqrt(minutes) x the floor in an allowed direction: sigma is never below
    -- the floor, so nothing else can fire, and only these few series need their trailing window read.
    select j.* from jumps j cross join cfg
    where abs(j.change) >= cfg.threshold * sqrt(j.minutes) * j.floor
      and ((j.change > 0 and cfg.directions in ('up', 'both')) or (j.change < 0 and cfg.directions in ('down', 'both')))
  ),
  changes as (
    -- the usual minute-to-minute change over the trailing window: only differences of adjacent minutes count
    select j.series_id, w.points, w.drift, w.sd
    from candidates j
    cross join cfg
    cross join lateral (
      select count(*) as points, avg(d) as drift, coalesce(stddev_samp(d), 0) as sd
      from (
        select h.value - lag(h.value) over (order by h.bucket) as d,
               h.bucket - lag(h.bucket) over (order by h.bucket) as gap
        from anomaly.signal_points h
        where h.series_id = j.series_id and h.bucket >= p_bucket - cfg.win and h.bucket < p_bucket
      ) t
      where t.gap = interval '1 minute'
    ) w
  ),
  zed as (
    -- a change over m minutes of independent steps has m x drift expected and sqrt(m) x sigma spread
    select j.*, ch.points, ch.drift, ch.sd, greatest(ch.sd, j.floor, 1e-9) as sd_eff,
           j.from_value + j.minutes * ch.drift as expected,
           sqrt(j.minutes) * greatest(ch.sd, j.floor, 1e-9) as spread,
           (j.change - j.minutes * ch.drift) / (sqrt(j.minutes) * greatest(ch.sd, j.floor, 1e-9)) as z
    from candidates j
    join changes ch using (series_id)
    cross join cfg
    where ch.points >= cfg.min_points
  )
  select z.series_id, p_bucket, z.signal, z.value, z.expected,
         greatest(0, z.expected - cfg.threshold * z.spread), z.expected + cfg.threshold * z.spread,
         abs(z.z),
         jsonb_build_object('direction', case when z.z > 0 then 'up' else 'down' end,
                            'z', round(z.z::numeric, 3), 'from_value', z.from_value,
                            'change', z.change, 'over_minutes', z.minutes,
                            'usual_change_per_minute', z.drift, 'change_stddev', z.sd, 'sigma_used', z.sd_eff,
                            'baseline_points', z.points, 'samples', z.n)
  from zed z cross join cfg
  -- the jump and its excess over the drift agree in sign: a decline that stops is not an upward jump
  where (z.z >= cfg.threshold and z.change > 0) or (z.z <= -cfg.threshold and z.change < 0)
$$;
comment on function anomaly.detect_resource_rate_of_change(timestamptz, jsonb) is
  'Detector resource_rate_of_change (family resource, subtype cpu|memory): a sudden jump of a service''s cpu or '
  'memory. The change since the oldest point of the last `minutes` minutes (default 3), minus the usual drift, is '
  'divided by sqrt(minutes) x sigma of the adjacent minute-to-minute changes of the trailing window_minutes (at '
  'least min_points of them; sigma floored at cpu_sigma_floor or memory_sigma_floor_ratio x level). Fires at '
  '|z| >= threshold (default 4: differences of noisy gauges have heavier tails than the gauge) when the change '
  'itself points the same way (a decline that stops is no upward jump). Steady growth is its own drift, and a '
  'change below threshold x sqrt(minutes) x floor never fires (0.14 of cpu in 3 minutes, 14 % of memory), so slow '
  'growth is left to resource_deviation; cpu 0.3 -> 0.95 in one minute fires. Cost: one index probe per resource '
  'series; the trailing window is read only for series whose change clears that bar. Config '
  'detect.resource_rate_of_change. Example: select * from anomaly.detect_resource_rate_of_change('
  '''2026-03-02 10:00+00'', anomaly.config(''detect.resource_rate_of_change''));';

-- ============================================================== resource_latency_correlation
create function anomaly.detect_resource_latency_correlation(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
rows 10
set search_path = ''
set jit = off
as $$
  with cfg as (
    select make_interval(mins => (p_config ->> 'window_minutes')::integer) as win,
           (p_config ->> 'window_minutes')::integer as win_minutes,
           (p_config ->> 'min_points')::integer as min_points,
           (p_config ->> 'min_abs_correlation')::double precision as min_r,
           (p_config ->> 'min_latency_change')::double precision as min_change,
           p_config ->> 'latency_aggregate' as agg
  ),
  -- only minutes that already are resource deviations (as resource_deviation is configured): this detector
  -- explains, it never alarms on its own
  dev as (
    select h.*, s.service, s.signal
    from anomaly.detect_resource_deviation(p_bucket, anomaly.config('detect.resource_deviation')) h
    join anomaly.series s on s.id = h.series_id
    -- bounded work in a storm: the max_series strongest deviations of the minute are explained
    order by h.score desc, h.series_id
    limit (p_config ->> 'max_series')::integer
  )
  select d.series_id, p_bucket, d.subtype, d.observed, d.expected, d.lower_bound, d.upper_bound,
         -- ranked just above the bare deviation (at most +1) so the anomaly's explanation, taken from its
         -- best-scoring hit, carries the correlation
         d.score + abs(p.r),
         jsonb_build_object(
           'direction', d.details ->> 'direction',
           'explanation', format('%s %s tracks the p95 latency of %s, r=%s over %s minutes (latency %s ms, was %s ms)',
                                 d.signal, case when d.details ->> 'direction' = 'up' then 'rise' else 'drop' end,
                                 d.service, round(p.r::numeric, 2), cfg.win_minutes,
                                 round(p.latency_now::numeric, 1), round(p.latency_before::numeric, 1)),
           'correlation', round(p.r::numeric, 4), 'points', p.points, 'window_minutes', cfg.win_minutes,
           'latency_signal', 'latency_p95', 'latency_aggregate', cfg.agg,
           'latency_p95_ms', jsonb_build_array(p.latency_before, p.latency_now),
           'deviation', d.details)
  from dev d
  cross join cfg
  -- per deviation (lateral, so each reads only its own window): the resource and the service's p95 latency, the
  -- mean (or max) over its operations' latency_p95 points, paired by minute
  cross join lateral (
    select count(*) as points, corr(r.value, lat.value) as r,
           max(lat.value) filter (where r.bucket = p_bucket) as latency_now,
           avg(lat.value) filter (where r.bucket < p_bucket) as latency_before
    from anomaly.signal_points r
    join (
      select l.bucket, case when cfg.agg = 'max' then max(l.value) else avg(l.value) end as value
      from anomaly.series ls
      join anomaly.signal_points l
        on l.series_id = ls.id and l.bucket > p_bucket - cfg.win and l.bucket <= p_bucket and l.n > 0
      where ls.scope = 'operation' and ls.service = d.service and ls.signal = 'latency_p95'
      group by l.bucket
    ) lat on lat.bucket = r.bucket
    where r.series_id = d.series_id and r.bucket > p_bucket - cfg.win and r.bucket <= p_bucket
  ) p
  where p.points >= cfg.min_points
    and abs(p.r) >= cfg.min_r
    and p.latency_now is not null and p.latency_before > 0
    and abs(p.latency_now / p.latency_before - 1) >= cfg.min_change
$$;
comment on function anomaly.detect_resource_latency_correlation(timestamptz, jsonb) is
  'Detector resource_latency_correlation (family resource, subtype cpu|memory): an EXPLANATORY detector. It never '
  'fires on its own: only where resource_deviation fires (with detect.resource_deviation) it correlates (corr()) the '
  'resource series with the service''s p95 latency (mean, or max, of its operations'' latency_p95 points) over the '
  'trailing window_minutes including this minute, and emits a hit when |r| >= min_abs_correlation on '
  'at least min_points minutes and the latency of this minute moved by min_latency_change against the '
  'window (so a one-minute cpu spike next to a histogram-bucket wobble of latency is not "correlated"). details '
  'say e.g. "cpu rise tracks the p95 latency of api, r=0.82"; the score is the deviation''s plus |r|, so the '
  'anomaly shows that explanation. Example: select * from anomaly.detect_resource_latency_correlation('
  '''2026-03-02 10:00+00'', anomaly.config(''detect.resource_latency_correlation''));';

-- ============================================================== deploy_regression
create function anomaly.detect_deploy_regression(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
rows 10
set search_path = ''
set jit = off
as $$
  with cfg as (
    select make_interval(mins => (p_config ->> 'lookback_minutes')::integer) as lookback,
           make_interval(mins => (p_config ->> 'baseline_minutes')::integer) as baseline,
           (p_config ->> 'alpha')::double precision as alpha,
           (p_config ->> 'min_effect')::double precision as min_effect,
           (p_config ->> 'min_ratio')::double precision as min_ratio,
           (p_config ->> 'min_spans')::integer as min_spans,
           (p_config ->> 'max_spans_per_version')::integer as max_spans,
           (p_config ->> 'min_error_count')::integer as min_errors,
           (p_config ->> 'max_score')::double precision as max_score
  ),
  running as (
    -- versions serving each operation in this minute
    select m.service_name, m.operation, v.version, (m.versions ->> v.version)::integer as spans
    from anomaly.operation_minutes m, jsonb_object_keys(m.versions) as v(version)
    where m.bucket = p_bucket and v.version <> ''
  ),
  service_versions as (
    -- service.version is a property of the service: one representative per service and version, the operation
    -- that served it most this minute
    select distinct on (service_name, version) service_name, version, operation
    from running
    order by service_name, version, spans desc, operation
  ),
  new_versions as (
    -- Versions the representative did not run in the baseline_minutes before the lookback window. One index probe
    -- per service and version, stopping at the first older minute that ran it: that is all a quiet minute costs.
    -- (A scalar subquery, not NOT EXISTS: the planner would turn that into a hash anti-join over every rollup row
    -- of the range.)
    select sv.service_name, sv.version from service_versions sv cross join cfg
    where (select o.bucket from anomaly.operation_minutes o
           where o.service_name = sv.service_name and o.operation = sv.operation
             and o.bucket >= p_bucket - cfg.lookback - cfg.baseline and o.bucket < p_bucket - cfg.lookback
             and o.versions ? sv.version
           limit 1) is null
  ),
  fresh as (
    -- the same test for every operation of those services that runs the new version: first seen within
    -- lookback_minutes
    select r.service_name, r.operation, r.version
    from running r
    join new_versions nv using (service_name, version)
    cross join cfg
    where (select o.bucket from anomaly.operation_minutes o
           where o.service_name = r.service_name and o.operation = r.operation
             and o.bucket >= p_bucket - cfg.lookback - cfg.baseline and o.bucket < p_bucket - cfg.lookback
             and o.versions ? r.version
           limit 1) is null
  ),
  firsts as (
    select f.*, (select min(o.bucket) from anomaly.operation_minutes o
                 where o.service_name = f.service_name and o.operation = f.operation
                   and o.bucket >= p_bucket - cfg.lookback and o.bucket <= p_bucket
                   and o.versions ? f.version) as first_seen
    from fresh f cross join cfg
  ),
  pairs as (
    -- the previous version: the one that served most spans in the baseline_minutes before the first appearance
    select f.service_name, f.operation, f.version as new_version, f.first_seen, pv.version as previous_version
    from firsts f
    cross join cfg
    cross join lateral (
      select v.key as version
      from anomaly.operation_minutes o, jsonb_each_text(o.versions) v
      where o.service_name = f.service_name and o.operation = f.operation
        and o.bucket >= f.first_seen - cfg.baseline and o.bucket < f.first_seen
        and v.key <> '' and v.key <> f.version
      group by v.key
      order by sum(v.value::bigint) desc, v.key
      limit 1
    ) pv
  ),
  sides as (
    select p.service_name, p.operation, p.new_version, 'previous' as side, p.previous_version as version,
           p.first_seen - cfg.baseline as from_bucket, p.first_seen - interval '1 minute' as to_bucket
    from pairs p cross join cfg
    union all
    select p.service_name, p.operation, p.new_version, 'new', p.new_version, p.first_seen, p_bucket
    from pairs p
  ),
  minutes as (
    -- Minutes where only this version served the operation come pre-aggregated from the rollup (exact
    -- histograms, no span reads: the usual case once a rollout is complete). The others ("mixed": a rolling
    -- deploy, a canary, spans without service.version) are read span by span below.
    select sd.service_name, sd.operation, sd.new_version, sd.side, sd.version, x.*
    from sides sd
    cross join lateral (
      select anomaly.histogram_merge(array_agg(o.latency_histogram) filter (where o.versions - sd.version = '{}'))
               as pure_hist,
             coalesce(sum(o.span_count) filter (where o.versions - sd.version = '{}'), 0) as pure_spans,
             coalesce(sum(o.error_count) filter (where o.versions - sd.version = '{}'), 0) as pure_errors,
             array_agg(o.bucket order by o.bucket) filter (where o.versions - sd.version <> '{}') as mixed_buckets
      from anomaly.operation_minutes o
      where o.service_name = sd.service_name and o.operation = sd.operation
        and o.bucket >= sd.from_bucket and o.bucket <= sd.to_bucket and o.versions ? sd.version
    ) x
  ),
  mixed_binned as (
    -- bounded: the newest max_spans_per_version spans of the version in its mixed minutes
    select m.service_name, m.operation, m.new_version, m.side,
           anomaly.latency_bucket(s.duration_ns / 1e6::double precision) as b,
           count(*) as spans, count(*) filter (where s.status_code = 2) as errors
    from minutes m
    cross join cfg
    cross join lateral (
      select x.duration_ns, x.status_code
      from anomaly.spans x
      where x.service_name = m.service_name and x.name = m.operation and x.service_version = m.version
        and x.start_time >= m.mixed_buckets[1]
        and x.start_time < m.mixed_buckets[cardinality(m.mixed_buckets)] + interval '1 minute'
        and date_bin('1 minute', x.start_time, timestamptz '2000-01-01 00:00+00') = any (m.mixed_buckets)
      order by x.start_time desc
      limit cfg.max_spans
    ) s
    where m.mixed_buckets is not null
    group by 1, 2, 3, 4, 5
  ),
  hists as (
    select m.service_name, m.operation, m.new_version, m.side,
           anomaly.histogram_merge(array_remove(array[m.pure_hist, mx.histogram], null)) as histogram,
           m.pure_spans + coalesce(mx.spans, 0) as spans, m.pure_errors + coalesce(mx.errors, 0) as errors
    from minutes m
    left join (
      select service_name, operation, new_version, side, jsonb_object_agg(b::text, spans) as histogram,
             sum(spans)::bigint as spans, sum(errors)::bigint as errors
      from mixed_binned
      group by 1, 2, 3, 4
    ) mx using (service_name, operation, new_version, side)
  ),
  -- materialized: otherwise the planner (estimating one row per CTE scan) runs the rank test inside a nested
  -- loop over previous x new histograms before the join filter: 40,000 calls for 200 deploying operations,
  -- 7.4 s of an 18.8 s cycle at 10k series (bench:detect); materialized it is one call per pair, < 1 s.
  compared as materialized (
    select p.*, hp.histogram as prev_hist, hn.histogram as new_hist,
           hp.spans as prev_spans, hn.spans as new_spans, hp.errors as prev_errors, hn.errors as new_errors
    from pairs p
    cross join cfg
    join hists hp on hp.service_name = p.service_name and hp.operation = p.operation
                 and hp.new_version = p.new_version and hp.side = 'previous'
    join hists hn on hn.service_name = p.service_name and hn.operation = p.operation
                 and hn.new_version = p.new_version and hn.side = 'new'
    where hp.spans >= cfg.min_spans and hn.spans >= cfg.min_spans
  ),
  tested as (
    select c.*,
           mw.z as mw_z, anomaly.normal_sf(mw.z) as mw_p, mw.effect as mw_effect,
           qp.q[1] as prev_p50, qn.q[1] as new_p50, qp.q[2] as prev_p95, qn.q[2] as new_p95,
           c.prev_errors::double precision / c.prev_spans as prev_rate,
           c.new_errors::double precision / c.new_spans as new_rate,
           -- proportion_z clamps a clean previous version (rate 0) to half an expected error, so the test stays finite
           anomaly.proportion_z(c.new_errors, c.new_spans, c.prev_errors::double precision / c.prev_spans) as err_z
    from compared c
    cross join lateral anomaly.mann_whitney_histograms(c.prev_hist, c.new_hist) mw
    cross join lateral (select anomaly.histogram_quantiles(c.prev_hist, array[0.5, 0.95]) as q) qp
    cross join lateral (select anomaly.histogram_quantiles(c.new_hist, array[0.5, 0.95]) as q) qn
  ),
  judged as (
    select t.*,
           t.mw_z > 0 and t.mw_p < cfg.alpha and t.mw_effect >= cfg.min_effect
             and (t.new_p50 >= cfg.min_ratio * t.prev_p50 or t.new_p95 >= cfg.min_ratio * t.prev_p95) as slower,
           t.new_errors >= cfg.min_errors and t.err_z > 0 and anomaly.normal_sf(t.err_z) < cfg.alpha
             and t.new_rate >= cfg.min_ratio * t.prev_rate as failing
    from tested t cross join cfg
  ),
  hits as (
    -- one hit per operation and minute: the worst new version if several appeared at once
    select distinct on (j.service_name, j.operation) j.*,
           least(cfg.max_score, greatest(case when j.slower then j.mw_z else 0 end,
                                         case when j.failing then j.err_z else 0 end)) as score
    from judged j cross join cfg
    where j.slower or j.failing
    order by j.service_name, j.operation,
             greatest(case when j.slower then j.mw_z else 0 end, case when j.failing then j.err_z else 0 end) desc,
             j.new_version
  )
  select se.id, p_bucket, 'version_regression', h.new_p95, h.prev_p95,
         h.prev_p95 / cfg.min_ratio, h.prev_p95 * cfg.min_ratio, h.score,
         jsonb_build_object(
           'direction', 'up',
           'previous_version', h.previous_version, 'new_version', h.new_version,
           'first_seen', h.first_seen,
           'regressed', to_jsonb(array_remove(array[case when h.slower then 'latency' end,
                                                    case when h.failing then 'error_rate' end], null)),
           'p50_ms', jsonb_build_array(h.prev_p50, h.new_p50),
           'p95_ms', jsonb_build_array(h.prev_p95, h.new_p95),
           'mann_whitney', jsonb_build_object('z', round(h.mw_z::numeric, 3), 'p_value', h.mw_p,
                                              'effect', round(h.mw_effect::numeric, 4)),
           'error_rate', jsonb_build_array(h.prev_rate, h.new_rate),
           'error_z', round(h.err_z::numeric, 3),
           'spans', jsonb_build_array(h.prev_spans, h.new_spans))
  from hits h
  cross join cfg
  join anomaly.series se
    on se.scope = 'operation' and se.service = h.service_name and se.operation = h.operation
   and se.signal = case when h.slower then 'latency_p95' else 'error_rate' end
$$;
comment on function anomaly.detect_deploy_regression(timestamptz, jsonb) is
  'Detector deploy_regression (family deploy, subtype version_regression, operation scope): a service.version that '
  'first appeared on an operation within lookback_minutes (absent in the baseline_minutes before; read from '
  'anomaly.operation_minutes.versions) is compared with the previous version (the one serving most spans in those '
  'baseline_minutes). Each version''s latency histogram (previous: the baseline_minutes before its first minute; '
  'new: its first minute through this one) merges the rollup histograms of minutes it served alone with '
  'anomaly.latency_bucket counts of its own spans in minutes where versions mixed; the two go through '
  'anomaly.mann_whitney_histograms (one-sided p = normal_sf(z)), error counts through anomaly.proportion_z against '
  'the previous rate. Fires when the new version is slower (z > 0, p < alpha, effect = P(new > previous) >= '
  'min_effect, p50 or p95 ratio >= min_ratio) or fails more often (p < alpha, min_error_count errors, rate ratio >= '
  'min_ratio), with min_spans spans of each version. observed/expected = new/previous p95; details name both '
  'versions with p50_ms, p95_ms, mann_whitney {z, p_value, effect}, error_rate [previous, new], spans; score = the '
  'larger z capped at max_score. A version is new when the service''s busiest operation running it did not run it '
  'in the baseline_minutes before the lookback window (service.version belongs to the service); each operation of '
  'the service running it is then checked itself. Cost bound: the minute''s anomaly.operation_minutes rows and one '
  'index probe per service and version; only operations with a version first seen within lookback_minutes go '
  'further (a deploy keeps its operations there for lookback_minutes), each reading '
  '<= lookback_minutes + baseline_minutes + 1 rollup rows and, for mixed minutes only, <= 2 x max_spans_per_version '
  'spans through the (service_name, start_time) index. Config detect.deploy_regression. Example: '
  'select * from anomaly.detect_deploy_regression(''2026-03-02 10:00+00'', anomaly.config(''detect.deploy_regression''));';

-- ============================================================== registry and grants
insert into anomaly.detectors (name, family, signals, function_name, config_key, description) values
  ('resource_deviation', 'resource', '{cpu,memory}', 'anomaly.detect_resource_deviation', 'detect.resource_deviation',
   'CPU/memory per service vs its history: seasonal minute-of-day slot when deep enough, else EWMA; sigma floored.'),
  ('resource_rate_of_change', 'resource', '{cpu,memory}', 'anomaly.detect_resource_rate_of_change', 'detect.resource_rate_of_change',
   'Sudden CPU/memory jumps: change over the last minutes vs the usual minute-to-minute change; slow growth is not flagged.'),
  ('resource_latency_correlation', 'resource', '{cpu,memory,latency_p95}', 'anomaly.detect_resource_latency_correlation',
   'detect.resource_latency_correlation',
   'Explanatory: a resource deviation that correlates with the service''s p95 latency (r in details); never fires alone.'),
  ('deploy_regression', 'deploy', '{latency_p95,error_rate}', 'anomaly.detect_deploy_regression', 'detect.deploy_regression',
   'A new service.version of an operation vs the previous one: Mann-Whitney rank test on latency, proportion test on errors.');

grant execute on function anomaly.detect_resource_deviation(timestamptz, jsonb),
  anomaly.detect_resource_rate_of_change(timestamptz, jsonb),
  anomaly.detect_resource_latency_correlation(timestamptz, jsonb),
  anomaly.detect_deploy_regression(timestamptz, jsonb) to service_role;
