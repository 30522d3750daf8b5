-- 20261125001200_cheaper_signal_points.sql — fewer and narrower writes per detection minute.
-- bench:detect at 10k operations (2.8 s a cycle) spent half of it writing: 0.6 s inserting 32k signal points and
-- 0.5 s updating series_state twice. Measured on that state, inserting the minute's points cost 594 ms as an upsert,
-- 330 ms as a plain insert, 213 ms without the foreign key check. So:
--   * extract_signals deletes the minutes it (re)extracts and inserts plainly: same result as the upsert, since it
--     always rewrites whole minutes;
--   * signal_points loses its foreign key to anomaly.series (one index probe per point); a series deleted takes its
--     points with it through a statement trigger instead (series are deleted by hand or by a migration, rarely);
--   * signal_points loses its exemplar columns (two text ids copied into every point): anomaly.apply_hits reads the
--     exemplar of the few minutes that hit from anomaly.operation_minutes, where the rollup keeps it;
--   * update_baselines folds the point and moves the rolling window in one write per series (was two); the window
--     also keeps the sums of errors and spans behind its points (win_k, win_n, win_kk, win_kn, win_nn), so
--     error_cusum reads its baseline from the state (20261125001250) instead of 60 points per candidate;
--   * the p95 of a minute's histogram is read in one pass over its keys (anomaly.histogram_rank_ms): jsonb stores an
--     object's keys shortest first, then bytewise, which for bucket numbers (non-negative integers,
--     anomaly.latency_bucket) is numeric order; a sort and running-sum window per histogram cost 2.4x (0.17 s a
--     minute at 10k operations; the same bucket on 650k bench histograms).


alter table anomaly.signal_points drop constraint signal_points_series_id_fkey;

create function anomaly.tg_series__delete_points()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  delete from anomaly.signal_points p using gone g where p.series_id = g.id;
  return null;
end
$$;
comment on function anomaly.tg_series__delete_points() is
  'After a delete on anomaly.series: deletes the signal points of the deleted series (what the foreign key with on '
  'delete cascade did, without its check on every point inserted).';
create trigger series_delete_points
  after delete on anomaly.series
  referencing old table as gone
  for each statement execute function anomaly.tg_series__delete_points();

create function anomaly.histogram_rank_ms(p_histogram jsonb, p_rank bigint)
returns double precision
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
declare
  v_key text;
  v_count text;
  v_bucket integer;
  v_previous integer := -1;
  v_running bigint := 0;
begin
  -- jsonb keeps an object's keys shortest first, then bytewise: for bucket numbers (non-negative integers without
  -- leading zeros) that is numeric order, so one pass in storage order finds the bucket
  for v_key, v_count in select e.key, e.value from jsonb_each_text(p_histogram) e loop
    v_bucket := v_key::integer;
    if v_bucket <= v_previous then
      raise exception using errcode = 'TSH01', message = 'histogram bucket keys must be increasing integers',
        detail = format('bucket %s after %s', v_key, v_previous), hint = 'Build histograms with anomaly.latency_bucket.';
    end if;
    v_previous := v_bucket;
    v_running := v_running + v_count::bigint;
    if v_running >= p_rank then
      return power(2::double precision, (v_bucket - 0.5) / 8.0) / 1000.0;
    end if;
  end loop;
  return null;
end
$$;
comment on function anomaly.histogram_rank_ms(jsonb, bigint) is
  'The value (ms, bucket middle) of the p_rank-th smallest duration in a latency histogram, null past its total: '
  'anomaly.histogram_quantile with the rank given, e.g. the p95 of n spans is rank ceil(0.95 n). Keys must be '
  'increasing integers in jsonb order (anomaly.latency_bucket numbers); raises TSH01 otherwise. Example: select '
  'anomaly.histogram_rank_ms(latency_histogram, ceil(0.95 * span_count)::bigint) from anomaly.operation_minutes;';
grant execute on function anomaly.histogram_rank_ms(jsonb, bigint) to service_role;

create or replace function anomaly.extract_signals(p_from timestamptz, p_through timestamptz)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_silence interval := make_interval(mins => (anomaly.config('detect.engine') ->> 'silence_lookback_minutes')::integer);
  v_points bigint;
