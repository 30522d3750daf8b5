-- scripts/local/compat.sql — Supabase platform objects for a plain Postgres (local dev, tests, demo).
-- Applied BEFORE the migrations, and only where Supabase's own objects are missing, so the SQL in
-- supabase/migrations stays byte-identical to what runs on a Supabase project. Every block is guarded
-- and the whole file can be re-run. Nothing here is ever applied to a Supabase project.
--
-- What it provides (shapes follow shared/reference/integration-facts.md §3):
--   roles anon, authenticated, service_role (BYPASSRLS), authenticator
--   auth.uid(), auth.role(), auth.email(), auth.jwt()      read request.jwt.claim(s) like Supabase's
--   realtime.messages, realtime.send(), realtime.topic()   send() also pg_notify('realtime_broadcast')
--   net.http_request_queue, net._http_response, net.http_post(), net.http_get()   (drained by the local runner)
--   vault.secrets, vault.create_secret(), vault.update_secret(), vault.decrypted_secrets
--   cron.job, cron.job_run_details, cron.schedule(), cron.unschedule()   only where pg_cron cannot be created

-- ---------------------------------------------------------------- roles
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator noinherit login;
  end if;
end
$$;

grant anon, authenticated, service_role to authenticator;
grant usage on schema public to anon, authenticated, service_role;
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- ---------------------------------------------------------------- auth
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

do $$
begin
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
  end if;
  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $f$;
  end if;
  if to_regprocedure('auth.email()') is null then
    create function auth.email() returns text language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.email', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
      )::text
    $f$;
  end if;
  if to_regprocedure('auth.jwt()') is null then
    create function auth.jwt() returns jsonb language sql stable as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
      )::jsonb
    $f$;
  end if;
end
$$;

grant execute on all functions in schema auth to anon, authenticated, service_role;

-- ---------------------------------------------------------------- realtime
create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;

create table if not exists realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null default 'broadcast',
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  primary key (id)
);
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to anon, authenticated, service_role;

do $$
begin
  if to_regprocedure('realtime.topic()') is null then
    create function realtime.topic() returns text language sql stable as $f$
      select nullif(current_setting('realtime.topic', true), '')::text
    $f$;
  end if;
  if to_regprocedure('realtime.send(jsonb,text,text,boolean)') is null then
    -- Like Supabase's: inserts a broadcast message and swallows every error with a WARNING.
    -- Locally it also notifies 'realtime_broadcast' so the runner can relay it over SSE.
    create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void language plpgsql as $f$
    declare
      v_payload jsonb := case when payload ? 'id' then payload
                              else payload || jsonb_build_object('id', gen_random_uuid()) end;
      v_id uuid := gen_random_uuid();
    begin
      perform set_config('realtime.topic', topic, true);
      insert into realtime.messages (id, payload, event, topic, private, extension)
      values (v_id, v_payload, event, topic, private, 'broadcast');
      perform pg_notify('realtime_broadcast', json_build_object('id', v_id)::text);
    exception when others then
      raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
    end
    $f$;
  end if;
end
$$;

grant execute on all functions in schema realtime to anon, authenticated, service_role;

