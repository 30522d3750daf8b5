-- 13: resource detectors tell a CPU jump (rate of change + deviation) from slow growth (deviation only, against the
-- seasonal history), the correlation detector explains a CPU rise that tracks latency and stays silent when latency
-- is flat, and deploy_regression names the two versions of a deploy that doubles latency or raises errors while a
-- harmless deploy and a thin canary stay quiet. Bad configuration is refused with TSC01.
begin;
select plan(32);

-- Spans of one operation, minute by minute: p_latency / p_cpu / p_memory are per-minute values (cycled), each minute's
-- spans jitter by the same 0.90..1.05 pattern; cpu goes into span attributes, memory into resource attributes.
create function tests.rd_spans(
  p_from timestamptz, p_minutes integer, p_per_minute integer, p_latency double precision[],
  p_cpu double precision[] default null, p_memory double precision[] default null, p_service text default 'api',
  p_operation text default 'GET /work', p_version text default '1.0.0', p_error_every integer default 0,
  p_trace_base integer default 1)
returns json language sql immutable set search_path = '' as $$
  select json_agg(tests.span(
    p_trace_base + m * p_per_minute + i, p_trace_base + m * p_per_minute + i,
    p_from + make_interval(mins => m, secs => i * 50.0 / p_per_minute),
    p_latency[1 + m % cardinality(p_latency)] * (0.9 + 0.2 * ((i * 7919) % 100) / 100.0),
    p_service, p_operation,
    case when p_error_every > 0 and i % p_error_every = 0 then 2 else 0 end,
    null, p_version,
    case when p_cpu is null then '{}'::jsonb
         else jsonb_build_object('process.cpu.utilization', round(p_cpu[1 + m % cardinality(p_cpu)]::numeric, 4)) end,
    case when p_memory is null then '{}'::jsonb
         else jsonb_build_object('process.memory.usage', p_memory[1 + m % cardinality(p_memory)]) end))
  from generate_series(0, p_minutes - 1) m, generate_series(0, p_per_minute - 1) i
$$;

-- Only this family's detectors, and a first cycle that scores the last 80 minutes after 10 minutes of history.
update anomaly.detectors set enabled = name in
  ('resource_deviation', 'resource_rate_of_change', 'resource_latency_correlation', 'deploy_regression');
insert into public.anomaly_detection_config (key, value)
values ('detect.engine', '{"initial_lookback_minutes": 80, "history_minutes": 10, "max_minutes_per_cycle": 80}');

-- ---------------------------------------------------------------- resources: 85 minutes from 00:00, 5 spans a minute
-- cpu-jump: cpu 0.30 +- 0.01, then 0.95 from minute 70 (01:10); memory 500 MB, then 800 MB from minute 70.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 5, array[50],
  array(select case when m < 70 then 0.30 + (array[0, 0.01, -0.01, 0.005, -0.005])[1 + m % 5] else 0.95 end
        from generate_series(0, 84) m),
  array(select case when m < 70 then 5e8 + (m % 3) * 1e6 else 8e8 end from generate_series(0, 84) m),
  'cpu-jump', p_trace_base => 1000000));
-- cpu-slow: the same noise, growing by 0.01 a minute from minute 40 (0.30 -> 0.75); a week of seasonal history at
-- 0.30 +- 0.02 is seeded below.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 5, array[50],
  array(select 0.30 + greatest(0, m - 39) * 0.01 + (array[0, 0.01, -0.01, 0.005, -0.005])[1 + m % 5]
        from generate_series(0, 84) m),
  p_service => 'cpu-slow', p_trace_base => 2000000));
-- cpu-corr: cpu steps to 0.85 at minute 60 (01:00) and latency triples with it.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 5,
  array(select case when m < 60 then (array[50, 52, 49])[1 + m % 3] else 150 end from generate_series(0, 84) m),
  array(select case when m < 60 then 0.30 + (array[0, 0.01, -0.01, 0.005, -0.005])[1 + m % 5] else 0.85 end
        from generate_series(0, 84) m),
  p_service => 'cpu-corr', p_trace_base => 3000000));
-- cpu-calm: the same cpu step, latency keeps wobbling around 50 ms.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 5, array[50, 52, 49],
  array(select case when m < 60 then 0.30 + (array[0, 0.01, -0.01, 0.005, -0.005])[1 + m % 5] else 0.85 end
        from generate_series(0, 84) m),
  p_service => 'cpu-calm', p_trace_base => 4000000));

