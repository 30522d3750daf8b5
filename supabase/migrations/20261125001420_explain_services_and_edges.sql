-- 20261125001420_explain_services_and_edges.sql — error-rate anomalies of a whole service and of a service edge get
-- the over-represented attributes explanation too. It compared one operation's anomalous spans with its baseline
-- spans, and apply_hits asked only for anomalies with an operation: "ERROR_RATE payments" (service scope) and
-- "ERROR_RATE frontend → checkout" (an edge) said which detectors fired and by how much, never which route,
-- version or host the failing spans had in common.
--   * anomaly._sample_series_spans takes a NULL operation as "any span of the service" (the same systematic
--     sample over (service_name, start_time), the index it already used);
--   * anomaly.explain_overrepresented_attributes reads a NULL or empty operation as the service, and an edge's
--     operation '→ <callee>' as the callee's spans whose parent span belongs to the caller (the calls of that edge);
--   * anomaly.apply_hits explains every new latency and error-rate anomaly (the culprit still only for an
--     operation's latency: it follows one operation's traces).

create or replace function anomaly._sample_series_spans(
  p_service text, p_operation text, p_from timestamptz, p_through timestamptz, p_samples integer
)
returns setof anomaly.spans
language sql
stable
set search_path = ''
as $$
  -- A window holding at most p_samples spans of the series is read whole (at most p_samples + 1 rows are read to
  -- find out). A busier one is cut into p_samples equal slices and the first span of each slice is taken: one index
  -- probe on (service_name, start_time) per slice, an even (systematic) sample over the window that is deterministic,
  -- so an explanation can be recomputed and a test can rely on it. A NULL operation samples the whole service.
  with few as materialized (
    select sp.*
    from anomaly.spans sp
    where sp.service_name = p_service and (p_operation is null or sp.name = p_operation)
      and sp.start_time >= p_from and sp.start_time < p_through
    order by sp.start_time
    limit p_samples + 1
  )
  select f.* from few f
  where (select count(*) from few) <= p_samples
  union all
  select s.*
  from generate_series(0, p_samples - 1) as g(i)
  cross join lateral (
    select sp.*
    from anomaly.spans sp
    where sp.service_name = p_service and (p_operation is null or sp.name = p_operation)
      -- seconds, not days: adding a day-valued interval would follow the session time zone across DST
      and sp.start_time >= p_from + make_interval(secs => extract(epoch from p_through - p_from) * g.i / p_samples)
      and sp.start_time < p_from + make_interval(secs => extract(epoch from p_through - p_from) * (g.i + 1) / p_samples)
    order by sp.start_time
    limit 1
  ) s
  where (select count(*) from few) > p_samples
$$;
comment on function anomaly._sample_series_spans(text, text, timestamptz, timestamptz, integer) is
  'At most p_samples spans of one series (service_name, span name; a NULL operation: any span of the service) '
  'starting in [p_from, p_through): all of them when there are no more than p_samples, else the first span of each '
  'of p_samples equal slices of the window (an even, deterministic sample). Cost: at most p_samples + 1 rows read in '
  'start order, plus p_samples index probes on anomaly.spans (service_name, start_time) for a busy window. Used by '
  'the explain_* functions. Example: select count(*) from anomaly._sample_series_spans(''api'', ''GET /items'', '
  'now() - interval ''1 hour'', now(), 500).';

create or replace function anomaly.explain_overrepresented_attributes(
  p_service text, p_operation text, p_from timestamptz, p_through timestamptz,
  p_baseline_from timestamptz, p_baseline_through timestamptz,
  p_keys text[] default array['http.route', 'http.request.method', 'service.version', 'host.name',
                              'service.instance.id', 'http.response.status_code', 'db.system', 'server.address'],
  p_anomalous_predicate text default 'slow'
)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  -- Sample sizes: 5 000 window spans and 2 000 baseline spans give shares within about ±2 percentage points
  -- (binomial standard error at p = 0.2), far finer than the 0.2 support and 1.5 lift cut-offs below.
  c_window_sample constant integer := 5000;
  c_baseline_sample constant integer := 2000;
  -- A value must be carried by at least a fifth of the anomalous spans (rarer values cannot explain the anomaly)
  -- and be at least 1.5 times as common as in the baseline.
  c_min_share constant double precision := 0.2;
  c_min_lift constant double precision := 1.5;
  -- whose spans are compared: an operation's, a whole service's (NULL or '' operation), or for an edge
  -- ('→ <callee>') the callee's spans called from p_service
  v_edge boolean := coalesce(p_operation like '→ %', false);
  v_service text := case when v_edge then substr(p_operation, 3) else p_service end;
  v_operation text := case when v_edge or p_operation = '' then null else p_operation end;
  v_caller text := case when v_edge then p_service end;
  v_result jsonb;
