-- scripts/test/pgtap-helpers.sql — fixtures for the pgTAP suite (supabase/tests/database), in schema `tests`.
-- Applied by scripts/test/pgtap.sh after the migrations and before pg_prove; never part of a migration.
-- Same spirit as basejump's supabase_test_helpers: make a span, seed a series, authenticate as a role.

-- pgTAP as an extension where the server has it (PG15 test cluster); the embedded PG17 has no pgTAP package,
-- so scripts/test/pgtap-embedded.ts loads Debian's plain pgtap.sql into schema extensions first.
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pgtap') then
    create extension if not exists pgtap with schema extensions;
  end if;
end
$$;
create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- One staged span as ingest_spans() expects it. Ids are derived from seeds so tests read well.
create or replace function tests.span(
  p_trace integer, p_span integer, p_start timestamptz, p_duration_ms double precision,
  p_service text default 'api', p_operation text default 'GET /items', p_status integer default 0,
  p_parent integer default null, p_version text default '1.0.0', p_attributes jsonb default '{}'::jsonb,
  p_resource jsonb default '{}'::jsonb
) returns jsonb language sql immutable set search_path = '' as $$
  select jsonb_build_object(
    'trace_id', lpad(to_hex(p_trace), 32, '0'),
    'span_id', lpad(to_hex(p_span), 16, '0'),
    'parent_span_id', case when p_parent is null then null else lpad(to_hex(p_parent), 16, '0') end,
    'start_time', p_start,
    'end_time', p_start + make_interval(secs => p_duration_ms / 1000.0),
    'duration_ns', (p_duration_ms * 1e6)::bigint,
    'service_name', p_service, 'service_version', p_version, 'service_instance', null,
    'name', p_operation, 'kind', 2, 'status_code', p_status, 'status_message', null,
    'http_status_code', case when p_status = 2 then 500 else 200 end, 'http_route', null, 'http_method', 'GET',
    'scope_name', 'tests', 'resource_attributes', p_resource, 'attributes', p_attributes, 'events', '[]'::jsonb)
$$;

-- A synthetic series: p_minutes minutes from p_from, p_per_minute spans each, latency from p_latency(minute index)
-- given as an array (cycled), errors every p_error_every-th span (0 = none). Returns the spans as a JSON array.
create or replace function tests.series(
  p_from timestamptz, p_minutes integer, p_per_minute integer, p_latency double precision[],
  p_service text default 'api', p_operation text default 'GET /items', p_error_every integer default 0,
  p_trace_base integer default 1000000
) returns json language sql immutable set search_path = '' as $$
  select json_agg(tests.span(
    p_trace_base + m * p_per_minute + i, p_trace_base + m * p_per_minute + i,
    p_from + make_interval(mins => m, secs => (i * 50.0 / p_per_minute)),
    p_latency[1 + (m % array_length(p_latency, 1))] * (0.9 + 0.2 * ((i * 7919) % 100) / 100.0),
    p_service, p_operation,
    case when p_error_every > 0 and i % p_error_every = 0 then 2 else 0 end))
  from generate_series(0, p_minutes - 1) m, generate_series(0, p_per_minute - 1) i
$$;

-- Act as a signed-in user with an app role (viewer, operator, security_analyst, admin), transaction-local.
create or replace function tests.authenticate_as(p_app_role text) returns void language plpgsql set search_path = '' as $$
begin
  perform set_config('request.jwt.claims', jsonb_build_object(
    'sub', '00000000-0000-4000-8000-' || lpad(to_hex(abs(hashtext(p_app_role))), 12, '0'),
    'role', 'authenticated', 'app_metadata', jsonb_build_object('role', p_app_role))::text, true);
  execute 'set local role authenticated';
end
$$;

create or replace function tests.clear_authentication() returns void language plpgsql set search_path = '' as $$
begin
  perform set_config('request.jwt.claims', '', true);
  execute 'reset role';
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;
-- pgTAP itself must be callable while a test acts as another role.
grant execute on all functions in schema extensions to anon, authenticated, service_role;

-- One trace as a call chain: hop k (1-based, span id k) is the child of hop k-1 and the parent of hop k+1. Each hop is
-- {"service", "operation", "self_ms", optional "version", "status", "attributes", "resource"}; a span lasts its own
-- self_ms plus its child's duration, and its child starts after half of its self time, so children nest inside their
-- parents and every span's self time is exactly its self_ms. Returns the spans as a JSON array for ingest_spans.
-- Example: select anomaly.ingest_spans(tests.chain(1, '2026-03-01 00:00+00',
--   '[{"service": "frontend", "operation": "GET /", "self_ms": 10}, {"service": "db", "operation": "SELECT", "self_ms": 5}]'));
create or replace function tests.chain(p_trace integer, p_start timestamptz, p_hops jsonb) returns json
language sql immutable set search_path = '' as $$
  select json_agg(tests.span(
    p_trace, h.k::integer, p_start + make_interval(secs => h.before_ms / 1000.0), h.duration_ms,
    h.hop ->> 'service', h.hop ->> 'operation', coalesce((h.hop ->> 'status')::integer, 0),
    case when h.k > 1 then h.k::integer - 1 end, coalesce(h.hop ->> 'version', '1.0.0'),
    coalesce(h.hop -> 'attributes', '{}'::jsonb), coalesce(h.hop -> 'resource', '{}'::jsonb)) order by h.k)
  from (
    select e.hop, e.k,
           sum((e.hop ->> 'self_ms')::double precision) over (order by e.k desc) as duration_ms,
           coalesce(sum((e.hop ->> 'self_ms')::double precision / 2)
                      over (order by e.k rows between unbounded preceding and 1 preceding), 0) as before_ms
    from jsonb_array_elements(p_hops) with ordinality as e(hop, k)
  ) h
$$;
grant execute on function tests.chain(integer, timestamptz, jsonb) to anon, authenticated, service_role;
