-- 20261125001330_apply_hits_stays_linear.sql — the anomaly lifecycle stays linear when thousands of series fire at
-- once (a partial outage: many services silent in the same minute while the watermark still advances).
-- bench:detect's 10k state with one minute of no data at all (7,668 hits, 7,646 anomalies opened) spent 102 s in
-- anomaly.apply_hits; with 1,000 operations silent (675 opened), 130 s. Three causes:
-- 1. The run's hits were read from anomaly.detector_hits by run_id, for which the planner expects an average run
--    (or 1 row): every join between the CTEs below became a nested loop over CTE scans. They are now copied into a
--    temporary table (dropped at commit) and analyzed, so the plan fits the run.
-- 2. Per fingerprint, correlated subqueries over CTEs (its detectors, their count, its recent minutes) rescanned
--    the CTE for every fingerprint: now one aggregate per fingerprint, joined.
-- 3. Escalation counted, per touched anomaly, the services with an open anomaly starting within 5 minutes (a scan
--    of all of them each time): now once per distinct start minute.
-- Same anomalies, severities and explanations (pgTAP 10, 12, 14; bench:quality's anomalies compared run to run).

create or replace function anomaly.apply_hits(p_run_id bigint, p_through timestamptz)
returns table (opened integer, updated integer, resolved integer)
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.lifecycle');
  v_lateness interval := make_interval(secs => (anomaly.config('rollup') ->> 'allowed_lateness_seconds')::integer);
  v_quiet interval := make_interval(mins => (v_cfg ->> 'quiet_minutes')::integer);
  v_escalate integer := (v_cfg ->> 'escalate_after_minutes')::integer;
  v_breadth integer := (v_cfg ->> 'breadth_services')::integer;
  v_max_explain integer := (v_cfg ->> 'max_explanations_per_run')::integer;
  v_new record;
begin
  -- The run's hits, in a table of their own with statistics: read from anomaly.detector_hits by run_id, the planner
  -- expects the few rows an average run has (or 1), and for a burst of thousands it nested-looped every join
  -- between the steps below (quadratic: 675 anomalies opened in one run took 130 s)
  -- (plpgsql_check, which supabase db lint runs, cannot see a table created at run time: the pragma declares it)
  perform 'PRAGMA:TABLE: apply_hits_run (like anomaly.detector_hits)';
  if to_regclass('pg_temp.apply_hits_run') is not null then
    drop table pg_temp.apply_hits_run; -- a second call in the same transaction
  end if;
  create temporary table apply_hits_run on commit drop as
    select h.* from anomaly.detector_hits h where h.run_id = p_run_id;
  analyze pg_temp.apply_hits_run;

  with hits as (
    select h.*, d.family, d.name as detector_name, s.service, s.operation, s.signal, s.scope,
           case d.family when 'latency' then 'LATENCY' when 'error_rate' then 'ERROR_RATE'
                         when 'throughput' then 'THROUGHPUT' when 'resource' then 'RESOURCE'
                         else 'DEPLOY_REGRESSION' end as anomaly_type,
           -- the exemplar: the minute's slowest span, or for error rates its slowest errored one (operation scope)
           case when s.signal = 'error_rate' then coalesce(m.error_trace_id, m.slowest_trace_id)
                else m.slowest_trace_id end as exemplar_trace_id,
           case when s.signal = 'error_rate' then coalesce(m.error_span_id, m.slowest_span_id)
                else m.slowest_span_id end as exemplar_span_id,
           p.n
    from pg_temp.apply_hits_run h
    join anomaly.detectors d on d.name = h.detector and not d.legacy
    join anomaly.series s on s.id = h.series_id
    left join anomaly.signal_points p on p.series_id = h.series_id and p.bucket = h.bucket
    left join anomaly.operation_minutes m
      on s.scope = 'operation' and m.service_name = s.service and m.operation = s.operation and m.bucket = h.bucket
  ),
  keyed as (
    select *, anomaly_type || '|' || subtype || '|' || service || '|' || operation || '|' || family as fingerprint
    from hits
  ),
  per_detector as (
    select fingerprint, detector_name, max(score) as score, count(distinct bucket) as buckets
    from keyed group by 1, 2
  ),
  enabled as (
    select family, count(*) as n from anomaly.detectors where enabled and not legacy group by 1
  ),
  fp_stats as (
    select fingerprint, min(bucket) as first_bucket, max(bucket) as last_bucket,
           count(distinct bucket)::integer as hit_minutes
    from keyed group by 1
  ),
  grouped as (
    select distinct on (k.fingerprint)
           k.fingerprint, k.anomaly_type, k.subtype, k.service, k.operation, k.family, k.signal,
           k.bucket as worst_bucket, k.observed, k.expected, k.lower_bound, k.upper_bound, k.score, k.details,
           k.detector_name as top_detector, k.exemplar_trace_id, k.exemplar_span_id, k.n,
           f.first_bucket, f.last_bucket, f.hit_minutes
    from keyed k join fp_stats f using (fingerprint)
    order by k.fingerprint, k.score desc, k.detector_name
  ),
  fp_detectors as (
    -- per fingerprint once (correlated subqueries over the CTE rescanned it for every fingerprint: quadratic)
    select pd.fingerprint,
           jsonb_agg(jsonb_build_object('name', pd.detector_name, 'score', round(pd.score::numeric, 3),
                                        'minutes', pd.buckets) order by pd.score desc) as detectors,
           count(*) as agreeing
    from per_detector pd group by 1
  ),
  assembled as (
    select g.*, fd.detectors, fd.agreeing, e.n as family_detectors,
           fd.agreeing::double precision / greatest(e.n, 1) as confidence
    from grouped g
    join fp_detectors fd using (fingerprint)
    left join enabled e on e.family = g.family
  ),
  recent as (
    -- minutes with a (non-legacy) hit on the same series and subtype in the 10 minutes up to the last hit
    select f.fingerprint, count(distinct h.bucket) as minutes
    from fp_stats f
    join (select distinct fingerprint, series_id, subtype from keyed) ks using (fingerprint)
    join anomaly.detector_hits h
      on h.series_id = ks.series_id and h.subtype = ks.subtype
     and h.bucket > f.last_bucket - interval '10 minutes' and h.bucket <= f.last_bucket
    join anomaly.detectors d on d.name = h.detector and not d.legacy
    group by f.fingerprint
  ),
  gated as (
    -- Open what enough detectors agree on, what one detector is very sure of, or what persists; keep updating
    -- what is open. One-minute blips of a single detector stay in anomaly.detector_hits only.
    -- Families with only one or two detectors (throughput, deploy) cannot be asked for agreement.
    select x.* from assembled x
    left join recent r using (fingerprint)
    where x.agreeing >= least((v_cfg ->> 'min_agreeing_detectors')::integer,
                              greatest(1, coalesce(x.family_detectors, 1) - 1))
       or x.score >= (v_cfg ->> 'single_detector_min_score')::double precision
       or r.minutes >= (v_cfg ->> 'sustained_minutes')::integer
       or exists (select 1 from public.trace_anomalies o where o.fingerprint = x.fingerprint and o.status <> 'RESOLVED')
  ),
  upserted as (
    insert into public.trace_anomalies as a (
      trace_id, anomaly_type, subtype, severity, status, description, fingerprint, service, operation, detector,
      score, observed_value, expected_value, first_seen, last_seen, occurrences, explanation, exemplar_span_id,
      confidence, detected_event_at, series_signal)
    select x.exemplar_trace_id, x.anomaly_type, x.subtype,
           case when x.score >= (v_cfg ->> 'severity_critical')::double precision then 'CRITICAL'
                when x.score >= (v_cfg ->> 'severity_high')::double precision then 'HIGH'
                when x.score >= (v_cfg ->> 'severity_medium')::double precision then 'MEDIUM'
                else 'LOW' end,
           'OPEN',
           format('%s of %s%s is %s, expected %s (band %s..%s); %s',
                  x.subtype, x.service, case when x.operation <> '' then ' ' || x.operation else '' end,
                  round(x.observed::numeric, 3), round(x.expected::numeric, 3),
                  round(x.lower_bound::numeric, 3), round(x.upper_bound::numeric, 3),
                  (select string_agg(d ->> 'name', ', ') from jsonb_array_elements(x.detectors) d)),
           x.fingerprint, x.service, nullif(x.operation, ''), x.top_detector, x.score, x.observed, x.expected,
           x.first_bucket, x.last_bucket + interval '1 minute', x.hit_minutes,
           jsonb_build_object(
             'observed', x.observed, 'expected', x.expected,
             'band', jsonb_build_array(x.lower_bound, x.upper_bound),
             'signal', x.signal,
             'detectors', x.detectors,
             'confidence', round(x.confidence::numeric, 3),
             'window', jsonb_build_object('first_bucket', x.first_bucket, 'last_bucket', x.last_bucket,
                                          'worst_bucket', x.worst_bucket),
             'span_count', x.n,
             'details', x.details,
             'exemplar', jsonb_build_object('trace_id', x.exemplar_trace_id, 'span_id', x.exemplar_span_id)),
           x.exemplar_span_id, least(x.confidence, 1), x.first_bucket + interval '1 minute' + v_lateness, x.signal
    from gated x
    order by x.fingerprint
    on conflict (fingerprint) where status <> 'RESOLVED' do update set
      last_seen = greatest(a.last_seen, excluded.last_seen),
      occurrences = a.occurrences + excluded.occurrences,
      confidence = greatest(a.confidence, excluded.confidence),
      score = greatest(a.score, excluded.score),
      severity = case when anomaly.severity_rank(excluded.severity) > anomaly.severity_rank(a.severity)
                      then excluded.severity else a.severity end,
      observed_value = case when excluded.score > a.score then excluded.observed_value else a.observed_value end,
      expected_value = case when excluded.score > a.score then excluded.expected_value else a.expected_value end,
      trace_id = case when excluded.score > a.score then excluded.trace_id else a.trace_id end,
      exemplar_span_id = case when excluded.score > a.score then excluded.exemplar_span_id else a.exemplar_span_id end,
      detector = case when excluded.score > a.score then excluded.detector else a.detector end,
      description = case when excluded.score > a.score then excluded.description else a.description end,
      -- keep what earlier runs explained (culprit, attributes); merge the detector list
      explanation = (case when excluded.score > a.score then excluded.explanation else a.explanation end)
        || jsonb_build_object('detectors', (
             select jsonb_agg(d order by (d ->> 'score')::numeric desc)
             from (select distinct on (e ->> 'name') e as d
                   from jsonb_array_elements(coalesce(a.explanation -> 'detectors', '[]') ||
                                             coalesce(excluded.explanation -> 'detectors', '[]')) e
                   order by e ->> 'name', (e ->> 'score')::numeric desc) m))
        || coalesce(a.explanation - array['observed', 'expected', 'band', 'detectors', 'window', 'span_count',
                                          'details', 'exemplar', 'signal', 'confidence'], '{}'),
      updated_at = now()
    returning (xmax = 0) as inserted
  )
  select count(*) filter (where inserted)::integer, count(*) filter (where not inserted)::integer
  into opened, updated from upserted;

  -- Escalation by duration and by breadth: severity = max(current, severity of the score + bonuses), so
  -- re-running it changes nothing; it only ever raises severity while the anomaly is open.
  with touched_rows as (
    select a.id, a.severity, a.occurrences, a.first_seen,
           case when a.score >= (v_cfg ->> 'severity_critical')::double precision then 4
                when a.score >= (v_cfg ->> 'severity_high')::double precision then 3
                when a.score >= (v_cfg ->> 'severity_medium')::double precision then 2 else 1 end as base_rank
    from public.trace_anomalies a
    where a.status <> 'RESOLVED' and a.updated_at = now()
  ),
  breadth as (
    -- services with an open anomaly that started within 5 minutes, once per start minute (per anomaly it was
    -- quadratic when thousands open at once: 7,600 anomalies of one minute took 100 s)
    select s.first_seen, count(distinct b.service) as breadth
    from (select distinct first_seen from touched_rows) s
    join public.trace_anomalies b
      on b.status <> 'RESOLVED'
     and b.first_seen between s.first_seen - interval '5 minutes' and s.first_seen + interval '5 minutes'
    group by 1
  ),
  touched as (
    select t.id, t.severity, t.occurrences, t.base_rank, coalesce(b.breadth, 0) as breadth
    from touched_rows t left join breadth b using (first_seen)
  ),
  target as (
    select id, severity, occurrences, breadth,
           least(4, base_rank + (case when occurrences >= v_escalate then 1 else 0 end)
                              + (case when breadth >= v_breadth then 1 else 0 end)) as target_rank
    from touched
  )
  update public.trace_anomalies a set
    severity = (array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'])[t.target_rank],
    explanation = a.explanation || jsonb_build_object('escalation', jsonb_build_object(
      'duration_minutes', t.occurrences, 'services_affected_together', t.breadth))
  from target t
  where a.id = t.id and t.target_rank > anomaly.severity_rank(t.severity);

  -- Explain new latency and error anomalies (bounded per run): culprit and over-represented attributes.
  -- An explanation that fails is recorded in the anomaly, never fatal to the cycle.
  for v_new in
    select a.id, a.service, a.operation, a.first_seen, a.last_seen, a.anomaly_type
    from public.trace_anomalies a
    where a.status = 'OPEN' and a.created_at = now()
      and a.operation is not null and not (a.explanation ? 'culprit')
      and a.anomaly_type in ('LATENCY', 'ERROR_RATE')
    order by a.score desc
    limit v_max_explain
  loop
    begin
      update public.trace_anomalies set explanation = explanation || jsonb_strip_nulls(jsonb_build_object(
        'culprit', case when v_new.anomaly_type = 'LATENCY' then
                     anomaly.explain_latency_culprit(v_new.service, v_new.operation, v_new.first_seen,
                       v_new.last_seen, v_new.first_seen - interval '60 minutes', v_new.first_seen) end,
        'attributes', anomaly.explain_overrepresented_attributes(v_new.service, v_new.operation, v_new.first_seen,
                       v_new.last_seen, v_new.first_seen - interval '60 minutes', v_new.first_seen,
                       p_anomalous_predicate => case when v_new.anomaly_type = 'LATENCY' then 'slow' else 'error' end)))
      where id = v_new.id;
    exception when others then
      update public.trace_anomalies
         set explanation = explanation || jsonb_build_object('explanation_error', sqlerrm)
       where id = v_new.id;
    end;
  end loop;

  -- Quiet for quiet_minutes in event time: resolve.
  with r as (
    update public.trace_anomalies
       set status = 'RESOLVED', resolved_at = now(), updated_at = now()
     where status <> 'RESOLVED'
       and last_seen <= p_through + interval '1 minute' - v_quiet
    returning 1
  )
  select count(*)::integer into resolved from r;
  return next;
end
$$;

