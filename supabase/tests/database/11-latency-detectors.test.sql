-- 11: the latency detectors (EWMA, SPC rules, seasonal, median/MAD, legacy mean + k*sigma) find steps, spikes
-- and drifts where the answer is known, stay quiet on steady, sparse and normal-diurnal traffic, validate their
-- config, and the legacy rule reads k from system_settings without ever opening an anomaly.
--
-- Rollup rows are written directly (tests.latency_minutes) so the file stays fast: 10 spans a minute spread
-- 0.9x..1.1x around the minute's level, so p95 = 1.1x the level, read back from the log-bucket histogram (9 %
-- buckets, e.g. a steady 100 ms series reads 105.5 or 115.1).
begin;
select plan(44);

-- ============================================================== fixtures (roll back with the file)
create function tests.latency_minutes(p_operation text, p_from timestamptz, p_values double precision[],
  p_spans integer default 10, p_service text default 'lat')
returns integer language sql set search_path = '' as $$
  with spans as (
    select p_from + make_interval(mins => (m.i - 1)::integer) as bucket,
           m.v * (0.9 + 0.2 * j / greatest(p_spans - 1, 1)) as d
    from unnest(p_values) with ordinality as m(v, i), generate_series(0, p_spans - 1) as j
  ),
  hist as (
    select bucket, jsonb_object_agg(b, c) as h
    from (select bucket, anomaly.latency_bucket(d) as b, count(*) as c from spans group by 1, 2) x group by 1
  ),
  ins as (
    insert into anomaly.operation_minutes (service_name, operation, bucket, span_count, error_count, duration_sum_ms,
      duration_min_ms, duration_max_ms, latency_histogram, slowest_trace_id, slowest_span_id)
    select p_service, p_operation, s.bucket, s.n, 0, s.total, s.lo, s.hi, h.h,
           md5(p_operation || s.bucket::text), left(md5(s.bucket::text), 16)
    from (select bucket, count(*)::integer as n, sum(d) as total, min(d) as lo, max(d) as hi from spans group by 1) s
    join hist h using (bucket)
    on conflict (service_name, operation, bucket) do update set span_count = excluded.span_count,
      duration_sum_ms = excluded.duration_sum_ms, duration_min_ms = excluded.duration_min_ms,
      duration_max_ms = excluded.duration_max_ms, latency_histogram = excluded.latency_histogram
    returning 1
  )
  select count(*)::integer from ins
$$;
comment on function tests.latency_minutes(text, timestamptz, double precision[], integer, text) is
  'Writes one operation_minutes row per element of p_values (the minute''s latency level in ms) from p_from on.';

-- p_minutes of steady latency around p_base ms with a +-3 % minute-to-minute wobble (8-minute cycle).
create function tests.steady(p_base double precision, p_minutes integer)
returns double precision[] language sql immutable set search_path = '' as $$
  select array_agg(p_base * (array[1, 1.04, 0.97, 1.02, 0.99, 1.01, 0.98, 1.03])[1 + i % 8] order by i)
  from generate_series(0, p_minutes - 1) i
$$;

-- A daily pattern with sinusoidal (raised-cosine) ramps: 100 ms at night, up to 250 ms between 08:00 and 08:20,
-- down again at 18:00, with the same +-3 % wobble shifted per day.
create function tests.daily(p_from timestamptz, p_minutes integer)
returns double precision[] language sql immutable set search_path = '' as $$
  select array_agg(
    (100 + 150 * case when md < 480 then 0
                      when md < 500 then (1 - cos(pi() * (md - 480) / 20)) / 2
                      when md < 1080 then 1
                      when md < 1100 then (1 + cos(pi() * (md - 1080) / 20)) / 2
                      else 0 end)
    * (array[1, 1.04, 0.97, 1.02, 0.99, 1.01, 0.98, 1.03])[1 + (i + 3 * extract(day from p_from)::integer) % 8]
    order by i)
  from generate_series(0, p_minutes - 1) i,
  lateral (select (extract(hour from (p_from + make_interval(mins => i)) at time zone 'UTC') * 60
                   + extract(minute from (p_from + make_interval(mins => i)) at time zone 'UTC'))::integer as md) x
$$;

create function tests.detect_through(p_bucket timestamptz)
returns void language sql set search_path = '' as $$
  update anomaly.rollup_state set watermark = p_bucket + interval '1 minute';
  select anomaly.detect();
