-- 20261125001010_tempo_runs.sql — the run protocol tempo-ingest follows for each source: take the lease
-- (tempo_begin_run), commit data and advance the cursor in one transaction (tempo_checkpoint beside
-- anomaly.ingest_spans), count a trace that keeps failing (tempo_note_failure), and hand the lease back
-- (tempo_finish_run). A run that loses its lease cannot move the cursor (TST02), so overlapping runs never race.

-- ============================================================== begin
create function anomaly.tempo_begin_run(p_source text, p_owner uuid)
returns table (run_id bigint, source jsonb)
language plpgsql
set search_path = ''
as $$
declare
  v_src anomaly.tempo_sources;
begin
  -- Two runs racing for a source: the one that locks the row first decides; the other skips the locked row and
  -- gets nothing (SKIP LOCKED), as it also does while a checkpoint of the lease holder has the row locked.
  select * into v_src from anomaly.tempo_sources s
   where s.name = p_source and s.enabled
   for update skip locked;
  if not found
     or (v_src.lease_until >= clock_timestamp() and v_src.lease_owner is distinct from p_owner) then
    return;
  end if;
  update anomaly.tempo_sources s
     set lease_owner = p_owner,
         lease_until = clock_timestamp() + make_interval(secs => s.lease_seconds),
         last_run_at = now()
   where s.name = p_source
  returning * into v_src;
  -- A run still marked running holds no lease any more: its process died (or overran its lease).
  update anomaly.tempo_runs r set status = 'abandoned', finished_at = clock_timestamp(),
         error = coalesce(r.error, 'the run ended without finishing (process killed or lease expired)')
   where r.source = p_source and r.status = 'running';
  insert into anomaly.tempo_runs (source, mode, owner, cursor_before, cursor_after)
  values (v_src.name, v_src.mode, p_owner, v_src.cursor, v_src.cursor)
  returning id into run_id;
  source := to_jsonb(v_src) - 'lease_owner' - 'lease_until';
  return next;
end
$$;
comment on function anomaly.tempo_begin_run(text, uuid) is
  'Takes the lease of an enabled Tempo source for p_owner (a random id per run) and opens an anomaly.tempo_runs row; '
  'returns (run_id, source row as jsonb), or no row when the source is disabled, missing, or leased by a live run. '
  'Runs left in status running are marked abandoned. Example: select * from anomaly.tempo_begin_run(''tempo-prod'', gen_random_uuid());';

-- ============================================================== checkpoint
create function anomaly.tempo_checkpoint(
  p_run bigint,
  p_owner uuid,
  p_cursor timestamptz default null,
  p_counters jsonb default '{}'::jsonb,
  p_skips jsonb default '[]'::jsonb
)
returns timestamptz
language plpgsql
set search_path = ''
as $$
declare
  v_src anomaly.tempo_sources;
  v_run anomaly.tempo_runs;
begin
  select * into v_run from anomaly.tempo_runs where id = p_run;
  select * into v_src from anomaly.tempo_sources where name = v_run.source for update;
  if v_run.id is null or v_src.lease_owner is distinct from p_owner or v_run.status <> 'running' then
    raise exception using errcode = 'TST02',
      message = format('tempo run %s does not hold the lease of its source', p_run),
      detail = format('source %s is leased by %s until %s', v_run.source, v_src.lease_owner, v_src.lease_until),
      hint = 'Another run took the source over after this one overran lease_seconds; this run must stop. Raise lease_seconds if it happens often.';
  end if;
  -- The cursor only moves forward, and only here, in the transaction that commits the data it covers.
  update anomaly.tempo_sources
     set cursor = case when p_cursor is not null and (cursor is null or p_cursor > cursor) then p_cursor else cursor end,
         lease_until = clock_timestamp() + make_interval(secs => lease_seconds)
   where name = v_src.name
  returning * into v_src;
  update anomaly.tempo_runs r set
    cursor_after = v_src.cursor,
    searches = r.searches + coalesce((p_counters ->> 'searches')::integer, 0),
    splits = r.splits + coalesce((p_counters ->> 'splits')::integer, 0),
    retries = r.retries + coalesce((p_counters ->> 'retries')::integer, 0),
    traces_found = r.traces_found + coalesce((p_counters ->> 'traces_found')::integer, 0),
    traces_fetched = r.traces_fetched + coalesce((p_counters ->> 'traces_fetched')::integer, 0),
    traces_skipped = r.traces_skipped + coalesce((p_counters ->> 'traces_skipped')::integer, 0),
    spans_received = r.spans_received + coalesce((p_counters ->> 'spans_received')::integer, 0),
    spans_staged = r.spans_staged + coalesce((p_counters ->> 'spans_staged')::integer, 0),
    spans_rejected = r.spans_rejected + coalesce((p_counters ->> 'spans_rejected')::integer, 0),
    series_minutes = r.series_minutes + coalesce((p_counters ->> 'series_minutes')::integer, 0)
  where r.id = p_run;
  insert into anomaly.tempo_skipped_traces as t (source, trace_id, reason, detail, run_id)
  select v_src.name, k.trace_id, k.reason, left(k.detail, 2000), p_run
  from jsonb_to_recordset(coalesce(p_skips, '[]'::jsonb)) as k(trace_id text, reason text, detail text)
  order by k.trace_id
  on conflict (source, trace_id) do update set
    reason = excluded.reason, detail = excluded.detail, run_id = excluded.run_id, last_seen_at = now(),
    attempts = case when t.reason = excluded.reason then t.attempts else 1 end;
  -- A trace that failed before and has now been staged is no longer a problem.
  delete from anomaly.tempo_skipped_traces t
   where t.source = v_src.name and t.reason = 'failing'
     and t.trace_id in (select jsonb_array_elements_text(coalesce(p_counters -> 'recovered', '[]'::jsonb)));
  return v_src.cursor;
