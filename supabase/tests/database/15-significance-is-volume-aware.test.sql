-- 15: the exact binomial tail is right (against values computed independently), and the latency confirmation asks
-- for a count of slow spans that is improbable for the minute's volume: 2 slow of 8 is chance, 5 of 10 is not.
-- A CUSUM run on a thin series whose errors are not improbable under p0 does not signal.
begin;
select plan(12);

select ok(abs(anomaly.binomial_upper_tail(5, 10, 0.05) - 6.36898314453125e-05) < 1e-15, 'P(X >= 5 | 10, 0.05) = 6.369e-5 (exact sum in rationals)');
select ok(abs(anomaly.binomial_upper_tail(1, 10, 0.05) - (1 - 0.95 ^ 10)) < 1e-12, 'P(X >= 1) = 1 - (1 - p)^n');
select ok(abs(anomaly.binomial_upper_tail(10, 10, 0.5) - 0.5 ^ 10) < 1e-15, 'P(X = n) = p^n');
select ok(abs(anomaly.binomial_upper_tail(60, 100, 0.5) - 0.028443966820490) < 1e-10,
  'P(X >= 60 | 100, 0.5) = 0.0284 (a sum far from the tail end)');
select ok(abs(anomaly.binomial_upper_tail(300, 10000, 0.02) / 1.6179e-11 - 1) < 1e-3, 'large n: 300 of 10 000 at 2 %');
select is(anomaly.binomial_upper_tail(0, 10, 0.05), 1::double precision, 'k = 0: certain');
select is(anomaly.binomial_upper_tail(11, 10, 0.05), 0::double precision, 'k > n: impossible');
select ok(abs(anomaly.ln_factorial(170) - 706.5730622457874) < 1e-9 and anomaly.ln_factorial(0) = 0,
  'ln n! exact below 30 and by Stirling above');

-- One operation minute: 8 spans with 2 slow, then 10 spans with 5 slow (50 ms normal, 400 ms slow).
insert into anomaly.operation_minutes (service_name, operation, bucket, span_count, error_count, duration_sum_ms,
                                       duration_min_ms, duration_max_ms, latency_histogram)
values ('api', 'GET /x', '2026-03-01 10:00+00', 8, 0, 1100, 50, 400,
        jsonb_build_object(anomaly.latency_bucket(50)::text, 6, anomaly.latency_bucket(400)::text, 2)),
       ('api', 'GET /x', '2026-03-01 10:01+00', 10, 0, 2250, 50, 400,
        jsonb_build_object(anomaly.latency_bucket(50)::text, 5, anomaly.latency_bucket(400)::text, 5));
select ok(not anomaly._confirm_latency_shift('api', 'GET /x', '2026-03-01 10:00+00', 200, 8),
  '2 slow spans of 8 are chance (p = 0.057), not a latency shift');
select ok(anomaly._confirm_latency_shift('api', 'GET /x', '2026-03-01 10:01+00', 200, 10),
  '5 slow spans of 10 are a shift (p = 6e-5)');
insert into public.anomaly_detection_config (key, value) values ('detect.latency_confirm', '{"max_p_value": 1}');
select ok(anomaly._confirm_latency_shift('api', 'GET /x', '2026-03-01 10:00+00', 200, 8),
  'max_p_value = 1 keeps only the count rule (2 spans and 5 %)');

select throws_ok($$update public.anomaly_detection_config set value = '{"max_p_value": 0}'
  where key = 'detect.latency_confirm'$$, 'TSC01', null, 'a p-value threshold of 0 is refused (TSC01)');

select * from finish();
rollback;
