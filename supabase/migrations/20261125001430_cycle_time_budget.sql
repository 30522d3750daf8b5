-- 20261125001430_cycle_time_budget.sql — catching up adapts to the installation's size: a detection cycle also
-- stops short of detect.engine.max_cycle_seconds (default 30) of expected work. max_minutes_per_cycle (60) bounds
-- a catch-up step in minutes, which is right at 1k operations (a 60-minute step is ~12 s) and far too long at 50k
-- (~11 s per minute, each minute dearer inside one transaction). The step is now also at most max_cycle_seconds /
-- (seconds per minute of the last finished cycle that scored anything, from anomaly.detection_runs), at least one
-- minute; an installation's cycles measure their own speed, so the step follows the load without a setting per
-- size. Minute-by-minute operation (one minute a cycle) is unchanged. Everything else is the function of
-- 20261125001340, unchanged.

update anomaly.config_keys
   set spec = spec || '{"max_cycle_seconds": {"type": "number", "min": 0, "max": 3600}}',
       defaults = defaults || '{"max_cycle_seconds": 30}',
       description = description || ' max_cycle_seconds: a catch-up step also scores at most as many minutes as '
         'fit this budget at the speed of the last finished cycle (seconds per scored minute, from '
         'anomaly.detection_runs), at least one; 0 turns the time budget off.'
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
  v_budget double precision := (v_engine ->> 'max_cycle_seconds')::double precision;
  v_seconds_per_minute double precision;
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
  -- ... and of as many minutes as fit max_cycle_seconds at the speed of the last finished cycle that scored any
  -- (at least one): a large installation catches up in shorter steps than a small one
  if v_budget > 0 and v_through - v_from > interval '1 minute' then
    select extract(epoch from r.finished_at - r.started_at) / (extract(epoch from r.scored_through - r.scored_from) / 60)
      into v_seconds_per_minute
    from anomaly.detection_runs r
    where r.finished_at is not null and r.scored_through > r.scored_from
    order by r.id desc
    limit 1;
    if v_seconds_per_minute > 0 then
      -- (20160: the largest max_minutes_per_cycle; keeps the cast in range for a very fast last cycle)
      v_through := least(v_through, v_from + make_interval(
        mins => greatest(1, least(floor(v_budget / v_seconds_per_minute), 20160))::integer));
    end if;
  end if;

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
  'detect.engine.max_minutes_per_cycle minutes per call, and at most as many as fit detect.engine.max_cycle_seconds '
  'at the speed of the last finished cycle: after downtime the following cycles catch up. A failing '
  'detector is skipped and logged. Returns (hits, opened, updated, resolved, scored_through). '
  'Example: select * from anomaly.detect();';
