-- 17: calls between services are series too (scope edge): an edge whose calls start failing, and one whose calls
-- stop, are found and named "caller → callee"; a steady edge stays quiet; edges are not extracted when traces finish
-- after their minutes are final (every edge would look like a drop), nor when switched off.
begin;
select plan(13);

-- Hand-made calls per minute (anomaly.service_edge_minutes as anomaly.rollup counts them), 120 minutes from T0 =
-- 2026-03-04 00:00 UTC: the first 60 only build baselines, minutes 60..119 are scored, events start at minute 90.
create function tests.put_calls(p_caller text, p_callee text, p_calls integer[], p_errors integer[])
returns void language sql set search_path = '' as $$
  insert into anomaly.service_edge_minutes (caller_service, callee_service, bucket, call_count, error_count,
                                            duration_sum_ms)
  select p_caller, p_callee, '2026-03-04 00:00+00'::timestamptz + make_interval(mins => i - 1), p_calls[i],
         p_errors[i], 20.0 * p_calls[i]
  from generate_subscripts(p_calls, 1) i
  where p_calls[i] > 0
$$;

update anomaly.detectors set enabled = name in ('error_sigma_band', 'error_cusum', 'error_proportion',
                                                'throughput_forecast', 'throughput_silence');
insert into public.anomaly_detection_config (key, value) values
  ('detect.engine', '{"initial_lookback_minutes": 60, "history_minutes": 60}');

-- frontend -> checkout: 40 calls a minute, 1..3 failing, then 16 of 40 failing for 5 minutes.
select tests.put_calls('frontend', 'checkout', array(select 40 + i % 3 from generate_series(0, 119) i),
  array(select case when i between 90 and 94 then 16 else (array[1, 2, 3, 2, 1])[1 + i % 5] end
        from generate_series(0, 119) i));
-- frontend -> payments: 25 calls a minute until minute 90, then none.
select tests.put_calls('frontend', 'payments', array(select case when i < 90 then 24 + i % 3 else 0 end
                                                      from generate_series(0, 119) i),
  array(select 0 from generate_series(0, 119) i));
-- checkout -> db: steady, with the same small noise as before, all along.
select tests.put_calls('checkout', 'db', array(select (array[58, 61, 60, 62, 59])[1 + i % 5] from generate_series(0, 119) i),
  array(select (array[0, 1, 0, 0, 2])[1 + i % 5] from generate_series(0, 119) i));

update anomaly.rollup_state set watermark = '2026-03-04 02:00:30+00';
select lives_ok($$ select anomaly.detect() $$, 'detection runs over two hours of hand-made calls');
select is((select errors from anomaly.detection_runs), '[]'::jsonb, 'no detector failed');

select set_eq($$ select signal from anomaly.series where scope = 'edge' and service = 'frontend' and operation = '→ checkout' $$,
  array['throughput', 'error_rate'], 'an edge yields two series of the caller, named after the callee: calls and their error rate');
select is((select n from anomaly.signal_points p join anomaly.series s on s.id = p.series_id
           where s.scope = 'edge' and s.operation = '→ checkout' and s.signal = 'error_rate'
             and p.bucket = '2026-03-04 01:30+00'), 40, 'an edge''s error-rate point counts its calls (n)');

create temporary view hit as
  select h.detector, s.service, s.operation, s.signal,
         (extract(epoch from h.bucket - '2026-03-04 00:00+00') / 60)::integer as minute, h.subtype
  from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id and s.scope = 'edge';

select set_eq($$ select detector from hit where operation = '→ checkout' and minute = 90 $$,
  array['error_sigma_band', 'error_cusum', 'error_proportion'], 'failing calls frontend → checkout fire the error detectors');
select is((select count(*)::integer from public.trace_anomalies
           where anomaly_type = 'ERROR_RATE' and service = 'frontend' and operation = '→ checkout'), 1,
  'as one anomaly of frontend, operation "→ checkout"');
select ok((select description like 'error_rate of frontend → checkout is 0.3%, expected 0.0%' from public.trace_anomalies
           where anomaly_type = 'ERROR_RATE' and operation = '→ checkout'), 'whose description names the edge');
select ok((select min(minute) between 91 and 93 from hit where operation = '→ payments' and detector = 'throughput_silence'),
  'calls that stop are a silence within 3 minutes');
select is((select count(*)::integer from public.trace_anomalies
           where anomaly_type = 'THROUGHPUT' and service = 'frontend' and operation = '→ payments'), 1,
  'as one throughput anomaly of frontend → payments');
select is_empty($$ select 1 from hit where operation = '→ db' or minute < 90 $$,
  'a steady edge never fires, nor any edge before the events');

-- Traces finishing after their minutes are final: an edge's minute is not complete when scored; not extracted.
insert into public.anomaly_detection_config (key, value) values ('rollup', '{"trace_idle_seconds": 120}');
select anomaly.extract_signals('2026-03-04 01:00+00', '2026-03-04 01:10+00');
select is((select count(*)::integer from anomaly.signal_points p join anomaly.series s on s.id = p.series_id
           where s.scope = 'edge' and p.bucket > '2026-03-04 01:00+00' and p.bucket <= '2026-03-04 01:10+00'), 0,
  'with rollup.trace_idle_seconds > allowed_lateness_seconds no edge point is written');
delete from public.anomaly_detection_config where key = 'rollup';
update public.anomaly_detection_config set value = value || '{"score_service_edges": false}' where key = 'detect.engine';
select anomaly.extract_signals('2026-03-04 01:00+00', '2026-03-04 01:10+00');
select is((select count(*)::integer from anomaly.signal_points p join anomaly.series s on s.id = p.series_id
           where s.scope = 'edge' and p.bucket > '2026-03-04 01:00+00' and p.bucket <= '2026-03-04 01:10+00'), 0,
  'nor with detect.engine.score_service_edges off');
select throws_ok($$ update public.anomaly_detection_config set value = value || '{"score_service_edges": "yes"}'
                    where key = 'detect.engine' $$, 'TSC01', null, 'score_service_edges must be a boolean (TSC01)');

select * from finish();
rollback;