$$;

-- Hits of one detector on one operation, as "HH:MI" minutes.
create function tests.hit_minutes(p_detector text, p_operation text)
returns text[] language sql stable set search_path = '' as $$
  select coalesce(array_agg(to_char(h.bucket at time zone 'UTC', 'HH24:MI') order by h.bucket), '{}')
  from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
  where h.detector = p_detector and s.operation = p_operation
$$;

-- This file is about the latency family: the other families' detectors sit out (and cannot slow it down).
update anomaly.detectors set enabled = false where family <> 'latency';

-- ============================================================== registry and configuration
select results_eq($$ select name, family, config_key, legacy, enabled, signals from anomaly.detectors
                     where name in ('latency_ewma', 'latency_spc', 'latency_seasonal', 'latency_mad', 'legacy_mean_ksigma')
                     order by name $$,
  $$ values ('latency_ewma', 'latency', 'detect.latency_ewma', false, true, '{latency_p95}'::text[]),
            ('latency_mad', 'latency', 'detect.latency_mad', false, true, '{latency_p95}'),
            ('latency_seasonal', 'latency', 'detect.latency_seasonal', false, true, '{latency_p95}'),
            ('latency_spc', 'latency', 'detect.latency_spc', false, true, '{latency_p95}'),
            ('legacy_mean_ksigma', 'latency', 'detect.legacy_mean_ksigma', true, true, '{latency_p95}') $$,
  'the five latency detectors are registered with their own config keys; only the legacy rule is legacy');

select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.latency_ewma', '{"limit_sigma": 0}') $$,
  'TSC01', null, 'an EWMA limit below 1 sigma is rejected');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.latency_spc', '{"rule4": "yes"}') $$,
  'TSC01', null, 'an SPC rule switch must be a boolean');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.latency_spc', '{"run_length": 3}') $$,
  'TSC01', null, 'an SPC run shorter than 6 points is rejected');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.latency_seasonal', '{"min_days": 0}') $$,
  'TSC01', null, 'a seasonal profile needs at least one day');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.latency_mad', '{"window_minutes": 5000}') $$,
  'TSC01', null, 'a MAD window beyond a day is rejected');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.legacy_mean_ksigma', '{"k": 3}') $$,
  'TSC01', null, 'the legacy rule takes k from system_settings, not from its config');

-- ============================================================== scenario A: one hour of history, then two scored hours
-- 00:00-00:59 steady 100 ms for every operation (GET /outliers has 2000 ms minutes at 00:10, 00:25, 00:40);
-- GET /rare has 2 spans a minute. From 01:00:
--   GET /step      x3 for 5 minutes            GET /spike   x5 for one minute, then x2 for 5 minutes at 01:10
--   GET /outliers  x2 for 5 minutes            GET /rare    x9 for 5 minutes (sparse)
--   GET /drift     +1 % per minute for 2 h     GET /steady  steady for 2 h
select tests.latency_minutes(op, '2026-03-01 00:00+00', tests.steady(100, 60))
from unnest(array['GET /step', 'GET /spike', 'GET /outliers', 'GET /drift', 'GET /steady']) op;
select tests.latency_minutes('GET /outliers', '2026-03-01 00:00+00'::timestamptz + make_interval(mins => m), array[2000])
from unnest(array[10, 25, 40]) m;
select tests.latency_minutes('GET /step', '2026-03-01 01:00+00', array[300, 300, 300, 300, 300] || tests.steady(100, 15));
select tests.latency_minutes('GET /spike', '2026-03-01 01:00+00',
  array[500] || tests.steady(100, 9) || tests.steady(200, 5) || tests.steady(100, 5));
select tests.latency_minutes('GET /outliers', '2026-03-01 01:00+00', tests.steady(200, 5) || tests.steady(100, 15));
select tests.latency_minutes('GET /rare', '2026-03-01 00:00+00', tests.steady(100, 60) || array[900, 900, 900, 900, 900]
  || tests.steady(100, 15), 2);
select tests.latency_minutes('GET /drift', '2026-03-01 01:00+00',
  (select array_agg(100 * power(1.01, k) order by k) from generate_series(1, 120) k));
select tests.latency_minutes('GET /steady', '2026-03-01 01:00+00', tests.steady(100, 120));

