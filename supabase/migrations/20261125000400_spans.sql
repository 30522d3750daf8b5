-- 20261125000400_spans.sql — staging spans: daily range partitions, idempotent batch ingest, ingest keys.
-- Every ingest path (OTLP push, Tempo pull, replay) calls anomaly.ingest_spans(json) with rows shaped
-- like functions/_shared/spans.ts. Re-sending a span stores nothing twice: the key is
-- (start_time, trace_id, span_id) because a partitioned table's unique key must hold the partition column,
-- and a re-sent span carries the same start time.

-- ============================================================== spans
create table anomaly.spans (
  start_time timestamptz not null,
  trace_id text not null,
  span_id text not null,
  parent_span_id text,
  end_time timestamptz not null,
  duration_ns bigint not null,
  service_name text not null,
  service_version text,
  service_instance text,
  name text not null,
  kind smallint not null,
  status_code smallint not null,
  status_message text,
  http_status_code smallint,
  http_route text,
  http_method text,
  scope_name text,
  resource_attributes jsonb not null default '{}'::jsonb,
  attributes jsonb not null default '{}'::jsonb,
  events jsonb not null default '[]'::jsonb,
  ingested_at timestamptz not null default now(),
  constraint spans_pkey primary key (start_time, trace_id, span_id),
  constraint spans_trace_id_check check (trace_id ~ '^[0-9a-f]{32}$'),
  constraint spans_span_id_check check (span_id ~ '^[0-9a-f]{16}$'),
  constraint spans_parent_span_id_check check (parent_span_id is null or parent_span_id ~ '^[0-9a-f]{16}$'),
  constraint spans_time_order_check check (end_time >= start_time and duration_ns >= 0),
  constraint spans_kind_check check (kind between 0 and 5),
  constraint spans_status_code_check check (status_code between 0 and 2),
  constraint spans_http_status_check check (http_status_code is null or http_status_code between 100 and 599)
) partition by range (start_time);

comment on table anomaly.spans is
  'Staged spans, one daily partition per UTC day (anomaly.spans_pYYYYMMDD), idempotent on (start_time, trace_id, span_id). '
  'Attributes are stored after redaction. Kept span_retention_days (config key rollup) by anomaly.drop_old_span_partitions().';
comment on column anomaly.spans.kind is 'OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.';
comment on column anomaly.spans.status_code is 'OTLP Status.code: 0 unset, 1 ok, 2 error.';

create index spans_trace_idx on anomaly.spans (trace_id, span_id);
create index spans_service_time_idx on anomaly.spans (service_name, start_time);

-- ============================================================== partitions
create function anomaly.ensure_span_partition(p_day date)
returns regclass
language plpgsql
set search_path = ''
as $$
declare
  v_name text := 'spans_p' || to_char(p_day, 'YYYYMMDD');
  v_rel regclass := to_regclass('anomaly.' || v_name);
