-- 20: Tempo sources are validated field by field (TST01), locked away from API roles, and the tempo-ingest job
-- registry row becomes a pg_cron job calling the edge function through pg_net, following schedule changes.
begin;
select plan(24);

-- ------------------------------------------------------------------ the schedule
select is((select schedule from cron.job where jobname = 'trace-sentinel:tempo-ingest'), '* * * * *',
  'tempo-ingest is scheduled every minute');
select matches((select command from cron.job where jobname = 'trace-sentinel:tempo-ingest'),
  'net\.http_post\(url := \(select decrypted_secret from vault\.decrypted_secrets where name = ''project_url''\) \|\| ''/functions/v1/tempo-ingest''',
  'the job calls the tempo-ingest function through pg_net with the project URL from Vault');
select matches((select command from cron.job where jobname = 'trace-sentinel:tempo-ingest'),
  '''Bearer '' \|\| \(select decrypted_secret from vault\.decrypted_secrets where name = ''service_role_key''\).*timeout_milliseconds := 55000',
  'with the Vault service key as bearer token and a 55 s timeout');
update anomaly.jobs set schedule = '*/2 * * * *' where name = 'tempo-ingest';
select is((select schedule from cron.job where jobname = 'trace-sentinel:tempo-ingest'), '*/2 * * * *',
  'changing the schedule re-registers the job');
update anomaly.jobs set enabled = false where name = 'tempo-ingest';
select is_empty($$ select 1 from cron.job where jobname = 'trace-sentinel:tempo-ingest' $$,
  'disabling the job unschedules it');
update anomaly.jobs set enabled = true where name = 'tempo-ingest';
select is((select schedule from cron.job where jobname = 'trace-sentinel:tempo-ingest'), '*/2 * * * *',
  'enabling it again schedules it with its current schedule');
select matches((select command from anomaly.jobs where name = 'retention'), 'anomaly\.drop_old_tempo_runs\(\)',
  'the hourly retention job prunes old tempo runs');

-- ------------------------------------------------------------------ validation
select lives_ok($$ insert into anomaly.tempo_sources (name, base_url, tenant, auth_kind, auth_vault_secret)
                   values ('tempo-prod', 'https://tempo.example.com/tempo/', 'team-a|team-b', 'basic', 'tempo_prod_basic') $$,
  'a source with tenant and a Vault credential is accepted');
select is((select base_url from anomaly.tempo_sources where name = 'tempo-prod'), 'https://tempo.example.com/tempo',
  'the trailing slash of base_url is trimmed');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url) values ('Tempo Prod', 'http://tempo:3200') $$,
  'TST01', 'tempo source "Tempo Prod": name must be lower-case letters, digits and dashes (max 63), starting with a letter',
  'a bad name is refused with TST01');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url) values ('t1', 'tempo:3200') $$,
  'TST01', null, 'a base_url that is not http(s) is refused');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url, auth_kind) values ('t2', 'http://tempo:3200', 'bearer') $$,
  'TST01', null, 'bearer auth without a secret name is refused');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url, auth_kind, auth_vault_secret, auth_env_var)
                    values ('t3', 'http://tempo:3200', 'bearer', 'a', 'TEMPO_B') $$,
  'TST01', null, 'naming both a Vault secret and an env var is refused');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url, auth_kind, auth_env_var)
                    values ('t4', 'http://tempo:3200', 'bearer', 'SUPABASE_SERVICE_ROLE_KEY') $$,
  'TST01', 'tempo source "t4": auth_env_var must be an environment variable name starting with TEMPO_',
  'only TEMPO_* env vars can hold a credential (no other secret of the function can be sent to Tempo)');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url, mode, traceql)
                    values ('t5', 'http://tempo:3200', 'metrics', '{} | rate()') $$,
  'TST01', null, 'metrics mode takes a plain spanset filter, not a pipeline');
select throws_ok($$ insert into anomaly.tempo_sources (name, base_url, search_limit) values ('t6', 'http://tempo:3200', 300000) $$,
  'TST01', null, 'a search limit above Tempo''s max_result_limit is refused');
select throws_ok($$ update anomaly.tempo_sources set lag_seconds = -1 where name = 'tempo-prod' $$,
  'TST01', null, 'updates are validated too');

-- ------------------------------------------------------------------ privileges and documentation
select ok((select bool_and(c.relrowsecurity) from pg_class c
           where c.oid in ('anomaly.tempo_sources'::regclass, 'anomaly.tempo_runs'::regclass, 'anomaly.tempo_skipped_traces'::regclass)),
  'row level security is on for the tempo tables');
select ok(not has_table_privilege('authenticated', 'anomaly.tempo_sources', 'select'),
  'authenticated cannot read tempo sources');
select ok(not has_function_privilege('authenticated', 'anomaly.tempo_checkpoint(bigint, uuid, timestamptz, jsonb, jsonb)', 'execute')
          and not has_function_privilege('anon', 'anomaly.tempo_begin_run(text, uuid)', 'execute'),
  'API roles cannot run the pull protocol');
select ok(has_function_privilege('service_role', 'anomaly.tempo_begin_run(text, uuid)', 'execute')
          and has_function_privilege('service_role', 'anomaly.tempo_store_minutes(bigint, uuid, json, timestamptz, jsonb)', 'execute'),
  'service_role can');
select is_empty($$ select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'anomaly' and p.proname like '%tempo%' and obj_description(p.oid, 'pg_proc') is null $$,
  'every tempo function is documented');

-- ------------------------------------------------------------------ shared configuration
select is(anomaly.config('tempo'), '{"max_fetch_attempts": 3, "run_retention_days": 14}'::jsonb,
  'the tempo config key has its defaults');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('tempo', '{"max_fetch_attempts": 0}') $$,
  'TSC01', null, 'tempo config values are validated');

select * from finish();
rollback;
