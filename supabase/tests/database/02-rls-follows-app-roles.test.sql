-- 02: row level security follows the JWT app role; SECURITY anomalies are for analysts and admins only.
begin;
select plan(9);

insert into public.trace_anomalies (anomaly_type, subtype, fingerprint, service, detector, first_seen, last_seen)
values ('LATENCY', 'p95_zscore', 'fp-latency', 'api', 'zscore', now(), now()),
       ('SECURITY', 'new_edge', 'fp-security', 'api', 'edges', now(), now());

select tests.authenticate_as('viewer');
select results_eq($$ select anomaly_type from public.trace_anomalies order by 1 $$, array['LATENCY'],
  'a viewer sees performance anomalies but not security ones');
select tests.clear_authentication();

select tests.authenticate_as('security_analyst');
select results_eq($$ select anomaly_type from public.trace_anomalies order by 1 $$, array['LATENCY', 'SECURITY'],
  'a security analyst sees security anomalies too');
select tests.clear_authentication();

select tests.authenticate_as('nobody');
select is_empty($$ select 1 from public.trace_anomalies $$, 'a user without an app role sees nothing');
select tests.clear_authentication();

set local role anon;
select throws_ok($$ select 1 from public.trace_anomalies $$, '42501', null, 'anon has no grant on anomalies');
reset role;

select tests.authenticate_as('viewer');
update public.system_settings set value = '5' where key = 'outlier_detection_stddev';
select tests.clear_authentication();
select is((select value from public.system_settings where key = 'outlier_detection_stddev'), '2'::jsonb,
  'a viewer''s update of settings changes nothing');

select tests.authenticate_as('admin');
update public.system_settings set value = '3' where key = 'outlier_detection_stddev';
select tests.clear_authentication();
select is((select value from public.system_settings where key = 'outlier_detection_stddev'), '3'::jsonb,
  'an admin can change settings');
select is((select actor_role || ':' || action from public.activity_log
           where target_table = 'public.system_settings' order by id desc limit 1), 'admin:UPDATE',
  'the admin''s change is recorded in the activity log');

select throws_ok($$ update public.system_settings set value = '0' where key = 'outlier_detection_stddev' $$,
  '23514', null, 'outlier_detection_stddev must be a positive number');

select tests.authenticate_as('admin');
select throws_ok($$ insert into public.activity_log (action, target_table, target_key) values ('INSERT', 'x', 'y') $$,
  '42501', null, 'nobody writes the activity log directly through the API');
select tests.clear_authentication();

select * from finish();
rollback;
