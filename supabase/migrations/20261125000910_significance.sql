-- 20261125000910_significance.sql — volume-aware significance for the latency, error-rate and throughput detectors.
-- A per-minute p95 of a handful of spans, or an error rate summed over many quiet minutes, moves by chance far more
-- often than its sigma band says: the clean-day corpus of bench:quality showed most false alarms were such minutes
-- on low-volume operations (4 latency detectors "agreeing" on the same noisy point is not independent evidence).
-- Both families now also ask how improbable the evidence is for the number of spans behind it, with an exact
-- binomial tail (anomaly.binomial_upper_tail):
--   * latency: the spans of the minute above the line the p95 crossed (anomaly._confirm_latency_shift) against the
--     share expected above the baseline p95 (5 %): 4 of 5 or 5 of 10 spans, not 2 of 8;
--   * error_cusum: the errors of the run against the errors of its baseline window (a two-sample test: an hour of a
--     quiet service with no errors is not a baseline rate of 0 — on the clean day, 6 false alarms were such runs),
--     counting clumps of errors (a failed request fails several spans of a service) as one event, and at p <= 1e-6
--     for a service's error rate, which mixes operations whose shares shift through the day (all 4 remaining false
--     alarms of the corpus were service-scope runs of 6-7 errors; a real spike there is at p < 1e-20);
--   * error_proportion: the same two-sample test and dispersion for the minute against its trailing window;
--   * throughput: a silence must be improbable given how often the series skipped minutes and how clumped its spans
--     are, and a spike needs 60 spans (a few traces of a service that fans out are not a traffic spike);
--   * resources: 4 sigma (CPU and memory follow load; their EWMA sigma understates an hour's wandering).

-- ============================================================== statistics
create function anomaly.ln_factorial(p_n double precision)
returns double precision
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  -- exact below 30 (numeric factorial), Stirling's series above (error < 1e-13 at 30)
  select case
    when p_n < 30 then ln(factorial(greatest(floor(p_n), 0)::bigint)::double precision)
    else (p_n + 0.5) * ln(p_n + 1) - (p_n + 1) + 0.5 * ln(2 * pi())
         + 1 / (12 * (p_n + 1)) - 1 / (360 * power(p_n + 1, 3)) + 1 / (1260 * power(p_n + 1, 5))
  end
$$;
comment on function anomaly.ln_factorial(double precision) is
  'ln(n!) for a whole n >= 0: exact below 30, Stirling''s series (to 1/(1260 n^5)) above, where its error is below '
  '1e-13. PostgreSQL has no lgamma. Example: select anomaly.ln_factorial(100) -> 363.739375555563.';

create function anomaly.binomial_upper_tail(p_successes double precision, p_trials double precision,
                                            p_rate double precision)
returns double precision
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $$
declare
  v_k double precision := ceil(p_successes);
  v_n double precision := floor(p_trials);
  v_from double precision;
  v_step double precision;
  v_log double precision;
  v_term double precision;
  v_sum double precision := 0;
begin
  if v_k <= 0 or v_n <= 0 or p_rate >= 1 then
    return 1;
  elsif v_k > v_n or p_rate <= 0 then
    return 0;
  end if;
  -- Sum the probabilities from the term nearest the mean outwards, where they fall geometrically: above the mean
  -- P(X >= k) directly; at or below it 1 - P(X <= k - 1). Terms below 1e-290 are dropped (PostgreSQL raises an
  -- underflow error where C would give 0); they cannot change a p-value.
  if v_k > v_n * p_rate then
    v_from := v_k;
    v_step := 1;
  else
    v_from := v_k - 1;
    v_step := -1;
  end if;
  v_log := anomaly.ln_factorial(v_n) - anomaly.ln_factorial(v_from) - anomaly.ln_factorial(v_n - v_from)
           + v_from * ln(p_rate) + (v_n - v_from) * ln(1 - p_rate);
  if v_log > -660 then
    v_term := exp(v_log);
    loop
      v_sum := v_sum + v_term;
      exit when v_term < v_sum * 1e-13 or v_term < 1e-290
             or (v_step > 0 and v_from >= v_n) or (v_step < 0 and v_from <= 0);
      v_term := case when v_step > 0 then v_term * (v_n - v_from) / (v_from + 1) * (p_rate / (1 - p_rate))
                     else v_term * v_from / (v_n - v_from + 1) * ((1 - p_rate) / p_rate) end;
      v_from := v_from + v_step;
    end loop;
  end if;
  return case when v_step > 0 then least(v_sum, 1) else greatest(0, least(1, 1 - v_sum)) end;
end
$$;
comment on function anomaly.binomial_upper_tail(double precision, double precision, double precision) is
  'Exact one-sided binomial p-value P(X >= k) for X ~ Binomial(n, p) (k rounded up, n down): the sum of the '
  'probabilities from k upwards (k above the mean) or 1 - the sum from k - 1 downwards (k at or below it), stopped '
  'once the terms, falling geometrically away from the mean, no longer change it; tails below 1e-287 are 0. '
  'Example: select anomaly.binomial_upper_tail(5, 10, 0.05) -> 6.4e-5; binomial_upper_tail(12, 400, 0.01) -> 8.5e-4.';

create function anomaly.rate_increase_p_value(p_errors double precision, p_spans double precision,
                                              p_baseline_errors double precision, p_baseline_spans double precision,
                                              p_dispersion double precision default 1)
returns double precision
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  -- Conditional on the K errors of both samples together, the number in the first is Binomial(K, n1 / (n1 + n0))
  -- when both share one rate (the binomial approximation of Fisher's exact test, one-sided). Errors that come in
  -- clumps of about d (one failed request failing several spans of a service) count as one event each.
  select case when p_spans <= 0 or p_baseline_spans < 0 then 1.0
              else anomaly.binomial_upper_tail(p_errors / greatest(p_dispersion, 1),
                                               (p_errors + p_baseline_errors) / greatest(p_dispersion, 1),
                                               p_spans / (p_spans + p_baseline_spans)) end
$$;
comment on function anomaly.rate_increase_p_value(double precision, double precision, double precision,
                                                  double precision, double precision) is
  'One-sided p-value that the rate errors/spans of a window is higher than the rate of its baseline sample, with '
  'the uncertainty of both: conditional on all errors, the window''s share is Binomial(K, n1 / (n1 + n0)) under one '
  'common rate. A baseline of 0 errors in 500 spans does not make 6 in 447 significant (p = 0.011), as a baseline '
  'rate floored at 0.1 % would (p = 1e-6). p_dispersion (>= 1; see anomaly.error_dispersion) divides the error '
  'counts: errors that come in clumps are fewer independent events. '
  'Example: select anomaly.rate_increase_p_value(40, 100, 5, 6000) -> 2e-62.';

create function anomaly.error_dispersion(p_errors double precision, p_spans double precision,
                                         p_sum_errors_sq double precision, p_sum_errors_spans double precision,
                                         p_sum_spans_sq double precision, p_max double precision default 10)
returns double precision
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  -- sum over minutes of (k - n p)^2 against the binomial variance sum of n p (1 - p), p = errors / spans
  select case when p_spans <= 0 or p_errors <= 0 or p_errors >= p_spans
              then 1.0
              else least(p_max, greatest(1.0,
                (p_sum_errors_sq - 2 * (p_errors / p_spans) * p_sum_errors_spans
                 + power(p_errors / p_spans, 2) * p_sum_spans_sq)
                / (p_errors * (1 - p_errors / p_spans)))) end
$$;
comment on function anomaly.error_dispersion(double precision, double precision, double precision, double precision,
                                             double precision, double precision) is
  'Index of dispersion of per-minute error counts k_i out of n_i spans against a binomial with the pooled rate p: '
  'sum (k_i - n_i p)^2 / sum n_i p (1 - p), from the sums of k, n, k^2, k n and n^2; clamped to [1, p_max]. About '
  'the number of error spans one failure produces (a failed request fails its server span and its client spans), '
  '1 for independent errors; NULL for an empty window (strict: CUSUM minutes without a window skip the call). '
  'Example: select anomaly.error_dispersion(10, 1000, 30, 1000, 100000) -> 2.02.';

-- ============================================================== configuration
insert into anomaly.config_keys (key, spec, defaults, description) values (
  'detect.latency_confirm',
  '{"null_rate": {"type": "number", "min": 0.001, "max": 0.5},
    "max_p_value": {"type": "number", "min": 0.0000001, "max": 1},
    "min_share": {"type": "number", "min": 0, "max": 1}}',
  '{"null_rate": 0.05, "max_p_value": 0.001, "min_share": 0.05}',
  'Confirmation every non-legacy latency detector asks of a point: at least max(2, min_share of n) spans of the '
  'minute lie above the line the p95 crossed, and that many are improbable when each span exceeds it with '
  'null_rate (the baseline p95 leaves 5 % above it; the lines are higher): binomial upper tail <= max_p_value. '
  'max_p_value = 1 keeps only the count rule.'
);

update anomaly.config_keys
   set spec = spec || '{"max_p_value": {"type": "number", "min": 1e-12, "max": 1},
                        "service_max_p_value": {"type": "number", "min": 1e-12, "max": 1}}',
       defaults = defaults || '{"max_p_value": 0.001, "service_max_p_value": 0.000001}',
       description = description || ' A run signals only when its errors are also improbable: one-sided '
         'p-value of the run''s errors against the baseline window''s (anomaly.rate_increase_p_value) <= max_p_value '
         '(service_max_p_value for a service''s error rate: it mixes operations whose shares shift through the day, '
         'so its counts vary more than any one operation''s).'
 where key = 'detect.error_cusum';

