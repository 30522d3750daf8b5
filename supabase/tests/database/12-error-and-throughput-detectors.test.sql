-- 12: error-rate detectors (sigma band, CUSUM, proportion test) fire on steps and spikes, CUSUM alone catches a small
-- sustained increase, sparse and noisy series stay quiet; throughput detectors flag spikes and drops with the right
-- subtype, a service going silent, and leave normal daily traffic alone once its seasonal profile has enough days.
begin;
select plan(32);

-- Hand-made minutes: rollup rows written directly, one operation 'op' per service, 120 minutes from T0 =
-- 2026-03-04 00:00 UTC. The first 60 minutes only build baselines, minutes 60..119 are scored; every event
-- starts at minute 90 (01:30). Only the detectors under test run, so other families cannot interfere.
create function tests.put_minutes(p_service text, p_spans integer[], p_errors integer[] default null)
returns void language sql set search_path = '' as $$
  insert into anomaly.operation_minutes (service_name, operation, bucket, span_count, error_count, duration_sum_ms,
                                         duration_min_ms, duration_max_ms, latency_histogram)
  select p_service, 'op', '2026-03-04 00:00+00'::timestamptz + make_interval(mins => i - 1), p_spans[i],
         coalesce(p_errors[i], 0), 100.0 * p_spans[i], 90, 110, jsonb_build_object('133', p_spans[i])
  from generate_subscripts(p_spans, 1) i
  where p_spans[i] > 0
$$;
-- Normal daily traffic of day p_day (0 = today, 1..3 = the days before) at minute p_minute after midnight:
-- 30 spans/min with +/- 3 of noise, and a batch job that triples it from 01:30 to 01:40 every day.
create function tests.daily_traffic(p_day integer, p_minute integer)
returns integer language sql immutable set search_path = '' as $$
  select (case when p_minute between 90 and 99 then 90 else 30 end) + abs(hashtext(p_day || ':' || p_minute)) % 7 - 3
$$;

update anomaly.detectors set enabled = name in ('error_sigma_band', 'error_cusum', 'error_proportion',
                                                'throughput_forecast', 'throughput_silence');
insert into public.anomaly_detection_config (key, value) values
  ('detect.engine', '{"initial_lookback_minutes": 60, "history_minutes": 60}');

-- Error rate. A step 5 % -> 30 % at 40 spans/min for 10 minutes.
select tests.put_minutes('err-step', array(select 40 from generate_series(0, 119)),
  array(select case when i between 90 and 99 then 12 else (array[1, 2, 3, 2, 2, 1, 3, 2])[1 + i % 8] end
        from generate_series(0, 119) i));
-- A short spike: 4 % -> 40 % at 50 spans/min for 2 minutes.
select tests.put_minutes('err-spike', array(select 50 from generate_series(0, 119)),
  array(select case when i in (90, 91) then 20 else (array[2, 2, 1, 3, 2])[1 + i % 5] end from generate_series(0, 119) i));
-- A small sustained increase: 1 % -> 3 % at 100 spans/min from minute 90 on.
select tests.put_minutes('err-creep', array(select 100 from generate_series(0, 119)),
  array(select case when i >= 90 then 3 else (array[0, 1, 2, 1, 1])[1 + i % 5] end from generate_series(0, 119) i));
-- Sparse: 2 spans/min with an occasional error (rates jump between 0, 50 and 100 %).
select tests.put_minutes('err-sparse', array(select 2 from generate_series(0, 119)),
  array(select case when i % 7 = 3 then 1 when i % 11 = 5 then 2 else 0 end from generate_series(0, 119) i));
-- Noisy: 20 spans/min with 0..3 errors at random (7.5 % on average), no change at all.
select tests.put_minutes('err-noise', array(select 20 from generate_series(0, 119)),
  array(select abs(hashtext('e' || i)) % 4 from generate_series(0, 119) i));

-- Throughput. A spike x4 for 2 minutes; a drop x0.1 for 5 minutes; a service that stops at minute 90.
select tests.put_minutes('tp-spike', array(select case when i in (90, 91) then 80
                                                   else (array[18, 21, 20, 22, 19])[1 + i % 5] end
                                            from generate_series(0, 119) i));
select tests.put_minutes('tp-drop', array(select case when i between 90 and 94 then 3
                                                  else (array[28, 31, 30, 32, 29])[1 + i % 5] end
                                           from generate_series(0, 119) i));
select tests.put_minutes('tp-quiet', array(select case when i < 90 then (array[20, 22, 19, 21])[1 + i % 4] else 0 end
                                            from generate_series(0, 119) i));
-- Clumped arrivals: 16 spans/min on average in bursts (4, 28, 8, 24, 16, 16: variance ~4x the mean, as traces of
-- ~4 spans each make), a minute of 60 at 01:30 (a few extra traces;
-- forecast 16.8, sigma 8.7: z = 4.95 beyond the normal band, but 17 arrivals for 4.8 expected at dispersion 3.5: p = 1e-5) and of 150 at 01:40 (a real surge).
select tests.put_minutes('tp-clumpy', array(select case when i = 90 then 60 when i = 100 then 150
                                                    else (array[4, 28, 8, 24, 16, 16])[1 + i % 6] end
                                             from generate_series(0, 119) i));
