-- 10: the detection engine: signals, registry, runs, no look-ahead, failing detectors, agreement and escalation.
begin;
select plan(16);

-- Probe detectors defined for this test only (rolled back): one reports any look-ahead it can see, one always
-- fails, one agrees with latency_zscore whenever p95 doubles its trailing mean.
create function anomaly.detect_probe_lookahead(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit language sql stable set search_path = '' as $$
  select st.series_id, p_bucket, 'lookahead', 0::double precision, 0::double precision, null::double precision,
         null::double precision, 99::double precision, jsonb_build_object('state_bucket', st.last_bucket)
  from anomaly.series_state st
  where st.last_bucket >= p_bucket
$$;
create function anomaly.detect_probe_broken(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit language plpgsql stable set search_path = '' as $$
begin
  raise exception using errcode = 'TSX99', message = 'probe detector always fails';
end
$$;
create function anomaly.detect_probe_double(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit language sql stable set search_path = '' as $$
  select p.series_id, p_bucket, 'latency_p95', p.value, b.mean, null::double precision, b.mean * 2,
         5::double precision, '{"direction": "up"}'::jsonb
  from anomaly.signal_points p
  join anomaly.series s on s.id = p.series_id and s.signal = 'latency_p95'
  cross join lateral (
    select avg(h.value) as mean, count(*) as points from anomaly.signal_points h
    where h.series_id = p.series_id and h.bucket >= p_bucket - interval '60 minutes' and h.bucket < p_bucket) b
  where p.bucket = p_bucket and b.points >= 10 and p.value > 2 * b.mean
$$;

-- The engine is tested with the z-score detector and these probes alone; the other detectors have their own files.
update anomaly.detectors set enabled = false where name not in ('latency_zscore', 'error_zscore');

select throws_ok($$ insert into anomaly.detectors (name, family, signals, function_name, config_key, description)
                    values ('ghost', 'latency', '{latency_p95}', 'anomaly.detect_ghost', 'detect.zscore', 'missing') $$,
  'TSD01', null, 'a detector without its function is refused with TSD01');

insert into anomaly.detectors (name, family, signals, function_name, config_key, description) values
  ('probe_lookahead', 'latency', '{latency_p95}', 'anomaly.detect_probe_lookahead', 'detect.zscore', 'test probe'),
  ('probe_broken', 'latency', '{latency_p95}', 'anomaly.detect_probe_broken', 'detect.zscore', 'test probe'),
  ('probe_double', 'latency', '{latency_p95}', 'anomaly.detect_probe_double', 'detect.zscore', 'test probe');

-- 60 normal minutes, then p95 x3 for 12 minutes, then a few normal ones so the watermark passes the step.
select anomaly.ingest_spans(tests.series('2026-04-01 00:00+00', 60, 20, array[100, 104, 97, 102, 99, 101, 98, 103]));
select anomaly.ingest_spans(tests.series('2026-04-01 01:00+00', 12, 20, array[300], p_trace_base => 2000000));
select anomaly.ingest_spans(tests.series('2026-04-01 01:12+00', 3, 20, array[100], p_trace_base => 3000000));
select anomaly.ingest_spans(tests.series('2026-04-01 00:00+00', 75, 20, array[50, 52, 49], 'api', 'GET /other', 0, 4000000));
select anomaly.rollup();
select lives_ok($$ select anomaly.detect() $$, 'a cycle completes although one detector fails');

select is((select array_agg(signal order by signal) from anomaly.series where service = 'api' and operation = 'GET /items'),
  array['error_rate', 'latency_p95', 'throughput'], 'an operation yields three series: p95 latency, error rate, throughput');
select ok((select count(*) from anomaly.signal_points p join anomaly.series s on s.id = p.series_id
           where s.signal = 'latency_p95' and s.operation = 'GET /items') >= 70, 'every complete minute became a point');
select is_empty($$ select 1 from anomaly.detector_hits where detector = 'probe_lookahead' $$,
  'no detector ever sees a baseline that already holds its own minute');
select is((select count(*)::integer from anomaly.detection_runs), 1, 'the cycle is logged as one detection run');
select ok((select errors @> '[{"detector": "probe_broken", "sqlstate": "TSX99"}]' from anomaly.detection_runs),
  'the failing detector is recorded with its SQLSTATE');
select ok((select hits > 0 and anomalies_opened >= 1 and finished_at is not null from anomaly.detection_runs),
  'the run records hits, opened anomalies and its end');

select is((select count(*)::integer from public.trace_anomalies where service = 'api' and operation = 'GET /items'
           and anomaly_type = 'LATENCY'), 1, 'two detectors agreeing on the step open ONE anomaly');
select set_eq($$ select d ->> 'name' from public.trace_anomalies a, jsonb_array_elements(a.explanation -> 'detectors') d
                 where a.operation = 'GET /items' and a.anomaly_type = 'LATENCY' $$,
  array['latency_zscore', 'probe_double'], 'the explanation lists both agreeing detectors');
select cmp_ok((select confidence from public.trace_anomalies where operation = 'GET /items' and anomaly_type = 'LATENCY'),
  '>', (1.0 / (select count(*) from anomaly.detectors where family = 'latency' and enabled and not legacy))::double precision,
  'agreement raises confidence above a single detector''s share');
select is((select severity from public.trace_anomalies where operation = 'GET /items' and anomaly_type = 'LATENCY'),
  'CRITICAL', 'a tripled p95 is critical');
select is((select detected_event_at from public.trace_anomalies where operation = 'GET /items' and anomaly_type = 'LATENCY'),
  '2026-04-01 01:02:00+00'::timestamptz,
  'detected_event_at is the first anomalous minute''s end plus the allowed lateness');

-- Re-running with nothing new changes nothing.
select is((select (anomaly.detect()).anomalies_opened), 0, 'a second cycle without new minutes opens nothing');

-- Escalation by duration: only the probe (score 5 = MEDIUM) sees a 12-minute doubling of GET /other.
update anomaly.detectors set enabled = false where name in ('latency_zscore', 'probe_broken');
select anomaly.ingest_spans(tests.series('2026-04-01 01:15+00', 12, 20, array[150], 'api', 'GET /other', 0, 5000000));
select anomaly.ingest_spans(tests.series('2026-04-01 01:27+00', 3, 20, array[50], 'api', 'GET /other', 0, 6000000));
select anomaly.rollup();
select anomaly.detect();
select row_eq($$ select severity, occurrences from public.trace_anomalies
                 where operation = 'GET /other' and anomaly_type = 'LATENCY' $$,
  row('HIGH'::text, 12), 'a MEDIUM-score condition lasting escalate_after_minutes is escalated one level');
select ok((select explanation -> 'escalation' ? 'duration_minutes' from public.trace_anomalies
           where operation = 'GET /other' and anomaly_type = 'LATENCY'), 'the escalation is explained');

select * from finish();
rollback;
