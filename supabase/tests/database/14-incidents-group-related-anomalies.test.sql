-- 14: anomalies that open together on services that call each other share one incident (the root's id); an
-- unrelated service, a later start outside the window, or grouping turned off each start their own incident.
begin;
select plan(9);

insert into anomaly.service_edge_minutes (caller_service, callee_service, bucket, call_count, error_count, duration_sum_ms)
values ('frontend', 'checkout', '2026-03-01 09:30+00', 10, 0, 100),
       ('checkout', 'payments', '2026-03-01 09:30+00', 10, 0, 100);

create function tests.anomaly(p_service text, p_first_seen timestamptz, p_type text default 'LATENCY')
returns uuid language sql set search_path = '' as $$
  insert into public.trace_anomalies (anomaly_type, subtype, fingerprint, service, detector, first_seen, last_seen)
  values (p_type, 'p95', p_type || '|p95|' || p_service || '|' || p_first_seen, p_service, 'latency_zscore',
          p_first_seen, p_first_seen + interval '1 minute')
  returning id
$$;

create temp table ids as select
  tests.anomaly('payments', '2026-03-01 10:00+00') as root,
  tests.anomaly('checkout', '2026-03-01 10:02+00') as caller,
  tests.anomaly('frontend', '2026-03-01 10:03+00') as callers_caller,
  tests.anomaly('payments', '2026-03-01 10:01+00', 'ERROR_RATE') as same_service,
  tests.anomaly('search', '2026-03-01 10:01+00') as unrelated,
  tests.anomaly('checkout', '2026-03-01 10:30+00', 'ERROR_RATE') as too_late;

select is((select incident_id from public.trace_anomalies where id = (select root from ids)), (select root from ids),
  'the first anomaly is the root of its incident');
select is((select incident_id from public.trace_anomalies where id = (select caller from ids)), (select root from ids),
  'a caller that slows down two minutes later joins the incident');
select is((select incident_id from public.trace_anomalies where id = (select callers_caller from ids)),
  (select root from ids), 'so does the caller''s caller (related to the caller)');
select is((select incident_id from public.trace_anomalies where id = (select same_service from ids)),
  (select root from ids), 'another anomaly type on the same service joins it');
select is((select incident_id from public.trace_anomalies where id = (select unrelated from ids)),
  (select unrelated from ids), 'a service with no calls to the incident''s services starts its own');
select is((select incident_id from public.trace_anomalies where id = (select too_late from ids)),
  (select too_late from ids), 'an anomaly opening more than window_minutes after the others starts its own');

-- opening together is the test, not being open: a related anomaly that opens within the window joins even when
-- the incident's anomalies have resolved, and one opening later does not join a still-open incident
update public.trace_anomalies set status = 'RESOLVED', resolved_at = now(), last_seen = '2026-03-01 10:05+00'
where incident_id = (select root from ids) and anomaly_type = 'LATENCY';
create temp table late as select
  tests.anomaly('frontend', '2026-03-01 10:07+00', 'ERROR_RATE') as joins,
  tests.anomaly('checkout', '2026-03-01 10:20+00', 'THROUGHPUT') as own;
update public.trace_anomalies set last_seen = '2026-03-01 10:25+00' where id = (select same_service from ids);
select is((select array[(select incident_id from public.trace_anomalies where id = l.joins),
                        (select incident_id from public.trace_anomalies where id = l.own)] from late l),
  array[(select root from ids), (select own from late)],
  'a related anomaly opening 4 minutes after another joins (even resolved); one 17 minutes later starts its own');

insert into public.anomaly_detection_config (key, value) values ('detect.incidents', '{"window_minutes": 0}');
create temp table ungrouped as select tests.anomaly('checkout', '2026-03-01 10:01+00', 'THROUGHPUT') as id;
select is((select incident_id from public.trace_anomalies where id = (select id from ungrouped)),
  (select id from ungrouped), 'window_minutes = 0 turns grouping off');

select throws_ok($$insert into public.anomaly_detection_config (key, value) values ('detect.incidents', '{"window_minutes": -1}')
  on conflict (key) do update set value = excluded.value$$, 'TSC01', null, 'a negative window is refused (TSC01)');

select * from finish();
rollback;
