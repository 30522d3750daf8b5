-- 30: the trigger on public.trace_anomalies writes one outbox row per matching channel for opening, escalation and
-- resolution (idempotently), broadcasts each change on the private realtime topic, and pushes CRITICAL alerts to
-- alert-dispatch through net.http_post once per transaction.
begin;
select plan(20);

select vault.create_secret('123456:TEST', 'tg-ops');
select vault.create_secret('hmac-key', 'hook-sec');
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity)
values ('ops', 'telegram', '-100123', 'tg-ops', 'MEDIUM');
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, services)
values ('payments-only', 'telegram', '-100124', 'tg-ops', 'LOW', array['payments']);
insert into anomaly.notification_channels (name, kind, webhook_url, secret_name, min_severity, anomaly_types)
values ('security-hook', 'webhook', 'https://hooks.example.com/a', 'hook-sec', 'LOW', array['SECURITY']);
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, enabled)
values ('off', 'telegram', '-100125', 'tg-ops', false);

create function tests.open_anomaly(p_service text, p_severity text, p_type text default 'LATENCY', p_fp text default null)
returns uuid language sql set search_path = '' as $$
  insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, operation, detector,
                                      first_seen, last_seen)
  values (p_type, 'p95', p_severity, coalesce(p_fp, p_type || '|p95|' || p_service), p_service, 'GET /x', 'latency_zscore',
          now() - interval '3 minutes', now())
  returning id
$$;

create temp table a as select tests.open_anomaly('api', 'HIGH') as high, tests.open_anomaly('db', 'LOW') as low;

select results_eq($$ select c.name, o.event, o.severity, o.status from anomaly.alert_outbox o
                     join anomaly.notification_channels c on c.id = o.channel_id
                     where o.anomaly_id = (select high from a) $$,
  $$ values ('ops'::text, 'opened'::text, 'HIGH'::text, 'pending'::text) $$,
  'an opened HIGH anomaly is queued for the channel whose min_severity it meets, and no other');
select is_empty($$ select 1 from anomaly.alert_outbox where anomaly_id = (select low from a) $$,
  'a LOW anomaly reaches no channel whose min_severity is higher or whose services exclude it');
select ok((select due_at > now() from anomaly.alert_outbox where anomaly_id = (select high from a)),
  'a non-critical alert waits for the grouping delay');
select is((select idempotency_key from anomaly.alert_outbox where anomaly_id = (select high from a)),
  (select high from a)::text || ':opened:' || (select id from anomaly.notification_channels where name = 'ops')::text,
  'the idempotency key is anomaly:event:channel');

-- re-running the enqueue for the same event writes nothing
select is(anomaly.enqueue_alerts((select t from public.trace_anomalies t where id = (select high from a)), 'opened'), 0,
  'enqueueing the same event again writes nothing (unique idempotency key)');

-- escalation while the opening still waits: the waiting row is raised, no second row
update public.trace_anomalies set severity = 'CRITICAL' where id = (select high from a);
select results_eq($$ select event, severity, due_at <= now() from anomaly.alert_outbox where anomaly_id = (select high from a) $$,
  $$ values ('opened'::text, 'CRITICAL'::text, true) $$,
  'an escalation before the opening went out raises the waiting row and makes it due at once');

-- escalation after delivery: a new escalated row
update anomaly.alert_outbox set status = 'delivered', delivered_at = now() where anomaly_id = (select high from a);
create temp table b as select tests.open_anomaly('search', 'MEDIUM') as medium;
update anomaly.alert_outbox set status = 'delivered', delivered_at = now() where anomaly_id = (select medium from b);
update public.trace_anomalies set severity = 'HIGH' where id = (select medium from b);
select results_eq($$ select event, severity, status from anomaly.alert_outbox where anomaly_id = (select medium from b) order by id $$,
  $$ values ('opened'::text, 'MEDIUM'::text, 'delivered'::text), ('escalated', 'HIGH', 'pending') $$,
  'an escalation after the opening was sent is queued as its own event');
update public.trace_anomalies set score = 99, occurrences = 5 where id = (select medium from b);
select is((select count(*)::int from anomaly.alert_outbox where anomaly_id = (select medium from b)), 2,
  'updates that change neither severity nor status enqueue nothing');

