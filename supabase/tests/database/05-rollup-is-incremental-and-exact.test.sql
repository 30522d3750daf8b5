-- 05: the rollup counts every span in its own minute once, reads quantiles within the histogram's error,
-- handles late spans, and writes trace features and service edges exactly once.
begin;
select plan(18);

-- 100 spans of 1..100 ms in one minute, 5 of them errors, plus a child call into another service.
select anomaly.ingest_spans((
  select json_agg(tests.span(10, i, '2026-02-01 12:00:00+00'::timestamptz + make_interval(secs => i * 0.5), i::double precision,
                             'api', 'GET /items', case when i % 20 = 0 then 2 else 0 end))
  from generate_series(1, 100) i));
select anomaly.ingest_spans(json_build_array(
  tests.span(10, 1000, '2026-02-01 12:00:10+00', 4, 'db', 'SELECT items', 0, 5),
  tests.span(10, 1001, '2026-02-01 12:01:10+00', 4, 'db', 'SELECT items', 2, 6)));

select is((select (anomaly.rollup()).series_minutes), 3, 'the first rollup writes the three touched series-minutes');
select row_eq($$ select span_count, error_count, duration_min_ms, duration_max_ms, round(duration_sum_ms)
                 from anomaly.operation_minutes where service_name = 'api' $$,
  row(100, 5, 1::double precision, 100::double precision, 5050::double precision),
  'counts, errors and duration stats are exact');
select cmp_ok(abs(anomaly.histogram_quantile((select latency_histogram from anomaly.operation_minutes where service_name = 'api'), 0.95) - 95) / 95,
  '<', 0.045::double precision, 'p95 read from the histogram is within 4.5 % of the true 95 ms');
select cmp_ok(abs(anomaly.histogram_quantile((select latency_histogram from anomaly.operation_minutes where service_name = 'api'), 0.5) - 50) / 50,
  '<', 0.045::double precision, 'p50 read from the histogram is within 4.5 % of the true 50 ms');
select is((select slowest_span_id from anomaly.operation_minutes where service_name = 'api'), lpad(to_hex(100), 16, '0'),
  'the slowest span is kept as the exemplar');
select is((select error_span_id from anomaly.operation_minutes where service_name = 'api'), lpad(to_hex(100), 16, '0'),
  'the slowest errored span is kept as the error exemplar');

select is((select (anomaly.rollup()).series_minutes), 0, 'a re-run with nothing new changes nothing');

-- A late span for the same minute: counted into that minute, not the current one.
select anomaly.ingest_spans(json_build_array(tests.span(11, 1, '2026-02-01 12:00:30+00', 500, 'api', 'GET /items')));
select anomaly.rollup();
select is((select span_count from anomaly.operation_minutes where service_name = 'api' and bucket = '2026-02-01 12:00:00+00'), 101,
  'a late span is counted in its own minute');
select is((select count(*)::integer from anomaly.operation_minutes where service_name = 'api'), 1, 'and nowhere else');

-- The rollup stores each minute's p95, exactly as extraction would read it from the histogram.
select is_empty($$ select 1 from anomaly.operation_minutes
                   where latency_p95_ms is distinct from
                         anomaly.histogram_rank_ms(latency_histogram, greatest(1, ceil(0.95 * span_count))::bigint) $$,
  'every rolled-up minute stores the p95 its histogram gives (also after the late span moved it)');
select cmp_ok((select abs(latency_p95_ms - 96) / 96 from anomaly.operation_minutes where service_name = 'api'), '<',
  0.045::double precision, 'and it is the 96th of the 101 durations (1..100 ms and the late 500 ms) within 4.5 %');
-- A writer that changes the histogram without computing p95 (Tempo metrics mode) never leaves a stale value.
update anomaly.operation_minutes set latency_histogram = '{"100": 101}' where service_name = 'api';
select is((select latency_p95_ms from anomaly.operation_minutes where service_name = 'api'),
  power(2::double precision, 99.5 / 8.0) / 1000.0, 'changing the histogram alone recomputes the stored p95');
update anomaly.operation_minutes set latency_histogram = '{"101": 101}', latency_p95_ms = 1.0 where service_name = 'api';
select is((select latency_p95_ms from anomaly.operation_minutes where service_name = 'api'), 1.0::double precision,
  'a writer that gives both keeps its p95');

-- Histograms merge exactly.
select is(anomaly.histogram_merge(array['{"1": 2, "5": 1}'::jsonb, '{"5": 3, "9": 1}'::jsonb]), '{"1": 2, "5": 4, "9": 1}'::jsonb,
  'histograms merge by adding counts per bucket');
select throws_ok($$ select anomaly.histogram_quantile('{"1": 1}', 1.5) $$, 'TSH01', 'quantile must be between 0 and 1',
  'a quantile outside 0..1 is refused');

-- Finish the traces (idle long enough) and check features and edges are written once.
update anomaly.open_traces set last_ingested_at = now() - interval '1 hour';
select anomaly.rollup();
select row_eq($$ select span_count, error_count, service_count, root_service from anomaly.trace_features
                 where trace_id = lpad(to_hex(10), 32, '0') $$,
  row(102, 6, 2, 'api'::text), 'a finished trace gets one feature row');
select is((select sum(call_count)::integer from anomaly.service_edge_minutes where caller_service = 'api' and callee_service = 'db'), 2,
  'calls from api to db are counted as edges');
select anomaly.ingest_spans(json_build_array(tests.span(10, 2000, '2026-02-01 12:00:40+00', 4, 'db', 'SELECT items', 0, 7)));
update anomaly.open_traces set last_ingested_at = now() - interval '1 hour';
select anomaly.rollup();
select is((select sum(call_count)::integer from anomaly.service_edge_minutes where caller_service = 'api' and callee_service = 'db'), 2,
  'a span arriving after its trace finished does not recount the trace''s edges');

select * from finish();
rollback;
