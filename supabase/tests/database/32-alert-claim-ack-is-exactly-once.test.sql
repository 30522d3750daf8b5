-- 32: claim and ack: a claim takes due rows (and the rest of their group) with a lease; leased rows are not claimed
-- again (the lock race of concurrent dispatchers is tests/integration/alert-dispatch.test.ts); an expired lease makes
-- rows claimable again; ack moves rows by outcome (delivered, retry with
-- backoff, dead after max_attempts, permanent, deferred without using an attempt), is idempotent per claim and
-- stale after a takeover; dead rows are re-driven by hand (TSA02 for anything else).
begin;
select plan(20);

select vault.create_secret('123456:TEST', 'tg-ops');
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity)
values ('ops', 'telegram', '-100123', 'tg-ops', 'LOW');
insert into public.anomaly_detection_config (key, value) values ('alerts', '{"max_attempts": 2, "group_wait_seconds": 0}');

create function tests.open_anomaly(p_service text, p_type text default 'LATENCY')
returns uuid language sql set search_path = '' as $$
  insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, detector, first_seen, last_seen)
  values (p_type, 'p95', 'HIGH', p_type || '|p95|' || p_service, p_service, 'latency_zscore', now() - interval '2 minutes', now())
  returning id
$$;
select tests.open_anomaly('api'), tests.open_anomaly('api', 'ERROR_RATE'), tests.open_anomaly('billing');

create temp table c1 as select * from anomaly.claim_alerts('d1');
select is((select count(*)::int from c1), 2, 'two incidents: two claimed groups');
select results_eq($$ select array_length(outbox_ids, 1), attempt, event, (anomalies -> 0 -> 'anomaly' ->> 'service')
                     from c1 order by 1 desc $$,
  $$ values (2, 1, 'firing'::text, 'api'::text), (1, 1, 'firing', 'billing') $$,
  'a group carries all of its incident''s rows, the attempt number and the anomalies');
select ok((select bool_and(status = 'sending' and claimed_by = 'd1' and lease_until > now()) from anomaly.alert_outbox),
  'claimed rows are leased to the dispatcher');
select ok((select bool_and(channel ? 'telegram_chat_id' and not channel ? 'secret_name') from c1),
  'a claim names the channel but not its secret');
select is_empty($$ select * from anomaly.claim_alerts('d2') $$, 'leased rows are not claimed again');
select throws_ok($$ select * from anomaly.claim_alerts('d2', 0) $$, 'TSA02', null, 'a claim of 0 groups is refused (TSA02)');

-- delivered, idempotently
create temp table api as select claim_id from c1 where array_length(outbox_ids, 1) = 2;
select is(anomaly.ack_alert((select claim_id from api), 'delivered', 200, null, 42, null, 1, 'd1'), 'delivered',
  'a delivered ack marks the group delivered');
select is(anomaly.ack_alert((select claim_id from api), 'delivered', 200, null, 42, null, 1, 'd1'), 'duplicate',
  'acking the same claim again changes nothing (a dispatcher retrying after an outage)');
select results_eq($$ select attempt, outcome, status_code, duration_ms, array_length(outbox_ids, 1) from anomaly.alert_deliveries $$,
  $$ values (1, 'delivered'::text, 200, 42, 2) $$, 'the attempt is recorded once in the delivery history');

-- retry with backoff, then dead after max_attempts = 2
create temp table bill as select claim_id from c1 where array_length(outbox_ids, 1) = 1;
select is(anomaly.ack_alert((select claim_id from bill), 'retry', 503, 'HTTP 503', 10, 60000, 0, 'd1'), 'pending',
  'a retry puts the group back');
select ok((select due_at between now() + interval '59 seconds' and now() + interval '61 seconds' and last_error = 'HTTP 503'
           from anomaly.alert_outbox where anomaly_id = (select id from public.trace_anomalies where service = 'billing')),
  'after the backoff the dispatcher asked for, with the error kept');
update anomaly.alert_outbox set due_at = now() where status = 'pending';
create temp table c2 as select * from anomaly.claim_alerts('d1');
select is(anomaly.ack_alert((select claim_id from c2), 'retry', null, 'timeout', 10, 1000, 0, 'd1'), 'dead',
  'the last allowed attempt failing makes the row dead, with the last error');

-- re-drive
select throws_ok($$ select anomaly.redrive_alerts((select min(id) from anomaly.alert_outbox where status = 'delivered')) $$,
  'TSA02', null, 're-driving a row that is not dead is refused (TSA02)');
select is(anomaly.redrive_alerts(p_channel => 'ops'), 1, 'a dead row is re-driven');
select ok((select status = 'pending' and attempts = 0 and last_error = 'timeout' from anomaly.alert_outbox where status <> 'delivered'),
  'pending again with a fresh attempt budget; the last error stays for the record');

-- deferred does not use an attempt; expired lease is claimed again; stale ack
create temp table c3 as select * from anomaly.claim_alerts('d1');
select anomaly.ack_alert((select claim_id from c3), 'deferred', null, 'channel paused by 429', 0, 0, 0, 'd1');
select is((select attempts from anomaly.alert_outbox where status = 'pending'), 0, 'a deferral gives the attempt back');
create temp table c4 as select * from anomaly.claim_alerts('crashed');
update anomaly.alert_outbox set lease_until = now() - interval '1 second' where status = 'sending';
create temp table c5 as select * from anomaly.claim_alerts('rescuer');
select is((select attempt from c5), 2, 'rows of a dispatcher whose lease ran out are claimed again (next attempt)');
select is(anomaly.ack_alert((select claim_id from c4), 'delivered', 200, null, 1, null, 1, 'crashed'), 'stale',
  'the crashed dispatcher''s late ack does not touch rows taken over');

-- a resolved notice never overtakes the alert it closes
select tests.open_anomaly('orders');
update public.trace_anomalies set status = 'RESOLVED', resolved_at = now() where service = 'orders';
update anomaly.alert_outbox set due_at = now() where status = 'pending';
create temp table c6 as select * from anomaly.claim_alerts('d1');
select results_eq($$ select event from c6 where anomalies -> 0 -> 'anomaly' ->> 'service' = 'orders' $$,
  $$ values ('firing'::text) $$, 'while the alert is unsent, only the firing group is claimed');
select anomaly.ack_alert(claim_id, 'delivered', 200, null, 1, null, 1, 'd1') from c6;
select results_eq($$ select event from anomaly.claim_alerts('d1') where anomalies -> 0 -> 'anomaly' ->> 'service' = 'orders' $$,
  $$ values ('resolved'::text) $$, 'once it is delivered, the resolved notice follows');

select * from finish();
rollback;