end
$$;
comment on function anomaly.tempo_checkpoint(bigint, uuid, timestamptz, jsonb, jsonb) is
  'Called inside the transaction that stages a batch of pulled spans (anomaly.ingest_spans): checks the run still '
  'holds its lease (else TST02), moves the cursor forward to p_cursor (NULL keeps it: a part of a range), renews the '
  'lease, adds p_counters to the run row and records p_skips ([{trace_id, reason, detail}]). Returns the cursor.';

-- ============================================================== failing traces
create function anomaly.tempo_note_failure(p_run bigint, p_trace_id text, p_detail text)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_source text;
  v_attempts integer;
  v_max integer := (anomaly.config('tempo') ->> 'max_fetch_attempts')::integer;
begin
  select source into v_source from anomaly.tempo_runs where id = p_run;
  insert into anomaly.tempo_skipped_traces as t (source, trace_id, reason, detail, run_id)
  values (v_source, p_trace_id, 'failing', left(p_detail, 2000), p_run)
  on conflict (source, trace_id) do update set
    attempts = case when t.run_id = excluded.run_id then t.attempts else t.attempts + 1 end,
    reason = case when t.reason in ('failing', 'gave_up') then t.reason else 'failing' end,
    detail = excluded.detail, run_id = excluded.run_id, last_seen_at = now()
  returning attempts into v_attempts;
  if v_attempts >= v_max then
    update anomaly.tempo_skipped_traces set reason = 'gave_up'
     where source = v_source and trace_id = p_trace_id;
    return true;
  end if;
  return false;
end
$$;
comment on function anomaly.tempo_note_failure(bigint, text, text) is
  'Records that a trace could not be fetched after every retry (429/5xx/timeouts) in this run. Returns true once it '
  'has failed in tempo.max_fetch_attempts runs: the caller then skips it (reason gave_up) instead of holding the cursor.';

-- ============================================================== finish
create function anomaly.tempo_finish_run(p_run bigint, p_owner uuid, p_status text, p_error text default null,
  p_details jsonb default '{}'::jsonb, p_window_end timestamptz default null)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_source text;
begin
  if p_status not in ('ok', 'incomplete', 'failed') then
    raise exception using errcode = 'TST03', message = format('a tempo run finishes as ok, incomplete or failed, not %s', p_status),
      hint = 'ok: caught up; incomplete: budget spent; failed: an error stopped it.';
  end if;
  update anomaly.tempo_runs set status = p_status, finished_at = clock_timestamp(), error = left(p_error, 4000),
         details = details || coalesce(p_details, '{}'::jsonb), window_end = coalesce(p_window_end, window_end)
   where id = p_run and status = 'running' and owner = p_owner
  returning source into v_source;
  update anomaly.tempo_sources set lease_owner = null, lease_until = null, last_error = left(p_error, 4000)
   where name = v_source and lease_owner = p_owner;
end
$$;
comment on function anomaly.tempo_finish_run(bigint, uuid, text, text, jsonb, timestamptz) is
  'Closes a run (ok | incomplete | failed, else TST03) with its error and details, and releases the source''s lease '
  'if this run still holds it.';

-- ============================================================== retention
create function anomaly.drop_old_tempo_runs(p_keep_days integer default null)
returns integer
language sql
set search_path = ''
as $$
  with gone as (
    delete from anomaly.tempo_runs
    where started_at < now() - make_interval(days =>
      coalesce(p_keep_days, (anomaly.config('tempo') ->> 'run_retention_days')::integer))
      and status <> 'running'
    returning 1
  )
  select count(*)::integer from gone
$$;
comment on function anomaly.drop_old_tempo_runs(integer) is
  'Retention of anomaly.tempo_runs: deletes finished runs older than p_keep_days (default tempo.run_retention_days).';

grant execute on function anomaly.tempo_begin_run(text, uuid), anomaly.tempo_checkpoint(bigint, uuid, timestamptz, jsonb, jsonb),
  anomaly.tempo_note_failure(bigint, text, text), anomaly.tempo_finish_run(bigint, uuid, text, text, jsonb, timestamptz),
  anomaly.drop_old_tempo_runs(integer) to service_role;
