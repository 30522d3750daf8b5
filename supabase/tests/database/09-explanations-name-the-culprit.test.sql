-- 09: explanations name the culprit. frontend -> checkout -> payments -> payments' database call: in the anomalous
-- window half the traces go through payments 2.0.0 on node-7, whose database call takes 200 ms instead of 5 ms. The
-- culprit must be that database call (not frontend or checkout, whose own time did not change), and node-7 and
-- version 2.0.0 must stand out among the slow payment spans.
begin;
select plan(26);

-- Baseline hour: 120 traces, one every 30 s, all on payments 1.0.0 / node-3.
select anomaly.ingest_spans((
  select json_agg(e) from generate_series(0, 119) i,
  json_array_elements(tests.chain(100000 + i, '2026-03-02 00:00+00'::timestamptz + make_interval(secs => 30 * i),
    jsonb_build_array(
      jsonb_build_object('service', 'frontend', 'operation', 'GET /checkout', 'self_ms', 10 + i % 3),
      jsonb_build_object('service', 'checkout', 'operation', 'POST /checkout', 'self_ms', 20),
      jsonb_build_object('service', 'payments', 'operation', 'POST /pay', 'self_ms', 15,
                         'version', '1.0.0', 'resource', jsonb_build_object('host.name', 'node-3')),
      jsonb_build_object('service', 'payments', 'operation', 'SELECT payments', 'self_ms', 5,
                         'version', '1.0.0', 'resource', jsonb_build_object('host.name', 'node-3'),
                         'attributes', jsonb_build_object('db.system', 'postgresql'))))) e));

-- Anomalous 5 minutes: 40 traces, one every 7.5 s; even ones on payments 2.0.0 / node-7 with a 200 ms database call,
-- and every fourth one (all on node-7) fails in POST /pay.
select anomaly.ingest_spans((
  select json_agg(e) from generate_series(0, 39) i,
  json_array_elements(tests.chain(200000 + i, '2026-03-02 01:00+00'::timestamptz + make_interval(secs => 7.5 * i),
    jsonb_build_array(
      jsonb_build_object('service', 'frontend', 'operation', 'GET /checkout', 'self_ms', 10 + i % 3),
      jsonb_build_object('service', 'checkout', 'operation', 'POST /checkout', 'self_ms', 20),
      jsonb_build_object('service', 'payments', 'operation', 'POST /pay', 'self_ms', 15,
                         'status', case when i % 4 = 0 then 2 else 0 end,
                         'version', case when i % 2 = 0 then '2.0.0' else '1.0.0' end,
                         'resource', jsonb_build_object('host.name', case when i % 2 = 0 then 'node-7' else 'node-3' end)),
      jsonb_build_object('service', 'payments', 'operation', 'SELECT payments',
                         'self_ms', case when i % 2 = 0 then 200 else 5 end,
                         'version', case when i % 2 = 0 then '2.0.0' else '1.0.0' end,
                         'resource', jsonb_build_object('host.name', case when i % 2 = 0 then 'node-7' else 'node-3' end),
                         'attributes', jsonb_build_object('db.system', 'postgresql'))))) e));

-- A fan-out: batch run has two concurrent 50 ms worker steps over the same interval; its own time grows 10 -> 100 ms.
-- Summing the children (100 ms) would hide the parent's baseline self time; their union (50 ms) does not.
select anomaly.ingest_spans((
  select json_agg(s) from (
    select x.t, x.start, x.run_ms from (
      select 300000 + i as t, '2026-03-02 00:01+00'::timestamptz + make_interval(mins => 5 * i) as start, 60 as run_ms
      from generate_series(0, 9) i
      union all
      select 400000 + i, '2026-03-02 01:00+00'::timestamptz + make_interval(secs => 50 * i), 150
      from generate_series(0, 4) i) x
  ) r,
  lateral (values
    (tests.span(r.t, 1, r.start, r.run_ms, 'batch', 'run')),
    (tests.span(r.t, 2, r.start + interval '5 milliseconds', 50, 'batch', 'worker step', p_parent => 1)),
    (tests.span(r.t, 3, r.start + interval '5 milliseconds', 50, 'batch', 'worker step', p_parent => 1))) as v(s)));

