-- 20261125001020_tempo_metrics.sql — metrics mode of a Tempo source: per-minute aggregates read from TraceQL
-- metrics (span counts, errors, p50/p95/p99) land in the same anomaly.operation_minutes rows that rollup() writes
-- from staged spans, so every detector runs unchanged. Idempotent per (service, operation, minute): a minute
-- read again is overwritten with Tempo's answer. The histogram is synthesised from the quantiles (README).

create function anomaly.tempo_store_minutes(p_run bigint, p_owner uuid, p_minutes json, p_cursor timestamptz,
  p_counters jsonb default '{}'::jsonb)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows integer;
  v_max timestamptz;
  v_lateness interval := make_interval(secs => (anomaly.config('rollup') ->> 'allowed_lateness_seconds')::integer);
begin
  if p_minutes is null or json_typeof(p_minutes) <> 'array' then
    raise exception using errcode = 'TST04', message = 'tempo_store_minutes expects a JSON array of minute rows',
      detail = format('got %s', coalesce(json_typeof(p_minutes), 'NULL')),
      hint = 'Pass rows shaped like functions/_shared/tempo/metrics.ts MinuteRow.';
  end if;
  -- Lease check and cursor first: the same transaction then writes the minutes the cursor covers.
  perform anomaly.tempo_checkpoint(p_run, p_owner, p_cursor, p_counters);

  with rows as (
    select r.*
    from json_to_recordset(p_minutes) as r(
      service_name text, operation text, bucket timestamptz, span_count integer, error_count integer,
      duration_sum_ms double precision, duration_min_ms double precision, duration_max_ms double precision,
      latency_histogram jsonb, versions jsonb, slowest_trace_id text)
    where r.span_count > 0 and r.bucket = date_trunc('minute', r.bucket)
  ),
  upserted as (
    insert into anomaly.operation_minutes as o (
      service_name, operation, bucket, span_count, error_count, http_5xx_count, duration_sum_ms, duration_min_ms,
      duration_max_ms, latency_histogram, versions, slowest_trace_id, updated_at)
    select service_name, operation, bucket, span_count, least(greatest(error_count, 0), span_count), 0,
           duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram, coalesce(versions, '{}'),
           case when slowest_trace_id ~ '^[0-9a-f]{32}$' then slowest_trace_id end, now()
    from rows
    order by service_name, operation, bucket
    on conflict (service_name, operation, bucket) do update set
      span_count = excluded.span_count, error_count = excluded.error_count,
      duration_sum_ms = excluded.duration_sum_ms, duration_min_ms = excluded.duration_min_ms,
      duration_max_ms = excluded.duration_max_ms, latency_histogram = excluded.latency_histogram,
      versions = excluded.versions, slowest_trace_id = excluded.slowest_trace_id, updated_at = now()
    returning 1
  )
  select count(*)::integer into v_rows from upserted;

  -- Minutes before the cursor are complete in Tempo: let detection score them (the watermark trails the newest
  -- event by the rollup's allowed lateness, as for staged spans).
  v_max := date_trunc('minute', p_cursor);
  if v_max is not null then
    update anomaly.rollup_state set
      max_event_time = greatest(max_event_time, v_max),
      watermark = greatest(max_event_time, v_max) - v_lateness;
  end if;
  update anomaly.tempo_runs set series_minutes = series_minutes + v_rows where id = p_run;
  return v_rows;
end
$$;
comment on function anomaly.tempo_store_minutes(bigint, uuid, json, timestamptz, jsonb) is
  'Metrics mode: in one transaction checks the run''s lease (TST02), upserts the minute rows ([{service_name, '
  'operation, bucket, span_count, error_count, duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram, '
  'versions, slowest_trace_id}]) into anomaly.operation_minutes, moves the cursor to p_cursor and the rollup '
  'watermark with it. Raises TST04 for a malformed batch. Returns the rows written.';

grant execute on function anomaly.tempo_store_minutes(bigint, uuid, json, timestamptz, jsonb) to service_role;
