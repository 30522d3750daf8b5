-- 33: who may see and change alerting: admins manage channels; operators create silences (directly or through
-- public.create_silence), viewers only read them; outbox rows of SECURITY anomalies and the security broadcast topic
-- are for analysts and admins; channel and config validation raise TSA01 / TSA03 / TSC01.
begin;
select plan(20);

select vault.create_secret('123456:TEST', 'tg-ops');
insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, anomaly_types)
values ('ops', 'telegram', '-100123', 'tg-ops', 'LOW', array['LATENCY', 'SECURITY']);
insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, detector, first_seen, last_seen)
values ('LATENCY', 'p95', 'HIGH', 'fp-l', 'api', 'z', now(), now()), ('SECURITY', 'new_edge', 'HIGH', 'fp-s', 'auth', 'z', now(), now());

-- channels
select tests.authenticate_as('operator');
select is((select count(*)::int from anomaly.notification_channels), 1, 'an operator reads channels');
select throws_ok($$ insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name)
                    values ('mine', 'telegram', '-1', 'tg-ops') $$, '42501', null, 'an operator cannot create channels');
select tests.clear_authentication();
select tests.authenticate_as('viewer');
select is_empty($$ select 1 from anomaly.notification_channels $$, 'a viewer does not see channels');
select tests.clear_authentication();
select tests.authenticate_as('admin');
select lives_ok($$ insert into anomaly.notification_channels (name, kind, webhook_url, secret_name)
                   values ('hook', 'webhook', 'https://hooks.example.com/x', 'tg-ops') $$, 'an admin creates a channel');
select tests.clear_authentication();

-- silences
select tests.authenticate_as('operator');
select lives_ok($$ select public.create_silence(ends_at => now() + interval '1 hour', service => 'api', comment => 'deploy') $$,
  'an operator creates a silence through public.create_silence (the API''s rpc)');
select tests.clear_authentication();
select tests.authenticate_as('viewer');
select throws_ok($$ select public.create_silence(ends_at => now() + interval '1 hour', service => 'api', comment => 'x') $$,
  '42501', null, 'a viewer cannot create silences');
select is((select count(*)::int from anomaly.silences), 1, 'a viewer reads silences');
select is(public.expire_silence((select id from anomaly.silences limit 1)), false, 'a viewer cannot end a silence');
select tests.clear_authentication();
select tests.authenticate_as('admin');
select is(public.expire_silence((select id from anomaly.silences limit 1)), true, 'an admin ends a silence early');
select tests.clear_authentication();
select ok((select author from anomaly.silences) like '00000000-0000-4000-8000-%', 'the author defaults to the caller');

-- outbox and delivery history
select tests.authenticate_as('operator');
select results_eq($$ select anomaly_type from anomaly.alert_outbox order by 1 $$, array['LATENCY'],
  'an operator sees outbox rows, but not those of SECURITY anomalies');
select tests.clear_authentication();
select tests.authenticate_as('security_analyst');
select results_eq($$ select anomaly_type from anomaly.alert_outbox order by 1 $$, array['LATENCY', 'SECURITY'],
  'a security analyst sees all outbox rows');
select tests.clear_authentication();
select tests.authenticate_as('viewer');
select is_empty($$ select 1 from anomaly.alert_outbox $$, 'a viewer sees no outbox rows');
select tests.clear_authentication();

-- realtime: Realtime authorises a join by selecting from realtime.messages with realtime.topic() set
select tests.authenticate_as('viewer');
select set_config('realtime.topic', 'anomalies', true);
select ok(exists (select 1 from realtime.messages), 'a viewer may join topic anomalies');
select set_config('realtime.topic', 'anomalies:security', true);
select ok(not exists (select 1 from realtime.messages), 'a viewer may not join topic anomalies:security');
select tests.clear_authentication();
select tests.authenticate_as('security_analyst');
select set_config('realtime.topic', 'anomalies:security', true);
select ok(exists (select 1 from realtime.messages where payload ->> 'anomaly_type' = 'SECURITY'),
  'a security analyst receives security broadcasts');
select tests.clear_authentication();

-- validation codes
select throws_ok($$ insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name)
                    values ('bad', 'telegram', 'not-a-chat', 'tg-ops') $$, 'TSA01', null,
  'a telegram channel needs a numeric chat id or @channel (TSA01)');
select throws_ok($$ insert into anomaly.notification_channels (name, kind, webhook_url, secret_name)
                    values ('nosecret', 'webhook', 'https://h.example.com', 'missing') $$, 'TSA03', null,
  'a channel whose Vault secret does not exist is refused (TSA03)');

select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('alerts', '{"group_wait_seconds": -1}') $$,
  'TSC01', null, 'a negative grouping delay is refused (TSC01)');
select throws_ok($$ insert into public.anomaly_detection_config (key, value) values ('alerts', '{"dedup_minutes": 5}') $$,
  'TSC01', null, 'an unknown alerts field is refused (TSC01)');

select * from finish();
rollback;
