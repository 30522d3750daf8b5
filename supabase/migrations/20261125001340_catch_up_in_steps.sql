-- 20261125001340_catch_up_in_steps.sql — a detection cycle scores at most detect.engine.max_minutes_per_cycle
-- minutes (default 60, the first cycle's initial_lookback_minutes). anomaly.detect() scored every complete minute
-- since the last cycle, up to max_catchup_minutes (1,440) after downtime, in one transaction. Measured on
-- bench:detect's 10k-operation state: catching up 10 minutes in one call took 20 s (2.0 s a minute), 30 minutes 78 s
-- (2.6), 60 minutes 215 s (3.6) — each minute dearer than the last, as every state row gets one more version per
-- minute inside the same transaction (no pruning until it ends). A day-long outage was a transaction of over an
-- hour. Now each call takes one step; the schedule's next calls go on from its cursor. Everything else is the
-- function of 20261125000800, unchanged.

update anomaly.config_keys
   set spec = spec || '{"max_minutes_per_cycle": {"type": "integer", "min": 1, "max": 20160}}',
       defaults = defaults || '{"max_minutes_per_cycle": 60}',
       description = description || ' max_minutes_per_cycle: minutes one detect() call scores at most (catching '
         'up after downtime takes several cycles; at 10k operations 30 minutes are ~80 s of one transaction).'
 where key = 'detect.engine';

create or replace function anomaly.detect()
returns anomaly.detect_result
language plpgsql
set search_path = ''
-- JIT compilation of the detectors' large plans costs more than running them (3.7 s vs ms, measured)
set jit = off
as $$
declare
  v_engine jsonb := anomaly.config('detect.engine');
  v_run bigint;
  v_watermark timestamptz;
  v_from timestamptz;
  v_through timestamptz;
  v_signals_from timestamptz;
  v_bucket timestamptz;
  v_det record;
  v_rows bigint := 0;
  v_hits integer := 0;
  v_n integer;
  v_errors jsonb := '[]'::jsonb;
  v_life record;
  v_result anomaly.detect_result;
begin
  if not pg_try_advisory_xact_lock(hashtext('anomaly.detect')) then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;
  select watermark into v_watermark from anomaly.rollup_state;
  if v_watermark is null then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;
  v_through := date_trunc('minute', v_watermark) - interval '1 minute';
  select last_bucket into v_from from anomaly.detector_state where detector = 'engine';
  v_from := greatest(
    coalesce(v_from, v_through - make_interval(mins => (v_engine ->> 'initial_lookback_minutes')::integer)),
    v_through - make_interval(mins => (v_engine ->> 'max_catchup_minutes')::integer));
  if v_through <= v_from then
    return (0, 0, 0, 0, v_from)::anomaly.detect_result;
  end if;
  -- Catching up after downtime happens in steps of at most max_minutes_per_cycle: one transaction per step, so a
  -- long outage does not become one transaction of hours (the next cycles, a minute apart, go on from here)
  v_through := least(v_through, v_from + make_interval(mins => (v_engine ->> 'max_minutes_per_cycle')::integer));

  insert into anomaly.detection_runs (scored_from, scored_through, watermark)
  values (v_from, v_through, v_watermark) returning id into v_run;

  -- Signals have their own cursor: on the first cycle they start history_minutes before the first scored minute,
  -- so trailing windows and baselines have history; those earlier minutes are folded into the baselines unscored.
  select last_bucket into v_signals_from from anomaly.detector_state where detector = 'signals';
  if v_signals_from is null then
    v_signals_from := v_from - make_interval(mins => (v_engine ->> 'history_minutes')::integer);
    v_rows := anomaly.extract_signals(v_signals_from, v_through);
    for v_bucket in select generate_series(v_signals_from + interval '1 minute', v_from, interval '1 minute') loop
      perform anomaly.update_baselines(v_bucket);
    end loop;
  else
    v_rows := anomaly.extract_signals(least(v_signals_from, v_from), v_through);
  end if;
  insert into anomaly.detector_state (detector, last_bucket) values ('signals', v_through)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();

  for v_bucket in select generate_series(v_from + interval '1 minute', v_through, interval '1 minute') loop
    for v_det in
      select d.name, d.function_name, anomaly.config(d.config_key) as cfg
      from anomaly.detectors d where d.enabled order by d.name
    loop
      begin
        execute format(
          'insert into anomaly.detector_hits (run_id, detector, series_id, bucket, subtype, observed, expected, '
          'lower_bound, upper_bound, score, details) '
          'select $1, $2, h.series_id, h.bucket, h.subtype, h.observed, h.expected, h.lower_bound, h.upper_bound, '
          'h.score, coalesce(h.details, ''{}'') from %s($3, $4) h '
          'on conflict (detector, series_id, bucket) do update set run_id = excluded.run_id, score = excluded.score, '
          'observed = excluded.observed, expected = excluded.expected, lower_bound = excluded.lower_bound, '
          'upper_bound = excluded.upper_bound, details = excluded.details, subtype = excluded.subtype',
          v_det.function_name)
        using v_run, v_det.name, v_bucket, v_det.cfg;
        get diagnostics v_n = row_count;
        v_hits := v_hits + v_n;
      exception when others then
        v_errors := v_errors || jsonb_build_object('detector', v_det.name, 'bucket', v_bucket,
                                                   'sqlstate', sqlstate, 'message', sqlerrm);
      end;
    end loop;
    perform anomaly.update_baselines(v_bucket);
  end loop;

  select * into v_life from anomaly.apply_hits(v_run, v_through);

  insert into anomaly.detector_state (detector, last_bucket) values ('engine', v_through)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();

  update anomaly.detection_runs set
    finished_at = clock_timestamp(), rows_read = v_rows, hits = v_hits,
    anomalies_opened = v_life.opened, anomalies_updated = v_life.updated, anomalies_resolved = v_life.resolved,
    errors = v_errors
  where id = v_run;

  v_result := (v_hits, v_life.opened, v_life.updated, v_life.resolved, v_through);
  return v_result;
end
$$;
comment on function anomaly.detect() is
  'One detection cycle (job rollup-detect, every minute): extracts signal points for the complete minutes since the '
  'last cycle (up to the rollup watermark), runs every enabled detector of anomaly.detectors on each new minute in '
  'time order and folds the minute into the baselines afterwards (no look-ahead), logs hits in anomaly.detector_hits, '
  'applies the anomaly lifecycle and records the run in anomaly.detection_runs. At most '
  'detect.engine.max_minutes_per_cycle minutes per call: after downtime the following cycles catch up. A failing '
  'detector is skipped and logged. Returns (hits, opened, updated, resolved, scored_through). '
  'Example: select * from anomaly.detect();';