-- Daily traffic with its 01:30 batch burst, seen on the three days before (day-slot profiles seeded below), plus one
-- real spike x4 at 01:50; and the same burst on a series without a profile, where Holt alone must flag it.
select tests.put_minutes('tp-daily', array(select case when i = 110 then 120 else tests.daily_traffic(0, i) end
                                            from generate_series(0, 119) i));
select tests.put_minutes('tp-burst', array(select tests.daily_traffic(0, i) from generate_series(0, 119) i));

insert into anomaly.series (scope, service, operation, signal, first_bucket, last_active_bucket) values
  ('operation', 'tp-daily', 'op', 'throughput', '2026-03-01 00:00+00', '2026-03-03 02:00+00'),
  ('service', 'tp-daily', '', 'throughput', '2026-03-01 00:00+00', '2026-03-03 02:00+00');
insert into anomaly.seasonal_profiles (series_id, period, slot, n, mean, m2)
select s.id, 'day', (i / 5)::smallint, count(*), avg(tests.daily_traffic(d, i)),
       coalesce(var_samp(tests.daily_traffic(d, i)), 0) * (count(*) - 1)
from anomaly.series s, generate_series(1, 3) d, generate_series(0, 119) i
where s.service = 'tp-daily' and s.signal = 'throughput'
group by s.id, i / 5;

update anomaly.rollup_state set watermark = '2026-03-04 02:00:30+00';
select lives_ok($$ select anomaly.detect() $$, 'detection runs over two hours of hand-made minutes');
select is((select errors from anomaly.detection_runs), '[]'::jsonb, 'no detector failed');

-- a view of the hits by detector, service and minute after T0
create temporary view hit as
  select h.detector, s.scope, s.service, (extract(epoch from h.bucket - '2026-03-04 00:00+00') / 60)::integer as minute,
         h.subtype, h.score, h.details
  from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id;

-- ---------------------------------------------------------------- error rate
select set_eq($$ select detector from hit where service = 'err-step' and minute = 90 and scope = 'operation' $$,
  array['error_sigma_band', 'error_cusum', 'error_proportion'], 'an error step 5 % -> 30 % fires all three detectors');
select is((select count(*)::integer from public.trace_anomalies where fingerprint like 'ERROR_RATE|error_rate|err-step|op|%'),
  1, 'the three agree on one anomaly');
select is((select confidence from public.trace_anomalies where fingerprint like 'ERROR_RATE|error_rate|err-step|op|%'),
  1::double precision, 'with full confidence');
select ok((select bool_and(subtype = 'error_rate' and details ->> 'direction' = 'up') from hit
           where detector like 'error%'), 'error-rate hits use subtype error_rate and direction up');

select set_eq($$ select minute from hit where detector = 'error_sigma_band' and service = 'err-spike' and scope = 'operation' $$,
  array[90, 91], 'a 2-minute spike to 40 % fires the sigma band in both minutes');
select set_eq($$ select minute from hit where detector = 'error_proportion' and service = 'err-spike' and scope = 'operation' $$,
  array[90, 91], 'and the proportion test in both minutes');
select ok((select (details ->> 'p_value')::double precision < 1e-6 from hit
           where detector = 'error_proportion' and service = 'err-spike' and minute = 90 and scope = 'operation'),
  'the proportion test reports its p-value');

select is((select min(minute) from hit where detector = 'error_cusum' and service = 'err-creep' and scope = 'operation'),
  94, 'a sustained 1 % -> 3 % at 100 spans/min fires CUSUM in its 5th minute (S crosses h in the 4th; 15 errors in '
      '500 spans against the hour''s ~60 in 6000 are significant in the 5th: p = 6e-4)');
select ok((select max(gap) <= 2 and max(minute) >= 118 and bool_and(score > 3)
           from (select minute, score, minute - lag(minute, 1, 92) over (order by minute) as gap from hit
                 where detector = 'error_cusum' and service = 'err-creep' and scope = 'operation') g),
  'and, restarting from its head start, signals again at least every 2nd minute while the shift lasts, score > 3');
select is((select max(minute) from hit where detector = 'error_cusum' and service in ('err-step', 'err-spike')),
  99, 'once a step or a spike is over, CUSUM stops signalling (no hangover of a large sum)');
select is_empty($$ select 1 from hit where service = 'err-creep' and detector in ('error_sigma_band', 'error_proportion') $$,
  'the same increase stays inside the 3-sigma band and under the proportion threshold');
select is_empty($$ select 1 from hit where service in ('err-sparse', 'err-noise') $$,
  'a sparse series (2 spans/min) and a noisy one (0..3 errors of 20) never fire');