begin
  if v_rel is not null then
    return v_rel;
  end if;
  -- Serialise creators of the same day. The re-check after the lock can still miss a partition another session
  -- just committed (an advisory lock does not refresh this backend's catalog cache), so "already exists" is
  -- treated as success: whoever created it, the partition is there.
  perform pg_advisory_xact_lock(hashtext('anomaly.spans'), (p_day - date '2000-01-01'));
  begin
    execute format(
      'create table if not exists anomaly.%I partition of anomaly.spans for values from (%L) to (%L)',
      v_name, p_day::timestamp at time zone 'UTC', (p_day + 1)::timestamp at time zone 'UTC'
    );
  exception when duplicate_table or unique_violation then
    null;
  end;
  return ('anomaly.' || quote_ident(v_name))::regclass;
end
$$;
comment on function anomaly.ensure_span_partition(date) is
  'Creates the daily partition of anomaly.spans for a UTC day if it is missing and returns it. Safe under concurrency. '
  'Example: select anomaly.ensure_span_partition(current_date + 1).';

create function anomaly.drop_old_span_partitions(p_keep_days integer default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_keep integer := coalesce(p_keep_days, (anomaly.config('rollup') ->> 'span_retention_days')::integer);
  v_cutoff date := (now() at time zone 'UTC')::date - v_keep;
  v_part record;
  v_dropped integer := 0;
begin
  for v_part in
    select c.relname
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'anomaly.spans'::regclass
      and c.relname ~ '^spans_p[0-9]{8}$'
      and to_date(substr(c.relname, 8), 'YYYYMMDD') < v_cutoff
  loop
    execute format('drop table anomaly.%I', v_part.relname);
    v_dropped := v_dropped + 1;
  end loop;
  return v_dropped;
end
$$;
comment on function anomaly.drop_old_span_partitions(integer) is
  'Retention: drops daily span partitions older than p_keep_days (default: config rollup.span_retention_days). Returns how many.';

-- ============================================================== ingest keys
create table anomaly.ingest_keys (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  key_sha256 text not null unique,
  created_at timestamptz not null default now(),
  revoked_at timestamptz,
  last_used_at timestamptz,
  constraint ingest_keys_hash_check check (key_sha256 ~ '^[0-9a-f]{64}$'),
  constraint ingest_keys_name_check check (length(name) between 1 and 128)
);
comment on table anomaly.ingest_keys is
  'Keys accepted by the ingest endpoints (header x-ingest-key). Only the SHA-256 of a key is stored.';

create function anomaly.create_ingest_key(p_name text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_key text := 'tsk_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
begin
  insert into anomaly.ingest_keys (name, key_sha256)
  values (p_name, encode(sha256(convert_to(v_key, 'UTF8')), 'hex'));
  return v_key;
end
$$;
comment on function anomaly.create_ingest_key(text) is
  'Creates an ingest key and returns it in plain text, once (only its SHA-256 is kept). '
  'Example: select anomaly.create_ingest_key(''collector-eu'');';

create function anomaly.authenticate_ingest_key(p_key text)
returns uuid
language sql
set search_path = ''
as $$
  update anomaly.ingest_keys
     set last_used_at = now()
   where key_sha256 = encode(sha256(convert_to(p_key, 'UTF8')), 'hex')
     and revoked_at is null
  returning id
$$;
comment on function anomaly.authenticate_ingest_key(text) is
  'Returns the id of the live ingest key matching p_key (and stamps last_used_at), or NULL.';

create function anomaly.revoke_ingest_key(p_name text)
returns integer
language sql
set search_path = ''
as $$
  with revoked as (
    update anomaly.ingest_keys set revoked_at = now()
    where name = p_name and revoked_at is null
    returning 1
  )
  select count(*)::integer from revoked
$$;
comment on function anomaly.revoke_ingest_key(text) is 'Revokes every live ingest key with this name; returns how many.';

-- ============================================================== rollup bookkeeping written by ingest
create table anomaly.rollup_dirty (
  bucket timestamptz not null,
  service_name text not null,
  operation text not null,
  marked_at timestamptz not null default now(),
  primary key (bucket, service_name, operation)
);
comment on table anomaly.rollup_dirty is
  'Series-minutes touched by ingest since the last rollup. Ingest marks them in the same transaction as the spans; '
  'anomaly.rollup() consumes them in the transaction that rewrites their rollup rows, so nothing is missed or counted twice.';

create table anomaly.open_traces (
  trace_id text primary key,
  first_start timestamptz not null,
  last_end timestamptz not null,
  span_count integer not null,
  last_ingested_at timestamptz not null default now()
);
comment on table anomaly.open_traces is
  'Traces with spans staged but no feature row yet. A trace is finished when it has been idle for rollup.trace_idle_seconds '
  '(in processing time, or in event time behind the watermark for back-dated data); anomaly.rollup() then writes its feature row.';

-- ============================================================== ingest
create type anomaly.ingest_result as (received integer, inserted integer);
comment on type anomaly.ingest_result is 'Result of anomaly.ingest_spans: spans received and spans newly stored (the rest were duplicates).';

create function anomaly.ingest_spans(p_spans json)
returns anomaly.ingest_result
language plpgsql
set search_path = ''
as $$
declare
  v_result anomaly.ingest_result;
  v_day date;
begin
  if p_spans is null or json_typeof(p_spans) <> 'array' then
    raise exception using errcode = 'TSI01', message = 'ingest_spans expects a JSON array of spans',
      detail = format('got %s', coalesce(json_typeof(p_spans), 'NULL')),
      hint = 'Pass rows shaped like functions/_shared/spans.ts StagedSpan.';
  end if;
  v_result.received := json_array_length(p_spans);
  if v_result.received = 0 then
    v_result.inserted := 0;
    return v_result;
  end if;

  -- Partitions first (a cheap second pass over the JSON reads only start_time).
  for v_day in
    select distinct (r.start_time at time zone 'UTC')::date
    from json_to_recordset(p_spans) as r(start_time timestamptz)
    where r.start_time is not null
  loop
    perform anomaly.ensure_span_partition(v_day);
  end loop;

  with inserted as (
    insert into anomaly.spans (
      start_time, trace_id, span_id, parent_span_id, end_time, duration_ns, service_name, service_version,
      service_instance, name, kind, status_code, status_message, http_status_code, http_route, http_method,
      scope_name, resource_attributes, attributes, events)
    select r.start_time, r.trace_id, r.span_id, r.parent_span_id, r.end_time, r.duration_ns, r.service_name,
           r.service_version, r.service_instance, r.name, r.kind, r.status_code, r.status_message,
           r.http_status_code, r.http_route, r.http_method, r.scope_name,
           coalesce(r.resource_attributes, '{}'), coalesce(r.attributes, '{}'), coalesce(r.events, '[]')
    from json_to_recordset(p_spans) as r(
      start_time timestamptz, trace_id text, span_id text, parent_span_id text, end_time timestamptz,
      duration_ns bigint, service_name text, service_version text, service_instance text, name text,
      kind smallint, status_code smallint, status_message text, http_status_code smallint, http_route text,
      http_method text, scope_name text, resource_attributes jsonb, attributes jsonb, events jsonb)
    on conflict do nothing
    returning start_time, end_time, trace_id, service_name, name
  ),
  dirty as (
    insert into anomaly.rollup_dirty (bucket, service_name, operation)
    select distinct date_trunc('minute', start_time), service_name, name from inserted
    order by 1, 2, 3
    on conflict do nothing
    returning 1
  ),
  traces as (
    insert into anomaly.open_traces as t (trace_id, first_start, last_end, span_count)
    select trace_id, min(start_time), max(end_time), count(*) from inserted group by trace_id
    order by trace_id
    on conflict (trace_id) do update set
      first_start = least(t.first_start, excluded.first_start),
      last_end = greatest(t.last_end, excluded.last_end),
      span_count = t.span_count + excluded.span_count,
      last_ingested_at = now()
    returning 1
  )
  select count(*) into v_result.inserted from inserted;
  return v_result;
end
$$;
comment on function anomaly.ingest_spans(json) is
  'Stores a batch of already validated and redacted spans (JSON array of functions/_shared/spans.ts rows) in one statement, '
  'skipping spans already stored; marks the touched series-minutes for rollup and the traces for feature extraction, in the '
  'same transaction. Returns (received, inserted). Raises TSI01 for a malformed batch. Idempotent: a re-sent batch inserts 0.';

grant select, insert, update, delete on all tables in schema anomaly to service_role;
grant execute on function anomaly.ingest_spans(json), anomaly.create_ingest_key(text),
  anomaly.authenticate_ingest_key(text), anomaly.revoke_ingest_key(text),
  anomaly.ensure_span_partition(date), anomaly.drop_old_span_partitions(integer) to service_role;
