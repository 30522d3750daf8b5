-- 20261125001100_alert_tables.sql — what alerting stores: the `alerts` config key, notification channels,
-- silences / maintenance windows, the outbox (one row per anomaly event per channel) and the delivery history.
-- Behaviour lives in the next migrations (enqueue trigger, claim/ack, realtime, jobs). Error codes: TSA01 invalid
-- channel or silence, TSA02 outbox row not in the state an operation needs, TSA03 a Vault secret is missing.

-- ============================================================== config key
insert into anomaly.config_keys (key, spec, defaults, description) values (
  'alerts',
  '{"enabled": {"type": "boolean"},
    "dedup_window_minutes": {"type": "integer", "min": 0, "max": 10080},
    "group_wait_seconds": {"type": "integer", "min": 0, "max": 3600},
    "repeat_interval_minutes": {"type": "integer", "min": 5, "max": 10080},
    "send_resolved": {"type": "boolean"},
    "critical_immediate": {"type": "boolean"},
    "max_attempts": {"type": "integer", "min": 1, "max": 100},
    "backoff_base_seconds": {"type": "number", "min": 0.05, "max": 3600},
    "backoff_max_seconds": {"type": "number", "min": 1, "max": 86400},
    "lease_seconds": {"type": "integer", "min": 10, "max": 3600},
    "claim_batch": {"type": "integer", "min": 1, "max": 1000},
    "send_timeout_ms": {"type": "integer", "min": 100, "max": 60000},
    "max_anomalies_per_message": {"type": "integer", "min": 1, "max": 50},
    "retention_days": {"type": "integer", "min": 1, "max": 3650},
    "dashboard_url": {"type": "string"},
    "grafana_url": {"type": "string"},
    "tempo_datasource_uid": {"type": "string"}}',
  '{"enabled": true, "dedup_window_minutes": 30, "group_wait_seconds": 30, "repeat_interval_minutes": 60,
    "send_resolved": true, "critical_immediate": true, "max_attempts": 8, "backoff_base_seconds": 5,
    "backoff_max_seconds": 900, "lease_seconds": 120, "claim_batch": 50, "send_timeout_ms": 10000,
    "max_anomalies_per_message": 10, "retention_days": 30, "dashboard_url": "", "grafana_url": "",
    "tempo_datasource_uid": "tempo"}',
  'Alerting: dedup window per fingerprint, grouping delay (an incident''s collateral anomalies join the root''s '
  'message), repeat interval for open CRITICAL anomalies, resolved notices, retries (max_attempts, exponential '
  'backoff with jitter between backoff_base_seconds and backoff_max_seconds), the claim lease (a crashed '
  'dispatcher''s rows come back after lease_seconds), send timeout, and the dashboard / Grafana links in messages.'
);