begin
  perform anomaly._check_explain_arguments(p_from, p_through, p_baseline_from, p_baseline_through);
  if p_service is null or (v_edge and v_service = '') then
    raise exception using errcode = 'TSH01', message = 'explain_overrepresented_attributes needs a service',
      detail = format('got service %s, operation %s', coalesce(p_service, 'NULL'), coalesce(p_operation, 'NULL')),
      hint = 'Pass the series of the anomaly (public.trace_anomalies.service and operation; NULL operation for '
             'the whole service, ''→ <callee>'' for an edge).';
  end if;
  if p_anomalous_predicate is null or p_anomalous_predicate not in ('slow', 'error') then
    raise exception using errcode = 'TSH01', message = 'p_anomalous_predicate must be ''slow'' or ''error''',
      detail = format('got %s', coalesce(p_anomalous_predicate, 'NULL')),
      hint = 'Use ''slow'' for latency anomalies (spans above the baseline p95) and ''error'' for error-rate anomalies.';
  end if;
  if p_keys is null or cardinality(p_keys) > 64 then
    raise exception using errcode = 'TSH01', message = 'p_keys must list at most 64 attribute keys',
      detail = format('got %s keys', coalesce(cardinality(p_keys)::text, 'NULL')),
      hint = 'Name the attributes worth comparing, e.g. array[''service.version'', ''host.name''].';
  end if;

  with
  baseline as materialized (
    select s.* from anomaly._sample_series_spans(v_service, v_operation, p_baseline_from, p_baseline_through,
                                                 c_baseline_sample) s
    where not v_edge or exists (select 1 from anomaly.spans c where c.trace_id = s.trace_id
                                and c.span_id = s.parent_span_id and c.service_name = v_caller)
  ),
  threshold as (
    select percentile_cont(0.95) within group (order by duration_ns) as p95_ns from baseline
  ),
  anomalous as materialized (
    select s.*
    from anomaly._sample_series_spans(v_service, v_operation, p_from, p_through, c_window_sample) s
    cross join threshold t
    where case p_anomalous_predicate
            when 'slow' then s.duration_ns > t.p95_ns
            else s.status_code = 2 end
      and (not v_edge or exists (select 1 from anomaly.spans c where c.trace_id = s.trace_id
                                 and c.span_id = s.parent_span_id and c.service_name = v_caller))
  ),
  compared as (
    select true as anomalous, a.* from anomalous a
    union all
    select false, b.* from baseline b
  ),
  wanted_keys as (
    select distinct k.key from unnest(p_keys) as k(key) where k.key is not null
  ),
  -- Span attributes first, then resource attributes, then the typed columns ingest extracted.
  pairs as (
    select s.anomalous, k.key,
           left(coalesce(s.attributes ->> k.key, s.resource_attributes ->> k.key,
                         case k.key
                           when 'service.version' then s.service_version
                           when 'service.instance.id' then s.service_instance
                           when 'http.route' then s.http_route
                           when 'http.request.method' then s.http_method
                           when 'http.method' then s.http_method
                           when 'http.response.status_code' then s.http_status_code::text
                           when 'http.status_code' then s.http_status_code::text
                         end), 200) as value
    from compared s
    cross join wanted_keys k
  ),
  counts as (
    select (select count(*) from anomalous) as n_anomalous, (select count(*) from baseline) as n_baseline
  ),
  tallies as (
    select key, value,
           count(*) filter (where anomalous) as anomalous_count,
           count(*) filter (where not anomalous) as baseline_count
    from pairs
    where value is not null
    group by key, value
  ),
  scored as (
    select t.key, t.value, t.anomalous_count,
           t.anomalous_count::double precision / c.n_anomalous as anomalous_share,
           t.baseline_count::double precision / c.n_baseline as baseline_share,
           -- Laplace-smoothed baseline share, so a value never seen before gets a large finite lift
           (t.anomalous_count::double precision / c.n_anomalous)
             / ((t.baseline_count + 1)::double precision / (c.n_baseline + 2)) as lift
    from tallies t
    cross join counts c
    where c.n_anomalous > 0 and c.n_baseline > 0
  ),
  kept as (
    select *, row_number() over (order by lift desc, anomalous_share desc, key, value) as rank
    from scored
    where anomalous_share >= c_min_share and lift >= c_min_lift
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'key', key, 'value', value,
           'anomalous_share', round(anomalous_share::numeric, 4),
           'baseline_share', round(baseline_share::numeric, 4),
           'lift', round(lift::numeric, 2),
           'count', anomalous_count) order by rank), '[]'::jsonb)
    into v_result
    from kept
   where rank <= 5;
  return v_result;