-- First cycle: the hour before 01:00 only feeds the baselines, 01:00-02:59 is scored.
insert into public.anomaly_detection_config (key, value)
values ('detect.engine', '{"initial_lookback_minutes": 120, "history_minutes": 61, "max_minutes_per_cycle": 120}');
select lives_ok($$ select tests.detect_through('2026-03-01 02:59+00') $$, 'detection scores two hours');
select is((select errors from anomaly.detection_runs order by id desc limit 1), '[]'::jsonb, 'no detector failed');

-- A step: every detector fires on its first minute (EWMA then adapts: its variance absorbs the jump).
select set_eq($$ select detector from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                 where s.operation = 'GET /step' and h.bucket = '2026-03-01 01:00+00' $$,
  array['latency_ewma', 'latency_spc', 'latency_mad', 'legacy_mean_ksigma', 'latency_zscore'],
  'a x3 step fires EWMA, SPC, MAD, the legacy rule and the z-score on its first minute');
select is(tests.hit_minutes('latency_mad', 'GET /step'), array['01:00', '01:01', '01:02', '01:03', '01:04'],
  'MAD flags every minute of the step and nothing after it');
select is((select details -> 'rules' from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'latency_spc' and s.operation = 'GET /step' and h.bucket = '2026-03-01 01:00+00'),
  '[1]'::jsonb, 'SPC names rule 1 (a point beyond 3 sigma) for the step');
select row_eq($$ select status, severity, first_seen, occurrences from public.trace_anomalies
                 where fingerprint = 'LATENCY|latency_p95|lat|GET /step|latency' $$,
  row('RESOLVED'::text, 'CRITICAL'::text, '2026-03-01 01:00+00'::timestamptz, 5),
  'the detectors agree on one critical latency_p95 anomaly for the step, resolved once it is over');
select ok((select explanation -> 'detectors' @> '[{"name": "latency_mad"}, {"name": "latency_ewma"}, {"name": "latency_spc"}]'
             and not explanation -> 'detectors' @> '[{"name": "legacy_mean_ksigma"}]'
           from public.trace_anomalies where fingerprint = 'LATENCY|latency_p95|lat|GET /step|latency'),
  'the anomaly lists the agreeing detectors, without the legacy rule');

-- A single spike: the point detectors fire on that minute only; afterwards the mean/sigma ones are blind.
select set_eq($$ select detector from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                 where s.operation = 'GET /spike' and h.bucket = '2026-03-01 01:00+00' $$,
  array['latency_ewma', 'latency_spc', 'latency_mad', 'legacy_mean_ksigma', 'latency_zscore'],
  'a one-minute x5 spike fires every point detector');
select is_empty($$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                   where s.operation = 'GET /spike' and h.bucket between '2026-03-01 01:01+00' and '2026-03-01 01:09+00' $$,
  'the normal minutes after the spike raise nothing');
select is(tests.hit_minutes('latency_mad', 'GET /spike'), array['01:00', '01:10', '01:11', '01:12', '01:13', '01:14'],
  'MAD still sees a x2 step ten minutes after the spike: the spike does not move the median');
select is(tests.hit_minutes('latency_ewma', 'GET /spike'), array['01:00'],
  'EWMA misses that step: the spike inflated its variance (documented: it decays by 1 - alpha per minute)');
select is(tests.hit_minutes('legacy_mean_ksigma', 'GET /spike'), array['01:00'],
  'the legacy mean + 2 sigma rule misses it too: one spike widens sigma for the whole window');
select is(tests.hit_minutes('latency_spc', 'GET /spike'), array['01:00', '01:13', '01:14'],
  'SPC catches the step late, through its run rules');
select is((select details -> 'rules' from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'latency_spc' and s.operation = 'GET /spike' and h.bucket = '2026-03-01 01:13+00'),
  '[3]'::jsonb, 'that late SPC hit is rule 3 (four of five beyond 1 sigma)');

-- Earlier outliers in the window: the median and MAD ignore them, the mean and sigma do not.
select is(tests.hit_minutes('latency_mad', 'GET /outliers'), array['01:00', '01:01', '01:02', '01:03', '01:04'],
  'MAD flags a x2 step although the window holds three 2000 ms outliers');
