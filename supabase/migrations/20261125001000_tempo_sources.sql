-- 20261125001000_tempo_sources.sql — the Grafana Tempo instances tempo-ingest pulls from, what each run did, and the
-- traces it had to skip. A source row is the whole configuration of one pull (URL, tenant, auth by secret *name*,
-- TraceQL filter, lag, budgets) plus its cursor; a BEFORE trigger validates every field and raises TST01 naming
-- the field and rule, so a bad row is never stored. Secrets themselves live in Vault or the function's env.

-- ============================================================== sources
create table anomaly.tempo_sources (
  name text primary key,
  base_url text not null,
  tenant text,
  auth_kind text not null default 'none',
  auth_vault_secret text,
  auth_env_var text,
  mode text not null default 'traces',
  traceql text not null default '{}',
  lag_seconds integer not null default 60,
  backfill_seconds integer not null default 600,
  max_window_seconds integer not null default 3600,
  search_limit integer not null default 500,
  max_traces_per_run integer not null default 2000,
  max_seconds_per_run integer not null default 40,
  max_trace_bytes integer not null default 8388608,
  request_timeout_ms integer not null default 10000,
  max_retries integer not null default 3,
  fetch_concurrency integer not null default 4,
  lease_seconds integer not null default 120,
  enabled boolean not null default true,
  cursor timestamptz,
  lease_owner uuid,
  lease_until timestamptz,
  last_run_at timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table anomaly.tempo_sources is
  'Grafana Tempo instances pulled by the tempo-ingest edge function (job tempo-ingest, every minute). mode traces: '
  'search [cursor, now - lag) with the TraceQL filter, fetch every trace, stage its spans like OTLP ingest; mode metrics: '
  'read TraceQL metrics into anomaly.operation_minutes. Auth secrets are referenced by name (Vault secret or TEMPO_* env '
  'var), never stored here. cursor advances only in the transaction that commits the data it covers; the lease '
  '(lease_owner, lease_until) keeps overlapping runs apart. Validated by anomaly.tg_tempo_sources__validate (TST01).';
comment on column anomaly.tempo_sources.base_url is 'Tempo query-frontend base URL without a trailing slash, e.g. http://tempo:3200 or https://tempo-prod-10-prod-eu-west-2.grafana.net/tempo.';
comment on column anomaly.tempo_sources.tenant is 'Sent as X-Scope-OrgID when set (multi-tenant Tempo; tenants joined with | for cross-tenant queries).';
comment on column anomaly.tempo_sources.auth_kind is 'none | basic (secret is "user:password") | bearer (secret is the token).';
comment on column anomaly.tempo_sources.auth_vault_secret is 'Name of the vault.decrypted_secrets row holding the credential (exclusive with auth_env_var).';
comment on column anomaly.tempo_sources.auth_env_var is 'Name of a TEMPO_* environment variable of the edge function holding the credential (exclusive with auth_vault_secret).';
comment on column anomaly.tempo_sources.traceql is 'A TraceQL spanset filter such as {} or { resource.service.name = "api" }; metrics mode appends its own pipeline.';
comment on column anomaly.tempo_sources.lag_seconds is 'Search only up to now - lag: Tempo needs time to make spans searchable (v3 also cuts the newest 30 s by default).';
comment on column anomaly.tempo_sources.backfill_seconds is 'Where a source without a cursor starts: now - backfill_seconds.';
comment on column anomaly.tempo_sources.max_window_seconds is 'Largest [cursor, end) window one run takes on (metrics mode: Tempo allows 24 h).';
comment on column anomaly.tempo_sources.search_limit is 'limit of each /api/search call; a result that reaches it is split in two halves (bisect), so nothing is dropped.';
comment on column anomaly.tempo_sources.max_traces_per_run is 'Trace budget of one run; the next run continues at the cursor.';
comment on column anomaly.tempo_sources.max_seconds_per_run is 'Time budget of one run (Edge Functions have a wall-clock limit).';
comment on column anomaly.tempo_sources.max_trace_bytes is 'A trace body larger than this is skipped with reason too_large.';
comment on column anomaly.tempo_sources.lease_seconds is 'How long a run holds the source; renewed at every commit, so it only has to cover the gap between commits.';
comment on column anomaly.tempo_sources.cursor is 'Everything Tempo held before this instant (by trace time, second granularity) has been staged.';

alter table anomaly.tempo_sources enable row level security;

create function anomaly.tg_tempo_sources__validate()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_problem text;
  v_field text;
  v_hint text;
  v_got text;
begin
  new.base_url := rtrim(new.base_url, '/');
  new.traceql := btrim(new.traceql);
  select f, p, h, g into v_field, v_problem, v_hint, v_got
  from (values
    ('name', new.name !~ '^[a-z][a-z0-9-]{0,62}$', 'must be lower-case letters, digits and dashes (max 63), starting with a letter', 'e.g. ''tempo-prod''', new.name),
    ('base_url', new.base_url !~ '^https?://[^\s/?#]+(/[^\s?#]*)?$', 'must be an http(s) URL without query or fragment', 'e.g. ''http://tempo:3200''', new.base_url),
    ('tenant', new.tenant is not null and new.tenant !~ '^[A-Za-z0-9!._*''()|-]{1,150}$', 'must be a Tempo tenant id (tenants joined with |)', 'Leave it NULL for a single-tenant Tempo.', new.tenant),
    ('auth_kind', new.auth_kind not in ('none', 'basic', 'bearer'), 'must be none, basic or bearer', 'basic expects the secret "user:password"; bearer the token.', new.auth_kind),
    ('auth_vault_secret', new.auth_kind <> 'none' and (new.auth_vault_secret is null) = (new.auth_env_var is null), 'exactly one of auth_vault_secret and auth_env_var must name the credential', 'select vault.create_secret(''<token>'', ''tempo_prod_token''); then set auth_vault_secret = ''tempo_prod_token''.', coalesce(new.auth_vault_secret, new.auth_env_var)),
    ('auth_vault_secret', new.auth_kind = 'none' and (new.auth_vault_secret is not null or new.auth_env_var is not null), 'must be NULL when auth_kind is none', 'Set auth_kind to basic or bearer, or clear the secret name.', coalesce(new.auth_vault_secret, new.auth_env_var)),
    ('auth_env_var', new.auth_env_var is not null and new.auth_env_var !~ '^TEMPO_[A-Z0-9_]{1,60}$', 'must be an environment variable name starting with TEMPO_', 'Only TEMPO_* variables can be read, so a source cannot send other secrets of the function to a Tempo URL.', new.auth_env_var),
    ('mode', new.mode not in ('traces', 'metrics'), 'must be traces or metrics', 'traces stages every span; metrics reads TraceQL metrics (see README "Pulling from Grafana Tempo").', new.mode),
    ('traceql', new.traceql !~ '^\{.*\}$' or length(new.traceql) > 4096 or (new.mode = 'metrics' and position('|' in new.traceql) > 0), 'must be one TraceQL spanset filter in braces (at most 4096 characters; no pipeline in metrics mode)', 'e.g. ''{}'' or ''{ resource.service.name = "api" }''.', new.traceql),
    ('lag_seconds', new.lag_seconds not between 0 and 3600, 'must be between 0 and 3600', 'Default 60 (Tempo v3 cuts the newest 30 s of a search by default).', new.lag_seconds::text),
    ('backfill_seconds', new.backfill_seconds not between 0 and 604800, 'must be between 0 and 604800 (7 days)', 'Default 600.', new.backfill_seconds::text),
    ('max_window_seconds', new.max_window_seconds not between 60 and 86400, 'must be between 60 and 86400 (Tempo metrics allow 24 h)', 'Default 3600.', new.max_window_seconds::text),
    ('search_limit', new.search_limit not between 2 and 262144, 'must be between 2 and 262144 (Tempo''s default max_result_limit)', 'Default 500.', new.search_limit::text),
    ('max_traces_per_run', new.max_traces_per_run not between 1 and 1000000, 'must be between 1 and 1000000', 'Default 2000.', new.max_traces_per_run::text),
    ('max_seconds_per_run', new.max_seconds_per_run not between 1 and 600, 'must be between 1 and 600', 'Default 40; keep it below the job''s timeout and the Edge Function wall-clock limit.', new.max_seconds_per_run::text),
    ('max_trace_bytes', new.max_trace_bytes not between 1024 and 67108864, 'must be between 1 KiB and 64 MiB', 'Default 8388608 (8 MiB).', new.max_trace_bytes::text),
    ('request_timeout_ms', new.request_timeout_ms not between 100 and 120000, 'must be between 100 and 120000', 'Default 10000.', new.request_timeout_ms::text),
    ('max_retries', new.max_retries not between 0 and 10, 'must be between 0 and 10', 'Default 3 (429/5xx and timeouts are retried with backoff, honouring Retry-After).', new.max_retries::text),
    ('fetch_concurrency', new.fetch_concurrency not between 1 and 32, 'must be between 1 and 32', 'Default 4.', new.fetch_concurrency::text),
    ('lease_seconds', new.lease_seconds not between 5 and 3600, 'must be between 5 and 3600', 'Default 120; it must outlast the slowest gap between two commits of a run.', new.lease_seconds::text)
  ) as rules(f, bad, p, h, g)
  where bad
  limit 1;
  if v_field is not null then
    raise exception using errcode = 'TST01',
      message = format('tempo source "%s": %s %s', coalesce(new.name, ''), v_field, v_problem),
      detail = format('got %s', coalesce(v_got, 'NULL')), hint = v_hint;
  end if;
  new.updated_at := now();
  return new;
end
$$;
comment on function anomaly.tg_tempo_sources__validate() is
  'BEFORE INSERT/UPDATE trigger on anomaly.tempo_sources: trims base_url and traceql, then checks every field and '
  'raises TST01 naming the first bad field, its rule (message), the value (detail) and what to do (hint).';

create trigger tg_10_validate before insert or update on anomaly.tempo_sources
  for each row execute function anomaly.tg_tempo_sources__validate();

-- ============================================================== runs
create table anomaly.tempo_runs (
  id bigint generated always as identity primary key,
  source text not null references anomaly.tempo_sources (name) on delete cascade,
  mode text not null,
  owner uuid not null,
  status text not null default 'running',
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  cursor_before timestamptz,
  cursor_after timestamptz,
  window_end timestamptz,
  searches integer not null default 0,
  splits integer not null default 0,
  retries integer not null default 0,
  traces_found integer not null default 0,
  traces_fetched integer not null default 0,
  traces_skipped integer not null default 0,
  spans_received integer not null default 0,
  spans_staged integer not null default 0,
  spans_rejected integer not null default 0,
  series_minutes integer not null default 0,
  error text,
  details jsonb not null default '{}'::jsonb,
  constraint tempo_runs_status_check check (status in ('running', 'ok', 'incomplete', 'failed', 'abandoned')),
  constraint tempo_runs_finish_check check ((status = 'running') = (finished_at is null))
);
comment on table anomaly.tempo_runs is
  'One row per tempo-ingest run of a source: the window it covered (cursor_before -> cursor_after, aimed at window_end), '
  'searches and range splits, traces found/fetched/skipped, spans received/staged (new rows)/rejected, series-minutes '
  'written (metrics mode), retries and the error. status: ok (caught up), incomplete (budget spent; the next run '
  'continues), failed (error; cursor kept), abandoned (the process died; found by the next run), running.';
comment on column anomaly.tempo_runs.spans_staged is 'Spans newly stored; re-fetched spans already staged count in spans_received only.';
create index tempo_runs_source_idx on anomaly.tempo_runs (source, started_at desc);
alter table anomaly.tempo_runs enable row level security;

-- ============================================================== skipped traces
create table anomaly.tempo_skipped_traces (
  source text not null references anomaly.tempo_sources (name) on delete cascade,
  trace_id text not null,
  reason text not null,
  detail text,
  attempts integer not null default 1,
  run_id bigint,
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  primary key (source, trace_id),
  constraint tempo_skipped_traces_trace_id_check check (trace_id ~ '^[0-9a-f]{32}$'),
  constraint tempo_skipped_traces_reason_check check (reason in ('vanished', 'too_large', 'malformed', 'partial', 'failing', 'gave_up'))
);
comment on table anomaly.tempo_skipped_traces is
  'Traces a search found that were not (fully) staged, with why: vanished (404 between search and fetch), too_large '
  '(body over max_trace_bytes), malformed (undecodable body), partial (Tempo answered status PARTIAL; what came was '
  'staged), failing (429/5xx/timeouts after every retry: the run stops and the cursor waits), gave_up (failing in '
  'tempo.max_fetch_attempts runs: skipped so the cursor can move on). attempts counts the runs that met it.';
alter table anomaly.tempo_skipped_traces enable row level security;

-- ============================================================== configuration shared by all sources
insert into anomaly.config_keys (key, spec, defaults, description) values (
  'tempo',
  '{"max_fetch_attempts": {"type": "integer", "min": 1, "max": 100},
    "run_retention_days": {"type": "integer", "min": 1, "max": 365}}',
  '{"max_fetch_attempts": 3, "run_retention_days": 14}',
  'Tempo pull: how many runs a trace that keeps failing (429/5xx/timeouts after retries) may hold the cursor before it '
  'is skipped with reason gave_up, and how long anomaly.tempo_runs rows are kept.'
);

grant select, insert, update, delete on anomaly.tempo_sources, anomaly.tempo_skipped_traces to service_role;
grant select, delete on anomaly.tempo_runs to service_role;
grant execute on function anomaly.tg_tempo_sources__validate() to service_role;
