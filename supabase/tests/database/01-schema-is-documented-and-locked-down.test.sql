-- 01: the schema exists as designed, every object is documented, and every public table is under RLS.
begin;
select plan(16);

select has_schema('anomaly', 'the private machinery schema exists');
select tables_are('public', array['trace_anomalies', 'anomaly_detection_config', 'system_settings', 'activity_log'],
  'public holds exactly the user-facing tables');
select is_partitioned('anomaly', 'spans', 'staging spans are partitioned');
select col_is_pk('anomaly', 'spans', array['start_time', 'trace_id', 'span_id'],
  'staging spans are unique on (start_time, trace_id, span_id)');
select has_table('anomaly', 'operation_minutes', 'per-minute operation rollups exist');
select has_table('anomaly', 'service_edge_minutes', 'per-minute service edges exist');
select has_table('anomaly', 'trace_features', 'trace feature rows exist');
select has_table('anomaly', 'jobs', 'the job registry exists');

select is_empty($$
  select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity
$$, 'every public table has row level security enabled');

select is_empty($$
  select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname in ('public', 'anomaly') and c.relkind in ('r', 'p', 'v')
    and not c.relispartition and obj_description(c.oid, 'pg_class') is null
$$, 'every table and view in public and anomaly has a COMMENT');

select is_empty($$
  select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname in ('public', 'anomaly') and obj_description(p.oid, 'pg_proc') is null
$$, 'every function in public and anomaly has a COMMENT');

select is_empty($$
  select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname in ('public', 'anomaly')
    and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c where c like 'search_path=%')
$$, 'every function pins its search_path');

select is_empty($$
  select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname = 'public' and p.prosecdef
$$, 'no security definer function lives in the exposed public schema');

select ok(not has_schema_privilege('anon', 'anomaly', 'usage'), 'anon cannot use the anomaly schema');
select ok(not has_table_privilege('authenticated', 'anomaly.spans', 'select'), 'authenticated cannot read staged spans');
select ok(not has_function_privilege('anon', 'anomaly.ingest_spans(json)', 'execute'), 'anon cannot call ingest_spans');

select * from finish();
rollback;
