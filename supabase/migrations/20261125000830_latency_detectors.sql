-- 20261125000830_latency_detectors.sql — the latency family of the detection catalogue (DESIGN §5) beside the
-- ported z-score: EWMA control chart, Shewhart/SPC (Western Electric) run rules, seasonal baseline, robust
-- median/MAD, and the legacy mean + k*sigma rule kept as the baseline the product is measured against.
--
-- All of them score the p95 latency point of each operation for one minute (subtype latency_p95, so detectors
-- that agree raise one anomaly's confidence instead of opening several), read only earlier minutes (the engine
-- folds the minute into series_state / seasonal_profiles after every detector ran) and alarm only upwards: a
-- faster operation is not an incident. Shared guards of the non-legacy detectors, with their reasons:
--   * min_span_count (5): a p95 of fewer spans is one slow request, not a latency level (07 test: 2 spans/min).
--   * sigma floor max(sigma, 5 % of the baseline, 1 ms), as latency_zscore does: p95 is read from log buckets
--     2^(1/8) = 9 % wide, so a flat series has sigma ~0 and one bucket of jitter would otherwise be "20 sigma".
--   * min_relative_change: the value must also exceed the baseline by this share (a 3-sigma move of a very
--     steady operation can be a few percent, which no operator wants paged about).
--   * anomaly._confirm_latency_shift: at least max(2, 5 % of n) spans of the minute lie above the line the point
--     crossed, so the quantile moved and not just its top span.

-- ============================================================== configuration
insert into anomaly.config_keys (key, spec, defaults, description) values
(
  'detect.latency_ewma',
  '{"limit_sigma": {"type": "number", "min": 1, "max": 20},
    "min_state_points": {"type": "integer", "min": 2, "max": 100000},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_relative_change": {"type": "number", "min": 0, "max": 10}}',
  '{"limit_sigma": 3, "min_state_points": 30, "min_span_count": 5, "min_relative_change": 0.2}',
  'EWMA control chart on p95 latency: fires when the minute exceeds the EWMA mean (detect.baseline.ewma_alpha) by '
  'limit_sigma EWMA sigmas (floored at 5 % of the mean or 1 ms) and by min_relative_change of the mean, once the '
  'series has min_state_points minutes of state and the minute has min_span_count spans.'
),
(
  'detect.latency_spc',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 1440},
    "min_points": {"type": "integer", "min": 8, "max": 1440},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_relative_change": {"type": "number", "min": 0, "max": 10},
    "run_length": {"type": "integer", "min": 6, "max": 30},
    "rule1": {"type": "boolean"}, "rule2": {"type": "boolean"},
    "rule3": {"type": "boolean"}, "rule4": {"type": "boolean"}}',
  '{"window_minutes": 60, "min_points": 30, "min_span_count": 5, "min_relative_change": 0.1, "run_length": 8,
    "rule1": true, "rule2": true, "rule3": true, "rule4": true}',
  'Shewhart chart with the Western Electric rules on p95 latency against the mean and sigma (floored at 5 % of '
  'the mean or 1 ms) of the trailing window_minutes: rule1 one point beyond 3 sigma, rule2 two of three beyond 2 '
  'sigma, rule3 four of five beyond 1 sigma, rule4 run_length (8) in a row above the mean; upward only, the current '
  'minute must be part of the pattern and min_relative_change above the mean. Each rule can be switched off.'
),
(
  'detect.latency_seasonal',
  '{"threshold": {"type": "number", "min": 1, "max": 20},
    "min_days": {"type": "integer", "min": 1, "max": 60},
    "min_weeks": {"type": "integer", "min": 1, "max": 52},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_relative_change": {"type": "number", "min": 0, "max": 10}}',
  '{"threshold": 3, "min_days": 3, "min_weeks": 2, "min_span_count": 5, "min_relative_change": 0.2}',
  'Seasonal baseline of p95 latency: z against the same minute-of-day slot (needs min_days days of samples, i.e. '
  'min_days x detect.baseline.day_slot_minutes) or else the same hour of the week (min_weeks x 60 samples); without '
  'either it has no opinion. Sigma floored at 5 % of the slot mean or 1 ms.'
),
(
  'detect.latency_mad',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 1440},
    "threshold": {"type": "number", "min": 1, "max": 20},
    "min_points": {"type": "integer", "min": 5, "max": 1440},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_relative_change": {"type": "number", "min": 0, "max": 10}}',
  '{"window_minutes": 60, "threshold": 3.5, "min_points": 30, "min_span_count": 5, "min_relative_change": 0.2}',
  'Robust z of p95 latency against the median and MAD (x 1.4826) of the trailing window_minutes, floored at 5 % of '
  'the median or 1 ms: outliers earlier in the window neither raise the baseline nor widen the band. threshold 3.5 '
  'is Iglewicz and Hoaglin''s cut-off for the modified z-score.'
),
(
  'detect.legacy_mean_ksigma',
  '{"window_minutes": {"type": "integer", "min": 2, "max": 1440}}',
  '{"window_minutes": 60}',
  'The legacy rule "value > mean + k * stddev" on p95 latency over the trailing window_minutes; k is read from '
  'public.system_settings.outlier_detection_stddev at run time. No floors and no volume guard: it is the naive '
  'baseline the quality benchmark compares the other detectors with, and it never opens anomalies.'
);

