-- 20261125000300_config.sql — validated configuration and the activity trail for changes people make.
-- Each known config key has a spec (field -> type, bounds) in anomaly.config_keys; a value written to
-- public.anomaly_detection_config is merged over the key's defaults and checked field by field, and a
-- bad value raises TSC01 (or TSC02 for an unknown key) so nothing is half-applied.

-- ============================================================== config key registry
create table anomaly.config_keys (
  key text primary key,
  spec jsonb not null,
  defaults jsonb not null,
  description text not null,
  constraint config_keys_spec_check check (jsonb_typeof(spec) = 'object'),
  constraint config_keys_defaults_check check (jsonb_typeof(defaults) = 'object')
);
comment on table anomaly.config_keys is
  'Allow-list of configuration keys with a spec per field: {"field": {"type": "integer|number|boolean|string|string_array|enum", '
  '"min": n, "max": n, "values": [..]}} and the defaults a partial value is merged over. Later capabilities add rows in their own migrations.';

-- ============================================================== validation
create function anomaly.validate_config(p_key text, p_value jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_entry anomaly.config_keys;
  v_merged jsonb;
  v_field text;
  v_rule jsonb;
  v_val jsonb;
  v_type text;
begin
  select * into v_entry from anomaly.config_keys where key = p_key;
  if not found then
    raise exception using
      errcode = 'TSC02',
      message = format('unknown configuration key "%s"', p_key),
      hint = 'Known keys: ' || (select string_agg(key, ', ' order by key) from anomaly.config_keys);
  end if;
  if p_value is null or jsonb_typeof(p_value) <> 'object' then
    raise exception using
      errcode = 'TSC01',
      message = format('configuration "%s" must be a JSON object', p_key),
      hint = 'Example: ' || v_entry.defaults::text;
  end if;

  for v_field in select jsonb_object_keys(p_value) loop
    if not v_entry.spec ? v_field then
      raise exception using
        errcode = 'TSC01',
        message = format('configuration "%s" has no field "%s"', p_key, v_field),
        hint = 'Fields: ' || (select string_agg(k, ', ' order by k) from jsonb_object_keys(v_entry.spec) k);
    end if;
  end loop;

  v_merged := v_entry.defaults || p_value;
  for v_field, v_rule in select * from jsonb_each(v_entry.spec) loop
    v_val := v_merged -> v_field;
    v_type := v_rule ->> 'type';
    if v_val is null or jsonb_typeof(v_val) = 'null' then
      raise exception using errcode = 'TSC01',
        message = format('configuration "%s.%s" is required', p_key, v_field),
        hint = format('Set it, e.g. %s', v_entry.defaults -> v_field);
    end if;
    if v_type in ('integer', 'number') then
      if jsonb_typeof(v_val) <> 'number'
         or (v_type = 'integer' and (v_val #>> '{}')::numeric <> trunc((v_val #>> '{}')::numeric)) then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be %s %s', p_key, v_field,
                           case v_type when 'integer' then 'an' else 'a' end, v_type),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
      if (v_rule ? 'min' and (v_val #>> '{}')::numeric < (v_rule ->> 'min')::numeric)
         or (v_rule ? 'max' and (v_val #>> '{}')::numeric > (v_rule ->> 'max')::numeric) then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be between %s and %s', p_key, v_field,
                           coalesce(v_rule ->> 'min', '-inf'), coalesce(v_rule ->> 'max', 'inf')),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
    elsif v_type = 'boolean' then
      if jsonb_typeof(v_val) <> 'boolean' then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be true or false', p_key, v_field),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
    elsif v_type = 'string' then
      if jsonb_typeof(v_val) <> 'string' then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be a string', p_key, v_field),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
    elsif v_type = 'enum' then
      if not (v_rule -> 'values') @> jsonb_build_array(v_val) then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be one of %s', p_key, v_field, v_rule -> 'values'),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
    elsif v_type = 'string_array' then
      if jsonb_typeof(v_val) <> 'array'
         or exists (select 1 from jsonb_array_elements(v_val) e where jsonb_typeof(e) <> 'string') then
        raise exception using errcode = 'TSC01',
          message = format('configuration "%s.%s" must be an array of strings', p_key, v_field),
          detail = format('got %s', v_val), hint = format('Default: %s', v_entry.defaults -> v_field);
      end if;
    end if;
  end loop;
  return v_merged;
end
$$;
comment on function anomaly.validate_config(text, jsonb) is
  'Checks a configuration value against anomaly.config_keys and returns it merged over the key''s defaults. '
  'Raises TSC02 for an unknown key and TSC01 naming the field and rule for a bad value. '
  'Example: select anomaly.validate_config(''rollup'', ''{"trace_idle_seconds": 60}'').';

-- ============================================================== reading config
create function anomaly.config(p_key text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select coalesce(
    (select c.value from public.anomaly_detection_config c where c.key = p_key),
    (select k.defaults from anomaly.config_keys k where k.key = p_key)
  )
$$;
comment on function anomaly.config(text) is
  'Effective configuration for a key: the stored value, else the key''s defaults. Example: select anomaly.config(''rollup'') ->> ''trace_idle_seconds''.';

-- ============================================================== triggers
create function anomaly.tg_anomaly_detection_config__validate()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.value := anomaly.validate_config(new.key, new.value);
  new.updated_at := now();
  new.updated_by := coalesce(new.updated_by, auth.uid());
  return new;
end
$$;
comment on function anomaly.tg_anomaly_detection_config__validate() is
  'BEFORE INSERT/UPDATE trigger: validates and normalises public.anomaly_detection_config.value.';

create trigger tg_10_validate
  before insert or update on public.anomaly_detection_config
  for each row execute function anomaly.tg_anomaly_detection_config__validate();

create function anomaly.tg_record_activity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old jsonb := case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end;
  v_new jsonb := case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end;
begin
  insert into public.activity_log (actor, actor_role, action, target_table, target_key, old_value, new_value)
  values (
    auth.uid(),
    coalesce(auth.jwt() -> 'app_metadata' ->> 'role', current_user::text),
    tg_op,
    tg_table_schema || '.' || tg_table_name,
    coalesce(v_new, v_old) ->> tg_argv[0],
    v_old,
    v_new
  );
  return null;
end
$$;
comment on function anomaly.tg_record_activity() is
  'AFTER row trigger that appends the change to public.activity_log with the JWT subject and role. '
  'Argument: the name of the key column. Security definer so it can write the log whoever changes the row.';

create trigger tg_90_record_activity
  after insert or update or delete on public.anomaly_detection_config
  for each row execute function anomaly.tg_record_activity('key');
create trigger tg_90_record_activity
  after insert or update or delete on public.system_settings
  for each row execute function anomaly.tg_record_activity('key');

grant execute on function anomaly.validate_config(text, jsonb) to service_role;
grant execute on function anomaly.config(text) to service_role;
-- Trigger functions run for authenticated admins who update config through the API.
grant usage on schema anomaly to authenticated;
grant execute on function anomaly.tg_anomaly_detection_config__validate() to authenticated, service_role;
grant execute on function anomaly.validate_config(text, jsonb) to authenticated;
grant execute on function anomaly.tg_record_activity() to authenticated, service_role;
grant select on anomaly.config_keys to authenticated, service_role;

-- ============================================================== keys known to the foundation
insert into anomaly.config_keys (key, spec, defaults, description) values
(
  'ingest',
  '{"max_body_bytes": {"type": "integer", "min": 1024, "max": 67108864},
    "max_spans_per_request": {"type": "integer", "min": 1, "max": 200000},
    "max_attribute_value_length": {"type": "integer", "min": 16, "max": 65536},
    "redact_keys": {"type": "string_array"},
    "hash_keys": {"type": "string_array"},
    "redact_value_patterns": {"type": "string_array"}}',
  '{"max_body_bytes": 16777216,
    "max_spans_per_request": 50000,
    "max_attribute_value_length": 4096,
    "redact_keys": ["authorization", "cookie", "set-cookie", "password", "passwd", "secret", "token", "api_key", "apikey", "x-api-key", "credential", "private_key", "session"],
    "hash_keys": ["enduser.id", "user.email", "email", "user.name", "client.address", "net.peer.ip", "net.sock.peer.addr", "source.address", "http.client_ip"],
    "redact_value_patterns": ["email", "bearer", "ipv4", "ipv6", "sql_literals", "card_number"]}',
  'OTLP ingest limits and the redaction applied before anything is stored. Keys match attribute names '
  'case-insensitively as substrings of the last dotted segment; hashed values become "sha256:<12 hex>".'
),
(
  'rollup',
  '{"allowed_lateness_seconds": {"type": "integer", "min": 0, "max": 86400},
    "trace_idle_seconds": {"type": "integer", "min": 5, "max": 3600},
    "span_retention_days": {"type": "integer", "min": 1, "max": 365},
    "rollup_retention_days": {"type": "integer", "min": 1, "max": 3650},
    "max_dirty_keys_per_run": {"type": "integer", "min": 100, "max": 10000000}}',
  '{"allowed_lateness_seconds": 60, "trace_idle_seconds": 60, "span_retention_days": 3,
    "rollup_retention_days": 35, "max_dirty_keys_per_run": 200000}',
  'Per-minute rollup: how late a span may arrive and still be awaited, when a trace counts as finished, retention.'
);