select is_empty($$ select 1 from hit where detector like 'error%' and minute < 90 $$,
  'no error detector fires before the events');

-- CUSUM state is a function of the previous minute only: running a scored minute again changes nothing.
create temporary table cusum_before as
  select r.* from anomaly.error_cusum_runs r join anomaly.series s on s.id = r.series_id
  where s.service = 'err-creep' and r.bucket = '2026-03-04 01:33+00';
select results_eq(
  $$ select h.series_id, h.score from anomaly.detect_error_cusum('2026-03-04 01:33+00', anomaly.config('detect.error_cusum')) h
     join anomaly.series s on s.id = h.series_id where s.service = 'err-creep' order by 1 $$,
  $$ select h.series_id, h.score from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'error_cusum' and s.service = 'err-creep' and h.bucket = '2026-03-04 01:33+00' order by 1 $$,
  're-running CUSUM for a minute gives the same hits');
select set_eq($$ select r.* from anomaly.error_cusum_runs r join anomaly.series s on s.id = r.series_id
                 where s.service = 'err-creep' and r.bucket = '2026-03-04 01:33+00' $$,
  $$ select * from cusum_before $$, 'and the same state rows');

-- ---------------------------------------------------------------- throughput
select ok((select subtype = 'throughput_spike' and details ->> 'direction' = 'up' from hit
           where detector = 'throughput_forecast' and service = 'tp-spike' and minute = 90 and scope = 'operation'),
  'throughput x4 fires throughput_forecast as throughput_spike');
select is_empty($$ select 1 from hit where detector = 'throughput_forecast' and service = 'tp-clumpy'
                    and scope = 'operation' and minute = 90 $$,
  'a minute of 60 spans in clumped traffic (mean 16) is not a spike: improbable in a normal band, not as arrivals');
select ok((select (details ->> 'dispersion')::double precision > 3 from hit
           where detector = 'throughput_forecast' and service = 'tp-clumpy' and scope = 'operation' and minute = 100),
  'a minute of 150 spans is, and the hit carries the dispersion it was judged with');
select ok((select subtype = 'throughput_drop' and details ->> 'direction' = 'down' from hit
           where detector = 'throughput_forecast' and service = 'tp-drop' and minute = 90 and scope = 'operation'),
  'throughput x0.1 fires throughput_forecast as throughput_drop');
select is((select count(*)::integer from public.trace_anomalies where service = 'tp-drop' and operation = 'op'
           and subtype = 'throughput_drop' and anomaly_type = 'THROUGHPUT'), 1, 'the drop opens one throughput anomaly');

select is((select min(minute) from hit where detector = 'throughput_silence' and service = 'tp-quiet' and scope = 'operation'),
  91, 'a service going silent fires throughput_silence after 2 silent minutes');
select ok((select bool_and(subtype = 'throughput_drop' and score = 8) and count(*) = 29 from hit
           where detector = 'throughput_silence' and service = 'tp-quiet' and scope = 'operation'),
  'every silent minute while zeros are written, as throughput_drop with score 8');
select set_eq($$ select d ->> 'name' from public.trace_anomalies a, jsonb_array_elements(a.explanation -> 'detectors') d
                 where a.service = 'tp-quiet' and a.operation = 'op' $$,
  array['throughput_forecast', 'throughput_silence'], 'the forecast drop and the silence are one anomaly');
select is_empty($$ select 1 from hit where detector = 'throughput_silence' and service <> 'tp-quiet' $$,
  'no other series is reported silent');

select set_eq($$ select scope, minute, details ->> 'basis' from hit
                 where detector = 'throughput_forecast' and service = 'tp-daily' $$,
  $$ values ('operation', 110, 'day'), ('service', 110, 'day') $$,
  'daily traffic with a known 01:30 burst fires only on the real spike at 01:50, forecast from the day profile');
select ok((select subtype = 'throughput_spike' and details ->> 'basis' = 'holt' from hit
           where detector = 'throughput_forecast' and service = 'tp-burst' and minute = 90 and scope = 'operation'),
  'the same burst without a seasonal profile is a spike to Holt alone');
select is_empty($$ select 1 from hit where detector like 'throughput%'
                   and service in ('err-step', 'err-spike', 'err-creep', 'err-sparse', 'err-noise') $$,
  'steady traffic (including 2 spans/min) never fires a throughput detector');

-- ---------------------------------------------------------------- configuration
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.error_sigma_band', '{"k_sigma": 0}') $$,
  'TSC01', null, 'a sigma band below 1 sigma is rejected');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.error_cusum', '{"decision_h": "five"}') $$,
  'TSC01', null, 'a non-numeric CUSUM decision interval is rejected');
select throws_ok($$ insert into public.anomaly_detection_config (key, value)
                    values ('detect.throughput_forecast', '{"seasonal_weight": 1.5}'), ('detect.throughput_silence', '{"min_silent_minutes": 0}') $$,
  'TSC01', null, 'a seasonal weight above 1 or a silence of 0 minutes is rejected');

select * from finish();
rollback;