-- ============================================================== shared guard
create function anomaly._confirm_latency_shift(p_service text, p_operation text, p_bucket timestamptz,
                                               p_line_ms double precision, p_spans integer)
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce((select anomaly.histogram_count_above(m.latency_histogram, p_line_ms)
                   from anomaly.operation_minutes m
                   where m.service_name = p_service and m.operation = p_operation and m.bucket = p_bucket), 0)
         >= greatest(2, ceil(0.05 * p_spans))
$$;
comment on function anomaly._confirm_latency_shift(text, text, timestamptz, double precision, integer) is
  'Guard of the latency detectors: true when at least max(2, 5 % of p_spans) spans of the operation''s minute lie '
  'above p_line_ms (by histogram bucket), i.e. the p95 moved because the slow tail grew, not because of one slow '
  'span in a small minute. False when the minute has no rollup row. '
  'Example: select anomaly._confirm_latency_shift(''api'', ''GET /items'', ''2026-03-01 01:00+00'', 150, 20).';

-- ============================================================== EWMA control chart
create function anomaly.detect_latency_ewma(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with scored as (
    select p.series_id, p.value, p.n, s.service, s.operation, st.n as state_points, st.ewma_mean as mean,
           sqrt(greatest(st.ewma_var, 0)) as sd,
           greatest(sqrt(greatest(st.ewma_var, 0)), st.ewma_mean * 0.05, 1.0) as sd_eff
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    join anomaly.series_state st on st.series_id = p.series_id
    where p.bucket = p_bucket and s.signal = 'latency_p95' and s.scope = 'operation'
      and p.n >= (p_config ->> 'min_span_count')::integer
      and st.n >= (p_config ->> 'min_state_points')::integer
      and st.last_bucket < p_bucket -- the state must not contain this minute (no look-ahead on a re-run)
  )
  select x.series_id, p_bucket, 'latency_p95', x.value, x.mean,
         greatest(0, x.mean - (p_config ->> 'limit_sigma')::double precision * x.sd_eff),
         x.mean + (p_config ->> 'limit_sigma')::double precision * x.sd_eff,
         (x.value - x.mean) / x.sd_eff,
         jsonb_build_object('direction', 'up', 'ewma_sd', x.sd, 'sigma_used', x.sd_eff,
                            'state_points', x.state_points, 'limit_sigma', (p_config ->> 'limit_sigma')::double precision)
  from scored x
  where (x.value - x.mean) / x.sd_eff >= (p_config ->> 'limit_sigma')::double precision
    and x.value >= x.mean * (1 + (p_config ->> 'min_relative_change')::double precision)
    and anomaly._confirm_latency_shift(x.service, x.operation, p_bucket,
          x.mean + (p_config ->> 'limit_sigma')::double precision * x.sd_eff, x.n)
$$;
comment on function anomaly.detect_latency_ewma(timestamptz, jsonb) is
  'Detector latency_ewma (config detect.latency_ewma): EWMA control chart of p95 latency per operation. The point '
  'is compared with anomaly.series_state.ewma_mean and fires above ewma_mean + limit_sigma * max(sqrt(ewma_var), '
  '5 % of the mean, 1 ms) (L = 3 by default) when it is also min_relative_change above the mean, the state has '
  'min_state_points minutes and the minute min_span_count spans. Behaviour to know: with ewma_alpha 0.1 the '
  'baseline has a memory of ~20 minutes; the first minute of a step inflates ewma_var, so it flags the onset of a '
  'step rather than its whole length (the window detectors do that), and it adapts to a slow drift instead of flagging it (SPC rule 4 does), and '
  'one spike inflates ewma_var by alpha*(1-alpha)*jump^2, decaying by (1 - alpha) per minute: a moderate step '
  'shortly after a big spike is masked (latency_mad still sees it). Score = (x - mean) / sigma. Example: '
  'select * from anomaly.detect_latency_ewma(''2026-03-01 01:00+00'', anomaly.config(''detect.latency_ewma''));';

-- ============================================================== Shewhart / Western Electric rules
create function anomaly.detect_latency_spc(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with cur as (
    select p.series_id, p.value, p.n, s.service, s.operation
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    where p.bucket = p_bucket and s.signal = 'latency_p95' and s.scope = 'operation'
      and p.n >= (p_config ->> 'min_span_count')::integer
  ),
  win as (
    -- centre line and sigma of the trailing window: one primary-key range scan per series (a join over the
    -- bucket range would read the points of every signal and sort them)
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    cross join lateral (
      select count(*) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  ),
  scored as (
    -- every rule needs the point above the mean, so only these series read their newest points below
    select c.series_id, c.value, c.n, c.service, c.operation, w.points, w.mean, w.sd,
           greatest(w.sd, w.mean * 0.05, 1.0) as sd_eff,
           (c.value - w.mean) / greatest(w.sd, w.mean * 0.05, 1.0) as z
    from cur c join win w using (series_id)
    where w.points >= (p_config ->> 'min_points')::integer
      and c.value > w.mean
      and c.value >= w.mean * (1 + (p_config ->> 'min_relative_change')::double precision)
  ),
  ruled as (
    select s.*,
           array_remove(array[
             case when (p_config ->> 'rule1')::boolean and s.z >= 3 then 1 end,
             case when (p_config ->> 'rule2')::boolean and s.z >= 2 and r.beyond2 >= 1 then 2 end,
             case when (p_config ->> 'rule3')::boolean and s.z >= 1 and r.beyond1 >= 3 then 3 end,
             case when (p_config ->> 'rule4')::boolean
                       and r.above >= (p_config ->> 'run_length')::integer - 1 then 4 end
           ], null) as rules
    from scored s
    cross join lateral (
      -- the newest earlier points of the window (o = 1 is the minute before), against the same centre line
      select count(*) filter (where e.o <= 2 and (e.value - s.mean) / s.sd_eff >= 2) as beyond2,
             count(*) filter (where e.o <= 4 and (e.value - s.mean) / s.sd_eff >= 1) as beyond1,
             count(*) filter (where e.o <= (p_config ->> 'run_length')::integer - 1 and e.value > s.mean) as above
      from (select h.value, row_number() over (order by h.bucket desc) as o
            from anomaly.signal_points h
            where h.series_id = s.series_id and h.n > 0
              and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
              and h.bucket < p_bucket
            order by h.bucket desc
            limit greatest((p_config ->> 'run_length')::integer - 1, 4)) e
    ) r
  )
  select x.series_id, p_bucket, 'latency_p95', x.value, x.mean,
         greatest(0, x.mean - 3 * x.sd_eff), x.mean + 3 * x.sd_eff,
         -- z of the point, but at least the alarm line: a rule 2-4 pattern alarms (LOW) without a 3-sigma point
         greatest(x.z, 3),
         jsonb_build_object('direction', 'up', 'rules', to_jsonb(x.rules), 'z', x.z, 'baseline_points', x.points,
                            'stddev', x.sd, 'sigma_used', x.sd_eff)
  from ruled x
  where cardinality(x.rules) > 0
    -- the tail must have crossed the highest line of the strongest rule: 3, 2, 1 sigma or the mean (rule 4)
    and anomaly._confirm_latency_shift(x.service, x.operation, p_bucket, x.mean + (4 - x.rules[1]) * x.sd_eff, x.n)
$$;
comment on function anomaly.detect_latency_spc(timestamptz, jsonb) is
  'Detector latency_spc (config detect.latency_spc): Shewhart chart with the Western Electric rules on p95 latency '
  'per operation, centre line and sigma from the trailing window_minutes (60; sigma floored at 5 % of the mean or '
  '1 ms). Rules, upward only and the current minute always part of the pattern: 1 = the point beyond 3 sigma; '
  '2 = two of the last three beyond 2 sigma; 3 = four of the last five beyond 1 sigma; 4 = run_length (8) in a row '
  'above the mean. details.rules lists the rules that fired; score = z of the point, at least 3 (so a rule 2-4 '
  'hit alarms at LOW). Rule 4 is what catches a slow drift the adaptive baselines follow; under iid noise the four '
  'rules together false-alarm about once per 90-180 points, which min_relative_change (10 %) and the span guard '
  'cut down. Example: select * from anomaly.detect_latency_spc(''2026-03-01 01:00+00'', '
  'anomaly.config(''detect.latency_spc''));';

-- ============================================================== seasonal baseline
create function anomaly.detect_latency_seasonal(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with slots as materialized (
    -- the same slots anomaly.update_baselines folds this minute into (materialized: read the config once)
    select ((extract(hour from p_bucket at time zone 'UTC') * 60 + extract(minute from p_bucket at time zone 'UTC'))::integer
            / (b.cfg ->> 'day_slot_minutes')::integer)::smallint as day_slot,
           (extract(isodow from p_bucket at time zone 'UTC')::integer * 24 - 24
            + extract(hour from p_bucket at time zone 'UTC')::integer)::smallint as week_slot,
           (p_config ->> 'min_days')::integer * (b.cfg ->> 'day_slot_minutes')::integer as min_day_samples,
           (p_config ->> 'min_weeks')::integer * 60 as min_week_samples
    from (select anomaly.config('detect.baseline') as cfg) b
  ),
  cur as (
    select p.series_id, p.value, p.n, s.service, s.operation,
           d.n as day_n, d.mean as day_mean, d.m2 as day_m2, w.n as week_n, w.mean as week_mean, w.m2 as week_m2,
           sl.day_slot, sl.week_slot, sl.min_day_samples, sl.min_week_samples
    from slots sl
    join anomaly.signal_points p on p.bucket = p_bucket
    join anomaly.series s on s.id = p.series_id
    join anomaly.series_state st on st.series_id = p.series_id and st.last_bucket < p_bucket
    left join anomaly.seasonal_profiles d on d.series_id = p.series_id and d.period = 'day' and d.slot = sl.day_slot
    left join anomaly.seasonal_profiles w on w.series_id = p.series_id and w.period = 'week' and w.slot = sl.week_slot
    where s.signal = 'latency_p95' and s.scope = 'operation'
      and p.n >= (p_config ->> 'min_span_count')::integer
  ),
  chosen as (
    select c.series_id, c.value, c.n, c.service, c.operation, c.day_n, c.week_n,
           case when c.day_n >= c.min_day_samples then 'day' else 'week' end as period,
           case when c.day_n >= c.min_day_samples then c.day_slot else c.week_slot end as slot,
           case when c.day_n >= c.min_day_samples then c.day_n else c.week_n end as samples,
           case when c.day_n >= c.min_day_samples then c.day_mean else c.week_mean end as mean,
           case when c.day_n >= c.min_day_samples then sqrt(greatest(c.day_m2, 0) / greatest(c.day_n - 1, 1))
                else sqrt(greatest(c.week_m2, 0) / greatest(c.week_n - 1, 1)) end as sd
    from cur c
    -- no profile with enough history: no opinion rather than a guess
    where c.day_n >= c.min_day_samples or c.week_n >= c.min_week_samples
  ),
  scored as (
    select c.*, greatest(c.sd, c.mean * 0.05, 1.0) as sd_eff, (c.value - c.mean) / greatest(c.sd, c.mean * 0.05, 1.0) as z
    from chosen c
  )
  select x.series_id, p_bucket, 'latency_p95', x.value, x.mean,
         greatest(0, x.mean - (p_config ->> 'threshold')::double precision * x.sd_eff),
         x.mean + (p_config ->> 'threshold')::double precision * x.sd_eff,
         x.z,
         jsonb_build_object('direction', 'up', 'period', x.period, 'slot', x.slot, 'slot_samples', x.samples,
                            'slot_stddev', x.sd, 'sigma_used', x.sd_eff, 'day_samples', coalesce(x.day_n, 0),
                            'week_samples', coalesce(x.week_n, 0))
  from scored x
  where x.z >= (p_config ->> 'threshold')::double precision
    and x.value >= x.mean * (1 + (p_config ->> 'min_relative_change')::double precision)
    and anomaly._confirm_latency_shift(x.service, x.operation, p_bucket,
          x.mean + (p_config ->> 'threshold')::double precision * x.sd_eff, x.n)
$$;
comment on function anomaly.detect_latency_seasonal(timestamptz, jsonb) is
  'Detector latency_seasonal (config detect.latency_seasonal): p95 latency per operation against its seasonal '
  'profile (anomaly.seasonal_profiles). Uses the minute-of-day slot (detect.baseline.day_slot_minutes wide) once it '
  'holds min_days days of samples (min_days x day_slot_minutes; 3 x 5 = 15 by default), else the hour-of-week slot '
  'once it holds min_weeks x 60 samples, else returns nothing (no opinion, never a guess). Fires when z = (x - slot '
  'mean) / max(slot sd, 5 % of the mean, 1 ms) >= threshold and x is min_relative_change above the slot mean, so a '
  'daily ramp the slots have seen before stays quiet while the same jump at an unusual hour fires. The engine folds '
  'every minute into its slot, so with few days of history a condition lasting several minutes of one slot is '
  'partly learned by it: it fires on the first minutes of a step (the other detectors carry the anomaly on). '
  'Example: select * from anomaly.detect_latency_seasonal(''2026-03-05 14:00+00'', '
  'anomaly.config(''detect.latency_seasonal''));';

-- ============================================================== robust median / MAD
create function anomaly.detect_latency_mad(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with cur as (
    select p.series_id, p.value, p.n, s.service, s.operation
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    where p.bucket = p_bucket and s.signal = 'latency_p95' and s.scope = 'operation'
      and p.n >= (p_config ->> 'min_span_count')::integer
  ),
  win as (
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    cross join lateral (
      select count(*) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  ),
  candidates as materialized (
    -- Exact pre-filter: |mean - median| <= sigma for any sample, and a hit needs x >= median * (1 + c) with
    -- c = max(min_relative_change, 5 % floor * threshold), so a point below (mean - sigma) * (1 + c) cannot fire;
    -- the window values and the two sorts of robust_stats are fetched only for the rest (~1 % of steady series).
    select c.series_id, c.value, c.n, c.service, c.operation, w.points
    from cur c join win w using (series_id)
    where w.points >= (p_config ->> 'min_points')::integer
      and c.value >= (w.mean - coalesce(w.sd, 0)) * (1 + greatest((p_config ->> 'min_relative_change')::double precision,
                                                                  0.05 * (p_config ->> 'threshold')::double precision))
  ),
  scored as (
    -- robust_stats returns the MAD already scaled by 1.4826 (a sigma estimate for normal data)
    select c.series_id, c.value, c.n, c.service, c.operation, c.points, r.median, r.mad,
           greatest(r.mad, r.median * 0.05, 1.0) as sd_eff
    from candidates c
    cross join lateral (
      select array_agg(h.value) as vals
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) v
    cross join lateral anomaly.robust_stats(v.vals) r
  )
  select x.series_id, p_bucket, 'latency_p95', x.value, x.median,
         greatest(0, x.median - (p_config ->> 'threshold')::double precision * x.sd_eff),
         x.median + (p_config ->> 'threshold')::double precision * x.sd_eff,
         (x.value - x.median) / x.sd_eff,
         jsonb_build_object('direction', 'up', 'median', x.median, 'mad_sigma', x.mad, 'sigma_used', x.sd_eff,
                            'baseline_points', x.points)
  from scored x
  where (x.value - x.median) / x.sd_eff >= (p_config ->> 'threshold')::double precision
    and x.value >= x.median * (1 + (p_config ->> 'min_relative_change')::double precision)
    and anomaly._confirm_latency_shift(x.service, x.operation, p_bucket,
          x.median + (p_config ->> 'threshold')::double precision * x.sd_eff, x.n)
$$;
comment on function anomaly.detect_latency_mad(timestamptz, jsonb) is
  'Detector latency_mad (config detect.latency_mad): robust z of p95 latency per operation, (x - median) / '
  'max(1.4826 * MAD, 5 % of the median, 1 ms) over the trailing window_minutes (anomaly.robust_stats). Up to half '
  'the window can be outliers without moving the median or widening the band, so earlier spikes do not mask a '
  'later step (they blind the mean/sigma detectors for a whole window). Fires at threshold (3.5) when the value is '
  'also min_relative_change above the median. Example: select * from anomaly.detect_latency_mad('
  '''2026-03-01 01:00+00'', anomaly.config(''detect.latency_mad''));';

-- ============================================================== legacy mean + k * sigma
create function anomaly.detect_legacy_mean_ksigma(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
as $$
  with k as (
    select coalesce((select (ss.value #>> '{}')::double precision from public.system_settings ss
                     where ss.key = 'outlier_detection_stddev' and jsonb_typeof(ss.value) = 'number'), 2) as k
  ),
  cur as (
    select p.series_id, p.value, p.n
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id
    where p.bucket = p_bucket and s.signal = 'latency_p95' and s.scope = 'operation' and p.n >= 1
  ),
  win as (
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    cross join lateral (
      select count(*) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  )
  select c.series_id, p_bucket, 'latency_p95', c.value, w.mean, w.mean - k.k * w.sd, w.mean + k.k * w.sd,
         -- z on the same scale as the others; a flat window (sd = 0) flags any higher value, score capped at 1000
         coalesce(least((c.value - w.mean) / nullif(w.sd, 0), 1000), 1000),
         jsonb_build_object('direction', 'up', 'k', k.k, 'baseline_points', w.points, 'stddev', w.sd, 'spans', c.n)
  from cur c
  join win w using (series_id)
  cross join k
  where c.value > w.mean + k.k * w.sd
$$;
comment on function anomaly.detect_legacy_mean_ksigma(timestamptz, jsonb) is
  'Detector legacy_mean_ksigma (config detect.legacy_mean_ksigma; registered legacy = true, so it is logged in '
  'anomaly.detector_hits and reported by the quality benchmark but never opens anomalies): the rule the product '
  'replaces, p95 latency > mean + k * stddev of the trailing window_minutes, with k read from '
  'public.system_settings.outlier_detection_stddev at run time (2 when unset). Deliberately naive: no sigma floor, '
  'no minimum volume beyond one span, no relative-change guard. Score = (x - mean) / stddev, capped at 1000. '
  'Example: select * from anomaly.detect_legacy_mean_ksigma(''2026-03-01 01:00+00'', '
  'anomaly.config(''detect.legacy_mean_ksigma''));';

-- ============================================================== registry
insert into anomaly.detectors (name, family, signals, function_name, config_key, legacy, description) values
  ('latency_ewma', 'latency', '{latency_p95}', 'anomaly.detect_latency_ewma', 'detect.latency_ewma', false,
   'EWMA control chart of p95 latency: the minute vs the EWMA mean with L-sigma limits of the EWMA variance.'),
  ('latency_spc', 'latency', '{latency_p95}', 'anomaly.detect_latency_spc', 'detect.latency_spc', false,
   'Shewhart/SPC Western Electric rules (3 sigma, 2 of 3, 4 of 5, run of 8) on p95 latency vs the trailing hour.'),
  ('latency_seasonal', 'latency', '{latency_p95}', 'anomaly.detect_latency_seasonal', 'detect.latency_seasonal', false,
   'p95 latency vs the same minute-of-day (or hour-of-week) profile; no opinion until the profile has enough days.'),
  ('latency_mad', 'latency', '{latency_p95}', 'anomaly.detect_latency_mad', 'detect.latency_mad', false,
   'Robust z of p95 latency vs the median and MAD of the trailing hour; resistant to earlier outliers.'),
  ('legacy_mean_ksigma', 'latency', '{latency_p95}', 'anomaly.detect_legacy_mean_ksigma', 'detect.legacy_mean_ksigma',
   true, 'Legacy rule value > mean + k*sigma (k = system_settings.outlier_detection_stddev); logged, never alarms.');

grant execute on function
  anomaly._confirm_latency_shift(text, text, timestamptz, double precision, integer),
  anomaly.detect_latency_ewma(timestamptz, jsonb),
  anomaly.detect_latency_spc(timestamptz, jsonb),
  anomaly.detect_latency_seasonal(timestamptz, jsonb),
  anomaly.detect_latency_mad(timestamptz, jsonb),
  anomaly.detect_legacy_mean_ksigma(timestamptz, jsonb)
to service_role;