with s as (
  insert into anomaly.series (scope, service, operation, signal, first_bucket, last_active_bucket)
  values ('service', 'cpu-slow', '', 'cpu', '2026-02-23 00:00+00', '2026-03-01 23:59+00') returning id
)
insert into anomaly.seasonal_profiles (series_id, period, slot, n, mean, m2)
select s.id, 'day', slot, 35, 0.30, 34 * 0.02 ^ 2 from s, generate_series(0, 287) slot;

-- ---------------------------------------------------------------- deploys of service shop, 10 spans a minute
-- GET /cart: 1.0.0 at 50 ms; from 01:10 a rolling deploy of 2.0.0 at 100 ms (3 mixed minutes, then 2.0.0 alone).
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 70, 10, array[50],
  p_service => 'shop', p_operation => 'GET /cart', p_trace_base => 5000000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 3, 5, array[50],
  p_service => 'shop', p_operation => 'GET /cart', p_trace_base => 5050000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 3, 5, array[100],
  p_service => 'shop', p_operation => 'GET /cart', p_version => '2.0.0', p_trace_base => 5100000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:13+00', 12, 10, array[100],
  p_service => 'shop', p_operation => 'GET /cart', p_version => '2.0.0', p_trace_base => 5200000));
-- GET /list: a harmless rolling deploy, 2.0.0 as fast as 1.0.0.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 5, array[80],
  p_service => 'shop', p_operation => 'GET /list', p_trace_base => 6000000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 15, 5, array[80],
  p_service => 'shop', p_operation => 'GET /list', p_version => '2.0.0', p_trace_base => 6100000));
-- GET /rare: a canary of 2.0.0, twice as slow but one span a minute (15 in all, below min_spans 30).
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 85, 10, array[50],
  p_service => 'shop', p_operation => 'GET /rare', p_trace_base => 7000000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 15, 1, array[100],
  p_service => 'shop', p_operation => 'GET /rare', p_version => '2.0.0', p_trace_base => 7100000));
-- POST /pay: 2.0.0 is as fast but fails 4 spans in 10.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 70, 10, array[40],
  p_service => 'shop', p_operation => 'POST /pay', p_trace_base => 8000000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 15, 10, array[40],
  p_service => 'shop', p_operation => 'POST /pay', p_version => '2.0.0', p_error_every => 3, p_trace_base => 8100000));

-- POST /order: 2.0.0 is as fast and as reliable as 1.0.0 (2 failed spans in its last 600), except one minute, its
-- 8th, with 5 failed spans (a transient burst). Against the previous version's errors that is p = 3.9e-4 at that
-- look (8 minutes compared: the level is 0.001 / 8), and less improbable after.
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 00:00+00', 68, 10, array[40],
  p_service => 'shop', p_operation => 'POST /order', p_trace_base => 9000000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:08+00', 2, 10, array[40],
  p_service => 'shop', p_operation => 'POST /order', p_error_every => 10, p_trace_base => 9100000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:10+00', 7, 10, array[40],
  p_service => 'shop', p_operation => 'POST /order', p_version => '2.0.0', p_trace_base => 9200000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:17+00', 1, 10, array[40],
  p_service => 'shop', p_operation => 'POST /order', p_version => '2.0.0', p_error_every => 2, p_trace_base => 9300000));
select anomaly.ingest_spans(tests.rd_spans('2026-03-02 01:18+00', 7, 10, array[40],
  p_service => 'shop', p_operation => 'POST /order', p_version => '2.0.0', p_trace_base => 9400000));

-- ~700 dirty operation-minutes in one call: give the rollup's planner statistics, as autovacuum would.
analyze anomaly.rollup_dirty, anomaly.open_traces, anomaly.spans;
select anomaly.rollup();
select lives_ok($$ select anomaly.detect() $$, 'detection runs over the rolled-up minutes');

select results_eq(
  $$ select name, family, config_key, enabled from anomaly.detectors
     where name in ('resource_deviation', 'resource_rate_of_change', 'resource_latency_correlation', 'deploy_regression')
     order by name $$,
  $$ values ('deploy_regression', 'deploy', 'detect.deploy_regression', true),
            ('resource_deviation', 'resource', 'detect.resource_deviation', true),
            ('resource_latency_correlation', 'resource', 'detect.resource_latency_correlation', true),
            ('resource_rate_of_change', 'resource', 'detect.resource_rate_of_change', true) $$,
  'the four detectors are registered with their families and config keys');
select is_empty($$ select errors from anomaly.detection_runs where errors <> '[]' $$, 'no detector failed');

