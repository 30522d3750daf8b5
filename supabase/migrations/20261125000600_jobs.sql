-- 20261125000600_jobs.sql — the job registry: one row per periodic job, kept in sync with pg_cron.
-- SQL jobs run their command; HTTP jobs call an edge function through net.http_post with the project URL
-- and service key read from Vault (the pattern Supabase documents). Changing a row reschedules it at once;
-- where pg_cron is absent the local runner executes the same cron.job rows.

create table anomaly.jobs (
  name text primary key,
  schedule text not null,
  kind text not null,
  command text not null,
  body jsonb not null default '{}'::jsonb,
  timeout_ms integer not null default 5000,
  enabled boolean not null default true,
  description text not null default '',
  updated_at timestamptz not null default now(),
  constraint jobs_name_check check (name ~ '^[a-z][a-z0-9-]{1,40}$'),
  constraint jobs_kind_check check (kind in ('sql', 'http')),
  constraint jobs_schedule_check check (
    schedule ~ '^[0-9]+ seconds$'
    or schedule ~ '^(\S+\s+){4}\S+$'),
  constraint jobs_http_command_check check (kind <> 'http' or command ~ '^[A-Za-z][A-Za-z0-9_-]*$'),
  constraint jobs_timeout_check check (timeout_ms between 100 and 600000)
);
comment on table anomaly.jobs is
  'Every periodic job of Trace Sentinel. kind=sql: command is SQL; kind=http: command is an edge function name called with '
  'body through net.http_post. Rows are registered with pg_cron as "trace-sentinel:<name>" by a trigger, so an update '
  '(schedule, enabled) takes effect without redeploying.';

create function anomaly.job_cron_command(p_job anomaly.jobs)
returns text
language sql
stable
set search_path = ''
as $$
  select case p_job.kind
    when 'sql' then p_job.command
    else format(
      'select net.http_post(url := (select decrypted_secret from vault.decrypted_secrets where name = %L) || %L, '
      'headers := jsonb_build_object(%L, %L, %L, %L || (select decrypted_secret from vault.decrypted_secrets where name = %L)), '
      'body := %L::jsonb, timeout_milliseconds := %s)',
      'project_url', '/functions/v1/' || p_job.command,
      'Content-Type', 'application/json', 'Authorization', 'Bearer ', 'service_role_key',
      p_job.body::text, p_job.timeout_ms)
  end
$$;
comment on function anomaly.job_cron_command(anomaly.jobs) is
  'The SQL pg_cron runs for a job: the command itself, or for an HTTP job a net.http_post to '
  '<vault project_url>/functions/v1/<command> with the vault service_role_key as bearer token.';

create function anomaly.sync_job(p_name text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_job anomaly.jobs;
  v_cron_name text := 'trace-sentinel:' || p_name;
begin
  select * into v_job from anomaly.jobs where name = p_name;
  if found and v_job.enabled then
    perform cron.schedule(v_cron_name, v_job.schedule, anomaly.job_cron_command(v_job));
  elsif exists (select 1 from cron.job where jobname = v_cron_name) then
    perform cron.unschedule(v_cron_name);
  end if;
end
$$;
comment on function anomaly.sync_job(text) is
  'Makes pg_cron match the job row: schedules (upsert) an enabled job, unschedules a disabled or deleted one.';

create function anomaly.tg_jobs__sync()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and (tg_op = 'DELETE' or old.name <> new.name) then
    perform anomaly.sync_job(old.name);
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform anomaly.sync_job(new.name);
  end if;
  return null;
end
$$;
comment on function anomaly.tg_jobs__sync() is 'AFTER row trigger on anomaly.jobs: re-registers the changed job with pg_cron.';

create function anomaly.tg_jobs__touch()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
comment on function anomaly.tg_jobs__touch() is 'BEFORE UPDATE trigger on anomaly.jobs: stamps updated_at.';

create trigger tg_10_touch before update on anomaly.jobs
  for each row execute function anomaly.tg_jobs__touch();
create trigger tg_20_sync after insert or update or delete on anomaly.jobs
  for each row execute function anomaly.tg_jobs__sync();

insert into anomaly.jobs (name, schedule, kind, command, description) values
  ('rollup-detect', '* * * * *', 'sql', 'select anomaly.rollup(); select anomaly.detect();',
   'Every minute: roll staged spans up into per-minute series, then run the detectors on complete minutes.'),
  ('retention', '17 * * * *', 'sql',
   'select anomaly.ensure_span_partition((now() at time zone ''UTC'')::date + 1); '
   'select anomaly.drop_old_span_partitions(); select anomaly.drop_old_rollups(); analyze anomaly.spans;',
   'Hourly: create tomorrow''s span partition, drop expired span partitions and rollups, and refresh the '
   'statistics of the partitioned spans table (autovacuum analyzes only its partitions).'),
  ('cron-history-cleanup', '42 3 * * *', 'sql',
   'delete from cron.job_run_details where end_time < now() - interval ''7 days''',
   'Daily: prune pg_cron run history, which pg_cron never prunes itself.');

grant select, insert, update, delete on anomaly.jobs to service_role;
grant execute on function anomaly.sync_job(text), anomaly.job_cron_command(anomaly.jobs) to service_role;