-- ============================================================== latency: the shared confirmation
create or replace function anomaly._confirm_latency_shift(p_service text, p_operation text, p_bucket timestamptz,
                                                          p_line_ms double precision, p_spans integer)
returns boolean
language sql
stable
set search_path = ''
as $$
  with cfg as (
    select (c ->> 'null_rate')::double precision as null_rate, (c ->> 'max_p_value')::double precision as max_p,
           (c ->> 'min_share')::double precision as min_share
    from anomaly.config('detect.latency_confirm') c
  ),
  above as (
    select coalesce((select anomaly.histogram_count_above(m.latency_histogram, p_line_ms)
                     from anomaly.operation_minutes m
                     where m.service_name = p_service and m.operation = p_operation and m.bucket = p_bucket), 0) as k
  )
  select a.k >= greatest(2, ceil(c.min_share * p_spans))
     and anomaly.binomial_upper_tail(a.k, p_spans, c.null_rate) <= c.max_p
  from above a, cfg c
$$;
comment on function anomaly._confirm_latency_shift(text, text, timestamptz, double precision, integer) is
  'Guard of the latency detectors (config detect.latency_confirm): true when at least max(2, min_share x p_spans) '
  'spans of the operation''s minute lie above p_line_ms (by histogram bucket) and that count is improbable by '
  'chance: binomial_upper_tail(k, p_spans, null_rate) <= max_p_value. So the p95 moved because the slow tail grew, '
  'not because two slow spans fell into a small minute. False when the minute has no rollup row. '
  'Example: select anomaly._confirm_latency_shift(''api'', ''GET /items'', ''2026-03-01 01:00+00'', 150, 20).';