-- ============================================================== channels
create table anomaly.notification_channels (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  kind text not null,
  enabled boolean not null default true,
  telegram_chat_id text,
  telegram_thread_id bigint,
  webhook_url text,
  webhook_format text not null default 'generic',
  secret_name text not null,
  min_severity text not null default 'HIGH',
  anomaly_types text[],
  services text[],
  max_per_minute integer not null default 20,
  send_resolved boolean not null default true,
  description text not null default '',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint notification_channels_name_check check (name ~ '^[a-z][a-z0-9_-]{1,62}$'),
  constraint notification_channels_kind_check check (kind in ('telegram', 'webhook')),
  constraint notification_channels_format_check check (webhook_format in ('generic', 'alertmanager')),
  constraint notification_channels_severity_check check (min_severity in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint notification_channels_rate_check check (max_per_minute between 1 and 10000)
);
comment on table anomaly.notification_channels is
  'Where alerts go. kind telegram: Bot API sendMessage to telegram_chat_id (and forum topic telegram_thread_id) with '
  'the bot token stored in Vault under secret_name; kind webhook: HMAC-signed JSON POST to webhook_url in the generic '
  'or Alertmanager (version 4) shape, signed with the Vault secret secret_name. A channel receives events of '
  'anomalies at or above min_severity whose type is in anomaly_types (null: every type except SECURITY, which must be '
  'listed explicitly) and whose service is in services (null: all), at most max_per_minute messages a minute.';
comment on column anomaly.notification_channels.secret_name is
  'Name of the Vault secret (vault.create_secret(value, name)) holding the bot token or the webhook HMAC key. The '
  'secret itself is never stored here nor logged.';

create index notification_channels_enabled_idx on anomaly.notification_channels (kind) where enabled;

create function anomaly.tg_notification_channels__validate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_types text[] := array['LATENCY', 'ERROR_RATE', 'THROUGHPUT', 'RESOURCE', 'DEPLOY_REGRESSION', 'STRUCTURE', 'SECURITY'];
begin
  if new.kind = 'telegram' then
    if new.telegram_chat_id is null or new.telegram_chat_id !~ '^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$' then
      raise exception using errcode = 'TSA01',
        message = format('telegram channel "%s" needs telegram_chat_id: a numeric chat id or @channelusername', new.name),
        detail = format('got %s', coalesce(new.telegram_chat_id, 'null')),
        hint = 'Send a message to the bot, then read chat.id from https://api.telegram.org/bot<token>/getUpdates.';
    end if;
    if new.webhook_url is not null then
      raise exception using errcode = 'TSA01', message = 'a telegram channel has no webhook_url',
        hint = 'Create a separate channel of kind webhook.';
    end if;
  else
    if new.webhook_url is null or new.webhook_url !~ '^https?://[^\s/]+' then
      raise exception using errcode = 'TSA01',
        message = format('webhook channel "%s" needs webhook_url starting with https:// (or http://)', new.name),
        detail = format('got %s', coalesce(new.webhook_url, 'null')),
        hint = 'Example: https://hooks.example.com/trace-sentinel';
    end if;
    if new.telegram_chat_id is not null or new.telegram_thread_id is not null then
      raise exception using errcode = 'TSA01', message = 'a webhook channel has no telegram_chat_id',
        hint = 'Create a separate channel of kind telegram.';
    end if;
  end if;
  if new.anomaly_types is not null and not (new.anomaly_types <@ v_types) then
    raise exception using errcode = 'TSA01',
      message = 'anomaly_types must be a subset of ' || array_to_string(v_types, ', '),
      detail = format('got %s', new.anomaly_types), hint = 'Use null for every type except SECURITY.';
  end if;
  if not exists (select 1 from vault.secrets s where s.name = new.secret_name) then
    raise exception using errcode = 'TSA03',
      message = format('Vault has no secret named "%s"', new.secret_name),
      hint = format('Store it first: select vault.create_secret(''<bot token or HMAC key>'', %L);', new.secret_name);
  end if;
  new.updated_at := now();
  return new;
end
$$;
comment on function anomaly.tg_notification_channels__validate() is
  'BEFORE INSERT/UPDATE trigger on anomaly.notification_channels: checks the target of the kind (TSA01) and that '
  'the Vault secret exists (TSA03). Security definer to look up the secret''s name in Vault (never its value).';

create trigger tg_10_validate before insert or update on anomaly.notification_channels
  for each row execute function anomaly.tg_notification_channels__validate();

create function anomaly.channel_secret(p_channel_id uuid)
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_secret text;
begin
  select s.decrypted_secret into v_secret
  from anomaly.notification_channels c
  join vault.decrypted_secrets s on s.name = c.secret_name
  where c.id = p_channel_id;
  if v_secret is null then
    raise exception using errcode = 'TSA03',
      message = format('no Vault secret for channel %s', p_channel_id),
      hint = 'Store the bot token / HMAC key with vault.create_secret(value, name) under the channel''s secret_name.';
  end if;
  return v_secret;
end
$$;
comment on function anomaly.channel_secret(uuid) is
  'The decrypted Vault secret (bot token or HMAC key) of a channel, for the alert-dispatch function only '
  '(service_role). Raises TSA03 when the secret is missing.';

-- ============================================================== silences and maintenance windows
create table anomaly.silences (
  id uuid primary key default gen_random_uuid(),
  kind text not null default 'silence',
  anomaly_type text,
  subtype text,
  service text,
  severities text[],
  starts_at timestamptz not null default now(),
  ends_at timestamptz not null,
  created_by uuid default auth.uid(),
  author text not null,
  comment text not null,
  created_at timestamptz not null default now(),
  constraint silences_kind_check check (kind in ('silence', 'maintenance')),
  constraint silences_window_check check (ends_at > starts_at),
  constraint silences_comment_check check (length(btrim(comment)) between 1 and 1000)
);
comment on table anomaly.silences is
  'Silences and maintenance windows: alerts for anomalies matching every non-null matcher (anomaly_type, subtype, '
  'service, severities) between starts_at and ends_at are recorded as suppressed instead of sent. A maintenance '
  'window is a silence of kind maintenance (usually a service, or everything when no matcher is set). Create with '
  'public.create_silence(); end early with public.expire_silence().';
create index silences_active_idx on anomaly.silences (ends_at, starts_at);

create function anomaly.tg_silences__validate()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.ends_at <= new.starts_at then
    raise exception using errcode = 'TSA01', message = 'a silence must end after it starts',
      detail = format('starts_at %s, ends_at %s', new.starts_at, new.ends_at),
      hint = 'Example: ends_at => now() + interval ''2 hours''';
  end if;
  if new.ends_at - new.starts_at > interval '90 days' then
    raise exception using errcode = 'TSA01', message = 'a silence lasts at most 90 days',
      detail = format('got %s', new.ends_at - new.starts_at), hint = 'Disable the channel instead.';
  end if;
  if new.kind = 'silence' and new.anomaly_type is null and new.subtype is null and new.service is null
     and new.severities is null then
    raise exception using errcode = 'TSA01', message = 'a silence needs at least one matcher',
      hint = 'Set anomaly_type, subtype, service or severities, or create a maintenance window (kind => ''maintenance'') to silence everything.';
  end if;
  if new.severities is not null and not (new.severities <@ array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL']) then
    raise exception using errcode = 'TSA01', message = 'severities must be a subset of LOW, MEDIUM, HIGH, CRITICAL',
      detail = format('got %s', new.severities), hint = 'Example: severities => array[''LOW'', ''MEDIUM'']';
  end if;
  if coalesce(btrim(new.comment), '') = '' then
    raise exception using errcode = 'TSA01', message = 'a silence needs a comment saying why',
      hint = 'Example: comment => ''deploying payments 2.4''';
  end if;
  new.author := coalesce(nullif(btrim(new.author), ''), auth.email(), auth.uid()::text, current_user::text);
  return new;
end
$$;
comment on function anomaly.tg_silences__validate() is
  'BEFORE INSERT/UPDATE trigger on anomaly.silences: window, matchers and comment are checked (TSA01); author '
  'defaults to the caller''s e-mail, user id or database role.';

create trigger tg_10_validate before insert or update on anomaly.silences
  for each row execute function anomaly.tg_silences__validate();

create function public.create_silence(
  ends_at timestamptz,
  comment text,
  anomaly_type text default null,
  subtype text default null,
  service text default null,
  severities text[] default null,
  starts_at timestamptz default now(),
  kind text default 'silence',
  author text default null)
returns uuid
language sql
security invoker
set search_path = ''
as $$
  insert into anomaly.silences (kind, anomaly_type, subtype, service, severities, starts_at, ends_at, author, comment)
  values (create_silence.kind, create_silence.anomaly_type, create_silence.subtype, create_silence.service,
          create_silence.severities, create_silence.starts_at, create_silence.ends_at,
          coalesce(create_silence.author, ''), create_silence.comment)
  returning id
$$;
comment on function public.create_silence(timestamptz, text, text, text, text, text[], timestamptz, text, text) is
  'Creates a silence or maintenance window and returns its id; runs as the caller, so RLS decides (operators and '
  'admins may). Through the API: POST /rest/v1/rpc/create_silence. Example: select public.create_silence('
  'ends_at => now() + interval ''2 hours'', service => ''payments'', comment => ''deploy 2.4'');';

create function public.expire_silence(silence_id uuid)
returns boolean
language sql
security invoker
set search_path = ''
as $$
  with e as (
    update anomaly.silences s set ends_at = greatest(s.starts_at + interval '1 microsecond', now())
    where s.id = expire_silence.silence_id and s.ends_at > now()
    returning 1
  )
  select exists (select 1 from e)
$$;
comment on function public.expire_silence(uuid) is
  'Ends a silence now; returns false when it was already over (or RLS hides it). Runs as the caller.';

-- ============================================================== outbox
create table anomaly.alert_outbox (
  id bigint generated always as identity primary key,
  idempotency_key text not null unique,
  channel_id uuid not null references anomaly.notification_channels (id) on delete cascade,
  anomaly_id uuid not null references public.trace_anomalies (id) on delete cascade,
  incident_id uuid not null,
  fingerprint text not null,
  anomaly_type text not null,
  event text not null,
  severity text not null,
  group_key text not null,
  status text not null default 'pending',
  reason text,
  due_at timestamptz not null default now(),
  attempts integer not null default 0,
  claim_id uuid,
  claimed_by text,
  lease_until timestamptz,
  parts_sent integer not null default 0,
  last_error text,
  last_status_code integer,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint alert_outbox_event_check check (event in ('opened', 'escalated', 'resolved', 'repeat')),
  constraint alert_outbox_status_check check (status in ('pending', 'sending', 'delivered', 'suppressed', 'dead')),
  constraint alert_outbox_reason_check check ((status = 'suppressed') = (reason is not null)),
  constraint alert_outbox_lease_check check ((status = 'sending') = (lease_until is not null)),
  constraint alert_outbox_delivered_check check ((status = 'delivered') = (delivered_at is not null)),
  constraint alert_outbox_attempts_check check (attempts >= 0)
);
comment on table anomaly.alert_outbox is
  'One row per anomaly event (opened, escalated, resolved, repeat) per matching channel, written by the trigger on '
  'public.trace_anomalies; idempotency_key (anomaly:event:channel) is unique, so a re-run never enqueues twice. '
  'pending rows become due at due_at; alert-dispatch claims due rows (status sending, with a lease) and sends all '
  'pending rows of a group_key (incident + firing/resolved) on a channel as one message. Suppressed rows keep the '
  'reason (silence, maintenance, dedup, rate limit, not alerted); dead rows keep the last error and can be re-driven.';
comment on column anomaly.alert_outbox.group_key is
  'incident_id:firing or incident_id:resolved: rows of one group on one channel go out as one message.';
comment on column anomaly.alert_outbox.parts_sent is
  'Telegram parts (4096-character pieces) already delivered, so a retry after a partial send resumes there.';

create index alert_outbox_due_idx on anomaly.alert_outbox (due_at, id) where status = 'pending';
create index alert_outbox_lease_idx on anomaly.alert_outbox (lease_until) where status = 'sending';
create index alert_outbox_group_idx on anomaly.alert_outbox (group_key, channel_id) where status in ('pending', 'sending');
create index alert_outbox_anomaly_idx on anomaly.alert_outbox (anomaly_id, channel_id);
-- Column order matters while a burst fills the table inside one transaction (no statistics yet): each enqueue lookup
-- has exactly one index whose leading columns it pins (fingerprint+channel, anomaly+channel, group+channel), so the
-- planner cannot wander onto a scan of the whole backlog (measured: 8,000 anomalies in one insert took 64 s that way,
-- against 2 s now).
create index alert_outbox_fingerprint_idx on anomaly.alert_outbox (fingerprint, channel_id, created_at desc);
create index alert_outbox_claim_idx on anomaly.alert_outbox (claim_id) where claim_id is not null;
create index alert_outbox_dead_idx on anomaly.alert_outbox (channel_id, updated_at desc) where status = 'dead';

-- ============================================================== delivery history
create table anomaly.alert_deliveries (
  id bigint generated always as identity primary key,
  claim_id uuid not null unique,
  channel_id uuid not null references anomaly.notification_channels (id) on delete cascade,
  group_key text not null,
  outbox_ids bigint[] not null,
  attempt integer not null,
  outcome text not null,
  status_code integer,
  error text,
  duration_ms integer,
  parts_sent integer not null default 0,
  retry_in_ms integer,
  dispatcher text,
  created_at timestamptz not null default now(),
  constraint alert_deliveries_outcome_check check (outcome in ('delivered', 'retry', 'permanent', 'deferred'))
);
comment on table anomaly.alert_deliveries is
  'Every send attempt of a group (one claim): outcome delivered / retry / permanent / deferred, HTTP status, error '
  '(secrets redacted), duration. claim_id is unique, so a dispatcher that retries its acknowledgement after a '
  'database outage records the attempt once.';
create index alert_deliveries_channel_idx on anomaly.alert_deliveries (channel_id, created_at desc);
create index alert_deliveries_created_idx on anomaly.alert_deliveries (created_at);

-- ============================================================== per-channel rate slots
create table anomaly.alert_rate_slots (
  channel_id uuid not null references anomaly.notification_channels (id) on delete cascade,
  window_start timestamptz not null,
  n integer not null,
  primary key (channel_id, window_start, n)
);
comment on table anomaly.alert_rate_slots is
  'Messages enqueued per channel per clock minute, for max_per_minute: the k-th new message of a minute inserts slot '
  'n = k. Insert-only (the count is max(n) through the primary key), because one counter row updated per alert would '
  'cost quadratic time in a transaction that opens thousands of anomalies. Internal to the enqueue trigger.';

-- ============================================================== row level security and grants
alter table anomaly.notification_channels enable row level security;
alter table anomaly.silences enable row level security;
alter table anomaly.alert_outbox enable row level security;
alter table anomaly.alert_deliveries enable row level security;
alter table anomaly.alert_rate_slots enable row level security;

create policy "Operators, analysts and admins read channels"
  on anomaly.notification_channels for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('operator', 'security_analyst', 'admin'));
create policy "Admins create channels"
  on anomaly.notification_channels for insert to authenticated
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');
create policy "Admins change channels"
  on anomaly.notification_channels for update to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin')
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');
create policy "Admins delete channels"
  on anomaly.notification_channels for delete to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'admin');

