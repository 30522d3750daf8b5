-- 20261125000900_incidents.sql — anomalies that open together on related services form one incident.
-- When a downstream service slows down or fails, its callers see it too and open their own anomalies. Those are
-- the same incident, not new ones: every anomaly carries incident_id, the id of the incident's first (root) anomaly.
-- An anomaly joins an incident when one of the incident's anomalies opened within detect.incidents.window_minutes of
-- it, on the same service or on a service it calls or is called by (anomaly.service_edge_minutes). Opening together
-- is the test, not overlapping: a regression that stays open for an hour must not swallow an unrelated error spike
-- on a neighbour half an hour later (the demo injects exactly that).
-- Alerting sends one message per incident; the quality benchmark scores incidents.

insert into anomaly.config_keys (key, spec, defaults, description) values (
  'detect.incidents',
  '{"window_minutes": {"type": "integer", "min": 0, "max": 120},
    "edge_lookback_minutes": {"type": "integer", "min": 1, "max": 1440}}',
  '{"window_minutes": 5, "edge_lookback_minutes": 60}',
  'Incident grouping: a new anomaly joins the incident of an anomaly that opened at most window_minutes before or '
  'after it on the same service or on a service it calls or is called by (calls seen in the edge_lookback_minutes '
  'before it started). window_minutes = 0 turns grouping off (every anomaly is its own incident).'
);

alter table public.trace_anomalies add column incident_id uuid;
comment on column public.trace_anomalies.incident_id is
  'The incident this anomaly belongs to: the id of the incident''s root (first) anomaly; equal to id for a root. '
  'Set on insert by anomaly.tg_trace_anomalies__incident; never null after insert.';

create function anomaly.related_incident(
  p_service text, p_first_seen timestamptz, p_exclude uuid default null)
returns uuid
language plpgsql
stable
set search_path = ''
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
    select a.incident_id
    from public.trace_anomalies a
    where a.incident_id is not null
      and a.id is distinct from p_exclude
      -- opened within window_minutes of the new anomaly (open or already resolved)
      and a.first_seen between p_first_seen - v_window and p_first_seen + v_window
      and a.service in (select service from neighbours)
    order by a.first_seen, a.created_at, a.id
    limit 1);
end
$$;
comment on function anomaly.related_incident(text, timestamptz, uuid) is
  'The incident an anomaly of p_service starting at p_first_seen belongs to (see detect.incidents), or null when it '
  'starts a new one: that of the earliest anomaly that opened within window_minutes of p_first_seen on the same '
  'service or a direct caller/callee (anomaly.service_edge_minutes).';

create function anomaly.tg_trace_anomalies__incident()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.incident_id is null then
    new.incident_id := coalesce(anomaly.related_incident(new.service, new.first_seen, new.id), new.id);
  end if;
  return new;
end
$$;
comment on function anomaly.tg_trace_anomalies__incident() is
  'BEFORE INSERT trigger on public.trace_anomalies: joins the new anomaly to a related open incident, '
  'or makes it the root of a new one (incident_id = id).';

create trigger tg_10_incident before insert on public.trace_anomalies
  for each row execute function anomaly.tg_trace_anomalies__incident();

update public.trace_anomalies set incident_id = id where incident_id is null;
alter table public.trace_anomalies alter column incident_id set not null;
create index trace_anomalies_incident_idx on public.trace_anomalies (incident_id, first_seen);

grant execute on function anomaly.related_incident(text, timestamptz, uuid) to service_role;