-- ============================================================== error rate: CUSUM runs must be significant
alter table anomaly.error_cusum_runs
  add column baseline_errors bigint not null default 0,
  add column baseline_spans bigint not null default 0;
comment on column anomaly.error_cusum_runs.baseline_errors is
  'Errors of the baseline window p0 was pooled from (frozen for the run, like p0): the run is tested against this '
  'sample (anomaly.rate_increase_p_value), not against p0 as if it were known exactly.';
comment on column anomaly.error_cusum_runs.baseline_spans is 'Spans of the baseline window p0 was pooled from.';
alter table anomaly.error_cusum_runs add column dispersion double precision not null default 1
  constraint error_cusum_runs_dispersion_check check (dispersion >= 1);
comment on column anomaly.error_cusum_runs.dispersion is
  'Index of dispersion of the baseline window''s per-minute error counts (anomaly.error_dispersion), frozen for the '
  'run: the significance test counts clumps of errors, not error spans.';

create or replace function anomaly.detect_error_cusum(p_bucket timestamptz, p_config jsonb)
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
  v_max_p double precision := (p_config ->> 'max_p_value')::double precision;
  v_max_p_service double precision := (p_config ->> 'service_max_p_value')::double precision;
begin
  -- Re-running a minute replaces its rows (they derive only from the previous minute's rows and this minute's
  -- points); rows older than an hour are no longer needed (a step only reads the minute before it).
  delete from anomaly.error_cusum_runs
  where bucket = p_bucket or bucket < p_bucket - interval '60 minutes';

  insert into anomaly.error_cusum_runs (series_id, bucket, s, signalled, p0, run_start, run_errors, run_spans,
                                       baseline_errors, baseline_spans, dispersion)
  select x.series_id, p_bucket, x.s,
         x.counted and x.s > v_h and x.run_errors >= v_min_run_errors and x.value > x.p0
           -- the run's errors must also be improbable against the baseline sample, with the uncertainty of a
           -- baseline of few spans (0 errors in a quiet hour is not a rate of 0)
           and anomaly.rate_increase_p_value(x.run_errors, x.run_spans, x.baseline_errors, x.baseline_spans,
                                             x.dispersion)
               <= case when x.scope = 'service' then v_max_p_service else v_max_p end,
         x.p0, x.run_start, x.run_errors, x.run_spans, x.baseline_errors, x.baseline_spans, x.dispersion
  from (
    select c.series_id, c.scope, c.value, c.counted, c.p0, coalesce(c.run_start, p_bucket) as run_start,
           c.baseline_errors, c.baseline_spans, c.dispersion,
           case when c.counted
                then greatest(0, coalesce(c.prev_s, 0) + (c.value - c.p0) / sqrt(c.p0 * (1 - c.p0) / c.n) - v_k)
                else coalesce(c.prev_s, 0) end as s,
           coalesce(c.run_errors, 0) + case when c.counted then c.k else 0 end as run_errors,
           coalesce(c.run_spans, 0) + case when c.counted then c.n else 0 end as run_spans
    from (
      select p.series_id, s.scope, p.value, p.n, p.k, p.n >= v_min_spans as counted,
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
             coalesce(r.p0, case when w.rate is not null then least(greatest(w.rate, v_min_rate), 0.99) end) as p0,
             case when r.series_id is not null then coalesce(r.baseline_errors, 0) else w.errors end as baseline_errors,
             case when r.series_id is not null then coalesce(r.baseline_spans, 0) else w.spans end as baseline_spans,
             case when r.series_id is not null then coalesce(r.dispersion, 1) else coalesce(w.dispersion, 1) end
               as dispersion
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
        select sum(h.k)::double precision / nullif(sum(h.n), 0) as rate, sum(h.k)::bigint as errors,
               sum(h.n)::bigint as spans,
               anomaly.error_dispersion(sum(h.k), sum(h.n), sum(h.k::double precision * h.k),
                                        sum(h.k::double precision * h.n), sum(h.n::double precision * h.n)) as dispersion
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
  'Signals (subtype error_rate, direction up) when S > decision_h, the run holds min_run_errors errors, the '
  'minute is above p0 and the run''s errors are improbable against the baseline sample (rate_increase_p_value <= '
  'max_p_value), then '
  'restarts from decision_h * restart_headstart, so a sustained shift signals every few minutes and an ended one '
  'stops within minutes. Score = proportion z of the run (errors vs spans since S left 0). Catches sustained small '
  'increases that a 3-sigma test misses; a run lasts at most max_run_minutes. Keeps its state in '
  'anomaly.error_cusum_runs, written for p_bucket from the row of p_bucket - 1 minute only (look-ahead free; '
  're-running a minute is idempotent). Config detect.error_cusum. Example: select * '
  'from anomaly.detect_error_cusum(''2026-03-01 10:00+00'', anomaly.config(''detect.error_cusum''));';


-- ============================================================== error_proportion: the same test, per minute
update anomaly.config_keys
   set spec = spec || '{"max_p_value": {"type": "number", "min": 1e-12, "max": 1}}',
       defaults = defaults || '{"max_p_value": 0.0001}',
       description = description || ' The score is divided by the square root of the window''s index of dispersion '
         '(service scope), and the minute''s errors must be improbable against the window''s errors (two-sample p <= '
         'max_p_value).'
 where key = 'detect.error_proportion';

create or replace function anomaly.detect_error_proportion(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with cur as (
    select p.series_id, s.scope, p.value, p.n, p.k
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'error_rate'
    where p.bucket = p_bucket and p.k >= (p_config ->> 'min_error_count')::integer
  ),
  base as (
    -- one primary-key range scan per candidate (a lateral aggregate), not a scan of every series' window
    -- dispersion for a service's error rate only: one failed request fails several spans of a service (its server
    -- span and client spans), while an operation sees one span per request; estimated from the window, it would
    -- also let the first minute of a spike mask the second at the operation level
    select c.series_id, w.points, w.errors, w.spans,
           case when c.scope = 'service' then coalesce(w.dispersion, 1) else 1 end as dispersion
    from cur c
    cross join lateral (
      select count(*) as points, sum(h.k) as errors, sum(h.n) as spans,
             anomaly.error_dispersion(sum(h.k), sum(h.n), sum(h.k::double precision * h.k),
                                      sum(h.k::double precision * h.n), sum(h.n::double precision * h.n)) as dispersion
      from anomaly.signal_points h
      where h.series_id = c.series_id and h.n > 0
        and h.bucket >= p_bucket - make_interval(mins => (p_config ->> 'window_minutes')::integer)
        and h.bucket < p_bucket
    ) w
  ),
  tested as (
    select c.series_id, c.value, c.n, c.k, b.points, b.errors, b.spans, b.dispersion,
           b.errors::double precision / b.spans as rate,
           least(greatest(b.errors::double precision / b.spans,
                          (p_config ->> 'min_baseline_rate')::double precision), 0.999) as p0
    from cur c join base b using (series_id)
    where b.points >= (p_config ->> 'min_points')::integer and b.spans > 0
  ),
  scored as (
    -- z in units of the series' own minute-to-minute noise (binomial x dispersion), and the minute's errors
    -- improbable against the baseline window's errors, not against a rate known exactly
    select t.*, anomaly.proportion_z(t.k, t.n, t.p0) / sqrt(t.dispersion) as z,
           anomaly.rate_increase_p_value(t.k, t.n, t.errors, t.spans, t.dispersion) as p_value
    from tested t
  )
  select s.series_id, p_bucket, 'error_rate', s.value, s.rate,
         greatest(0, s.p0 - (p_config ->> 'threshold')::double precision * sqrt(s.p0 * (1 - s.p0) / s.n)),
         s.p0 + (p_config ->> 'threshold')::double precision * sqrt(s.p0 * (1 - s.p0) / s.n),
         s.z,
         jsonb_build_object('direction', 'up', 'errors', s.k, 'spans', s.n, 'baseline_rate', s.rate,
                            'baseline_errors', s.errors, 'baseline_spans', s.spans, 'baseline_points', s.points,
                            'dispersion', s.dispersion, 'p_value', s.p_value)
  from scored s
  where s.z >= (p_config ->> 'threshold')::double precision
    and s.value >= s.rate + (p_config ->> 'min_rate_increase')::double precision
    and s.p_value <= (p_config ->> 'max_p_value')::double precision
$$;
comment on function anomaly.detect_error_proportion(timestamptz, jsonb) is
  'Detector error_proportion (config detect.error_proportion): this minute''s k errors of n spans against the errors '
  'of the trailing window_minutes. Score = one-sample proportion z against the pooled rate (at least '
  'min_baseline_rate), for a service''s error rate divided by sqrt(dispersion), the window''s index of dispersion '
  '(anomaly.error_dispersion: a failed request fails several spans of a service). Fires when the score >= threshold, the rate rose by min_rate_increase, the '
  'minute has min_error_count errors and the two-sample p-value against the window''s errors '
  '(anomaly.rate_increase_p_value) is <= max_p_value.';

-- ============================================================== throughput: silences and spikes of bursty services
-- A service's spans come in traces of many spans, so its per-minute counts are clumped: 34 spans where 5 are
-- expected can be three traces instead of a half, and a service with a few traces a minute skips minutes.
update anomaly.config_keys
   set spec = spec || '{"max_p_value": {"type": "number", "min": 0.0000001, "max": 1}}',
       defaults = defaults || '{"max_p_value": 0.001}',
       description = description || ' The silence must also be improbable for the series: q ^ silent_minutes <= '
         'max_p_value, q the larger of the share of silent minutes in the active window ((silent + 0.5) / (window + 1)) '
         'and exp(-rate / dispersion), dispersion = variance / mean of the per-minute counts (spans per arrival).'
 where key = 'detect.throughput_silence';
update anomaly.config_keys
   set defaults = defaults || '{"min_spike_count": 60}'
 where key = 'detect.throughput_forecast';

-- CPU and memory follow load and move slowly: minute to minute they are strongly autocorrelated, so an EWMA sigma
-- understates how far they wander in an hour, and 3 sigma is crossed by a busy lunchtime (clean-day corpus, seed 23).
update anomaly.config_keys
   set defaults = defaults || '{"threshold": 4}'
 where key = 'detect.resource_deviation';

create or replace function anomaly.detect_throughput_silence(p_bucket timestamptz, p_config jsonb)
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
           a.spans / f.window_minutes as active_rate, a.minutes as active_minutes, a.dispersion
    from last_active l
    cross join cfg f
    cross join lateral (
      select coalesce(sum(h.value), 0) as spans, count(*) filter (where h.n > 0) as minutes,
             -- spans per independent arrival, about: the index of dispersion of the per-minute counts
             greatest(1, coalesce(var_samp(h.value) / nullif(avg(h.value), 0), 1)) as dispersion
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
    -- as improbable as max_p_value given how often the series was silent in its active window: a bursty service
    -- (traces of many spans, a few a minute) that skipped 3 of the last 30 minutes may skip 2 more by chance, and
    -- one with 11 spans a minute in clumps of 8 has about 1.4 arrivals a minute: a silent minute in 4
    -- P(one silent minute): the share of silent minutes in the window, or for a series of few, clumped arrivals
    -- (traces of many spans) the Poisson chance of none, whichever is larger
    and a.silent_minutes * ln(greatest((f.window_minutes - a.active_minutes + 0.5) / (f.window_minutes + 1),
                                       exp(greatest(-700, -a.active_rate / a.dispersion))))
        <= ln((p_config ->> 'max_p_value')::double precision)
    -- a silence the time of day explains (a nightly lull the profile has seen for days) is not an anomaly
    and (sp.mean is null or sp.mean >= (p_config ->> 'min_active_rate')::double precision)
$$;
comment on function anomaly.detect_throughput_silence(timestamptz, jsonb) is
  'Detector throughput_silence: an operation or service that was active (mean >= min_active_rate spans/min over the '
  'active_window_minutes before its last data, with data in min_active_minutes of them) and has had 0 spans for '
  'min_silent_minutes consecutive minutes up to this one, when such a silence is improbable for the series: '
  'q ^ silent_minutes <= max_p_value, q = the larger of (silent minutes in the window + 0.5) / (window + 1) and '
  'exp(-rate / dispersion) (Poisson chance of a minute without arrivals, counting clumps of spans once). Fires throughput_drop with the fixed score (default 8, '
  'high: a service going silent is an anomaly) every silent minute while the engine still writes zeros '
  '(detect.engine.silence_lookback_minutes). With respect_seasonal, skips silences the day profile expects. Config '
  'detect.throughput_silence. Example: select * from anomaly.detect_throughput_silence(''2026-03-01 10:00+00'', '
  'anomaly.config(''detect.throughput_silence''));';

grant execute on function anomaly.binomial_upper_tail(double precision, double precision, double precision),
  anomaly.ln_factorial(double precision),
  anomaly.rate_increase_p_value(double precision, double precision, double precision, double precision, double precision),
  anomaly.error_dispersion(double precision, double precision, double precision, double precision, double precision,
                           double precision)
  to authenticated, service_role;
