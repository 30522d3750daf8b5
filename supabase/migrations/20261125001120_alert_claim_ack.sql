-- 20261125001120_alert_claim_ack.sql — how alert-dispatch drains the outbox, exactly once per row.
-- claim_alerts locks due rows with FOR UPDATE SKIP LOCKED (two dispatchers never take the same row), pulls in the
-- rest of each row's group (incident + firing/resolved on one channel) and leases them; ack_alert records the
-- attempt once per claim and moves the rows on (delivered, back to pending after a backoff, or dead); rows whose
-- lease ran out (a crashed dispatcher) are claimed again. redrive_alerts puts dead rows back in the queue.

create type anomaly.alert_claim as (
  claim_id uuid,
  channel jsonb,
  group_key text,
  event text,
  outbox_ids bigint[],
  idempotency_key text,
  attempt integer,
  parts_sent integer,
  anomalies jsonb,
  incident jsonb,
  config jsonb
);
comment on type anomaly.alert_claim is
  'One claimed group: the channel (without its secret), the outbox rows, a stable idempotency key for the group, '
  'the attempt number, the anomalies (current rows with the event and severity that enqueued them), the incident '
  '(root, size, services) and the alerts config (links). Returned by anomaly.claim_alerts.';

create function anomaly.claim_alerts(p_dispatcher text, p_limit integer default null)
returns setof anomaly.alert_claim
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('alerts');
  v_limit integer := coalesce(p_limit, (v_cfg ->> 'claim_batch')::integer);
  v_lease interval := make_interval(secs => (v_cfg ->> 'lease_seconds')::integer);
  v_heads bigint[];
  v_ids bigint[];
begin
  if v_limit < 1 or v_limit > 1000 then
    raise exception using errcode = 'TSA02', message = 'claim_alerts takes between 1 and 1000 groups',
      detail = format('got %s', v_limit), hint = 'Leave p_limit null to use alerts.claim_batch.';
  end if;

  -- 1. Heads: rows whose lease ran out (a dispatcher died), then due pending rows, each through its partial index,
  --    locked with SKIP LOCKED so concurrent dispatchers take disjoint rows. Cost O(limit), not O(backlog).
  select coalesce(array_agg(x.id), '{}') into v_heads from (
    select o.id from anomaly.alert_outbox o
    where o.status = 'sending' and o.lease_until < now()
    order by o.lease_until
    limit v_limit
    for update skip locked) x;
  select v_heads || coalesce(array_agg(x.id), '{}') into v_heads from (
    select o.id from anomaly.alert_outbox o
    where o.status = 'pending' and o.due_at <= now()
      -- a resolved notice never overtakes its alert: it waits while the anomaly's firing row is unsent
      and (o.event <> 'resolved' or not exists (
            select 1 from anomaly.alert_outbox f
            where f.anomaly_id = o.anomaly_id and f.channel_id = o.channel_id and f.event <> 'resolved'
              and f.status in ('pending', 'sending')))
    order by o.due_at, o.id
    limit greatest(v_limit - cardinality(v_heads), 0)
    for update skip locked) x;
  if cardinality(v_heads) = 0 then
    return;
  end if;

  -- 2. The rest of each head's group (rows that joined while it waited, rows in a backoff with it).
  select array_agg(distinct x.id) into v_ids from (
    select unnest(v_heads) as id
    union all
    select m.id from (
      select o.id from anomaly.alert_outbox o
      join (select distinct h.channel_id, h.group_key from anomaly.alert_outbox h where h.id = any (v_heads)) g
        on g.channel_id = o.channel_id and g.group_key = o.group_key
      where (o.status = 'pending' or (o.status = 'sending' and o.lease_until < now()))
        and (o.event <> 'resolved' or not exists (
              select 1 from anomaly.alert_outbox f
              where f.anomaly_id = o.anomaly_id and f.channel_id = o.channel_id and f.event <> 'resolved'
                and f.status in ('pending', 'sending')))
      for update of o skip locked) m) x;

  -- 3. What changed while the rows waited: a silence or maintenance window created since (the row says which), or
  --    the channel disabled. Resolved notices are not silenced: the firing alert went out.
  update anomaly.alert_outbox o
     set status = 'suppressed', updated_at = now(),
         reason = format('%s %s by %s until %s: %s (created after the alert was queued)',
                         case s.kind when 'maintenance' then 'maintenance window' else 'silenced' end,
                         s.id, s.author, s.ends_at, s.comment)
    from public.trace_anomalies a,
         lateral anomaly.matching_silence(a.anomaly_type, a.subtype, a.service, a.severity) s
   where o.id = any (v_ids) and o.status = 'pending' and a.id = o.anomaly_id and s.id is not null
     and o.event <> 'resolved';
  update anomaly.alert_outbox o
     set status = 'suppressed', updated_at = now(), reason = 'channel disabled before the alert was sent'
    from anomaly.notification_channels c
   where o.id = any (v_ids) and o.status = 'pending' and c.id = o.channel_id and not c.enabled;

  -- 4. Lease them, one claim id per group, and return the groups.
  return query
  with groups as materialized (
    select d.channel_id, d.group_key, gen_random_uuid() as claim_id
    from (select distinct o.channel_id, o.group_key from anomaly.alert_outbox o
          where o.id = any (v_ids) and o.status in ('pending', 'sending')) d
  ),
  claimed as (
    update anomaly.alert_outbox o
       set status = 'sending', claim_id = g.claim_id, claimed_by = p_dispatcher, lease_until = now() + v_lease,
           attempts = o.attempts + 1, updated_at = now()
      from groups g
     where o.id = any (v_ids) and o.status in ('pending', 'sending')
       and g.channel_id = o.channel_id and g.group_key = o.group_key
    returning o.*
  )
  select g.claim_id,
         to_jsonb(c) - 'secret_name' - 'created_at' - 'updated_at' - 'description',
         g.group_key,
         case when g.group_key like '%:resolved' then 'resolved' else 'firing' end,
         array_agg(cl.id order by cl.id),
         'ts-' || md5(string_agg(cl.idempotency_key, ',' order by cl.idempotency_key)),
         max(cl.attempts)::integer,
         max(cl.parts_sent)::integer,
         jsonb_agg(jsonb_build_object('outbox_id', cl.id, 'event', cl.event, 'alert_severity', cl.severity,
                                      'anomaly', to_jsonb(a))
                   order by anomaly.severity_rank(a.severity) desc, a.score desc, a.first_seen, a.id),
         (select jsonb_build_object(
                   'id', g2.incident_id, 'size', count(*), 'open', count(*) filter (where i.status <> 'RESOLVED'),
                   'services', jsonb_agg(distinct i.service), 'first_seen', min(i.first_seen))
          from (select distinct cl2.incident_id from claimed cl2 where cl2.claim_id = g.claim_id) g2
          join public.trace_anomalies i on i.incident_id = g2.incident_id
          group by g2.incident_id
          limit 1),
         v_cfg
  from groups g
  join claimed cl on cl.claim_id = g.claim_id
  join anomaly.notification_channels c on c.id = g.channel_id
  join public.trace_anomalies a on a.id = cl.anomaly_id
  group by g.claim_id, g.group_key, c.id
  order by min(cl.id);
