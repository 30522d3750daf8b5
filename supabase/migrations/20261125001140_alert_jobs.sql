-- 20261125001140_alert_jobs.sql — the schedules of alerting, registered in anomaly.jobs (and so with pg_cron).
-- alert-dispatch: every minute, the sweep that sends what is due (non-critical alerts after their grouping delay,
-- retries, repeats, rows a crashed dispatcher left behind); CRITICAL alerts do not wait for it (trigger -> pg_net).
-- alert-retention: daily, drops finished outbox rows and delivery history older than alerts.retention_days.

create function anomaly.prune_alerts()
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_cutoff timestamptz := now() - make_interval(days => (anomaly.config('alerts') ->> 'retention_days')::integer);
  v_outbox integer;
  v_deliveries integer;
begin
  delete from anomaly.alert_outbox where status in ('delivered', 'suppressed') and updated_at < v_cutoff;
  get diagnostics v_outbox = row_count;
  delete from anomaly.alert_deliveries where created_at < v_cutoff;
  get diagnostics v_deliveries = row_count;
  delete from anomaly.alert_rate_slots where window_start < now() - interval '1 hour';
  return v_outbox + v_deliveries;
end
$$;
comment on function anomaly.prune_alerts() is
  'Deletes delivered and suppressed outbox rows and delivery history older than alerts.retention_days, and old '
  'rate slots; pending and dead rows are kept. Returns the rows deleted.';
grant execute on function anomaly.prune_alerts() to service_role;

insert into anomaly.jobs (name, schedule, kind, command, body, timeout_ms, description) values
  ('alert-dispatch', '* * * * *', 'http', 'alert-dispatch', '{"reason": "sweep"}', 60000,
   'Every minute: alert-dispatch sends due alerts (after the grouping delay), retries, repeats for open CRITICAL '
   'anomalies and rows whose dispatcher died. CRITICAL alerts are also pushed at once by the outbox trigger.'),
  ('alert-retention', '23 4 * * *', 'sql', 'select anomaly.prune_alerts()', '{}', 60000,
   'Daily: prune delivered/suppressed outbox rows and delivery history older than alerts.retention_days.');
