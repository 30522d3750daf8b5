-- 20261125000200_public_core.sql — the tables users touch: anomalies, detection config, settings, activity.
-- Every table is under RLS. Roles come from the JWT claim app_metadata.role (viewer, operator,
-- security_analyst, admin); SECURITY anomalies are visible only to security_analyst and admin.
-- Grants are explicit: Supabase no longer auto-grants new public tables (2026).

-- ============================================================== trace_anomalies
create table public.trace_anomalies (
  id uuid primary key default gen_random_uuid(),
  trace_id text,
  anomaly_type text not null,
  subtype text not null,
  severity text not null default 'LOW',
  status text not null default 'OPEN',
  description text not null default '',
  fingerprint text not null,
  service text not null,
  operation text,
  detector text not null,
  score double precision not null default 0,
  observed_value double precision,
  expected_value double precision,
  detected_at timestamptz not null default now(),
  first_seen timestamptz not null,
  last_seen timestamptz not null,
  occurrences integer not null default 1,
  explanation jsonb not null default '{}'::jsonb,
  exemplar_span_id text,
  acknowledged_by uuid,
  acknowledged_at timestamptz,
  resolved_by uuid,
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint trace_anomalies_type_check check (anomaly_type in
    ('LATENCY', 'ERROR_RATE', 'THROUGHPUT', 'RESOURCE', 'DEPLOY_REGRESSION', 'STRUCTURE', 'SECURITY')),
  constraint trace_anomalies_severity_check check (severity in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint trace_anomalies_status_check check (status in ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')),
  constraint trace_anomalies_trace_id_check check (trace_id is null or trace_id ~ '^[0-9a-f]{32}$'),
  constraint trace_anomalies_seen_order_check check (last_seen >= first_seen),
  constraint trace_anomalies_resolved_check check ((status = 'RESOLVED') = (resolved_at is not null)),
  constraint trace_anomalies_occurrences_check check (occurrences >= 1),
  constraint trace_anomalies_explanation_check check (jsonb_typeof(explanation) = 'object')
);

comment on table public.trace_anomalies is
  'One row per anomaly episode. While a condition lasts, detection updates the single open row of its '
  'fingerprint (last_seen, occurrences, score, severity) instead of inserting duplicates.';
comment on column public.trace_anomalies.fingerprint is
  'Stable identity of the condition: type|subtype|service|operation|detector family. At most one non-resolved row per fingerprint.';
comment on column public.trace_anomalies.trace_id is 'Exemplar trace (32 lower-case hex) of the anomalous bucket; opens in Grafana/Tempo.';
comment on column public.trace_anomalies.explanation is
  'Why it fired: observed vs expected with band, detectors and scores, window, culprit, over-represented attributes.';
comment on column public.trace_anomalies.score is 'Detector score of the worst bucket seen so far (for z-score detectors: |z|).';

create unique index trace_anomalies_open_fingerprint_idx
  on public.trace_anomalies (fingerprint) where status <> 'RESOLVED';
create index trace_anomalies_detected_at_idx on public.trace_anomalies (detected_at desc);
create index trace_anomalies_service_idx on public.trace_anomalies (service, anomaly_type, detected_at desc);
create index trace_anomalies_open_idx on public.trace_anomalies (severity, last_seen desc) where status <> 'RESOLVED';

alter table public.trace_anomalies enable row level security;

create policy "Members read non-security anomalies; analysts and admins read all"
  on public.trace_anomalies for select to authenticated
  using (
    ((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('security_analyst', 'admin')
    or (
      ((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('viewer', 'operator')
      and anomaly_type <> 'SECURITY'
    )
  );

grant select on public.trace_anomalies to authenticated;
grant select, insert, update, delete on public.trace_anomalies to service_role;

-- ============================================================== anomaly_detection_config
create table public.anomaly_detection_config (
  key text primary key,
  value jsonb not null,
  description text not null default '',
  updated_at timestamptz not null default now(),
  updated_by uuid,
  constraint anomaly_detection_config_key_check check (key ~ '^[a-z][a-z0-9_.]{1,62}$')
);
comment on table public.anomaly_detection_config is
  'Detection, ingest and rollup settings, one validated jsonb document per key. '
  'A value is checked by anomaly.validate_config() before it is stored; a bad value is rejected whole.';

create index anomaly_detection_config_updated_idx on public.anomaly_detection_config (updated_at desc);

alter table public.anomaly_detection_config enable row level security;

create policy "Members read the detection config"
  on public.anomaly_detection_config for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('viewer', 'operator', 'security_analyst', 'admin'));
create policy "Admins change the detection config"
  on public.anomaly_detection_config for update to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin')
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');

grant select on public.anomaly_detection_config to authenticated;
grant update (value, description) on public.anomaly_detection_config to authenticated;
grant select, insert, update, delete on public.anomaly_detection_config to service_role;

-- ============================================================== system_settings
create table public.system_settings (
  key text primary key,
  value jsonb not null,
  description text not null default '',
  updated_at timestamptz not null default now(),
  updated_by uuid,
  constraint system_settings_key_check check (key ~ '^[a-z][a-z0-9_.]{1,62}$'),
  constraint system_settings_outlier_stddev_check check (
    key <> 'outlier_detection_stddev'
    or (jsonb_typeof(value) = 'number' and (value #>> '{}')::numeric > 0 and (value #>> '{}')::numeric <= 10)
  )
);
comment on table public.system_settings is
  'Product-wide settings. outlier_detection_stddev is k in the legacy rule "anomalous when value > mean + k*stddev".';

alter table public.system_settings enable row level security;
create policy "Members read system settings"
  on public.system_settings for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('viewer', 'operator', 'security_analyst', 'admin'));
create policy "Admins change system settings"
  on public.system_settings for update to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin')
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');

grant select on public.system_settings to authenticated;
grant update (value, description) on public.system_settings to authenticated;
grant select, insert, update, delete on public.system_settings to service_role;

insert into public.system_settings (key, value, description) values
  ('outlier_detection_stddev', '2', 'k for the legacy mean + k*stddev outlier rule (kept as a baseline detector).');

-- ============================================================== activity_log
create table public.activity_log (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default now(),
  actor uuid,
  actor_role text,
  action text not null,
  target_table text not null,
  target_key text not null,
  old_value jsonb,
  new_value jsonb,
  constraint activity_log_action_check check (action in ('INSERT', 'UPDATE', 'DELETE', 'ACKNOWLEDGE', 'RESOLVE', 'ACTIVATE'))
);
comment on table public.activity_log is
  'Append-only record of every state change made by a person (config, settings, acknowledge, resolve, model activation).';

create index activity_log_occurred_idx on public.activity_log (occurred_at desc);
create index activity_log_target_idx on public.activity_log (target_table, target_key);

alter table public.activity_log enable row level security;
create policy "Admins read the activity log"
  on public.activity_log for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');

grant select on public.activity_log to authenticated;
grant select, insert on public.activity_log to service_role;
