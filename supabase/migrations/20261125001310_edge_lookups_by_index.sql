-- 20261125001310_edge_lookups_by_index.sql — the two reads of anomaly.service_edge_minutes that its primary key
-- (caller_service, callee_service, bucket) cannot serve, made index reads.
-- 1. anomaly.extract_signals reads the edges of the minutes it extracts (bucket range): without an index on bucket
--    that is a scan of every edge-minute kept (rollup_retention_days, 35: ~50M rows at 1,000 edges) every minute.
--    The retention delete (bucket < cutoff) uses it too.
-- 2. anomaly.related_incident looks up a service's callers (callee_service = the service): the planner walked the
--    whole primary key for it, 10 ms per new anomaly at 1,000 edges and two hours of minutes (bench:detect with edges:
--    0.49 s of a 2.3 s cycle opening 49 anomalies). It now reads callees and callers in two index range scans.
-- Same answers (pgTAP 14 and 17); only the access paths change.

create index service_edge_minutes_bucket_idx on anomaly.service_edge_minutes (bucket);
create index service_edge_minutes_callee_idx on anomaly.service_edge_minutes (callee_service, bucket)
  include (caller_service);

create or replace function anomaly.related_incident(
  p_service text, p_first_seen timestamptz, p_exclude uuid default null)
returns uuid
language plpgsql
stable
set search_path = ''
-- statistics taken before a burst call trace_anomalies small; the lookups below are index reads whatever its size
set enable_seqscan = off
as $$
declare
  v_cfg jsonb := anomaly.config('detect.incidents');
  v_window interval := make_interval(mins => (v_cfg ->> 'window_minutes')::integer);
  v_edges interval := make_interval(mins => (v_cfg ->> 'edge_lookback_minutes')::integer);
begin
  if v_window = interval '0' then
    return null;
  end if;
  return (
    with neighbours as (
      select p_service as service
      union
      -- the services it calls (primary key: caller_service, callee_service, bucket)
      select e.callee_service
      from anomaly.service_edge_minutes e
      where e.caller_service = p_service
        and e.bucket >= p_first_seen - v_edges and e.bucket <= p_first_seen + v_window
      union
      -- the services calling it (service_edge_minutes_callee_idx)
      select e.caller_service
      from anomaly.service_edge_minutes e
      where e.callee_service = p_service
        and e.bucket >= p_first_seen - v_edges and e.bucket <= p_first_seen + v_window
    )
    select c.incident_id
    from neighbours n
    cross join lateral (
      -- opened within window_minutes of the new anomaly, on this service
      select a.incident_id, a.first_seen, a.created_at, a.id
      from public.trace_anomalies a
      where a.service = n.service
        and a.first_seen between p_first_seen - v_window and p_first_seen + v_window
        and a.id is distinct from p_exclude
      order by a.first_seen, a.created_at, a.id
      limit 1
    ) c
    order by c.first_seen, c.created_at, c.id
    limit 1);
end
$$;
comment on function anomaly.related_incident(text, timestamptz, uuid) is
  'The incident an anomaly of p_service starting at p_first_seen belongs to (see detect.incidents), or null when it '
  'starts a new one: that of the earliest anomaly that opened within window_minutes of p_first_seen on the same '
  'service or a direct caller/callee (anomaly.service_edge_minutes, read by index from either end). Reads only the '
  'related services'' anomalies of that window (trace_anomalies_service_first_seen_idx), so bursts stay linear.';
