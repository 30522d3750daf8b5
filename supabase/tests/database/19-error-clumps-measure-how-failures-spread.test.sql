-- 19: a service's error clump size (error spans one failure leaves in it) is measured from finished traces, decays
-- in event time, stays 1 until enough failures were seen, and floors the dispersion of the service-scope error
-- tests: three failed requests that each fail two spans of a service (its server span and its client call) are
-- three events, not six improbable errors after a quiet hour (the seed-37 false alert of the quality corpus).
begin;
select plan(13);

insert into public.anomaly_detection_config (key, value) values
  ('detect.error_clumps', '{"half_life_minutes": 60, "min_traces": 5}');

-- ---------------------------------------------------------------- measured from finished traces
-- 30 traces frontend -> payments POST /charge -> payments card gateway call, one every 10 s from 00:00; every third
-- (10 traces, the newest at 00:04:30) fails in the gateway call, and the failure propagates to the server span and
-- the frontend: 2 error spans of payments and 1 of frontend per failed trace. 'rare' fails twice, 3 spans each.
select anomaly.ingest_spans((
  select json_agg(e) from generate_series(0, 29) i,
  json_array_elements(tests.chain(500000 + i, '2026-03-05 00:00+00'::timestamptz + make_interval(secs => 10 * i),
    jsonb_build_array(
      jsonb_build_object('service', 'frontend', 'operation', 'POST /buy', 'self_ms', 5,
                         'status', case when i % 3 = 0 then 2 else 0 end),
      jsonb_build_object('service', 'payments', 'operation', 'POST /charge', 'self_ms', 5,
                         'status', case when i % 3 = 0 then 2 else 0 end),
      jsonb_build_object('service', 'payments', 'operation', 'POST gateway', 'self_ms', 100,
                         'status', case when i % 3 = 0 then 2 else 0 end)))) e));
select anomaly.ingest_spans((
  select json_agg(e) from generate_series(0, 1) i,
  json_array_elements(tests.chain(510000 + i, '2026-03-05 00:01+00'::timestamptz + make_interval(secs => 10 * i),
    jsonb_build_array(
      jsonb_build_object('service', 'rare', 'operation', 'a', 'self_ms', 5, 'status', 2),
      jsonb_build_object('service', 'rare', 'operation', 'b', 'self_ms', 5, 'status', 2),
      jsonb_build_object('service', 'rare', 'operation', 'c', 'self_ms', 5, 'status', 2)))) e));
update anomaly.open_traces set last_ingested_at = now() - interval '1 hour';
select anomaly.rollup();

select results_eq($$ select service_name, error_traces, error_spans, clump from anomaly.service_error_clumps
                     order by service_name $$,
  $$ values ('frontend', 10::double precision, 10::double precision, 1::double precision),
            ('payments', 10, 20, 2),
            ('rare', 2, 6, 1) $$,
  'finished traces give error traces and spans per service: payments fails in pairs, frontend alone, rare too rarely to tell');
select is((select newest_trace_start from anomaly.service_error_clumps where service_name = 'payments'),
  '2026-03-05 00:04:30+00'::timestamptz, 'the decay clock is the newest failed trace''s start (event time)');

-- One half life later (event time), 10 payments failures that fail one span each: the old counts weigh half.
select anomaly.ingest_spans((
  select json_agg(e) from generate_series(0, 9) i,
  json_array_elements(tests.chain(520000 + i, '2026-03-05 01:04:30+00'::timestamptz - make_interval(secs => 10 * i),
    jsonb_build_array(
      jsonb_build_object('service', 'payments', 'operation', 'POST /charge', 'self_ms', 5, 'status', 2),
      jsonb_build_object('service', 'payments', 'operation', 'POST gateway', 'self_ms', 100)))) e));
