-- 20261125001250_cusum_reads_the_kept_window.sql — error_cusum's baseline from the rolling window in series_state.
-- Where a CUSUM run can start (no run yet, errors this minute, a rate above the EWMA: ~1,600 series a minute at 10k
-- operations) detect_error_cusum pooled errors and spans over the 60 minutes before the minute, reading 60 points
-- per series (0.1 s a cycle). series_state's rolling window now also keeps those sums (win_k, win_n, win_kk, win_kn,
-- win_nn; 20261125001200), exact integers, so inside a cycle the baseline is read from there; outside a cycle, or
-- with another baseline_window_minutes, the points are scanned as before (same numbers).

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
  'one-sided upper CUSUM (Page) of the error rate of an operation or service, in binomial '
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