-- ---------------------------------------------------------------- net (pg_net shape)
do $$
begin
  if not exists (select 1 from pg_available_extensions where name = 'pg_net')
     and to_regclass('net.http_request_queue') is null then
    create schema net;
    create table net.http_request_queue (
      id bigserial primary key,
      method text not null check (method in ('GET', 'POST', 'DELETE')),
      url text not null,
      headers jsonb,
      body bytea,
      timeout_milliseconds integer not null
    );
    create table net._http_response (
      id bigint,
      status_code integer,
      content_type text,
      headers jsonb,
      content text,
      timed_out boolean,
      error_msg text,
      created timestamptz not null default now()
    );
    create function net.http_post(
      url text,
      body jsonb default '{}'::jsonb,
      params jsonb default '{}'::jsonb,
      headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
      timeout_milliseconds integer default 5000
    ) returns bigint language plpgsql as $f$
    declare
      v_id bigint;
      v_url text := url;
    begin
      if coalesce(headers ->> 'Content-Type', 'application/json') <> 'application/json' then
        raise exception 'Content-Type header must be "application/json"';
      end if;
      if params is not null and params <> '{}'::jsonb then
        select v_url || '?' || string_agg(format('%s=%s', key, value), '&') into v_url
        from jsonb_each_text(params);
      end if;
      insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
      values ('POST', v_url, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
      returning id into v_id;
      perform pg_notify('net_request', v_id::text);
      return v_id;
    end
    $f$;
    create function net.http_get(
      url text,
      params jsonb default '{}'::jsonb,
      headers jsonb default '{}'::jsonb,
      timeout_milliseconds integer default 5000
    ) returns bigint language plpgsql as $f$
    declare
      v_id bigint;
    begin
      insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
      values ('GET', url, headers, null, timeout_milliseconds)
      returning id into v_id;
      perform pg_notify('net_request', v_id::text);
      return v_id;
    end
    $f$;
  end if;
end
$$;

-- ---------------------------------------------------------------- vault (storage only; no encryption locally)
do $$
begin
  if to_regclass('vault.secrets') is null then
    create schema vault;
    create table vault.secrets (
      id uuid primary key default gen_random_uuid(),
      name text unique,
      description text not null default '',
      secret text not null,
      key_id uuid,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create view vault.decrypted_secrets as
      select id, name, description, secret, secret as decrypted_secret, key_id, created_at, updated_at
      from vault.secrets;
    create function vault.create_secret(
      new_secret text, new_name text default null, new_description text default '', new_key_id uuid default null
    ) returns uuid language sql as $f$
      insert into vault.secrets (secret, name, description, key_id)
      values (new_secret, new_name, new_description, new_key_id)
      returning id
    $f$;
    create function vault.update_secret(
      secret_id uuid, new_secret text default null, new_name text default null,
      new_description text default null, new_key_id uuid default null
    ) returns void language sql as $f$
      update vault.secrets set
        secret = coalesce(new_secret, secret),
        name = coalesce(new_name, name),
        description = coalesce(new_description, description),
        key_id = coalesce(new_key_id, key_id),
        updated_at = now()
      where id = secret_id
    $f$;
    revoke all on schema vault from public;
  end if;
end
$$;

-- ---------------------------------------------------------------- cron stand-in (only without pg_cron)
-- pg_cron can only be created in the database named by cron.database_name; any other database (a test
-- database on a cluster that has pg_cron, or a server without it) gets the stand-in the local runner drives.
do $$
begin
  if (not exists (select 1 from pg_available_extensions where name = 'pg_cron')
      or current_database() <> coalesce(current_setting('cron.database_name', true), 'postgres'))
     and to_regclass('cron.job') is null then
    create schema cron;
    create table cron.job (
      jobid bigserial primary key,
      schedule text not null,
      command text not null,
      nodename text not null default 'localhost',
      nodeport integer not null default 5432,
      database text not null default current_database(),
      username text not null default current_user,
      active boolean not null default true,
      jobname text,
      constraint jobname_username_uniq unique (jobname, username)
    );
    create table cron.job_run_details (
      jobid bigint,
      runid bigserial primary key,
      job_pid integer,
      database text,
      username text,
      command text,
      status text,
      return_message text,
      start_time timestamptz,
      end_time timestamptz
    );
    create function cron.schedule(job_name text, schedule text, command text) returns bigint
    language sql as $f$
      insert into cron.job (jobname, schedule, command)
      values (job_name, schedule, command)
      on conflict on constraint jobname_username_uniq
      do update set schedule = excluded.schedule, command = excluded.command
      returning jobid
    $f$;
    create function cron.schedule(schedule text, command text) returns bigint
    language sql as $f$
      insert into cron.job (schedule, command) values (schedule, command) returning jobid
    $f$;
    create function cron.unschedule(job_name text) returns boolean
    language plpgsql as $f$
    begin
      delete from cron.job where jobname = job_name and username = current_user;
      if not found then
        raise exception 'could not find valid entry for job ''%''', job_name;
      end if;
      return true;
    end
    $f$;
    create function cron.alter_job(
      job_id bigint, schedule text default null, command text default null,
      database text default null, username text default null, active boolean default null
    ) returns void language sql as $f$
      update cron.job set
        schedule = coalesce(alter_job.schedule, job.schedule),
        command = coalesce(alter_job.command, job.command),
        active = coalesce(alter_job.active, job.active)
      where jobid = job_id
    $f$;
  end if;
end
$$;
