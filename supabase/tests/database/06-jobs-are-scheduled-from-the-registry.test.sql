-- 06: every job row is registered with pg_cron (or the local stand-in) and follows changes to its row.
begin;
select plan(7);

select set_eq($$ select jobname from cron.job where jobname like 'trace-sentinel:%' $$,
  $$ select 'trace-sentinel:' || name from anomaly.jobs where enabled $$,
  'every enabled job is registered with cron');
select is((select schedule from cron.job where jobname = 'trace-sentinel:rollup-detect'), '* * * * *',
  'rollup and detection run every minute');

update anomaly.jobs set schedule = '*/5 * * * *' where name = 'rollup-detect';
select is((select schedule from cron.job where jobname = 'trace-sentinel:rollup-detect'), '*/5 * * * *',
  'changing a schedule takes effect without redeploying');

update anomaly.jobs set enabled = false where name = 'retention';
select is_empty($$ select 1 from cron.job where jobname = 'trace-sentinel:retention' $$, 'disabling a job unschedules it');

insert into anomaly.jobs (name, schedule, kind, command, body, timeout_ms)
values ('tempo-ingest-test', '* * * * *', 'http', 'tempo-ingest', '{"source": "default"}', 8000);
select matches((select command from cron.job where jobname = 'trace-sentinel:tempo-ingest-test'),
  'net\.http_post\(url := \(select decrypted_secret from vault\.decrypted_secrets where name = ''project_url''\) \|\| ''/functions/v1/tempo-ingest''',
  'an HTTP job calls its edge function through pg_net with the project URL from Vault');
select throws_ok($$ insert into anomaly.jobs (name, schedule, kind, command) values ('bad', 'every minute', 'sql', 'select 1') $$,
  '23514', null, 'a malformed schedule is refused');
delete from anomaly.jobs where name = 'tempo-ingest-test';
select is_empty($$ select 1 from cron.job where jobname = 'trace-sentinel:tempo-ingest-test' $$, 'deleting a job unschedules it');

select * from finish();
rollback;