create temp table explained on commit drop as
select anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                       '2026-03-02 00:00+00', '2026-03-02 01:00+00') as e;

-- ---------------------------------------------------------------- the culprit
select is((select e -> 'culprit' ->> 'service' from explained), 'payments', 'the culprit service is payments');
select is((select e -> 'culprit' ->> 'operation' from explained), 'SELECT payments',
  'the culprit operation is payments'' database call, not frontend or checkout');
select is((select (e -> 'culprit' ->> 'self_time_ms_baseline')::numeric from explained), 5.000,
  'its baseline self time is 5 ms per trace');
select is((select (e -> 'culprit' ->> 'self_time_ms_anomalous')::numeric from explained), 102.500,
  'its anomalous self time is (20 x 200 + 20 x 5) / 40 = 102.5 ms per trace');
select is((select (e -> 'culprit' ->> 'delta_ms')::numeric from explained), 97.500, 'it grew by 97.5 ms per trace');
select cmp_ok((select (e -> 'culprit' ->> 'share_of_increase')::numeric from explained), '>', 0.99,
  'it explains all of the increase');
select is_empty($$
  select c from explained, jsonb_array_elements(e -> 'candidates') c
  where c ->> 'service' in ('frontend', 'checkout') and (c ->> 'delta_ms')::numeric > 0.5
$$, 'frontend and checkout are not candidates: their own time did not grow');
select is((select e -> 'candidates' -> 0 from explained), (select e -> 'culprit' from explained),
  'the culprit heads the candidate list');
select is((select e -> 'traces_compared' from explained), '{"anomalous": 40, "baseline": 120}'::jsonb,
  'a quiet window is compared whole: 40 anomalous and 120 baseline traces');
select ok((select (e -> 'duration_ms' ->> 'anomalous')::numeric > 2 * (e -> 'duration_ms' ->> 'baseline')::numeric
           from explained),
  'the mean frontend duration of the compared traces is reported for both sides (51 ms -> 148 ms)');

select is(anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                          '2026-03-02 00:00+00', '2026-03-02 01:00+00', p_max_traces => 10)
            -> 'traces_compared', '{"anomalous": 10, "baseline": 10}'::jsonb,
  'p_max_traces bounds both sides');
select is(anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                          '2026-03-02 00:00+00', '2026-03-02 01:00+00', p_max_traces => 10)
            -> 'culprit' ->> 'self_time_ms_anomalous', '200.000',
  'the anomalous side takes the slowest traces: all 10 went through the 200 ms database call');
select is(anomaly.explain_latency_culprit('payments', 'SELECT payments', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                          '2026-03-02 00:00+00', '2026-03-02 01:00+00') -> 'culprit' ->> 'operation',
  'SELECT payments', 'the culprit may be the anomalous operation itself');
select is(anomaly.explain_latency_culprit('batch', 'run', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                          '2026-03-02 00:00+00', '2026-03-02 01:00+00') -> 'culprit',
  '{"service": "batch", "operation": "run", "self_time_ms_baseline": 10.000, "self_time_ms_anomalous": 100.000,
    "delta_ms": 90.000, "share_of_increase": 1.0000}'::jsonb,
  'self time subtracts the union of concurrent children, not their sum');
select is(anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-03 00:00+00', '2026-03-03 00:05+00',
                                          '2026-03-02 00:00+00', '2026-03-02 01:00+00'),
  '{"culprit": null, "candidates": [], "traces_compared": {"anomalous": 0, "baseline": 120},
    "duration_ms": {"anomalous": null, "baseline": 51.000}}'::jsonb,
  'a window without spans names no culprit');
select throws_ok($$ select anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-02 01:00+00',
                      '2026-03-02 01:00+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00') $$, 'TSH01',
  'each window must end after it starts (the end is exclusive)', 'an empty window is refused with TSH01');