begin
  -- Extraction rewrites whole minutes: the points of (p_from, p_through] go, then come back from the rollups (a
  -- re-extracted minute, after late spans, gets the new values; normally the range is new and nothing is deleted).
  delete from anomaly.signal_points p where p.bucket > p_from and p.bucket <= p_through;

  -- Real points of buckets in (p_from, p_through], from the rollups.
  with minutes as (
    select m.service_name, m.operation, m.bucket, m.span_count, m.error_count, m.latency_histogram
    from anomaly.operation_minutes m
    where m.bucket > p_from and m.bucket <= p_through
  ),
  -- p95 of every histogram: the first bucket whose running count reaches ceil(0.95 n), bucket middle (the rule of
  -- anomaly.histogram_quantile), in one pass over the histogram's keys (a sort and window per histogram cost 2.4x)
  ops as (
    select m.*, anomaly.histogram_rank_ms(m.latency_histogram, greatest(1, ceil(0.95 * m.span_count))::bigint) as p95
    from minutes m
  ),
  raw as (
    select 'operation' as scope, service_name as service, operation, s.signal, bucket, s.value, s.n, s.k
    from ops,
    lateral (values
      ('latency_p95', p95, span_count, null::integer),
      ('error_rate', error_count::double precision / span_count, span_count, error_count),
      ('throughput', span_count::double precision, span_count, null)
    ) as s(signal, value, n, k)
    union all
    select 'service', service_name, '', s.signal, bucket, s.value, s.n, s.k
    from (select service_name, bucket, sum(span_count)::integer as spans, sum(error_count)::integer as errors
          from ops group by 1, 2) svc,
    lateral (values
      ('throughput', spans::double precision, spans, null::integer),
      ('error_rate', errors::double precision / spans, spans, errors)
    ) as s(signal, value, n, k)
    union all
    select 'service', r.service_name, '', s.signal, r.bucket, s.value, r.samples, null
    from anomaly.resource_minutes r,
    lateral (values ('cpu', r.cpu_utilization_avg), ('memory', r.memory_usage_avg)) as s(signal, value)
    where r.bucket > p_from and r.bucket <= p_through and s.value is not null
  ),
  keys as (
    select scope, service, operation, signal, min(bucket) as first_bucket, max(bucket) as last_bucket
    from raw group by 1, 2, 3, 4
  ),
  known as materialized (
    -- one lookup of each key in anomaly.series serves the three uses below (series that existed before this
    -- statement: its snapshot sees them)
    select s.id, k.scope, k.service, k.operation, k.signal, s.first_bucket as series_first, k.first_bucket
    from keys k
    join anomaly.series s using (scope, service, operation, signal)
  ),
  new_series as (
    -- only new series are written: the newest minute with data lives in series_state.last_active_bucket, updated
    -- with the rest of the state, not in a series row rewritten every minute; and known keys are not even offered
    -- to ON CONFLICT (its conflict check locks every existing row: 0.1 s a minute at 10k operations)
    insert into anomaly.series as s (scope, service, operation, signal, first_bucket, last_active_bucket)
    select k.scope, k.service, k.operation, k.signal, k.first_bucket, k.last_bucket
    from keys k
    left join known n using (scope, service, operation, signal)
    where n.id is null
    order by 1, 2, 3, 4
    on conflict (scope, service, operation, signal) do nothing
    returning id, scope, service, operation, signal
  ),
  older as (
    -- data older than a series' first minute (a late backfill) moves first_bucket back
    update anomaly.series s set first_bucket = n.first_bucket
    from known n
    where s.id = n.id and n.first_bucket < n.series_first
    returning 1
  ),
  ids as (
    select id, scope, service, operation, signal from known
    union all
    select id, scope, service, operation, signal from new_series
  ),
  inserted as (
    -- the minutes were emptied above: a plain insert (an upsert's conflict check cost 0.26 s a minute at 10k
    -- operations)
    insert into anomaly.signal_points as p (series_id, bucket, value, n, k)
    select ns.id, r.bucket, r.value, r.n, r.k
    from raw r
    join ids ns using (scope, service, operation, signal)
    where r.value is not null
    order by 1, 2
    returning 1
  )
  select count(*) into v_points from inserted;

  -- Silent minutes: a throughput series with data within silence_lookback_minutes but none in a minute gets a zero.
  -- Its newest minute with data: as folded into its state, or among the points just extracted.
  with minutes as (
    select generate_series(date_trunc('minute', p_from) + interval '1 minute', p_through, interval '1 minute') as bucket
  ),
  active as (
    select s.id, greatest(s.last_active_bucket, st.last_active_bucket, x.last_bucket) as last_active
    from anomaly.series s
    left join anomaly.series_state st on st.series_id = s.id
    left join (
      select p.series_id, max(p.bucket) as last_bucket
      from anomaly.signal_points p
      where p.bucket > p_from and p.bucket <= p_through and p.n > 0
      group by p.series_id
    ) x on x.series_id = s.id
    where s.signal = 'throughput'
  ),
  silent as (
    insert into anomaly.signal_points (series_id, bucket, value, n)
    select a.id, m.bucket, 0, 0
    from active a
    join minutes m on m.bucket > a.last_active and m.bucket <= a.last_active + v_silence
    order by 1, 2
    on conflict (series_id, bucket) do nothing
    returning 1
  )
  select v_points + count(*) into v_points from silent;
  return v_points;
