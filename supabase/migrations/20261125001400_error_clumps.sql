-- 20261125001400_error_clumps.sql — how many error spans one failure leaves in a service, measured from finished
-- traces, floors the dispersion the service-scope error tests divide by.
-- One failed request fails several spans of the same service: the server span and the client span of the call that
-- failed (payments' card-gateway call fails, and so does POST /payments/charge), or a retried call. A service's
-- per-minute error counts then come in clumps, and a binomial test that counts each span as an independent event
-- sees a few failed requests as many improbable errors. error_cusum and error_proportion estimated the clump size
-- (the index of dispersion) from their baseline window only; after an hour without errors that estimate is 1, and
-- errors 2, 0, 2, 0, 0, 2 in 6 minutes (three failed payments) scored p = 4e-7 against a service_max_p_value of
-- 1e-6: the quality corpus' seed-37 false alert (payments, error_cusum alone). Counted as 3 failures, p = 6e-4.
-- The clump size is a property of the service's call structure, not of the last hour: anomaly.service_error_clumps
-- keeps, per service, decayed counts of finished traces with an error span of the service and of those error spans,
-- written by a statement trigger on anomaly.trace_features (the rollup's finished traces), and the two detectors use
-- greatest(window dispersion, clump size) for a service's error rate.

insert into anomaly.config_keys (key, spec, defaults, description) values (
  'detect.error_clumps',
  '{"half_life_minutes": {"type": "integer", "min": 10, "max": 525600},
    "min_traces": {"type": "integer", "min": 1, "max": 1000000},
    "max_clump": {"type": "number", "min": 1, "max": 100}}',
  '{"half_life_minutes": 1440, "min_traces": 5, "max_clump": 10}',
  'Error clumps per service (anomaly.service_error_clumps): error spans of a service per finished trace that has '
  'any, counted with a half life of half_life_minutes of event time. Below min_traces such traces the clump size is '
  '1 (not known yet); it is capped at max_clump. error_cusum and error_proportion divide a service''s error counts '
  'by it (greatest of it and their window''s index of dispersion).'
);

create table anomaly.service_error_clumps (
  service_name text primary key,
  error_traces double precision not null,
  error_spans double precision not null,
  clump double precision not null default 1,
  newest_trace_start timestamptz not null,
  updated_at timestamptz not null default now(),
  constraint service_error_clumps_counts_check check (error_traces >= 0 and error_spans >= 0),
  constraint service_error_clumps_clump_check check (clump >= 1)
);
comment on table anomaly.service_error_clumps is
  'Per service: decayed counts of finished traces with at least one error span of the service (error_traces) and '
  'of those spans (error_spans), and clump = error_spans / error_traces (1 until detect.error_clumps.min_traces, '
  'capped at max_clump): how many error spans one failure leaves in the service. Written by '
  'anomaly.tg_trace_features__error_clumps; read by detect_error_cusum and detect_error_proportion.';
comment on column anomaly.service_error_clumps.newest_trace_start is
  'Start of the newest trace folded in: the decay clock runs in event time, so a replay decays as live traffic would.';
grant select, insert, update, delete on anomaly.service_error_clumps to service_role;

create function anomaly.tg_trace_features__error_clumps()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.error_clumps');
  v_half_life double precision := (v_cfg ->> 'half_life_minutes')::double precision * 60;
  v_min_traces double precision := (v_cfg ->> 'min_traces')::double precision;
  v_max_clump double precision := (v_cfg ->> 'max_clump')::double precision;
begin
  -- only traces with errors are read back, one trace-index probe each (a lateral: the transition table has no
  -- statistics, and a join could scan every staged span): most batches read nothing
  with per_trace as (
    select x.service_name, f.trace_id, f.start_time, x.spans
    from finished f
    cross join lateral (
      select s.service_name, count(*) as spans
      from anomaly.spans s
      where s.trace_id = f.trace_id and s.start_time between f.start_time and f.end_time and s.status_code = 2
      group by s.service_name
    ) x
    where f.error_count > 0
  ),
  per_service as (
    select service_name, count(*)::double precision as traces, sum(spans)::double precision as spans,
           max(start_time) as newest
    from per_trace
    group by service_name
  ),
  merged as (
    -- the stored counts decay by the event time between their newest trace and this batch's
    select p.service_name,
           coalesce(c.error_traces * d.factor, 0) + p.traces as traces,
           coalesce(c.error_spans * d.factor, 0) + p.spans as spans,
           greatest(c.newest_trace_start, p.newest) as newest
    from per_service p
    left join anomaly.service_error_clumps c using (service_name)
    cross join lateral (
      select power(0.5, greatest(0, extract(epoch from p.newest - c.newest_trace_start)) / v_half_life) as factor
    ) d
  )
  insert into anomaly.service_error_clumps as c (service_name, error_traces, error_spans, clump,
                                                 newest_trace_start, updated_at)
  select m.service_name, m.traces, m.spans,
         case when m.traces >= v_min_traces then least(v_max_clump, greatest(1, m.spans / m.traces)) else 1 end,
         m.newest, now()
  from merged m
  order by m.service_name
  on conflict (service_name) do update set
    error_traces = excluded.error_traces, error_spans = excluded.error_spans, clump = excluded.clump,
    newest_trace_start = excluded.newest_trace_start, updated_at = now();
  return null;
end
$$;
comment on function anomaly.tg_trace_features__error_clumps() is
  'Statement trigger after insert on anomaly.trace_features: folds the newly finished traces that have errors into '
  'anomaly.service_error_clumps (error spans per service and trace, decayed by detect.error_clumps.half_life_minutes '
  'of event time).';

create trigger trace_features__error_clumps
after insert on anomaly.trace_features
referencing new table as finished
for each statement execute function anomaly.tg_trace_features__error_clumps();

-- ============================================================== counting clumps as events, consistently
-- rate_increase_p_value divided both counts by the dispersion and binomial_upper_tail rounded the run's events up
-- and all events down: with a baseline of no errors, 6 errors at d = 1.6 became "4 of 3" events and a p-value of 0
-- (found with the clump floor, which makes d > 1 with a quiet baseline common: a clean day's checkout opened an
-- anomaly on 6 errors in 447 spans). Events are now rounded each on their own (at least one for any error), so
-- the run's events never exceed all events; d = 1 gives the same integers as before.
create or replace function anomaly.rate_increase_p_value(p_errors double precision, p_spans double precision,
                                                         p_baseline_errors double precision,
                                                         p_baseline_spans double precision,
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
              else anomaly.binomial_upper_tail(e.run, e.run + e.baseline, p_spans / (p_spans + p_baseline_spans)) end
  from (select case when p_errors > 0 then greatest(1, round(p_errors / greatest(p_dispersion, 1))) else 0 end as run,
               round(greatest(p_baseline_errors, 0) / greatest(p_dispersion, 1)) as baseline) e
$$;
comment on function anomaly.rate_increase_p_value(double precision, double precision, double precision,
                                                  double precision, double precision) is
  'One-sided p-value that the rate errors/spans of a window is higher than the rate of its baseline sample, with '
  'the uncertainty of both: conditional on all errors, the window''s share is Binomial(K, n1 / (n1 + n0)) under one '
  'common rate. A baseline of 0 errors in 500 spans does not make 6 in 447 significant (p = 0.011), as a baseline '
  'rate floored at 0.1 % would (p = 1e-6). p_dispersion (>= 1; see anomaly.error_dispersion) divides the error '
  'counts: errors that come in clumps are fewer independent events (each count rounded to whole events, the '
  'window''s at least 1). Example: select anomaly.rate_increase_p_value(40, 100, 5, 6000) -> 4e-66; '
  'rate_increase_p_value(6, 447, 0, 2100, 1.6) -> 9.5e-4 (4 events of 4).';

-- ============================================================== the detectors: service-scope dispersion floor
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
  -- the baseline window is the rolling window series_state keeps, when it is that window; else the points are scanned
  v_served boolean := anomaly.kept_window_serves(p_bucket, (p_config ->> 'baseline_window_minutes')::integer);
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
             -- a service's errors come in clumps of at least its measured clump size (the window may show none)
             case when r.series_id is not null then coalesce(r.dispersion, 1)
                  else greatest(coalesce(w.dispersion, 1), coalesce(ec.clump, 1)) end as dispersion
      from anomaly.signal_points p
      join anomaly.series s
        on s.id = p.series_id and s.signal = 'error_rate'
       and s.first_bucket <= p_bucket - make_interval(mins => v_min_history)
      left join anomaly.series_state st on st.series_id = p.series_id
      left join anomaly.service_error_clumps ec on s.scope = 'service' and ec.service_name = s.service
      -- a run longer than max_run_minutes ends: the new level is accepted and a new run starts from a fresh p0
      left join anomaly.error_cusum_runs r
        on r.series_id = p.series_id and r.bucket = p_bucket - interval '1 minute'
       and r.run_start > p_bucket - v_max_run
      left join lateral (
        select st.win_k / nullif(st.win_n, 0) as rate, st.win_k::bigint as errors, st.win_n::bigint as spans,
               anomaly.error_dispersion(st.win_k, st.win_n, st.win_kk, st.win_kn, st.win_nn) as dispersion
        where v_served and st.win_points > 0
        union all
        select sum(h.k)::double precision / nullif(sum(h.n), 0), sum(h.k)::bigint, sum(h.n)::bigint,
               anomaly.error_dispersion(sum(h.k), sum(h.n), sum(h.k::double precision * h.k),
                                        sum(h.k::double precision * h.n), sum(h.n::double precision * h.n))
        from anomaly.signal_points h
        where not v_served
          and h.series_id = p.series_id and h.n > 0
          and h.bucket >= p_bucket - v_window and h.bucket < p_bucket
        having not v_served
      ) w on r.series_id is null and p.k > 0 and p.n >= v_min_spans and p.value > coalesce(st.ewma_mean, 0)
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
  'Detector error_cusum (baseline sums from the rolling window in series_state inside a cycle, else scanned): '
  'one-sided upper CUSUM (Page) of the error rate of an operation, service or service edge, in binomial '
  'sigmas of each minute''s volume against the baseline rate p0 (errors / spans pooled over the '
  'baseline_window_minutes before the run started, frozen for the run): S_t = max(0, S_t-1 + z_t - slack_k). '
  'Signals (subtype error_rate, direction up) when S > decision_h, the run holds min_run_errors errors, the '
  'minute is above p0 and the run''s errors are improbable against the baseline sample (rate_increase_p_value <= '
  'max_p_value, service_max_p_value for a service, with the run''s dispersion: for a service the greatest of the '
  'window''s index of dispersion and its measured clump size, anomaly.service_error_clumps), then '
  'restarts from decision_h * restart_headstart, so a sustained shift signals every few minutes and an ended one '
  'stops within minutes. Score = proportion z of the run (errors vs spans since S left 0). Catches sustained small '
  'increases that a 3-sigma test misses; a run lasts at most max_run_minutes. Keeps its state in '
  'anomaly.error_cusum_runs, written for p_bucket from the row of p_bucket - 1 minute only (look-ahead free; '
  're-running a minute is idempotent). Config detect.error_cusum. Example: select * '
  'from anomaly.detect_error_cusum(''2026-03-01 10:00+00'', anomaly.config(''detect.error_cusum''));';

create or replace function anomaly.detect_error_proportion(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
stable
set search_path = ''
set jit = off
as $$
  with cur as (
    select p.series_id, s.scope, p.value, p.n, p.k, coalesce(ec.clump, 1) as clump
    from anomaly.signal_points p
    join anomaly.series s on s.id = p.series_id and s.signal = 'error_rate'
    left join anomaly.service_error_clumps ec on s.scope = 'service' and ec.service_name = s.service
    where p.bucket = p_bucket and p.k >= (p_config ->> 'min_error_count')::integer
  ),
  base as (
    -- one primary-key range scan per candidate (a lateral aggregate), not a scan of every series' window
    -- dispersion for a service's error rate only: one failed request fails several spans of a service (its server
    -- span and client spans), while an operation sees one span per request; estimated from the window, it would
    -- also let the first minute of a spike mask the second at the operation level; floored by the service's
    -- measured clump size (anomaly.service_error_clumps), which a window without errors cannot show
    select c.series_id, w.points, w.errors, w.spans,
           case when c.scope = 'service' then greatest(coalesce(w.dispersion, 1), c.clump) else 1 end as dispersion
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
  'min_baseline_rate), for a service''s error rate divided by sqrt(dispersion), the greatest of the window''s index '
  'of dispersion (anomaly.error_dispersion) and the service''s measured clump size (anomaly.service_error_clumps): a '
  'failed request fails several spans of a service. Fires when the score >= threshold, the rate rose by '
  'min_rate_increase, the minute has min_error_count errors and the two-sample p-value against the window''s errors '
  '(anomaly.rate_increase_p_value) is <= max_p_value.';
