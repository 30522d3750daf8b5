-- 07: the z-score detector opens one anomaly per condition for a latency step and an error spike, stays
-- quiet on normal and sparse series, explains itself, and resolves once the series is quiet again.
begin;
select plan(13);

-- 60 normal minutes, a 3-minute latency step on api GET /items, then 2 normal minutes.
select anomaly.ingest_spans(tests.series('2026-03-01 00:00+00', 60, 20, array[100, 104, 97, 102, 99, 101, 98, 103]));
select anomaly.ingest_spans(tests.series('2026-03-01 01:00+00', 3, 20, array[300], p_trace_base => 2000000));
select anomaly.ingest_spans(tests.series('2026-03-01 01:03+00', 2, 20, array[100, 102], p_trace_base => 3000000));
-- The same hour for a payment call whose error rate jumps from 5 % to 50 %.
select anomaly.ingest_spans(tests.series('2026-03-01 00:00+00', 60, 20, array[40, 42, 39], 'payments', 'POST /pay', 20, 4000000));
select anomaly.ingest_spans(tests.series('2026-03-01 01:00+00', 5, 20, array[40], 'payments', 'POST /pay', 2, 5000000));
-- A sparse series (2 spans a minute) with the same step must not fire.
select anomaly.ingest_spans(tests.series('2026-03-01 00:00+00', 60, 2, array[100, 101], 'api', 'GET /rare', 0, 6000000));
select anomaly.ingest_spans(tests.series('2026-03-01 01:00+00', 3, 2, array[900], 'api', 'GET /rare', 0, 7000000));

select anomaly.rollup();
select lives_ok($$ select anomaly.detect() $$, 'detection runs over the rolled-up minutes');

select is((select count(*)::integer from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'), 1,
  'a 3-minute latency step opens exactly one anomaly');
select row_eq($$ select status, occurrences, first_seen, last_seen from public.trace_anomalies
                 where fingerprint like 'LATENCY|%|api|GET /items|%' $$,
  row('OPEN'::text, 3, '2026-03-01 01:00+00'::timestamptz, '2026-03-01 01:03+00'::timestamptz),
  'the anomaly spans the three anomalous minutes');
select cmp_ok((select observed_value / expected_value from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'),
  '>', 2.5::double precision, 'observed vs expected shows the tripled p95');
select ok((select explanation ?& array['observed', 'expected', 'band', 'detectors', 'window', 'exemplar']
           from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'),
  'the explanation carries observed, expected, band, detectors, window and exemplar');
select ok((select trace_id ~ '^[0-9a-f]{32}$' from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'),
  'an exemplar trace is attached');
select is((select severity from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'), 'CRITICAL',
  'a tripled p95 against a tight baseline is critical');
select is((select count(*)::integer from public.trace_anomalies where anomaly_type = 'ERROR_RATE' and service = 'payments'
           and operation = 'POST /pay'), 1,
  'an error spike from 5 % to 50 % opens one error-rate anomaly');
select is_empty($$ select 1 from public.trace_anomalies where operation = 'GET /rare' $$,
  'a sparse series does not alarm');

-- Normal traffic resumes for 10 minutes: the condition is quiet long enough and resolves.
select anomaly.ingest_spans(tests.series('2026-03-01 01:05+00', 10, 20, array[100, 103, 99], p_trace_base => 8000000));
select anomaly.rollup();
select anomaly.detect();
select is((select status from public.trace_anomalies where fingerprint like 'LATENCY|%|api|GET /items|%'), 'RESOLVED',
  'the anomaly resolves after quiet_minutes without a hit');
select is((select count(*)::integer from public.trace_anomalies where service = 'api' and operation = 'GET /items'), 1,
  'normal minutes after the step open nothing new');

-- error_zscore needs 5 errors in the minute: a quiet operation (30 spans a minute, an error every 15 minutes) with
-- 3 errors in a minute is chance over a day of minutes (binomial tail 5e-5 per minute), with 5 it is not (1e-8).
insert into anomaly.series (scope, service, operation, signal, first_bucket, last_active_bucket)
values ('operation', 'quiet', 'GET /q', 'error_rate', '2026-03-02 00:00+00', '2026-03-02 01:01+00');
insert into anomaly.signal_points (series_id, bucket, value, n, k)
select s.id, '2026-03-02 00:00+00'::timestamptz + make_interval(mins => i), x.k / 30.0, 30, x.k
from anomaly.series s, generate_series(0, 61) i,
     lateral (select case when i = 60 then 3 when i = 61 then 5 when i % 15 = 7 then 1 else 0 end as k) x
where s.service = 'quiet';
select is_empty($$ select 1 from anomaly.detect_error_zscore('2026-03-02 01:00+00', anomaly.config('detect.zscore')) h
                   join anomaly.series s on s.id = h.series_id where s.service = 'quiet' $$,
  'error_zscore: 3 errors of 30 against a 0.2 % baseline do not fire (z 9.8, but 3 < min_error_count 5)');
select isnt_empty($$ select 1 from anomaly.detect_error_zscore('2026-03-02 01:01+00', anomaly.config('detect.zscore')) h
                     join anomaly.series s on s.id = h.series_id where s.service = 'quiet' $$,
  'and 5 of 30 do');

select * from finish();
rollback;
