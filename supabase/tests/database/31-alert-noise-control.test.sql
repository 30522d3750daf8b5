-- 31: noise control records instead of dropping: dedup per fingerprint within the window, one group per incident
-- (collateral anomalies join the root's waiting message; a CRITICAL pulls the group forward), silences and
-- maintenance windows (validated with TSA01; one created after queueing still applies at claim), per-channel rate
-- limits, resolved notices only for what was alerted, the global switch, and repeats for open CRITICAL anomalies.
begin;
select plan(19);

select vault.create_secret('123456:TEST', 'tg-ops');
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, max_per_minute)
values ('ops', 'telegram', '-100123', 'tg-ops', 'LOW', 100);
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, max_per_minute, services)
values ('tight', 'telegram', '-100124', 'tg-ops', 'LOW', 2, array['burst-a', 'burst-b', 'burst-c']);

create function tests.open_anomaly(p_service text, p_severity text default 'HIGH', p_fp text default null,
                                   p_type text default 'LATENCY')
returns uuid language sql set search_path = '' as $$
  insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, detector, first_seen, last_seen)
  values (p_type, 'p95', p_severity, coalesce(p_fp, p_type || '|p95|' || p_service), p_service, 'latency_zscore',
          now() - interval '2 minutes', now())
  returning id
$$;
create function tests.outbox_of(p_anomaly uuid) returns table (event text, status text, reason text)
language sql set search_path = '' as $$
  select event, status, reason from anomaly.alert_outbox where anomaly_id = p_anomaly order by id
$$;

-- dedup: the same fingerprint re-opening within the window
create temp table d as select tests.open_anomaly('api', 'HIGH', 'fp-flap') as first;
update public.trace_anomalies set status = 'RESOLVED', resolved_at = now() where id = (select first from d);
insert into d select tests.open_anomaly('api', 'HIGH', 'fp-flap');
select results_eq($$ select status, reason like 'duplicate: fingerprint alerted at %' from tests.outbox_of(
                       (select first from d offset 1)) $$,
  $$ values ('suppressed'::text, true) $$,
  'a fingerprint re-opening within dedup_window_minutes is recorded as a suppressed duplicate');
update public.trace_anomalies set status = 'RESOLVED', resolved_at = now() where id = (select first from d offset 1);
select results_eq($$ select event, status, reason from tests.outbox_of((select first from d offset 1)) where event = 'resolved' $$,
  $$ values ('resolved'::text, 'suppressed'::text, 'not alerted on this channel, so no resolved notice'::text) $$,
  'its resolution is not announced either, with the reason');
insert into public.anomaly_detection_config (key, value) values ('alerts', '{"dedup_window_minutes": 0}');
insert into d select tests.open_anomaly('api', 'HIGH', 'fp-flap');
select is((select status from tests.outbox_of((select first from d offset 2))), 'pending',
  'with dedup_window_minutes = 0 every re-opening alerts');
delete from public.anomaly_detection_config where key = 'alerts';

-- grouping by incident: the root and a caller opening together share one waiting group
insert into anomaly.service_edge_minutes (caller_service, callee_service, bucket, call_count, error_count, duration_sum_ms)
values ('frontend', 'checkout', date_trunc('minute', now()) - interval '5 minutes', 10, 0, 100);
create temp table g as select tests.open_anomaly('checkout') as root;
insert into g select tests.open_anomaly('frontend');
select is((select count(distinct (group_key, due_at))::int from anomaly.alert_outbox
           where anomaly_id in (select root from g)), 1,
  'an incident''s collateral anomaly joins the root''s waiting group with the same due time');
select is((select count(distinct incident_id)::int from public.trace_anomalies where id in (select root from g)), 1,
  'both belong to the same incident');
insert into g select tests.open_anomaly('checkout', 'CRITICAL', 'fp-crit');
select ok((select bool_and(due_at <= now()) from anomaly.alert_outbox where anomaly_id in (select root from g)),
  'a CRITICAL anomaly joining the incident makes the whole group due at once');

-- silences and maintenance windows
select throws_ok($$ select public.create_silence(ends_at => now() - interval '1 hour', comment => 'x', service => 'api') $$,
  'TSA01', 'a silence must end after it starts', 'a silence ending before it starts is refused (TSA01)');
select throws_ok($$ select public.create_silence(ends_at => now() + interval '1 hour', comment => 'everything') $$,
  'TSA01', 'a silence needs at least one matcher', 'a silence without matchers is refused (TSA01)');