-- ---------------------------------------------------------------- CPU jump
select results_eq(
  $$ select h.detector, h.subtype, h.bucket from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where s.service = 'cpu-jump' and s.signal = 'cpu' order by 1, 3 $$,
  $$ values ('resource_deviation', 'cpu', '2026-03-02 01:10+00'::timestamptz),
            ('resource_rate_of_change', 'cpu', '2026-03-02 01:10+00'::timestamptz) $$,
  'a cpu jump 0.30 -> 0.95 fires resource_deviation and resource_rate_of_change with subtype cpu at the jump');
select ok((select (h.details ->> 'change')::double precision between 0.6 and 0.7 and h.details ->> 'direction' = 'up'
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-jump' and h.detector = 'resource_rate_of_change' and h.subtype = 'cpu'),
  'the rate-of-change hit reports the upward change of about 0.65');
select is((select h.details ->> 'baseline' from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-jump' and h.detector = 'resource_deviation' and h.subtype = 'cpu'),
  'ewma', 'without seasonal depth the deviation is measured against the EWMA baseline');
select is((select count(*)::integer from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-jump' and h.detector = 'resource_deviation' and h.subtype = 'memory'
             and h.bucket = '2026-03-02 01:10+00'), 1,
  'memory read from resource attributes jumping 500 -> 800 MB fires resource_deviation with subtype memory');
select row_eq(
  $$ select anomaly_type, series_signal, detector from public.trace_anomalies
     where fingerprint = 'RESOURCE|cpu|cpu-jump||resource' $$,
  row('RESOURCE'::text, 'cpu'::text, 'resource_deviation'::text),
  'the cpu jump opens one RESOURCE anomaly on the cpu signal');
select ok((select explanation -> 'detectors' @> '[{"name": "resource_rate_of_change"}, {"name": "resource_deviation"}]'
           from public.trace_anomalies where fingerprint = 'RESOURCE|cpu|cpu-jump||resource'),
  'both detectors are listed in that one anomaly: they share the fingerprint');

-- ---------------------------------------------------------------- slow growth
select ok((select min(h.bucket) between '2026-03-02 00:43+00' and '2026-03-02 00:55+00'
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-slow' and h.detector = 'resource_deviation'),
  'slow cpu growth from 00:40 fires resource_deviation eventually (0.06 above the seasonal mean), not at once');
select is((select count(*)::integer from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-slow' and h.detector = 'resource_deviation'
             and h.details ->> 'baseline' <> 'seasonal'), 0,
  'the slow-growth deviation is measured against the seasonal history');
select is_empty(
  $$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where s.service = 'cpu-slow' and h.detector = 'resource_rate_of_change' $$,
  'slow cpu growth (0.01 a minute) never fires resource_rate_of_change');

-- ---------------------------------------------------------------- correlation with latency
select ok((select (h.details ->> 'correlation')::double precision >= 0.9
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where s.service = 'cpu-corr' and h.detector = 'resource_latency_correlation'
             and h.bucket = '2026-03-02 01:00+00'),
  'cpu and latency rising together: the correlation detector reports r >= 0.9 in its details');
select alike((select h.details ->> 'explanation'
              from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
              where s.service = 'cpu-corr' and h.detector = 'resource_latency_correlation'),
  'cpu rise tracks the p95 latency of cpu-corr, r=%',
  'its details explain the condition in words');
select is((select explanation -> 'details' ->> 'correlation' is not null and detector = 'resource_latency_correlation'
           from public.trace_anomalies where fingerprint = 'RESOURCE|cpu|cpu-corr||resource'), true,
  'the anomaly''s explanation carries the correlation');
select results_eq(
  $$ select distinct h.detector from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where s.service = 'cpu-calm' order by 1 $$,
  $$ values ('resource_deviation'), ('resource_rate_of_change') $$,
  'the same cpu step with flat latency is a deviation and a jump, but the correlation detector stays silent');
select is_empty(
  $$ select 1 from anomaly.detector_hits c
     where c.detector = 'resource_latency_correlation'
       and not exists (select 1 from anomaly.detector_hits d where d.detector = 'resource_deviation'
                       and d.series_id = c.series_id and d.bucket = c.bucket) $$,
  'the correlation detector is explanatory: it only fires where resource_deviation fires');

-- ---------------------------------------------------------------- deploys
select row_eq(
  $$ select h.subtype, h.details ->> 'previous_version', h.details ->> 'new_version', h.bucket
     from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'deploy_regression' and s.operation = 'GET /cart' order by h.bucket limit 1 $$,
  row('version_regression'::text, '1.0.0'::text, '2.0.0'::text, '2026-03-02 01:14+00'::timestamptz),
  'a deploy of 2.0.0 that doubles latency fires deploy_regression naming 1.0.0 and 2.0.0, once 2.0.0 has 30 spans');
select ok((select h.observed / h.expected between 1.8 and 2.2
              and (h.details -> 'mann_whitney' ->> 'effect')::double precision = 1
              and (h.details -> 'mann_whitney' ->> 'p_value')::double precision < 0.001
              and h.details -> 'p95_ms' ->> 0 is not null and h.details -> 'p50_ms' ->> 1 is not null
              and h.details -> 'error_rate' = '[0, 0]'
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'deploy_regression' and s.operation = 'GET /cart' and h.bucket = '2026-03-02 01:14+00'),
  'observed/expected is the p95 ratio (~2) and details carry p50/p95, the rank test and both error rates');
select is((select severity from public.trace_anomalies
           where fingerprint = 'DEPLOY_REGRESSION|version_regression|shop|GET /cart|deploy'), 'CRITICAL',
  'the regression opens a DEPLOY_REGRESSION anomaly for the operation, critical (rank-test z capped at 12)');
select is_empty(
  $$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'deploy_regression' and s.operation = 'GET /list' $$,
  'a harmless rolling deploy (same latency) does not fire');
select is_empty(
  $$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'deploy_regression' and s.operation = 'GET /rare' $$,
  'a slower canary with too few spans of the new version does not fire');
select ok((select h.details -> 'regressed' = '["error_rate"]' and h.details -> 'error_rate' = '[0, 0.4]'
              and s.signal = 'error_rate'
           from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
           where h.detector = 'deploy_regression' and s.operation = 'POST /pay' order by h.bucket limit 1),
  'a deploy that fails 40 % of spans (as fast as before) fires on its error rate');
select is_empty(
  $$ select 1 from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.detector = 'deploy_regression' and s.operation = 'POST /order' $$,
  'one burst of 5 failed spans in a new version''s 15 minutes does not fire (its test counts the minutes compared)');
select ok((select anomaly.normal_sf(anomaly.proportion_z(5, 80, 2 / 600.0)) < 0.001
                  and anomaly.rate_increase_p_value(5, 80, 2, 600) between 0.001 / 8 and 0.001),
  'the normal z (9.2) would have fired on it, and the exact test without counting the looks');

-- the sides are kept minute by minute (anomaly.deploy_sides); summing them afresh gives the same hits
create temp table last_minute as select last_bucket as b from anomaly.detector_state where detector = 'engine';
select ok((select d.through_bucket = l.b and d.pure_spans + 10 * coalesce(cardinality(d.mixed_buckets), 0)
                  = (select sum(o.span_count) from anomaly.operation_minutes o
                     where o.service_name = 'shop' and o.operation = 'GET /cart' and o.versions ? '2.0.0'
                       and o.bucket between d.first_seen and l.b)
           from anomaly.deploy_sides d, last_minute l
           where d.operation = 'GET /cart' and d.side = 'new'),
  'the new version''s side holds its minutes from first_seen through the last scored minute');
create temp table kept as
select series_id, subtype, observed, expected, score, details
from anomaly.detect_deploy_regression((select b from last_minute), anomaly.config('detect.deploy_regression'));
select ok((select count(*) from kept) >= 2, 'the last minute still has deploy hits to compare (GET /cart, POST /pay)');
delete from anomaly.deploy_sides;
select results_eq(
  $$ select series_id, subtype, observed, expected, score, details
     from anomaly.detect_deploy_regression((select b from last_minute), anomaly.config('detect.deploy_regression'))
     order by series_id $$,
  $$ select * from kept order by series_id $$,
  'hits from the kept sums equal hits from sums read afresh');

-- ---------------------------------------------------------------- configuration
select throws_ok($$ insert into public.anomaly_detection_config (key, value)
                    values ('detect.resource_deviation', '{"directions": "sideways"}') $$,
  'TSC01', null, 'directions must be up, down or both');
select throws_ok($$ insert into public.anomaly_detection_config (key, value)
                    values ('detect.resource_latency_correlation', '{"min_abs_correlation": 1.5}') $$,
  'TSC01', null, 'a correlation threshold above 1 is refused');
select throws_ok($$ insert into public.anomaly_detection_config (key, value)
                    values ('detect.deploy_regression', '{"min_spans": 2.5}') $$,
  'TSC01', null, 'min_spans must be an integer');
select throws_ok($$ insert into public.anomaly_detection_config (key, value)
                    values ('detect.resource_rate_of_change', '{"window_minutes": 2}') $$,
  'TSC01', null, 'a rate-of-change window shorter than 5 minutes is refused');

select * from finish();
rollback;
