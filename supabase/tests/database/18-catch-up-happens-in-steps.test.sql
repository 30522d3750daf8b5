-- 18: after downtime a detection cycle scores at most detect.engine.max_minutes_per_cycle minutes, and at most as
-- many as fit detect.engine.max_cycle_seconds at the speed of the last cycle; the next cycles go on from its cursor,
-- so every minute is scored exactly once, in order.
begin;
select plan(11);

update anomaly.detectors set enabled = name in ('latency_zscore', 'throughput_forecast');
insert into public.anomaly_detection_config (key, value) values
  ('detect.engine', '{"initial_lookback_minutes": 60, "history_minutes": 30, "max_minutes_per_cycle": 25}');

-- 100 minutes of steady traffic; the watermark is past all of them at once (as after an outage of the schedule).
select anomaly.ingest_spans(tests.series('2026-05-01 00:00+00', 100, 10, array[100, 104, 97, 102, 99]));
select anomaly.rollup();
update anomaly.rollup_state set watermark = '2026-05-01 01:40:30+00';

select is((select scored_through from anomaly.detect()), '2026-05-01 01:04:00+00'::timestamptz,
  'the first cycle scores 25 of the 60 minutes it owes (00:39 to 01:39): through 01:04');
select is((select scored_through from anomaly.detect()), '2026-05-01 01:29:00+00'::timestamptz,
  'the next cycle goes on from there: 25 more');
select is((select scored_through from anomaly.detect()), '2026-05-01 01:39:00+00'::timestamptz,
  'the third reaches the newest complete minute (10 left)');
select is((select scored_through from anomaly.detect()), '2026-05-01 01:39:00+00'::timestamptz,
  'and a fourth has nothing to do');

select is((select array_agg(scored_through - scored_from order by id) from anomaly.detection_runs),
  array[interval '25 minutes', interval '25 minutes', interval '10 minutes'], 'three runs of 25, 25 and 10 minutes');
select ok((select bool_and(scored_from = previous_through)
           from (select scored_from, lag(scored_through) over (order by id) as previous_through
                 from anomaly.detection_runs) r
           where previous_through is not null),
  'each run starts where the previous one stopped: no minute skipped or scored twice');

select throws_ok($$ update public.anomaly_detection_config
                    set value = value || '{"max_minutes_per_cycle": 0}' where key = 'detect.engine' $$,
  'TSC01', null, 'max_minutes_per_cycle must be at least 1 (TSC01)');

-- The time budget: after a slow cycle (10 minutes in 20 s: 2 s a minute) a 9-second budget allows 4 minutes.
update public.anomaly_detection_config set value = value || '{"max_cycle_seconds": 9}' where key = 'detect.engine';
insert into anomaly.detection_runs (started_at, finished_at, scored_from, scored_through)
values ('2026-05-01 02:00:00+00', '2026-05-01 02:00:20+00', '2026-05-01 00:00+00', '2026-05-01 00:10+00');
select anomaly.ingest_spans(tests.series('2026-05-01 01:40+00', 20, 10, array[100, 104, 97, 102, 99],
                                         p_trace_base => 3000000));
select anomaly.rollup();
update anomaly.rollup_state set watermark = '2026-05-01 02:00:30+00';
select is((select scored_through from anomaly.detect()), '2026-05-01 01:43:00+00'::timestamptz,
  'after a cycle of 2 s a minute, a 9 s budget scores 4 of the 20 minutes owed');
select cmp_ok((select scored_through from anomaly.detect()), '>', '2026-05-01 01:43:00+00'::timestamptz,
  'the next step follows that cycle''s own (faster) speed');
select is((select scored_through from anomaly.detect()), '2026-05-01 01:59:00+00'::timestamptz,
  'and catching up completes');
select throws_ok($$ update public.anomaly_detection_config
                    set value = value || '{"max_cycle_seconds": -1}' where key = 'detect.engine' $$,
  'TSC01', null, 'max_cycle_seconds must not be negative (TSC01)');

select * from finish();
rollback;
