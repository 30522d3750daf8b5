-- 20261125001150_incident_lookup_by_index.sql — anomaly.related_incident stays an index lookup during bursts.
-- The incident trigger (20261125000900) looks up related anomalies once per inserted anomaly. Its query let the planner
-- walk trace_anomalies_incident_idx over every anomaly in the time window; when detection (or a replay, or
-- `npm run bench:alerts`) opens thousands of anomalies in one transaction they all share that window, so each insert
-- read all the others: quadratic (2,000 then 4,000 anomalies in one session: 1.4 s then 7.9 s; 10,000: about 70 s).
-- The same lookup now starts from the related services and reads, per service, only the anomalies that opened near
-- the new one's start, through a (service, first_seen) index. Same signature, same answer (the earliest anomaly that
-- opened within window_minutes on a related service; pgTAP 14 checks it), only the access path changes.

create index trace_anomalies_service_first_seen_idx on public.trace_anomalies (service, first_seen);

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
      select case when e.caller_service = p_service then e.callee_service else e.caller_service end
      from anomaly.service_edge_minutes e
      where (e.caller_service = p_service or e.callee_service = p_service)
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
  'service or a direct caller/callee (anomaly.service_edge_minutes). Reads only the related services'' anomalies '
  'of that window (trace_anomalies_service_first_seen_idx), so bursts stay linear.';