create policy "Members read silences"
  on anomaly.silences for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('viewer', 'operator', 'security_analyst', 'admin'));
create policy "Operators and admins create silences"
  on anomaly.silences for insert to authenticated
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('operator', 'admin'));
create policy "Operators and admins end silences"
  on anomaly.silences for update to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('operator', 'admin'))
  with check (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('operator', 'admin'));

create policy "Operators read outbox rows of anomalies they may see"
  on anomaly.alert_outbox for select to authenticated
  using (
    ((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('security_analyst', 'admin')
    or (((select auth.jwt()) -> 'app_metadata' ->> 'role') = 'operator' and anomaly_type <> 'SECURITY')
  );
create policy "Operators, analysts and admins read delivery history"
  on anomaly.alert_deliveries for select to authenticated
  using (((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('operator', 'security_analyst', 'admin'));

grant select, insert, update, delete on anomaly.notification_channels to authenticated;
grant select, insert, update on anomaly.silences to authenticated;
grant select on anomaly.alert_outbox, anomaly.alert_deliveries to authenticated;
grant select, insert, update, delete on anomaly.notification_channels, anomaly.silences, anomaly.alert_outbox,
  anomaly.alert_deliveries, anomaly.alert_rate_slots to service_role;

grant execute on function anomaly.tg_notification_channels__validate(), anomaly.tg_silences__validate()
  to authenticated, service_role;
grant execute on function public.create_silence(timestamptz, text, text, text, text, text[], timestamptz, text, text),
  public.expire_silence(uuid) to authenticated, service_role;
grant execute on function anomaly.channel_secret(uuid) to service_role;