select cmp_ok((select expected from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
               where h.detector = 'latency_mad' and s.operation = 'GET /outliers' and h.bucket = '2026-03-01 01:00+00'),
  '<', 120::double precision, 'the robust baseline stays at the normal level');
select is_empty($$ select h.detector from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                   where s.operation = 'GET /outliers' and h.detector <> 'latency_mad' $$,
  'the same outliers mask the step for EWMA, SPC, the z-score and the legacy rule');

-- A slow drift (+1 %/minute for two hours): SPC rule 4 catches it, the adaptive EWMA follows it.
select ok((select h.bucket <= '2026-03-01 01:15+00' and h.details -> 'rules' = '[4]'
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'latency_spc' and s.operation = 'GET /drift' order by h.bucket limit 1),
  'SPC first flags the drift within 15 minutes, by rule 4 alone (8 in a row above the mean)');
select is((select count(*)::integer from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'latency_spc' and s.operation = 'GET /drift' and not h.details -> 'rules' @> '[4]'), 0,
  'every SPC hit of the drift carries rule 4');
select ok((select min(score) >= 3 and max(score) < 4.5 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'latency_spc' and s.operation = 'GET /drift' and h.details -> 'rules' = '[4]'),
  'a rule-4-only hit scores the alarm line 3 (LOW), not the small z of the point');
select is(tests.hit_minutes('latency_ewma', 'GET /drift'), '{}'::text[],
  'EWMA never fires on the drift: its ~20-minute memory keeps up with 1 %/minute');
select is((select count(*)::integer from public.trace_anomalies where fingerprint = 'LATENCY|latency_p95|lat|GET /drift|latency'), 1,
  'the drift opens one anomaly');

-- Sparse and steady series.
select is_empty($$ select h.detector from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                   where s.operation = 'GET /rare' and h.detector <> 'legacy_mean_ksigma' $$,
  'a x9 step at 2 spans a minute fires none of the guarded detectors');
select is(tests.hit_minutes('legacy_mean_ksigma', 'GET /rare'), array['01:00', '01:01', '01:02', '01:03', '01:04'],
  'the legacy rule has no volume guard and flags the sparse step ...');
select is_empty($$ select 1 from public.trace_anomalies where operation = 'GET /rare' $$,
  '... but legacy hits never open an anomaly');
select is_empty($$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                   where s.operation = 'GET /steady' $$,
  'two hours of steady traffic raise nothing');

-- The legacy rule reads k from system_settings at run time.
create temporary table legacy_k2 on commit drop as
  select h.bucket from generate_series('2026-03-01 01:00+00'::timestamptz, '2026-03-01 02:59+00', '1 minute') b,
         anomaly.detect_legacy_mean_ksigma(b, anomaly.config('detect.legacy_mean_ksigma')) h
         join anomaly.series s on s.id = h.series_id
  where s.operation = 'GET /drift';
select set_eq($$ select bucket from legacy_k2 $$,
  $$ select h.bucket from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'legacy_mean_ksigma' and s.operation = 'GET /drift' $$,
  'called directly with k = 2 it reproduces the hits the cycle logged');
update public.system_settings set value = '3' where key = 'outlier_detection_stddev';
create temporary table legacy_k3 on commit drop as
  select h.bucket, (h.details ->> 'k')::double precision as k
  from generate_series('2026-03-01 01:00+00'::timestamptz, '2026-03-01 02:59+00', '1 minute') b,
       anomaly.detect_legacy_mean_ksigma(b, anomaly.config('detect.legacy_mean_ksigma')) h
       join anomaly.series s on s.id = h.series_id
  where s.operation = 'GET /drift';
select ok((select count(*) from legacy_k3) < (select count(*) from legacy_k2) and (select count(*) from legacy_k3) > 0,
  'with outlier_detection_stddev = 3 the drift raises fewer legacy hits');
select is_empty($$ select bucket from legacy_k3 except select bucket from legacy_k2 $$,
  'and every k = 3 hit is also a k = 2 hit');
select is((select distinct k from legacy_k3), 3::double precision, 'the hits record the k they used');

