-- 04: ingest_spans stores each span once, creates partitions on demand and marks work for the rollup.
begin;
select plan(10);

select is((anomaly.ingest_spans(json_build_array(
            tests.span(1, 1, '2026-01-02 10:00:05+00', 120),
            tests.span(1, 2, '2026-01-02 10:00:06+00', 30, 'db', 'SELECT items', 0, 1),
            tests.span(2, 3, '2026-01-03 23:59:59+00', 10)))).inserted, 3,
  'a new batch stores every span');
select is((anomaly.ingest_spans(json_build_array(
            tests.span(1, 1, '2026-01-02 10:00:05+00', 120),
            tests.span(1, 2, '2026-01-02 10:00:06+00', 30, 'db', 'SELECT items', 0, 1),
            tests.span(2, 3, '2026-01-03 23:59:59+00', 10)))).inserted, 0,
  're-sending the same batch stores nothing');
select is((select count(*)::integer from anomaly.spans where trace_id = lpad('1', 32, '0')), 2, 'each span is stored once');
select has_table('anomaly', 'spans_p20260102', 'the partition for the first day was created');
select has_table('anomaly', 'spans_p20260103', 'the partition for the second day was created');
select results_eq($$ select bucket, service_name, operation from anomaly.rollup_dirty
                     where bucket < '2026-01-04' order by 1, 2 $$,
  $$ values ('2026-01-02 10:00:00+00'::timestamptz, 'api'::text, 'GET /items'::text),
            ('2026-01-02 10:00:00+00', 'db', 'SELECT items'),
            ('2026-01-03 23:59:00+00', 'api', 'GET /items') $$,
  'ingest marks each touched series-minute for the rollup');
select is((select span_count from anomaly.open_traces where trace_id = lpad('1', 32, '0')), 2,
  'ingest tracks the trace as open');
select throws_ok($$ select anomaly.ingest_spans('{"not": "an array"}') $$, 'TSI01',
  'ingest_spans expects a JSON array of spans', 'a non-array batch is refused with TSI01');
select throws_ok($$ select anomaly.ingest_spans(json_build_array(tests.span(3, 4, '2026-01-02 10:00:00+00', 5) - 'service_name')) $$,
  '23502', null, 'a span without a service is refused by the NOT NULL constraint');
select is((anomaly.ingest_spans('[]')).received, 0, 'an empty batch is a no-op');

select * from finish();
rollback;