end
$$;
comment on function anomaly.claim_alerts(text, integer) is
  'Claims up to p_limit (default alerts.claim_batch) due groups for dispatcher p_dispatcher: rows whose lease expired '
  'and due pending rows are locked with FOR UPDATE SKIP LOCKED, joined by the other pending rows of their group, '
  'and marked sending with a lease of alerts.lease_seconds and attempts + 1. Claimed rows now matched by a silence '
  'or belonging to a disabled channel are suppressed instead; a resolved notice waits until its anomaly''s alert on '
  'the channel is no longer pending or sending. Returns one anomaly.alert_claim per group, oldest first; acknowledge each with anomaly.ack_alert.';

create function anomaly.ack_alert(
  p_claim_id uuid,
  p_outcome text,
  p_status_code integer default null,
  p_error text default null,
  p_duration_ms integer default null,
  p_retry_in_ms integer default null,
  p_parts_sent integer default 0,
  p_dispatcher text default null)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('alerts');
  v_channel uuid;
  v_group text;
  v_ids bigint[];
  v_attempt integer;
  v_result text;
begin
  if p_outcome is null or p_outcome not in ('delivered', 'retry', 'permanent', 'deferred') then
    raise exception using errcode = 'TSA02', message = 'outcome must be delivered, retry, permanent or deferred',
      detail = format('got %s', coalesce(p_outcome, 'null')), hint = 'See functions/_shared/alerts/classify.ts.';
  end if;
  -- Acknowledging again (a dispatcher retrying after the database came back) changes nothing.
  if exists (select 1 from anomaly.alert_deliveries d where d.claim_id = p_claim_id) then
    return 'duplicate';
  end if;

  perform 1 from anomaly.alert_outbox o where o.claim_id = p_claim_id and o.status = 'sending' for update;
  select min(o.channel_id::text)::uuid, min(o.group_key), array_agg(o.id order by o.id), max(o.attempts)
    into v_channel, v_group, v_ids, v_attempt
  from anomaly.alert_outbox o
  where o.claim_id = p_claim_id and o.status = 'sending';
  if v_ids is null then
    -- The lease ran out and another dispatcher took the rows (or they were re-driven): nothing to move.
    return 'stale';
  end if;

  v_result := case
    when p_outcome = 'delivered' then 'delivered'
    when p_outcome = 'deferred' then 'pending'
    when p_outcome = 'permanent' then 'dead'
    when v_attempt >= (v_cfg ->> 'max_attempts')::integer then 'dead'
    else 'pending' end;

  update anomaly.alert_outbox o set
    status = v_result,
    lease_until = null,
    delivered_at = case when v_result = 'delivered' then now() end,
    attempts = case when p_outcome = 'deferred' then greatest(o.attempts - 1, 0) else o.attempts end,
    due_at = case when v_result = 'pending'
                  then now() + make_interval(secs => greatest(coalesce(p_retry_in_ms, 0), 0) / 1000.0)
                  else o.due_at end,
    parts_sent = greatest(o.parts_sent, coalesce(p_parts_sent, 0)),
    last_status_code = coalesce(p_status_code, o.last_status_code),
    last_error = case when p_outcome = 'delivered' then o.last_error
                      else left(coalesce(p_error, p_outcome), 2000) end,
    updated_at = now()
  where o.id = any (v_ids);

  insert into anomaly.alert_deliveries (claim_id, channel_id, group_key, outbox_ids, attempt, outcome, status_code,
                                        error, duration_ms, parts_sent, retry_in_ms, dispatcher)
  values (p_claim_id, v_channel, v_group, v_ids, v_attempt, p_outcome, p_status_code, left(p_error, 2000),
          p_duration_ms, coalesce(p_parts_sent, 0), case when v_result = 'pending' then p_retry_in_ms end,
          p_dispatcher)
  on conflict (claim_id) do nothing;
  return v_result;