end
$$;
comment on function anomaly.explain_overrepresented_attributes(text, text, timestamptz, timestamptz, timestamptz, timestamptz, text[], text) is
  'Attribute values over-represented in the anomalous spans of (p_service, p_operation) in [p_from, p_through) compared '
  'with the series'' spans in [p_baseline_from, p_baseline_through); a NULL or empty p_operation compares all spans of '
  'the service, an edge''s ''→ <callee>'' the callee''s spans whose parent span is in p_service. Anomalous spans: for ''slow'' those slower than the '
  'baseline p95 (of the baseline sample), for ''error'' those with status_code 2. A key''s value is read from the span '
  'attributes, else the resource attributes, else the typed columns (service.version, service.instance.id, http.route, '
  'http.request.method, http.response.status_code). Returns up to 5 [{key, value, anomalous_share, baseline_share, '
  'lift, count}] by lift, keeping values carried by >= 20 % of the anomalous spans (rarer ones cannot explain the '
  'anomaly) with lift >= 1.5; lift = anomalous_share / Laplace-smoothed baseline share ((n + 1) / (N + 2)), so a value '
  'absent from the baseline gets a large finite lift. [] when either side has no spans. Cost bound: at most 5 001 '
  'spans read from the anomalous window and 2 001 from the baseline (or 5 000 / 2 000 index probes on (service_name, '
  'start_time) when a window is busier), times at most 64 keys. Raises TSH01 for a missing service, missing or empty '
  'windows, an unknown '
  'predicate or more than 64 keys. Example: select anomaly.explain_overrepresented_attributes(''payments'', ''POST /pay'', '
  '''2026-03-01 01:00+00'', ''2026-03-01 01:05+00'', ''2026-03-01 00:00+00'', ''2026-03-01 01:00+00'') '
  '-> [{"key": "host.name", "value": "node-7", ...}, {"key": "service.version", "value": "2.0.0", ...}].';

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
      and not (a.explanation ? 'culprit') and not (a.explanation ? 'attributes')
      and a.anomaly_type in ('LATENCY', 'ERROR_RATE')
    order by a.score desc
    limit v_max_explain
  loop
    begin
      update public.trace_anomalies set explanation = explanation || jsonb_strip_nulls(jsonb_build_object(
        -- the culprit follows one operation's traces: an operation's latency only
        'culprit', case when v_new.anomaly_type = 'LATENCY' and v_new.operation is not null
                             and v_new.operation not like '→ %' then
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
comment on function anomaly.apply_hits(bigint, timestamptz) is
  'Anomaly lifecycle for one detection run: groups the run''s hits by fingerprint (type|subtype|service|operation|'
  'family), opens (when min_agreeing_detectors agree, or one scores single_detector_min_score) or updates one '
  'public.trace_anomalies row each (detectors agreeing raise confidence, severity only '
  'escalates while open: by score, duration and breadth), explains new latency/error anomalies (an operation''s '
  'latency: culprit; every one, of an operation, a service or an edge: over-represented attributes; bounded by '
  'max_explanations_per_run) and resolves anomalies quiet for quiet_minutes.';