update anomaly.open_traces set last_ingested_at = now() - interval '1 hour';
select anomaly.rollup();
select results_eq($$ select error_traces, error_spans, round(clump::numeric, 4) from anomaly.service_error_clumps
                     where service_name = 'payments' $$,
  $$ values (15::double precision, 20::double precision, 1.3333) $$,
  'after one half life the old counts weigh half: (10/2 + 10) traces, (20/2 + 10) spans');
select is((select clump from anomaly.service_error_clumps where service_name = 'frontend'), 1::double precision,
  'services without new failures keep their counts');

select throws_ok($$ update public.anomaly_detection_config set value = '{"min_traces": 0}'
                    where key = 'detect.error_clumps' $$,
  'TSC01', null, 'min_traces must be at least 1 (TSC01)');
select throws_ok($$ update public.anomaly_detection_config set value = '{"max_clump": 0.5}'
                    where key = 'detect.error_clumps' $$,
  'TSC01', null, 'max_clump must be at least 1 (TSC01)');

-- ---------------------------------------------------------------- clumps are whole events
-- 6 errors in clumps of 1.6 after a baseline without errors: 4 events, all in the window (p = share^4), never a
-- run with more events than all events together (the rounding made that "4 of 3", p = 0).
select ok(abs(anomaly.rate_increase_p_value(6, 447, 0, 2100, 1.6) - power(447.0 / 2547, 4)) < 1e-12,
  '6 errors at dispersion 1.6 after a quiet baseline are 4 events: p = share^4');
select ok(anomaly.rate_increase_p_value(1, 447, 0, 2100, 3) > 0.1, 'one error is at least one event, however clumped');

-- ---------------------------------------------------------------- the service-scope tests use it
-- Two services alike: operations 'server' and 'client', 20 spans a minute each, no error for 90 minutes, then three
-- failed requests at minutes 90, 92 and 95, each failing one span of both operations (2 service errors a minute).
-- 'pairs' has a measured clump size of 2; 'pairs-unknown' has none (its window, without errors, says 1).
create function tests.put_pairs(p_service text) returns void language sql set search_path = '' as $$
  insert into anomaly.operation_minutes (service_name, operation, bucket, span_count, error_count, duration_sum_ms,
                                         duration_min_ms, duration_max_ms, latency_histogram)
  select p_service, o, '2026-03-06 00:00+00'::timestamptz + make_interval(mins => i), 20,
         case when i in (90, 92, 95) then 1 else 0 end, 2000, 90, 110, '{"133": 20}'
  from generate_series(0, 119) i, unnest(array['server', 'client']) o
$$;
select tests.put_pairs('pairs');
select tests.put_pairs('pairs-unknown');
insert into anomaly.service_error_clumps (service_name, error_traces, error_spans, clump, newest_trace_start)
values ('pairs', 40, 80, 2, '2026-03-05 23:00+00');

update anomaly.detectors set enabled = name in ('error_cusum', 'error_proportion');
insert into public.anomaly_detection_config (key, value) values
  ('detect.engine', '{"initial_lookback_minutes": 60, "history_minutes": 60}');
update anomaly.rollup_state set watermark = '2026-03-06 02:00:30+00';
select lives_ok($$ select anomaly.detect() $$, 'detection runs over the two services');
select is((select errors from anomaly.detection_runs order by id desc limit 1), '[]'::jsonb, 'no detector failed');

create temporary view clump_hits as
  select h.detector, s.scope, s.service, h.details
  from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
  where s.service in ('pairs', 'pairs-unknown');

select isnt_empty($$ select 1 from clump_hits where service = 'pairs-unknown' and scope = 'service'
                     and detector = 'error_cusum' $$,
  'without a measured clump size, 2, 0, 2, 0, 0, 2 service errors after a quiet hour fire the CUSUM (6 "events")');
select is_empty($$ select 1 from clump_hits where service = 'pairs' $$,
  'with the service''s clump size 2 the same errors are 3 failures: nothing fires');
select is_empty($$ select 1 from clump_hits where scope = 'operation' $$,
  'neither operation fires on its own 3 errors');

select * from finish();
rollback;
