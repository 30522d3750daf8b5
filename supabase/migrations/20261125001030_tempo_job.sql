-- 20261125001030_tempo_job.sql — schedules the Tempo pull: the job registry row `tempo-ingest` (kind http, every
-- minute) becomes the pg_cron job trace-sentinel:tempo-ingest, which calls the tempo-ingest edge function through
-- net.http_post with the Vault service key. With no enabled source the function answers at once. The hourly
-- retention job also prunes old tempo run rows.

insert into anomaly.jobs (name, schedule, kind, command, body, timeout_ms, description) values (
  'tempo-ingest', '* * * * *', 'http', 'tempo-ingest', '{}', 55000,
  'Every minute: pull each enabled anomaly.tempo_sources row from Grafana Tempo (traces or metrics mode) up to '
  'now - lag, within its trace and time budget; the next run continues at the cursor.'
);

update anomaly.jobs set command = command || ' select anomaly.drop_old_tempo_runs();'
 where name = 'retention' and position('drop_old_tempo_runs' in command) = 0;