select throws_ok($$ select public.create_silence(ends_at => now() + interval '1 hour', comment => ' ', service => 'api') $$,
  'TSA01', null, 'a silence without a comment is refused (TSA01)');
select throws_ok($$ select public.create_silence(ends_at => now() + interval '1 hour', comment => 'x', severities => array['HUGE']) $$,
  'TSA01', null, 'unknown severities are refused (TSA01)');
select public.create_silence(ends_at => now() + interval '2 hours', comment => 'deploying search 2.4',
                             service => 'search', severities => array['LOW', 'MEDIUM', 'HIGH'], author => 'ana');
create temp table s as select tests.open_anomaly('search', 'HIGH') as silenced, tests.open_anomaly('search', 'CRITICAL', 'fp-s2') as loud;
select ok((select status = 'suppressed' and reason like 'silenced % by ana until %: deploying search 2.4'
           from tests.outbox_of((select silenced from s))),
  'an anomaly matching a silence is recorded as suppressed, naming the silence, author and comment');
select is((select status from tests.outbox_of((select loud from s))), 'pending',
  'the severities matcher lets a CRITICAL through');
select public.create_silence(ends_at => now() + interval '1 hour', comment => 'db failover', service => 'db',
                             kind => 'maintenance');
create temp table m as select tests.open_anomaly('db', 'CRITICAL') as maint;
select ok((select reason like 'maintenance window % db failover' from tests.outbox_of((select maint from m))),
  'a maintenance window suppresses even CRITICAL alerts of its service, with the reason');

-- a silence created after the alert was queued applies when it is claimed
create temp table late as select tests.open_anomaly('mail', 'HIGH') as id;
update anomaly.alert_outbox set due_at = now() where anomaly_id = (select id from late);
select public.create_silence(ends_at => now() + interval '1 hour', comment => 'mail is known broken', service => 'mail');
select count(*) from anomaly.claim_alerts('test');
select ok((select status = 'suppressed' and reason like '%(created after the alert was queued)' from tests.outbox_of((select id from late))),
  'a silence created while the alert waited suppresses it at claim time');

-- rate limit: the 'tight' channel takes 2 new messages per minute; groups joining a waiting message do not count
create temp table r as select tests.open_anomaly('burst-a') as id;
insert into r select tests.open_anomaly('burst-b');
insert into r select tests.open_anomaly('burst-c');
select results_eq($$ select o.status, coalesce(o.reason, '') from anomaly.alert_outbox o
                     join anomaly.notification_channels c on c.id = o.channel_id
                     where c.name = 'tight' order by o.id $$,
  $$ values ('pending'::text, ''::text), ('pending', ''),
            ('suppressed', 'rate limited: more than max_per_minute = 2 messages on this channel in the minute from '
                           || date_trunc('minute', now())) $$,
  'the third new message in a minute on a channel with max_per_minute = 2 is suppressed as rate limited');
insert into r select tests.open_anomaly('burst-a', 'HIGH', 'fp-burst-a-2', 'ERROR_RATE');
select is((select o.status from anomaly.alert_outbox o join anomaly.notification_channels c on c.id = o.channel_id
           where c.name = 'tight' order by o.id desc limit 1), 'pending',
  'an anomaly joining a waiting incident message is not rate limited');

-- the global switch
insert into public.anomaly_detection_config (key, value) values ('alerts', '{"enabled": false}');
create temp table off as select tests.open_anomaly('queue', 'CRITICAL') as id;
select results_eq($$ select status, reason from tests.outbox_of((select id from off)) $$,
  $$ values ('suppressed'::text, 'alerts disabled (config alerts.enabled = false)'::text) $$,
  'with alerts disabled, events are still recorded, as suppressed');
delete from public.anomaly_detection_config where key = 'alerts';

-- repeats for CRITICAL anomalies still open after repeat_interval_minutes
update anomaly.alert_outbox set status = 'delivered', delivered_at = now(), lease_until = null,
       created_at = now() - interval '61 minutes'
 where anomaly_id = (select id from public.trace_anomalies where fingerprint = 'fp-crit') and status <> 'suppressed';
select is(anomaly.enqueue_alert_repeats() >= 1, true, 'an open CRITICAL alerted 61 minutes ago is repeated');
select is(anomaly.enqueue_alert_repeats(), 0, 'and only once per interval');

select * from finish();
rollback;
