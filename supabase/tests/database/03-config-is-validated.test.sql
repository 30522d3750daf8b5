-- 03: configuration values are validated whole against anomaly.config_keys; bad values are rejected with TSC codes.
begin;
select plan(9);

select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('no.such.key', '{}') $$,
  'TSC02', 'unknown configuration key "no.such.key"', 'an unknown key is refused with TSC02');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('rollup', '{"trace_idle_seconds": 1}') $$,
  'TSC01', 'configuration "rollup.trace_idle_seconds" must be between 5 and 3600', 'out-of-range values are refused');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('rollup', '{"trace_idle_seconds": "60"}') $$,
  'TSC01', 'configuration "rollup.trace_idle_seconds" must be an integer', 'wrongly typed values are refused');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('rollup', '{"idle": 60}') $$,
  'TSC01', 'configuration "rollup" has no field "idle"', 'unknown fields are refused');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('detect.zscore', '[1]') $$,
  'TSC01', 'configuration "detect.zscore" must be a JSON object', 'a non-object value is refused');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('ingest', '{"redact_keys": [1]}') $$,
  'TSC01', 'configuration "ingest.redact_keys" must be an array of strings', 'string arrays are checked element-wise');

insert into public.anomaly_detection_config (key, value) values ('rollup', '{"trace_idle_seconds": 30}');
select is((select value ->> 'trace_idle_seconds' from public.anomaly_detection_config where key = 'rollup'), '30',
  'a valid partial value is stored');
select is(anomaly.config('rollup') ->> 'span_retention_days', '3', 'missing fields are filled from the defaults');
select is(anomaly.config('detect.zscore') ->> 'threshold', '3', 'an unset key reads as its defaults');

select * from finish();
rollback;
