-- 21: the pull protocol: one run holds a source at a time (lease), the cursor moves only forward and only in the
-- transaction of a checkpoint by the lease holder (TST02), failing traces are counted per run and given up,
-- a dead run is marked abandoned by the next one, and metrics minutes are upserted idempotently with the watermark.
begin;
select plan(30);

insert into anomaly.tempo_sources (name, base_url, lease_seconds) values ('lease-test', 'http://tempo:3200', 30);
create temporary table t_run as
  select * from anomaly.tempo_begin_run('lease-test', '00000000-0000-0000-0000-00000000000a');

select is((select count(*)::int from t_run), 1, 'a free source is leased and a run opened');
select is((select source ->> 'name' from t_run), 'lease-test', 'the run gets the source row');
select ok(not (select source ? 'lease_owner' from t_run), 'without the lease columns');
select is_empty($$ select * from anomaly.tempo_begin_run('lease-test', '00000000-0000-0000-0000-00000000000b') $$,
  'a second run gets nothing while the lease is live');
select is_empty($$ select * from anomaly.tempo_begin_run('no-such-source', '00000000-0000-0000-0000-00000000000b') $$,
  'an unknown source gives no run');

-- ------------------------------------------------------------------ checkpoints
select throws_ok($$ select anomaly.tempo_checkpoint((select run_id from t_run), '00000000-0000-0000-0000-00000000000b',
                    '2026-11-25 10:00Z') $$,
  'TST02', null, 'a run that does not hold the lease cannot move the cursor');
select is(anomaly.tempo_checkpoint((select run_id from t_run), '00000000-0000-0000-0000-00000000000a', '2026-11-25 10:00Z',
            '{"searches": 2, "traces_found": 5, "traces_fetched": 4, "traces_skipped": 1, "spans_staged": 12}',
            '[{"trace_id": "0123456789abcdef0123456789abcdef", "reason": "vanished", "detail": "404"}]'),
  '2026-11-25 10:00Z'::timestamptz, 'the holder moves the cursor');
select is(anomaly.tempo_checkpoint((select run_id from t_run), '00000000-0000-0000-0000-00000000000a', '2026-11-25 09:00Z'),
  '2026-11-25 10:00Z'::timestamptz, 'the cursor never moves backwards');
select is(anomaly.tempo_checkpoint((select run_id from t_run), '00000000-0000-0000-0000-00000000000a', null, '{"spans_staged": 3}'),
  '2026-11-25 10:00Z'::timestamptz, 'a checkpoint without a cursor (part of a range) keeps it');
select row_eq($$ select searches, traces_found, traces_fetched, traces_skipped, spans_staged, cursor_after
                 from anomaly.tempo_runs where id = (select run_id from t_run) $$,
  row(2, 5, 4, 1, 15, '2026-11-25 10:00Z'::timestamptz), 'checkpoints add up the run counters');
select row_eq($$ select reason, detail, attempts from anomaly.tempo_skipped_traces where source = 'lease-test' $$,
  row('vanished'::text, '404'::text, 1), 'skipped traces are recorded with their reason');
select ok((select lease_until > now() + interval '25 seconds' from anomaly.tempo_sources where name = 'lease-test'),
  'a checkpoint renews the lease');

-- ------------------------------------------------------------------ failing traces
select is(anomaly.tempo_note_failure((select run_id from t_run), 'ffffffffffffffffffffffffffffffff', 'HTTP 503'), false,
  'a first failure holds the cursor');
select is(anomaly.tempo_note_failure((select run_id from t_run), 'ffffffffffffffffffffffffffffffff', 'HTTP 503'), false,
  'failing again in the same run counts once');
select is((select attempts from anomaly.tempo_skipped_traces where trace_id = 'ffffffffffffffffffffffffffffffff'), 1,
  'attempts count runs, not requests');

-- ------------------------------------------------------------------ finishing, dead runs
select throws_ok($$ select anomaly.tempo_finish_run((select run_id from t_run), '00000000-0000-0000-0000-00000000000a', 'done') $$,
  'TST03', null, 'a run finishes ok, incomplete or failed');
select lives_ok($$ select anomaly.tempo_finish_run((select run_id from t_run), '00000000-0000-0000-0000-00000000000a', 'incomplete') $$,
  'the holder finishes its run');