-- resolution
update public.trace_anomalies set status = 'RESOLVED', resolved_at = now() where id = (select medium from b);
select results_eq($$ select event, status, group_key like '%:resolved' from anomaly.alert_outbox
                     where anomaly_id = (select medium from b) and event = 'resolved' $$,
  $$ values ('resolved'::text, 'pending'::text, true) $$,
  'resolution queues a resolved notice in the incident''s resolved group');

-- channel filters: types, SECURITY, services, disabled
create temp table c as select tests.open_anomaly('auth', 'HIGH', 'SECURITY') as sec,
                              tests.open_anomaly('payments', 'LOW', 'ERROR_RATE') as pay;
select results_eq($$ select c.name from anomaly.alert_outbox o join anomaly.notification_channels c on c.id = o.channel_id
                     where o.anomaly_id = (select sec from c) $$,
  $$ values ('security-hook'::text) $$,
  'SECURITY anomalies go only to channels that list SECURITY explicitly');
select results_eq($$ select c.name from anomaly.alert_outbox o join anomaly.notification_channels c on c.id = o.channel_id
                     where o.anomaly_id = (select pay from c) $$,
  $$ values ('payments-only'::text) $$,
  'a channel limited to services receives its service''s anomalies at its own min_severity');
select is_empty($$ select 1 from anomaly.alert_outbox o join anomaly.notification_channels c on c.id = o.channel_id
                   where c.name = 'off' $$, 'a disabled channel receives nothing');

-- realtime broadcasts
select ok((select count(*) from realtime.messages where topic = 'anomalies' and event = 'anomaly_opened' and private
           and payload ->> 'id' = (select high from a)::text) = 1,
  'opening is broadcast privately on topic anomalies');
select ok(exists (select 1 from realtime.messages where topic = 'anomalies' and event = 'anomaly_escalated'
                  and payload ->> 'id' = (select medium from b)::text),
  'escalation is broadcast');
select ok(exists (select 1 from realtime.messages where topic = 'anomalies' and event = 'anomaly_resolved'
                  and payload ->> 'id' = (select medium from b)::text),
  'resolution is broadcast');
select ok(exists (select 1 from realtime.messages where topic = 'anomalies:security' and payload ->> 'id' = (select sec from c)::text)
          and not exists (select 1 from realtime.messages where topic = 'anomalies' and payload ->> 'anomaly_type' = 'SECURITY'),
  'SECURITY anomalies are broadcast on anomalies:security only');
update public.trace_anomalies set status = 'ACKNOWLEDGED', acknowledged_at = now() where id = (select pay from c);
select ok(exists (select 1 from realtime.messages where event = 'anomaly_acknowledged' and payload ->> 'id' = (select pay from c)::text)
          and not exists (select 1 from anomaly.alert_outbox where anomaly_id = (select pay from c) and event <> 'opened'),
  'acknowledgement is broadcast but not alerted');

-- the critical fast path: one net.http_post per transaction, only when Vault knows where to call
select is((select count(*)::int from net.http_request_queue where url like '%/functions/v1/alert-dispatch'), 0,
  'without project_url in Vault the critical path leaves it to the sweep');
select vault.create_secret('http://127.0.0.1:9', 'project_url');
select vault.create_secret('sb_secret_test', 'service_role_key');
select tests.open_anomaly('cart', 'CRITICAL', 'LATENCY', 'fp-crit-1');
select tests.open_anomaly('cart', 'CRITICAL', 'ERROR_RATE', 'fp-crit-2');
select results_eq($$ select url, headers ->> 'Authorization', convert_from(body, 'UTF8')::jsonb ->> 'reason'
                     from net.http_request_queue where url like '%alert-dispatch' $$,
  $$ values ('http://127.0.0.1:9/functions/v1/alert-dispatch'::text, 'Bearer sb_secret_test'::text, 'critical'::text) $$,
  'a CRITICAL alert calls alert-dispatch through net.http_post with the Vault key, once per transaction');
select ok((select bool_and(due_at <= now()) from anomaly.alert_outbox o join public.trace_anomalies t on t.id = o.anomaly_id
           where t.service = 'cart'), 'CRITICAL alerts are due at once');

select * from finish();
rollback;
