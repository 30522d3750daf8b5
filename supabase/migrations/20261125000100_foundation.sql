-- 20261125000100_foundation.sql — schemas, platform extensions and the project's error-code class.
-- `anomaly` holds the machinery and is never exposed through the Data API; `public` holds what users
-- touch. Platform extensions are created only where the server offers them (pg_cron, pg_net on
-- Supabase); a plain Postgres gets stand-ins from scripts/local/compat.sql instead.
--
-- Error codes raised by Trace Sentinel (SQLSTATE class "TS"; see README "Error codes"):
--   TSC01 invalid configuration value        TSC02 unknown configuration key
--   TSI01 invalid span in an ingest batch    TSI02 ingest batch too large
--   TSJ01 invalid job definition             TSH01 invalid histogram argument

create schema if not exists extensions;
create schema if not exists anomaly;
comment on schema anomaly is
  'Trace Sentinel machinery: staging spans, rollups, detector state, jobs. Not exposed through the Data API.';

revoke all on schema anomaly from public;
grant usage on schema anomaly to service_role;

-- Functions are not executable by PUBLIC unless a migration grants them explicitly (basejump habit).
-- Per-schema default privileges can only add to the global ones, so the revoke must be global.
alter default privileges revoke execute on functions from public;

do $$
begin
  -- pg_cron can only live in the database named by cron.database_name ('postgres' on Supabase).
  if exists (select 1 from pg_available_extensions where name = 'pg_cron')
     and not exists (select 1 from pg_extension where extname = 'pg_cron')
     and current_database() = coalesce(current_setting('cron.database_name', true), 'postgres') then
    create extension pg_cron with schema pg_catalog;
  end if;
  if exists (select 1 from pg_available_extensions where name = 'pg_net')
     and not exists (select 1 from pg_extension where extname = 'pg_net') then
    create extension pg_net with schema extensions;
  end if;
end
$$;
