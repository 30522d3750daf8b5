-- 15: the exact binomial tail is right (against values computed independently), and the latency confirmation asks
-- for a count of slow spans that is improbable for the minute's volume: 2 slow of 8 is chance, 5 of 10 is not.
-- A rate increase is tested against the baseline sample, not a floored rate; a silence must be improbable for how
-- often the series skipped minutes before.
begin;
select plan(22);

select ok(abs(anomaly.binomial_upper_tail(5, 10, 0.05) - 6.36898314453125e-05) < 1e-15, 'P(X >= 5 | 10, 0.05) = 6.369e-5 (exact sum in rationals)');
select ok(abs(anomaly.binomial_upper_tail(1, 10, 0.05) - (1 - 0.95 ^ 10)) < 1e-12, 'P(X >= 1) = 1 - (1 - p)^n');
select ok(abs(anomaly.binomial_upper_tail(10, 10, 0.5) - 0.5 ^ 10) < 1e-15, 'P(X = n) = p^n');
select ok(abs(anomaly.binomial_upper_tail(60, 100, 0.5) - 0.028443966820490) < 1e-10,
  'P(X >= 60 | 100, 0.5) = 0.0284 (a sum far from the tail end)');
select ok(abs(anomaly.binomial_upper_tail(300, 10000, 0.02) / 1.6179e-11 - 1) < 1e-3, 'large n: 300 of 10 000 at 2 %');
select is(anomaly.binomial_upper_tail(0, 10, 0.05), 1::double precision, 'k = 0: certain');
select ok(abs(anomaly.binomial_upper_tail(3, 100, 0.05) - 0.8817370188148791) < 1e-10,
  'k below the mean: 1 - P(X <= k - 1) = 0.88');
select is(anomaly.binomial_upper_tail(500, 1000, 0.01), 0::double precision,
  'a tail far below the smallest double is 0, not an underflow error (a 10k-operation cycle hit it)');
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


-- Two-sample rate test: the clean-day false alarm (6 errors in 447 spans after an hour of 0 in 500) is chance.
select ok(abs(anomaly.rate_increase_p_value(6, 447, 0, 500) - power(447.0 / 947, 6)) < 1e-12,
  '6 of 447 after 0 of 500: p = (447/947)^6 = 0.011, not significant');
select ok(anomaly.rate_increase_p_value(40, 100, 5, 6000) < 1e-40, 'a 40 % error spike after 0.1 % is');
select ok(abs(anomaly.error_dispersion(10, 1000, 30, 1000, 100000) - 20 / 9.9) < 1e-12,
  'dispersion: 10 minutes of 100 spans, errors 0 0 0 0 0 5 5 0 0 0 -> sum (k - np)^2 / sum np(1-p) = 20 / 9.9');
select ok(abs(anomaly.rate_increase_p_value(6, 447, 0, 500, 2) - anomaly.binomial_upper_tail(3, 3, 447.0 / 947)) < 1e-12,
  'with errors in clumps of 2, 6 error spans are 3 events');

-- Silences: a steady service (20 spans every minute for 30 minutes) and a bursty one (the same with every 7th minute
-- empty), both silent from 11:00.
insert into anomaly.series (scope, service, operation, signal, first_bucket, last_active_bucket)
values ('service', 'steady', '', 'throughput', '2026-03-01 10:00+00', '2026-03-01 10:59+00'),
       ('service', 'bursty', '', 'throughput', '2026-03-01 10:00+00', '2026-03-01 10:59+00'),
       ('service', 'clumpy', '', 'throughput', '2026-03-01 10:00+00', '2026-03-01 10:59+00');
insert into anomaly.signal_points (series_id, bucket, value, n)
select s.id, b, v, v
from anomaly.series s,
     generate_series('2026-03-01 10:00+00'::timestamptz, '2026-03-01 11:10+00', interval '1 minute') b,
     lateral (select case when b >= '2026-03-01 11:00+00' then 0
                          when s.service = 'bursty' and extract(minute from b)::integer % 7 = 3 then 0
                          -- a few big traces a minute: 5 to 40 spans, never none
                          when s.service = 'clumpy' then (array[5, 30, 8, 25, 3, 40])[1 + extract(minute from b)::integer % 6]
                          else 20 end as v) x
where s.service in ('steady', 'bursty', 'clumpy');
create temp table silence as
select s.service, extract(minute from h.bucket)::integer as minute
from anomaly.series s
cross join generate_series('2026-03-01 11:00+00'::timestamptz, '2026-03-01 11:10+00', interval '1 minute') b
cross join lateral anomaly.detect_throughput_silence(b, anomaly.config('detect.throughput_silence')) h
where h.series_id = s.id;
select is((select min(minute) from silence where service = 'steady'), 1,
  'a steady service silent for 2 minutes fires (60 active minutes: p = (0.5/61)^2 = 7e-5 <= 1e-4)');
select is((select min(minute) from silence where service = 'bursty'), 3,
  'a service that skipped 8 of its last 60 minutes fires only after 5 silent ones (from 10:59: p = (9.5/61)^5 = 9e-5)');
select is((select min(minute) from silence where service = 'clumpy'), 5,
  'clumped spans (18.5 a minute, variance/mean 10.7: ~1.7 arrivals a minute, a silent minute in 6) fire only after 6 silent minutes (0.18^6 = 3e-5)');
insert into public.anomaly_detection_config (key, value) values ('detect.throughput_silence', '{"max_p_value": 1}')
on conflict (key) do update set value = excluded.value;
select ok(exists (select 1 from anomaly.series s
                  join anomaly.detect_throughput_silence('2026-03-01 11:00+00',
                    anomaly.config('detect.throughput_silence')) h on h.series_id = s.id
                  where s.service = 'bursty'),
  'max_p_value = 1: the bursty service fires after min_silent_minutes (2) too');

select * from finish();
rollback;