end
$$;
comment on function anomaly.ack_alert(uuid, text, integer, text, integer, integer, integer, text) is
  'Records the outcome of one claim: delivered; retry (back to pending after p_retry_in_ms, or dead after '
  'alerts.max_attempts attempts); permanent (dead at once, e.g. Telegram 403 or a webhook 4xx); deferred (back to '
  'pending without using an attempt, e.g. the chat is in a 429 pause). Idempotent per claim (returns duplicate); '
  'returns stale when the rows were taken over after their lease expired. Writes anomaly.alert_deliveries.';

create function anomaly.redrive_alerts(p_outbox_id bigint default null, p_channel text default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows integer;
begin
  if p_outbox_id is not null and not exists (
      select 1 from anomaly.alert_outbox o where o.id = p_outbox_id and o.status = 'dead') then
    raise exception using errcode = 'TSA02', message = format('outbox row %s is not dead', p_outbox_id),
      detail = (select format('status %s', o.status) from anomaly.alert_outbox o where o.id = p_outbox_id),
      hint = 'List dead rows: select id, last_error from anomaly.alert_outbox where status = ''dead'';';
  end if;
  if p_channel is not null and not exists (select 1 from anomaly.notification_channels c where c.name = p_channel) then
    raise exception using errcode = 'TSA02', message = format('no channel named "%s"', p_channel),
      hint = 'select name from anomaly.notification_channels;';
  end if;
  update anomaly.alert_outbox o
     set status = 'pending', attempts = 0, due_at = now(), claim_id = null, claimed_by = null, updated_at = now()
   where o.status = 'dead'
     and (p_outbox_id is null or o.id = p_outbox_id)
     and (p_channel is null or o.channel_id = (select c.id from anomaly.notification_channels c where c.name = p_channel));
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;
comment on function anomaly.redrive_alerts(bigint, text) is
  'Puts dead outbox rows back in the queue (pending, attempts 0, due now): one row (p_outbox_id, TSA02 unless it is '
  'dead), one channel (p_channel by name), or all. Keeps last_error for the record. Returns the rows re-driven.';

grant execute on function anomaly.claim_alerts(text, integer),
  anomaly.ack_alert(uuid, text, integer, text, integer, integer, integer, text),
  anomaly.redrive_alerts(bigint, text) to service_role;