select throws_ok($$ select anomaly.explain_latency_culprit('frontend', 'GET /checkout', '2026-03-02 01:00+00',
                      '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', 0) $$, 'TSH01',
  'explain_latency_culprit needs a service, an operation and 1..2000 traces', 'p_max_traces 0 is refused with TSH01');

-- ---------------------------------------------------------------- over-represented attributes
create temp table slow_attributes on commit drop as
select anomaly.explain_overrepresented_attributes('payments', 'POST /pay', '2026-03-02 01:00+00', '2026-03-02 01:05+00',
                                                  '2026-03-02 00:00+00', '2026-03-02 01:00+00') as attributes;

select set_eq($$ select a ->> 'key' as key, a ->> 'value' as value, (a ->> 'anomalous_share')::numeric as anomalous_share,
                        (a ->> 'baseline_share')::numeric as baseline_share, (a ->> 'count')::integer as count
                 from slow_attributes, jsonb_array_elements(attributes) a where a ->> 'key' in ('host.name', 'service.version') $$,
  $$ values ('host.name', 'node-7', 1.0, 0.0, 20), ('service.version', '2.0.0', 1.0, 0.0, 20) $$,
  'host.name node-7 (a resource attribute) and service.version 2.0.0 (a typed column) mark all 20 slow payment spans');
select is_empty($$ select a from slow_attributes, jsonb_array_elements(attributes) a
                   where (a ->> 'anomalous_share')::numeric < 0.2 or (a ->> 'lift')::numeric < 1.5
                      or a ->> 'value' in ('node-3', '1.0.0', 'GET') $$,
  'values below 20 % support or 1.5 lift, or as common as in the baseline, are left out');
select is((select attributes -> 0 ->> 'value' from slow_attributes), 'node-7',
  'values are ordered by lift (ties by share, then key)');
select is(anomaly.explain_overrepresented_attributes('payments', 'POST /pay', '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  '[{"key": "host.name", "value": "node-7", "anomalous_share": 1.0000, "baseline_share": 0.0000, "lift": 122.00, "count": 10}]'::jsonb,
  'for an error anomaly the failing spans are compared: all 10 ran on node-7 (lift = 1 / (1/122))');
-- A service-scope anomaly (no operation) compares all the service's spans: 240 baseline spans of POST /pay and
-- SELECT payments; an edge's ('→ payments' of checkout) only payments' spans called from checkout: the 120 POST /pay.
select is(anomaly.explain_overrepresented_attributes('payments', null, '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  '[{"key": "host.name", "value": "node-7", "anomalous_share": 1.0000, "baseline_share": 0.0000, "lift": 242.00, "count": 10}]'::jsonb,
  'a service''s error anomaly compares all its spans (lift = 1 / (1/242): both operations in the baseline)');
select is(anomaly.explain_overrepresented_attributes('payments', '', '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  anomaly.explain_overrepresented_attributes('payments', null, '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  'an empty operation is the service too');
select is(anomaly.explain_overrepresented_attributes('checkout', '→ payments', '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  '[{"key": "host.name", "value": "node-7", "anomalous_share": 1.0000, "baseline_share": 0.0000, "lift": 122.00, "count": 10}]'::jsonb,
  'an edge compares the callee''s spans called by the caller: 120 baseline calls, the 10 failed ones on node-7');
select is(anomaly.explain_overrepresented_attributes('frontend', '→ payments', '2026-03-02 01:00+00',
            '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00', array['host.name'], 'error'),
  '[]'::jsonb, 'an edge without calls explains nothing (frontend calls checkout, not payments)');
select throws_ok($$ select anomaly.explain_overrepresented_attributes('payments', 'POST /pay', '2026-03-02 01:00+00',
                      '2026-03-02 01:05+00', '2026-03-02 00:00+00', '2026-03-02 01:00+00',
                      p_anomalous_predicate => 'weird') $$, 'TSH01',
  'p_anomalous_predicate must be ''slow'' or ''error''', 'an unknown predicate is refused with TSH01');

select * from finish();
rollback;
