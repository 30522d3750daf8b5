-- 16: the state kept incrementally matches the points it was folded from: the rolling trailing window in
-- anomaly.series_state gives the same count, mean and sigma as scanning the points, is the one the window detectors
-- read inside a cycle, and is rebuilt after a gap; seasonal profiles hold exactly the finished slots' points and the
-- slot in progress waits in the state.
begin;
select plan(8);

insert into public.anomaly_detection_config (key, value)
values ('detect.engine', '{"initial_lookback_minutes": 30, "history_minutes": 60}');
select anomaly.ingest_spans(tests.series('2026-05-01 00:00+00', 100, 12, array[100, 120, 90, 110, 95, 130, 105]));
select anomaly.ingest_spans(tests.series('2026-05-01 00:00+00', 100, 6, array[40, 45, 38], 'api', 'GET /b', 3, 5000000));
select anomaly.rollup();
select anomaly.detect();

create temp table cursor_at as select last_bucket from anomaly.detector_state where detector = 'window';
-- the scan, written out: points with n > 0 in [b - 60 min, b) of each p95 series with a point at b
create function tests.scan(p_bucket timestamptz) returns table (series_id bigint, points bigint, mean double precision,
  sd double precision) language sql stable set search_path = '' as $$
  select p.series_id, count(h.value), avg(h.value), stddev_samp(h.value)
  from anomaly.signal_points p
  join anomaly.series s on s.id = p.series_id and s.signal = 'latency_p95'
  join anomaly.signal_points h on h.series_id = p.series_id and h.n > 0
   and h.bucket >= p_bucket - interval '60 minutes' and h.bucket < p_bucket
  where p.bucket = p_bucket
  group by p.series_id
$$;
create function tests.same(p_bucket timestamptz) returns boolean language sql stable set search_path = '' as $$
  select count(*) = (select count(*) from tests.scan(p_bucket)) and count(*) > 0
     and bool_and(r.points = s.points and abs(r.mean - s.mean) < 1e-9 * s.mean and abs(r.sd - s.sd) < 1e-6 * s.sd)
  from anomaly.trailing_moments(p_bucket, 'latency_p95', 60) r join tests.scan(p_bucket) s using (series_id)
$$;

select ok((select last_bucket from cursor_at) is not null, 'the cycle folded minutes into the rolling window');
-- every series (2 operations x 3 signals, 2 of the service): after the cycle's ~100 folds (a rebuild at the first, then one minute in and one out each), the kept sums are
-- those of the points of (C - 60 min, C]
select ok((select bool_and(st.win_points = w.points and abs(st.win_sum - w.sum) <= 1e-9 * greatest(w.sum, 1)
                           and abs(st.win_sumsq - w.sumsq) <= 1e-9 * greatest(w.sumsq, 1)
                           and (st.win_k, st.win_n, st.win_kk, st.win_kn, st.win_nn) = (w.k, w.n, w.kk, w.kn, w.nn))
                  and count(*) = 8 and sum(w.k) > 0
           from anomaly.series_state st
           join (select p.series_id, count(*) as points, sum(p.value) as sum, sum(p.value * p.value) as sumsq,
                        sum(coalesce(p.k, 0)) as k, sum(p.n) as n, sum(coalesce(p.k, 0) * coalesce(p.k, 0)) as kk,
                        sum(coalesce(p.k, 0) * p.n) as kn, sum(p.n * p.n) as nn
                 from anomaly.signal_points p, cursor_at c
                 where p.bucket > c.last_bucket - interval '60 minutes' and p.bucket <= c.last_bucket and p.n > 0
                 group by 1) w using (series_id)),
  'after a cycle the kept count, sum and sum of squares (and the error and span sums) are those of the last 60 minutes'' points');

-- day slots of 5 minutes: every finished slot's profile is the n / mean / m2 of its points; the open one is in state
create temp table slot_points as
select p.series_id, ((extract(hour from p.bucket at time zone 'UTC') * 60
                      + extract(minute from p.bucket at time zone 'UTC'))::integer / 5)::smallint as slot,
       count(*) as n, avg(p.value) as mean, coalesce(var_samp(p.value) * (count(*) - 1), 0) as m2
from anomaly.signal_points p group by 1, 2;
select ok((select count(*) > 100 and bool_and(sp.n = x.n and abs(sp.mean - x.mean) <= 1e-9 * greatest(abs(x.mean), 1)
                                              and abs(sp.m2 - x.m2) <= 1e-6 * greatest(x.m2, 1))
           from anomaly.seasonal_profiles sp
           join slot_points x on x.series_id = sp.series_id and x.slot = sp.slot
           where sp.period = 'day'),
  'each finished day slot''s profile has exactly its points'' count, mean and sum of squared deviations');
select ok((select bool_and(st.day_n = x.n and abs(st.day_mean - x.mean) <= 1e-9 * greatest(abs(x.mean), 1)
                           and not exists (select 1 from anomaly.seasonal_profiles sp where sp.period = 'day'
                                           and sp.series_id = st.series_id and sp.slot = st.day_slot))
           from anomaly.series_state st
           join slot_points x on x.series_id = st.series_id and x.slot = st.day_slot),
  'the slot in progress is gathered in series_state, not yet in the profiles');

-- step the window back (a gap: rebuilt at C - 2), fold C - 1 (folded in already by every series, so rebuilt again:
-- the window moves with each series' fold), and read C as the detectors do
update anomaly.detector_state set last_bucket = last_bucket - interval '10 minutes' where detector = 'window';
select anomaly.update_baselines((select last_bucket - interval '2 minutes' from cursor_at));
select anomaly.update_baselines((select last_bucket - interval '1 minute' from cursor_at));
select ok(tests.same((select last_bucket from cursor_at)),
  'rebuilt after a gap and after a minute folded in already: trailing_moments equals the scan of the points');

-- served from state: a tampered sum shows in the 60-minute window, not in a 59-minute one (which scans)
update anomaly.series_state set win_sum = win_sum + 1000 * win_points
where series_id in (select id from anomaly.series where signal = 'latency_p95');
select ok((select bool_and(r.mean > s.mean + 900)
           from anomaly.trailing_moments((select last_bucket from cursor_at), 'latency_p95', 60) r
           join tests.scan((select last_bucket from cursor_at)) s using (series_id)),
  'inside the cycle the window detectors read the kept window (O(1) per series)');
select ok((select bool_and(points >= 50)
           from anomaly.trailing_moments((select last_bucket from cursor_at), 'latency_p95', 59)),
  'another window length is scanned');

-- a gap again: the next fold rebuilds from the points, tampering and all
update anomaly.detector_state set last_bucket = last_bucket - interval '5 minutes' where detector = 'window';
select anomaly.update_baselines((select last_bucket - interval '1 minute' from cursor_at));
select ok(tests.same((select last_bucket from cursor_at)), 'after a gap the window is rebuilt from the points');

select * from finish();
rollback;