select row_eq($$ select lease_owner, lease_until from anomaly.tempo_sources where name = 'lease-test' $$,
  row(null::uuid, null::timestamptz), 'finishing releases the lease');

-- a run that dies keeps its lease until it expires; the next run then marks it abandoned
create temporary table t_dead as
  select * from anomaly.tempo_begin_run('lease-test', '00000000-0000-0000-0000-00000000000c');
update anomaly.tempo_sources set lease_until = now() - interval '1 second' where name = 'lease-test';
create temporary table t_next as
  select * from anomaly.tempo_begin_run('lease-test', '00000000-0000-0000-0000-00000000000d');
select is((select count(*)::int from t_next), 1, 'an expired lease is taken over');
select is((select status from anomaly.tempo_runs where id = (select run_id from t_dead)), 'abandoned',
  'the dead run is marked abandoned');
-- ------------------------------------------------------------------ metrics minutes
select throws_ok($$ select anomaly.tempo_store_minutes((select run_id from t_next), '00000000-0000-0000-0000-00000000000d', '{}'::json, now()) $$,
  'TST04', null, 'a malformed minutes batch is refused');
select is(anomaly.tempo_store_minutes((select run_id from t_next), '00000000-0000-0000-0000-00000000000d',
  '[{"service_name": "api", "operation": "GET /", "bucket": "2026-11-25T09:58:00Z", "span_count": 100, "error_count": 3,
     "duration_sum_ms": 2000, "duration_min_ms": 10, "duration_max_ms": 90, "latency_histogram": {"106": 50, "130": 45, "140": 5},
     "versions": {"1.0": 100}, "slowest_trace_id": "0123456789abcdef0123456789abcdef"}]'::json, '2026-11-25 10:00Z'),
  1, 'a minute row is stored');
select is(anomaly.tempo_store_minutes((select run_id from t_next), '00000000-0000-0000-0000-00000000000d',
  '[{"service_name": "api", "operation": "GET /", "bucket": "2026-11-25T09:58:00Z", "span_count": 100, "error_count": 3,
     "duration_sum_ms": 2000, "duration_min_ms": 10, "duration_max_ms": 90, "latency_histogram": {"106": 50, "130": 45, "140": 5},
     "versions": {"1.0": 100}, "slowest_trace_id": "0123456789abcdef0123456789abcdef"}]'::json, '2026-11-25 10:00Z'),
  1, 'storing the same minute again overwrites it');
select row_eq($$ select count(*)::int, sum(span_count)::int, sum(error_count)::int from anomaly.operation_minutes
                 where service_name = 'api' and operation = 'GET /' and bucket = '2026-11-25 09:58Z' $$,
  row(1, 100, 3), 'one row per (series, minute)');
select is((select round(anomaly.histogram_quantile(latency_histogram, 0.95)::numeric, 2) from anomaly.operation_minutes
           where service_name = 'api' and operation = 'GET /' and bucket = '2026-11-25 09:58Z'),
  round((power(2, (130 - 0.5) / 8.0) / 1000)::numeric, 2), 'the detectors'' quantile function reads the stored histogram');
select ok((select max_event_time >= '2026-11-25 10:00Z' from anomaly.rollup_state),
  'the rollup watermark follows the metrics cursor, so detection scores those minutes');

-- ------------------------------------------------------------------ given up after tempo.max_fetch_attempts runs
select is(anomaly.tempo_note_failure((select run_id from t_next), 'ffffffffffffffffffffffffffffffff', 'HTTP 503'), false,
  'a failure in a second run is the second attempt');
select lives_ok($$ select anomaly.tempo_finish_run((select run_id from t_next), '00000000-0000-0000-0000-00000000000d', 'failed', 'HTTP 503') $$,
  'the second run fails');
create temporary table t_third as
  select * from anomaly.tempo_begin_run('lease-test', '00000000-0000-0000-0000-00000000000e');
select is(anomaly.tempo_note_failure((select run_id from t_third), 'ffffffffffffffffffffffffffffffff', 'HTTP 503'), true,
  'in the third run (tempo.max_fetch_attempts) the trace is given up');
select row_eq($$ select reason, attempts from anomaly.tempo_skipped_traces where trace_id = 'ffffffffffffffffffffffffffffffff' $$,
  row('gave_up'::text, 3), 'and recorded as gave_up');

select * from finish();
rollback;