-- ============================================================== scenario B: seasonal traffic, Mon 2 .. Thu 5 March
-- Three days of the daily pattern (07:00-08:59 materialised) for GET /daily and GET /daily-step, one day for
-- GET /young, then Thursday from 06:00: GET /daily-step is x2 at 07:30-07:34, GET /young x3 at 07:30-07:34.
-- The history is folded with the engine's own anomaly.update_baselines, minute by minute, then a fresh engine
-- scores Thursday 07:01-08:40 (the morning ramp is 08:00-08:20).
delete from anomaly.detector_state;
select tests.latency_minutes(op, d + time '07:00', tests.daily(d + time '07:00', 120), 10, 'shop')
from unnest(array['GET /daily', 'GET /daily-step']) op, unnest(array[date '2026-03-02', '2026-03-03', '2026-03-04']) d;
select tests.latency_minutes('GET /young', '2026-03-04 07:00+00', tests.daily('2026-03-04 07:00+00', 120), 10, 'shop');
select tests.latency_minutes(op, '2026-03-05 06:00+00', tests.daily('2026-03-05 06:00+00', 161), 10, 'shop')
from unnest(array['GET /daily', 'GET /daily-step', 'GET /young']) op;
select tests.latency_minutes('GET /daily-step', '2026-03-05 07:30+00', tests.steady(200, 5), 10, 'shop');
select tests.latency_minutes('GET /young', '2026-03-05 07:30+00', tests.steady(300, 5), 10, 'shop');
select anomaly.extract_signals('2026-03-02 00:00+00', '2026-03-05 07:00+00');
do $$
declare
  v_bucket timestamptz;
begin
  for v_bucket in select distinct bucket from anomaly.signal_points
                  where bucket > '2026-03-02 00:00+00' and bucket <= '2026-03-05 07:00+00' order by 1 loop
    perform anomaly.update_baselines(v_bucket);
  end loop;
end
$$;
update public.anomaly_detection_config set value = '{"initial_lookback_minutes": 100, "history_minutes": 0, "max_minutes_per_cycle": 100}'
where key = 'detect.engine';
select lives_ok($$ select tests.detect_through('2026-03-05 08:40+00') $$, 'detection scores Thursday morning');

select ok(cardinality(tests.hit_minutes('latency_mad', 'GET /daily')) >= 10,
  'a non-seasonal detector with a one-hour window takes the normal morning ramp for an anomaly');
select is(tests.hit_minutes('latency_seasonal', 'GET /daily'), '{}'::text[],
  'latency_seasonal knows the ramp from the same minutes of earlier days and stays quiet');
select row_eq($$ select to_char(h.bucket at time zone 'UTC', 'HH24:MI'), h.details ->> 'period', (h.details ->> 'slot_samples')::integer >= 15
                 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                 where h.detector = 'latency_seasonal' and s.operation = 'GET /daily-step' order by h.bucket limit 1 $$,
  row('07:30'::text, 'day'::text, true),
  'a x2 step at 07:30 fires latency_seasonal at once, against its minute-of-day slot');
select is(tests.hit_minutes('latency_seasonal', 'GET /young'), '{}'::text[],
  'with one day of history latency_seasonal has no opinion, not a false alarm ...');
select ok('07:30' = any(tests.hit_minutes('latency_mad', 'GET /young')),
  '... although the x3 step is real');

-- Hour-of-week fallback: the minute-of-day slot of 08:45 has one day of samples, the Thursday-08h slot is given
-- what two weeks of Thursdays at ~250 ms would have left (120 samples, sd 12 ms).
-- (Profiles hold finished slots only; the Thursday-08h slot of this week is still in progress in series_state.)
insert into anomaly.seasonal_profiles (series_id, period, slot, n, mean, m2)
select s.id, 'week', 80, 120, 270, 119 * 144
from anomaly.series s where s.operation = 'GET /young' and s.signal = 'latency_p95'
on conflict (period, slot, series_id) do update set n = excluded.n, mean = excluded.mean, m2 = excluded.m2;
select tests.latency_minutes('GET /young', '2026-03-05 08:41+00', tests.daily('2026-03-05 08:41+00', 4) || array[500::double precision], 10, 'shop');
select tests.detect_through('2026-03-05 08:45+00');
select row_eq($$ select h.details ->> 'period', (h.details ->> 'slot')::integer, round(h.expected)
                 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
                 where h.detector = 'latency_seasonal' and s.operation = 'GET /young' $$,
  row('week'::text, 80, 270::double precision),
  'once the minute-of-day slot is too young the hour-of-week profile is used');

select * from finish();
rollback;
