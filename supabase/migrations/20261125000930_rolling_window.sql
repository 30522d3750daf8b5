-- 20261125000930_rolling_window.sql — the trailing window's moments kept incrementally, read once per series.
-- latency_zscore, latency_spc, latency_mad (its pre-filter), the legacy rule and error_zscore each scanned the last
-- 60 points of every series every minute for the same count, mean and sigma (bench:detect at 10k operations: about
-- 1.8 s of a 5.9 s cycle). anomaly.series_state now keeps count, sum and sum of squares of the points of the last
-- detect.baseline.window_minutes (anomaly.update_baselines, 20261125000940, adds the new minute and drops the one
-- leaving, or rebuilds after a gap, and records the minute in detector_state 'window'), and
-- anomaly.trailing_moments() serves them in O(1) per series when the cycle is exactly one minute past that minute and
-- the detector asks for that window; otherwise it scans the points as before (same numbers), so a detector configured
-- with another window, or called outside a cycle, is still right.
-- latency_zscore also takes the shared confirmation of the latency family (anomaly._confirm_latency_shift, 0910).

update anomaly.config_keys
   set spec = spec || '{"window_minutes": {"type": "integer", "min": 10, "max": 1440}}',
       defaults = defaults || '{"window_minutes": 60}',
       description = description || ' window_minutes: the trailing window whose count, sum and sum of squares '
         'series_state keeps for the window detectors (theirs must match it to be served from it).'
 where key = 'detect.baseline';

alter table anomaly.series_state
  add column win_points integer not null default 0,
  add column win_sum double precision not null default 0,
  add column win_sumsq double precision not null default 0;
comment on column anomaly.series_state.win_points is
  'Points with n > 0 in the rolling window (the last detect.baseline.window_minutes minutes folded in); with win_sum '
  'and win_sumsq it gives the window mean and sample sigma (anomaly.trailing_moments). Valid while the ''window'' row '
  'of anomaly.detector_state is the last minute folded in.';
comment on column anomaly.series_state.win_sum is 'Sum of the values of the rolling window''s points.';
comment on column anomaly.series_state.win_sumsq is 'Sum of the squared values of the rolling window''s points.';

create function anomaly.trailing_moments(p_bucket timestamptz, p_signal text, p_minutes integer)
returns table (series_id bigint, points bigint, mean double precision, sd double precision)
language sql
stable
set search_path = ''
as $$
  with rolling as (
    select coalesce((select ds.last_bucket = p_bucket - interval '1 minute' from anomaly.detector_state ds
                     where ds.detector = 'window'), false)
       and p_minutes = (anomaly.config('detect.baseline') ->> 'window_minutes')::integer as served
  )
  select p.series_id, st.win_points::bigint, st.win_sum / nullif(st.win_points, 0),
         case when st.win_points > 1
              then sqrt(greatest(0, (st.win_sumsq - st.win_sum * st.win_sum / st.win_points) / (st.win_points - 1)))
         end
  from anomaly.signal_points p
  join anomaly.series s on s.id = p.series_id and s.signal = p_signal
  join anomaly.series_state st on st.series_id = p.series_id
  where p.bucket = p_bucket and (select served from rolling)
  union all
  select p.series_id, w.points, w.mean, w.sd
  from anomaly.signal_points p
  join anomaly.series s on s.id = p.series_id and s.signal = p_signal
  cross join lateral (
    select count(*) as points, avg(h.value) as mean, stddev_samp(h.value) as sd
    from anomaly.signal_points h
    where h.series_id = p.series_id and h.n > 0
      and h.bucket >= p_bucket - make_interval(mins => p_minutes) and h.bucket < p_bucket
  ) w
  where p.bucket = p_bucket and not (select served from rolling)
$$;
comment on function anomaly.trailing_moments(timestamptz, text, integer) is
  'Count, mean and sample sigma of the points (n > 0) in [p_bucket - p_minutes, p_bucket) of every p_signal series '
  'with a point at p_bucket. From the rolling window in anomaly.series_state when the engine has folded exactly the '
  'minute before p_bucket and p_minutes is detect.baseline.window_minutes (O(1) per series), else by scanning the '
  'points. Example: select * from anomaly.trailing_moments(''2026-03-01 10:00+00'', ''latency_p95'', 60).';


create or replace function anomaly.detect_latency_zscore(p_bucket timestamptz, p_config jsonb)
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
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    join anomaly.trailing_moments(p_bucket, 'latency_p95', (p_config ->> 'window_minutes')::integer) w
      using (series_id)
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
  where s.z >= (p_config ->> 'threshold')::double precision
    and s.value >= s.mean * (1 + (p_config ->> 'min_relative_change')::double precision)
    -- a shifted quantile, not a few slow outliers: as many spans above the band as chance would hardly put there
    and anomaly._confirm_latency_shift(s.service, s.operation, p_bucket,
          s.mean + (p_config ->> 'threshold')::double precision * s.sd_eff, s.n)
$$;
comment on function anomaly.detect_latency_zscore(timestamptz, jsonb) is
  'Detector latency_zscore: p95 latency of an operation vs the mean and sigma of its trailing window_minutes '
  '(config detect.zscore; sigma floored at 5 % of the mean or 1 ms). Fires when z >= threshold, the value moved by '
  'min_relative_change, the minute has min_span_count spans and the spans above the band pass '
  'anomaly._confirm_latency_shift (detect.latency_confirm), like the other latency detectors.';


create or replace function anomaly.detect_error_zscore(p_bucket timestamptz, p_config jsonb)
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
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    join anomaly.trailing_moments(p_bucket, 'error_rate', (p_config ->> 'window_minutes')::integer) w
      using (series_id)
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

create or replace function anomaly.detect_latency_mad(p_bucket timestamptz, p_config jsonb)
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
    join anomaly.trailing_moments(p_bucket, 'latency_p95', (p_config ->> 'window_minutes')::integer) w
      using (series_id)
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

create or replace function anomaly.detect_legacy_mean_ksigma(p_bucket timestamptz, p_config jsonb)
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
    join anomaly.trailing_moments(p_bucket, 'latency_p95', (p_config ->> 'window_minutes')::integer) w
      using (series_id)
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

create or replace function anomaly.detect_latency_spc(p_bucket timestamptz, p_config jsonb)
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
    -- centre line and sigma of the trailing window
    select c.series_id, w.points, w.mean, w.sd
    from cur c
    join anomaly.trailing_moments(p_bucket, 'latency_p95', (p_config ->> 'window_minutes')::integer) w
      using (series_id)
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

grant execute on function anomaly.trailing_moments(timestamptz, text, integer) to service_role;