end
$$;
comment on function anomaly.extract_signals(timestamptz, timestamptz) is
  'Turns the rollups of minutes in (p_from, p_through] into signal points (the minutes are deleted and rewritten: '
  'idempotent), registering new series: per operation p95 latency, error rate and throughput; per service '
  'throughput, error rate, cpu and memory. '
  'Writes explicit zeros for silent minutes of recently active throughput series (newest data from '
  'series_state.last_active_bucket or the points just extracted). Returns points written.';

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
    from anomaly.detector_hits h
    join anomaly.detectors d on d.name = h.detector and not d.legacy
    join anomaly.series s on s.id = h.series_id
    left join anomaly.signal_points p on p.series_id = h.series_id and p.bucket = h.bucket
    left join anomaly.operation_minutes m
      on s.scope = 'operation' and m.service_name = s.service and m.operation = s.operation and m.bucket = h.bucket
    where h.run_id = p_run_id
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
  assembled as (
    select g.*,
           (select jsonb_agg(jsonb_build_object('name', pd.detector_name, 'score', round(pd.score::numeric, 3),
                                                'minutes', pd.buckets) order by pd.score desc)
            from per_detector pd where pd.fingerprint = g.fingerprint) as detectors,
           (select count(*) from per_detector pd where pd.fingerprint = g.fingerprint)::double precision
             / greatest((select e.n from enabled e where e.family = g.family), 1) as confidence
    from grouped g
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
    where (select count(*) from per_detector pd where pd.fingerprint = x.fingerprint)
            >= least((v_cfg ->> 'min_agreeing_detectors')::integer,
                     greatest(1, coalesce((select e.n from enabled e where e.family = x.family), 1) - 1))
       or x.score >= (v_cfg ->> 'single_detector_min_score')::double precision
       or (select r.minutes from recent r where r.fingerprint = x.fingerprint)
            >= (v_cfg ->> 'sustained_minutes')::integer
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
  with touched as (
    select a.id, a.severity, a.occurrences,
           case when a.score >= (v_cfg ->> 'severity_critical')::double precision then 4
                when a.score >= (v_cfg ->> 'severity_high')::double precision then 3
                when a.score >= (v_cfg ->> 'severity_medium')::double precision then 2 else 1 end as base_rank,
           (select count(distinct b.service) from public.trace_anomalies b
            where b.status <> 'RESOLVED'
              and b.first_seen between a.first_seen - interval '5 minutes' and a.first_seen + interval '5 minutes')
             as breadth
    from public.trace_anomalies a
    where a.status <> 'RESOLVED' and a.updated_at = now()
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
comment on function anomaly.apply_hits(bigint, timestamptz) is
  'Anomaly lifecycle for one detection run: groups the run''s hits by fingerprint (type|subtype|service|operation|'
  'family), opens (when min_agreeing_detectors agree, or one scores single_detector_min_score) or updates one '
  'public.trace_anomalies row each (detectors agreeing raise confidence, severity only '
  'escalates while open: by score, duration and breadth), explains new latency/error anomalies (culprit, '
  'over-represented attributes; bounded by max_explanations_per_run) and resolves anomalies quiet for quiet_minutes.';

alter table anomaly.signal_points drop column exemplar_trace_id, drop column exemplar_span_id;

alter table anomaly.series_state
  add column win_k double precision not null default 0,
  add column win_n double precision not null default 0,
  add column win_kk double precision not null default 0,
  add column win_kn double precision not null default 0,
  add column win_nn double precision not null default 0;
comment on column anomaly.series_state.win_k is
  'Errors (k) of the rolling window''s points (n > 0); with win_n, win_kk, win_kn and win_nn (sums of n, k*k, k*n, '
  'n*n) the pooled error rate and its dispersion over the window that error_cusum takes as its baseline.';
comment on column anomaly.series_state.win_n is 'Spans (n) of the rolling window''s points.';
comment on column anomaly.series_state.win_kk is 'Sum of k * k over the rolling window''s points.';
comment on column anomaly.series_state.win_kn is 'Sum of k * n over the rolling window''s points.';
comment on column anomaly.series_state.win_nn is 'Sum of n * n over the rolling window''s points.';
-- the new sums start at 0 beside a window already kept: the next fold must rebuild the whole window from the points
delete from anomaly.detector_state where detector = 'window';

create or replace function anomaly.update_baselines(p_bucket timestamptz)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.baseline');
  v_alpha double precision := (v_cfg ->> 'ewma_alpha')::double precision;
  v_ha double precision := (v_cfg ->> 'holt_alpha')::double precision;
  v_hb double precision := (v_cfg ->> 'holt_beta')::double precision;
  v_slack double precision := (v_cfg ->> 'cusum_slack_sigma')::double precision;
  v_slot_minutes integer := (v_cfg ->> 'day_slot_minutes')::integer;
  v_day_slot smallint := ((extract(hour from p_bucket at time zone 'UTC') * 60
                           + extract(minute from p_bucket at time zone 'UTC'))::integer / v_slot_minutes)::smallint;
  v_week_slot smallint := (extract(isodow from p_bucket at time zone 'UTC')::integer * 24 - 24
                           + extract(hour from p_bucket at time zone 'UTC')::integer)::smallint;
  v_window interval := make_interval(mins => (v_cfg ->> 'window_minutes')::integer);
  v_rows integer;
  v_points integer;
  v_cursor timestamptz;
  v_cursor_at timestamptz;
  v_rolling boolean;
begin
  -- The rolling trailing window (count, sum, sum of squares of the points with n > 0 in (p_bucket - window,
  -- p_bucket]) moves by one minute only right after the minute before and with an unchanged detect.baseline;
  -- otherwise (first cycle, a catch-up gap, a new window_minutes) it is rebuilt from the points below, so it cannot
  -- drift from them.
  select last_bucket, updated_at into v_cursor, v_cursor_at
  from anomaly.detector_state where detector = 'window' for update;
  v_rolling := coalesce(v_cursor = p_bucket - interval '1 minute'
                        and v_cursor_at >= coalesce((select c.updated_at from public.anomaly_detection_config c
                                                     where c.key = 'detect.baseline'), '-infinity'), false);

  -- Seasonal profiles take whole slots: the minutes of the slot in progress gather in the series' state (Welford),
  -- and when a series' first point of a new slot comes, the gathered slot is merged into its profile (Chan et al.'s
  -- parallel update): a profile row is written once per slot, not once per minute.
  with pts as (
    select p.series_id from anomaly.signal_points p where p.bucket = p_bucket
  ),
  gathered as (
    select st.series_id, 'day'::text as period, st.day_slot as slot, st.day_n as n, st.day_mean as mean,
           st.day_m2 as m2
    from pts join anomaly.series_state st using (series_id)
    where (st.last_bucket is null or st.last_bucket < p_bucket)
      and st.day_n > 0 and st.day_slot is distinct from v_day_slot
    union all
    select st.series_id, 'week', st.week_slot, st.week_n, st.week_mean, st.week_m2
    from pts join anomaly.series_state st using (series_id)
    where (st.last_bucket is null or st.last_bucket < p_bucket)
      and st.week_n > 0 and st.week_slot is distinct from v_week_slot
  )
  insert into anomaly.seasonal_profiles as sp (series_id, period, slot, n, mean, m2)
  select series_id, period, slot, n, mean, m2 from gathered
  order by period, slot, series_id
  on conflict (period, slot, series_id) do update set
    n = sp.n + excluded.n,
    mean = sp.mean + (excluded.mean - sp.mean) * excluded.n / (sp.n + excluded.n),
    m2 = sp.m2 + excluded.m2 + power(excluded.mean - sp.mean, 2) * sp.n * excluded.n / (sp.n + excluded.n);

  -- One write per series and minute: the point folds into EWMA, Holt, CUSUM, the slot in progress and (rolling) the
  -- trailing window, which also lets go of the point leaving it.
  with pts as (
    select p.series_id, p.value, p.n,
           -- the window's change: in with this point (n > 0), out with the point leaving it (d, joined only when
           -- rolling); for each: count, sum, sum of squares, and the errors k and spans n behind it with products
           (p.n > 0)::integer - (d.series_id is not null)::integer as win_points,
           i.value - coalesce(d.value, 0) as win_sum,
           i.value * i.value - coalesce(d.value * d.value, 0) as win_sumsq,
           i.k - coalesce(d.k, 0) as win_k,
           i.n - coalesce(d.n, 0) as win_n,
           i.k::double precision * i.k - coalesce(d.k, 0)::double precision * coalesce(d.k, 0) as win_kk,
           i.k::double precision * i.n - coalesce(d.k, 0)::double precision * coalesce(d.n, 0) as win_kn,
           i.n::double precision * i.n - coalesce(d.n, 0)::double precision * coalesce(d.n, 0) as win_nn
    from anomaly.signal_points p
    cross join lateral (
      select case when p.n > 0 then p.value else 0 end as value,
             case when p.n > 0 then coalesce(p.k, 0) else 0 end as k,
             case when p.n > 0 then p.n else 0 end as n
    ) i
    left join anomaly.signal_points d
      on v_rolling and d.series_id = p.series_id and d.bucket = p_bucket - v_window and d.n > 0
    where p.bucket = p_bucket
  ),
  state as (
    insert into anomaly.series_state as st (series_id, n, last_bucket, last_value, ewma_mean, ewma_var,
      holt_level, holt_trend, cusum_pos, cusum_neg, last_active_bucket,
      day_slot, day_n, day_mean, day_m2, week_slot, week_n, week_mean, week_m2, win_points, win_sum, win_sumsq,
      win_k, win_n, win_kk, win_kn, win_nn)
    select series_id, 1, p_bucket, value, value, 0, value, 0, 0, 0, case when n > 0 then p_bucket end,
           v_day_slot, 1, value, 0, v_week_slot, 1, value, 0, win_points, win_sum, win_sumsq,
           win_k, win_n, win_kk, win_kn, win_nn
    from pts
    order by series_id
    on conflict (series_id) do update set
      n = st.n + 1,
      last_bucket = p_bucket,
      last_value = excluded.last_value,
      last_active_bucket = coalesce(excluded.last_active_bucket, st.last_active_bucket),
      -- EWMA (West 1979 incremental form): the variance uses the deviation from the previous mean.
      ewma_mean = st.ewma_mean + v_alpha * (excluded.last_value - st.ewma_mean),
      ewma_var = (1 - v_alpha) * (st.ewma_var + v_alpha * power(excluded.last_value - st.ewma_mean, 2)),
      -- Holt linear trend
      holt_level = v_ha * excluded.last_value + (1 - v_ha) * (st.holt_level + st.holt_trend),
      holt_trend = v_hb * (v_ha * excluded.last_value + (1 - v_ha) * (st.holt_level + st.holt_trend) - st.holt_level)
                   + (1 - v_hb) * st.holt_trend,
      -- CUSUM on the standardised deviation from the EWMA baseline (k = slack sigmas), reset at 0
      cusum_pos = greatest(0, st.cusum_pos + (excluded.last_value - st.ewma_mean)
                  / greatest(sqrt(st.ewma_var), abs(st.ewma_mean) * 0.01, 1e-9) - v_slack),
      cusum_neg = greatest(0, st.cusum_neg - (excluded.last_value - st.ewma_mean)
                  / greatest(sqrt(st.ewma_var), abs(st.ewma_mean) * 0.01, 1e-9) - v_slack),
      -- the slot in progress (Welford); a new slot starts from this point (the old one was merged above)
      day_slot = v_day_slot,
      day_n = case when st.day_slot is distinct from v_day_slot then 1 else st.day_n + 1 end,
      day_mean = case when st.day_slot is distinct from v_day_slot or st.day_n = 0 then excluded.last_value
                      else st.day_mean + (excluded.last_value - st.day_mean) / (st.day_n + 1) end,
      day_m2 = case when st.day_slot is distinct from v_day_slot or st.day_n = 0 then 0
                    else st.day_m2 + (excluded.last_value - st.day_mean)
                         * (excluded.last_value - (st.day_mean + (excluded.last_value - st.day_mean) / (st.day_n + 1)))
               end,
      week_slot = v_week_slot,
      week_n = case when st.week_slot is distinct from v_week_slot then 1 else st.week_n + 1 end,
      week_mean = case when st.week_slot is distinct from v_week_slot or st.week_n = 0 then excluded.last_value
                       else st.week_mean + (excluded.last_value - st.week_mean) / (st.week_n + 1) end,
      week_m2 = case when st.week_slot is distinct from v_week_slot or st.week_n = 0 then 0
                     else st.week_m2 + (excluded.last_value - st.week_mean)
                          * (excluded.last_value - (st.week_mean + (excluded.last_value - st.week_mean) / (st.week_n + 1)))
                end,
      -- the rolling window moves (when not rolling, the rebuild below sets it)
      win_points = st.win_points + excluded.win_points,
      win_sum = st.win_sum + excluded.win_sum,
      win_sumsq = st.win_sumsq + excluded.win_sumsq,
      win_k = st.win_k + excluded.win_k,
      win_n = st.win_n + excluded.win_n,
      win_kk = st.win_kk + excluded.win_kk,
      win_kn = st.win_kn + excluded.win_kn,
      win_nn = st.win_nn + excluded.win_nn
    where st.last_bucket is null or st.last_bucket < p_bucket
    returning 1
  )
  select (select count(*) from state), (select count(*) from pts) into v_rows, v_points;

  if v_rolling and v_rows = v_points then
    -- series without a point this minute still let go of the point leaving their window
    update anomaly.series_state st
       set win_points = st.win_points - 1, win_sum = st.win_sum - d.value, win_sumsq = st.win_sumsq - d.value * d.value,
           win_k = st.win_k - coalesce(d.k, 0), win_n = st.win_n - d.n,
           win_kk = st.win_kk - coalesce(d.k, 0)::double precision * coalesce(d.k, 0),
           win_kn = st.win_kn - coalesce(d.k, 0)::double precision * d.n,
           win_nn = st.win_nn - d.n::double precision * d.n
      from anomaly.signal_points d
     where d.bucket = p_bucket - v_window and d.n > 0 and st.series_id = d.series_id
       and not exists (select 1 from anomaly.signal_points p where p.series_id = d.series_id and p.bucket = p_bucket);
  elsif v_cursor = p_bucket and v_rows = 0 then
    return v_rows;  -- this minute was folded in already
  else
    -- not rolling, or some series had folded this minute already (their window did not move): rebuild
    update anomaly.series_state st
       set win_points = coalesce(w.points, 0), win_sum = coalesce(w.sum, 0), win_sumsq = coalesce(w.sumsq, 0),
           win_k = coalesce(w.k, 0), win_n = coalesce(w.n, 0), win_kk = coalesce(w.kk, 0), win_kn = coalesce(w.kn, 0),
           win_nn = coalesce(w.nn, 0)
      from anomaly.series_state s0
      left join (
        select p.series_id, count(*)::integer as points, sum(p.value) as sum, sum(p.value * p.value) as sumsq,
               sum(coalesce(p.k, 0))::double precision as k, sum(p.n)::double precision as n,
               sum(coalesce(p.k, 0)::double precision * coalesce(p.k, 0)) as kk,
               sum(coalesce(p.k, 0)::double precision * p.n) as kn, sum(p.n::double precision * p.n) as nn
        from anomaly.signal_points p
        where p.bucket > p_bucket - v_window and p.bucket <= p_bucket and p.n > 0
        group by p.series_id
      ) w on w.series_id = s0.series_id
     where s0.series_id = st.series_id
       and (st.win_points, st.win_sum, st.win_sumsq, st.win_k, st.win_n, st.win_kk, st.win_kn, st.win_nn)
           is distinct from (coalesce(w.points, 0), coalesce(w.sum, 0), coalesce(w.sumsq, 0), coalesce(w.k, 0),
                             coalesce(w.n, 0), coalesce(w.kk, 0), coalesce(w.kn, 0), coalesce(w.nn, 0));
  end if;
  insert into anomaly.detector_state (detector, last_bucket) values ('window', p_bucket)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();
  return v_rows;
end
$$;
comment on function anomaly.update_baselines(timestamptz) is
  'Folds the signal points of one minute into anomaly.series_state (EWMA, Holt, CUSUM, last minute with data, the '
  'rolling trailing window of detect.baseline.window_minutes, and the day and hour-of-week slot in progress) and, '
  'when a series enters a new slot, merges the finished slot into anomaly.seasonal_profiles. Called by '
  'anomaly.detect() after the detectors scored that minute, so detectors never see their own bucket in a baseline. '
  'A minute already folded in is skipped; the rolling window is rebuilt from the points after a gap or a change of '
  'detect.baseline. Returns the series updated.';
