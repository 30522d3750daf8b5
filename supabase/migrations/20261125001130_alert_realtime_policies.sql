-- 20261125001130_alert_realtime_policies.sql — who may receive the anomaly broadcasts on Supabase Realtime.
-- The alert trigger sends private broadcasts on topic `anomalies` (every type but SECURITY) and `anomalies:security`.
-- Realtime authorises a private channel when a client joins, by a SELECT on realtime.messages with realtime.topic()
-- set to the channel's topic, so these policies mirror public.trace_anomalies' RLS topic by topic. Realtime
-- Authorization must be on (Realtime settings: turn off "Allow public access") for private channels to be enforced.

create policy "Members receive anomaly broadcasts except security ones"
  on realtime.messages for select to authenticated
  using (
    (select realtime.topic()) = 'anomalies'
    and realtime.messages.extension = 'broadcast'
    and coalesce(realtime.messages.payload ->> 'anomaly_type', '') <> 'SECURITY'
    and ((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('viewer', 'operator', 'security_analyst', 'admin')
  );

create policy "Security analysts and admins receive security anomaly broadcasts"
  on realtime.messages for select to authenticated
  using (
    (select realtime.topic()) = 'anomalies:security'
    and realtime.messages.extension = 'broadcast'
    and ((select auth.jwt()) -> 'app_metadata' ->> 'role') in ('security_analyst', 'admin')
  );
