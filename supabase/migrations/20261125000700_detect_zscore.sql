-- 20261125000700_detect_zscore.sql — the first detector and the anomaly lifecycle it feeds.
-- anomaly.detect() scores every complete minute since its last run against a trailing window of the same
-- series: p95 latency and error rate per service + operation, z-score with a floor on sigma. A hit updates the
-- one open anomaly of its fingerprint (or opens one); an anomaly with no hit for quiet_minutes resolves.

insert into anomaly.config_keys (key, spec, defaults, description) values (
  'detect.zscore',
  '{"window_minutes": {"type": "integer", "min": 10, "max": 10080},
    "threshold": {"type": "number", "min": 1, "max": 20},
    "min_points": {"type": "integer", "min": 3, "max": 10000},
    "min_span_count": {"type": "integer", "min": 1, "max": 100000},
    "min_error_count": {"type": "integer", "min": 1, "max": 100000},
    "latency_quantile": {"type": "number", "min": 0.5, "max": 0.999},
    "min_relative_change": {"type": "number", "min": 0, "max": 10},
    "quiet_minutes": {"type": "integer", "min": 1, "max": 1440},
    "severity_medium": {"type": "number", "min": 1, "max": 100},
    "severity_high": {"type": "number", "min": 1, "max": 100},
    "severity_critical": {"type": "number", "min": 1, "max": 100}}',
  '{"window_minutes": 60, "threshold": 3, "min_points": 15, "min_span_count": 5, "min_error_count": 3,
    "latency_quantile": 0.95, "min_relative_change": 0.2, "quiet_minutes": 5,
    "severity_medium": 4.5, "severity_high": 6, "severity_critical": 10}',
  'Trailing-window z-score on p95 latency and error rate per service + operation. Fires when |z| >= threshold, the minute '
  'has at least min_span_count spans (min_error_count errors for error rate) and the value moved by at least '
  'min_relative_change of the baseline; severity from z via the severity_* cut-offs.'
);

create table anomaly.detector_state (
  detector text primary key,
  last_bucket timestamptz not null,
  updated_at timestamptz not null default now()
);
comment on table anomaly.detector_state is
  'Per detector: the last minute bucket it has scored. Each run scores only (last_bucket, watermark], so a cycle costs O(new buckets).';

create type anomaly.detect_result as (
  buckets_scored integer,
  anomalies_opened integer,
  anomalies_updated integer,
  anomalies_resolved integer,
  scored_through timestamptz
);
comment on type anomaly.detect_result is 'What one anomaly.detect() call did.';

create function anomaly.severity_from_score(p_score double precision, p_cfg jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_score >= (p_cfg ->> 'severity_critical')::double precision then 'CRITICAL'
    when p_score >= (p_cfg ->> 'severity_high')::double precision then 'HIGH'
    when p_score >= (p_cfg ->> 'severity_medium')::double precision then 'MEDIUM'
    else 'LOW' end
$$;
comment on function anomaly.severity_from_score(double precision, jsonb) is
  'Maps a score to LOW/MEDIUM/HIGH/CRITICAL using the severity_medium/high/critical cut-offs of a detector config.';

create function anomaly.detect()
returns anomaly.detect_result
language plpgsql
set search_path = ''
as $$
declare
  v_cfg jsonb := anomaly.config('detect.zscore');
  v_window interval := make_interval(mins => (v_cfg ->> 'window_minutes')::integer);
  v_threshold double precision := (v_cfg ->> 'threshold')::double precision;
  v_min_points integer := (v_cfg ->> 'min_points')::integer;
  v_min_spans integer := (v_cfg ->> 'min_span_count')::integer;
  v_min_errors integer := (v_cfg ->> 'min_error_count')::integer;
  v_quantile double precision := (v_cfg ->> 'latency_quantile')::double precision;
  v_min_change double precision := (v_cfg ->> 'min_relative_change')::double precision;
  v_quiet interval := make_interval(mins => (v_cfg ->> 'quiet_minutes')::integer);
  v_watermark timestamptz;
  v_from timestamptz;
  v_through timestamptz;
  v_result anomaly.detect_result;
begin
  if not pg_try_advisory_xact_lock(hashtext('anomaly.detect')) then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;

  select watermark into v_watermark from anomaly.rollup_state;
  if v_watermark is null then
    return (0, 0, 0, 0, null)::anomaly.detect_result;
  end if;
  -- complete minutes end before the watermark
  v_through := date_trunc('minute', v_watermark) - interval '1 minute';
  select last_bucket into v_from from anomaly.detector_state where detector = 'zscore';
  v_from := coalesce(v_from, v_through - v_window);
  if v_through <= v_from then
    return (0, 0, 0, 0, v_from)::anomaly.detect_result;
  end if;

  with series as (
    select m.service_name, m.operation, m.bucket, m.span_count, m.error_count,
           anomaly.histogram_quantile(m.latency_histogram, v_quantile) as latency, m.latency_histogram,
           m.error_count::double precision / m.span_count as error_rate,
           m.slowest_trace_id, m.slowest_span_id, m.error_trace_id, m.error_span_id
    from anomaly.operation_minutes m
    where m.bucket > v_from - v_window and m.bucket <= v_through
  ),
  scored as (
    select s.*,
           count(*) over w as points,
           avg(latency) over w as lat_mean, stddev_samp(latency) over w as lat_sd,
           avg(error_rate) over w as err_mean, stddev_samp(error_rate) over w as err_sd
    from series s
    window w as (partition by service_name, operation order by bucket
                 range between v_window preceding and '1 microsecond'::interval preceding)
  ),
  candidates as (
    select *,
           -- sigma floor: 5 % of the mean (or 1 ms) for latency; binomial noise at this volume for error rate
           (latency - lat_mean) / greatest(lat_sd, lat_mean * 0.05, 1.0) as lat_z,
           (error_rate - err_mean) / greatest(err_sd, sqrt(greatest(err_mean, 0.001) * (1 - least(err_mean, 0.999)) / span_count), 0.01) as err_z
    from scored
    where bucket > v_from and points >= v_min_points
  ),
  hits as (
    select 'LATENCY|p95_zscore|' || service_name || '|' || operation || '|zscore' as fingerprint,
         'LATENCY' as anomaly_type, 'p95_zscore' as subtype,
         service_name as service, operation, bucket, latency as observed, lat_mean as expected, lat_sd as stddev,
         lat_z as score, span_count, slowest_trace_id as trace_id, slowest_span_id as span_id, points
  from candidates
  where span_count >= v_min_spans and lat_z >= v_threshold and latency >= lat_mean * (1 + v_min_change)
    -- a shifted quantile, not one slow outlier: at least 2 spans (and the quantile's share) above the band
    and anomaly.histogram_count_above(latency_histogram, lat_mean + v_threshold * greatest(lat_sd, lat_mean * 0.05, 1.0))
        >= greatest(2, ceil((1 - v_quantile) * span_count))
  union all
  select 'ERROR_RATE|zscore|' || service_name || '|' || operation || '|zscore', 'ERROR_RATE', 'zscore',
         service_name, operation, bucket, error_rate, err_mean, err_sd, err_z, span_count,
         coalesce(error_trace_id, slowest_trace_id), coalesce(error_span_id, slowest_span_id), points
  from candidates
  where error_count >= v_min_errors and err_z >= v_threshold
    and error_rate >= err_mean * (1 + v_min_change) + 0.01
  ),
  -- One row per fingerprint: the worst bucket of this run, then fold into the open anomaly.
  worst as (
    select distinct on (fingerprint) h.*,
           count(*) over (partition by fingerprint) as hits,
           min(bucket) over (partition by fingerprint) as first_bucket,
           max(bucket) over (partition by fingerprint) as last_bucket
    from hits h
    order by fingerprint, score desc
  ),
  upserted as (
    insert into public.trace_anomalies as a (
      trace_id, anomaly_type, subtype, severity, status, description, fingerprint, service, operation, detector,
      score, observed_value, expected_value, first_seen, last_seen, occurrences, explanation, exemplar_span_id)
    select w.trace_id, w.anomaly_type, w.subtype, anomaly.severity_from_score(w.score, v_cfg), 'OPEN',
           format('%s of %s %s is %s vs expected %s (z=%s)',
                  case w.anomaly_type when 'LATENCY' then 'p95 latency' else 'error rate' end,
                  w.service, w.operation,
                  case w.anomaly_type when 'LATENCY' then round(w.observed::numeric, 1) || ' ms'
                       else round(100 * w.observed::numeric, 1) || ' %' end,
                  case w.anomaly_type when 'LATENCY' then round(w.expected::numeric, 1) || ' ms'
                       else round(100 * w.expected::numeric, 1) || ' %' end,
                  round(w.score::numeric, 1)),
           w.fingerprint, w.service, w.operation, 'zscore', w.score, w.observed, w.expected,
           w.first_bucket, w.last_bucket + interval '1 minute', w.hits,
           jsonb_build_object(
             'observed', w.observed, 'expected', w.expected, 'stddev', w.stddev,
             'band', jsonb_build_array(w.expected - v_threshold * coalesce(w.stddev, 0),
                                       w.expected + v_threshold * coalesce(w.stddev, 0)),
             'unit', case w.anomaly_type when 'LATENCY' then 'ms' else 'ratio' end,
             'signal', case w.anomaly_type when 'LATENCY' then 'p' || round(v_quantile * 100) || '_latency' else 'error_rate' end,
             'detectors', jsonb_build_array(jsonb_build_object('name', 'zscore', 'score', w.score)),
             'window', jsonb_build_object('baseline_minutes', (v_cfg ->> 'window_minutes')::integer,
                                          'baseline_points', w.points, 'bucket', w.bucket),
             'span_count', w.span_count,
             'exemplar', jsonb_build_object('trace_id', w.trace_id, 'span_id', w.span_id)),
           w.span_id
    from worst w
    order by w.fingerprint
    on conflict (fingerprint) where status <> 'RESOLVED' do update set
      last_seen = greatest(a.last_seen, excluded.last_seen),
      occurrences = a.occurrences + excluded.occurrences,
      score = greatest(a.score, excluded.score),
      -- severity only escalates while the anomaly is open
      severity = case when array_position(array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], excluded.severity)
                           > array_position(array['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], a.severity)
                      then excluded.severity else a.severity end,
      observed_value = case when excluded.score > a.score then excluded.observed_value else a.observed_value end,
      expected_value = case when excluded.score > a.score then excluded.expected_value else a.expected_value end,
      trace_id = case when excluded.score > a.score then excluded.trace_id else a.trace_id end,
      exemplar_span_id = case when excluded.score > a.score then excluded.exemplar_span_id else a.exemplar_span_id end,
      explanation = case when excluded.score > a.score then excluded.explanation else a.explanation end,
      description = case when excluded.score > a.score then excluded.description else a.description end,
      updated_at = now()
    returning (xmax = 0) as inserted
  )
  select (select count(*) from hits), (select count(*) filter (where inserted) from upserted),
         (select count(*) filter (where not inserted) from upserted)
  into v_result.buckets_scored, v_result.anomalies_opened, v_result.anomalies_updated;

  -- Quiet for long enough (in event time): resolve.
  with resolved as (
    update public.trace_anomalies
       set status = 'RESOLVED', resolved_at = now(), updated_at = now()
     where status <> 'RESOLVED' and detector = 'zscore'
       and last_seen <= v_through + interval '1 minute' - v_quiet
    returning 1
  )
  select count(*) into v_result.anomalies_resolved from resolved;

  insert into anomaly.detector_state (detector, last_bucket) values ('zscore', v_through)
  on conflict (detector) do update set last_bucket = excluded.last_bucket, updated_at = now();

  v_result.scored_through := v_through;
  return v_result;
end
$$;
comment on function anomaly.detect() is
  'Runs the z-score detector over complete minutes since its last run (up to the rollup watermark): p95 latency and '
  'error rate per service + operation against a trailing window (config detect.zscore). Opens or updates one '
  'public.trace_anomalies row per fingerprint with an explanation, and resolves anomalies quiet for quiet_minutes. '
  'Example: select * from anomaly.detect();';

grant select, insert, update, delete on anomaly.detector_state to service_role;
grant execute on function anomaly.detect(), anomaly.severity_from_score(double precision, jsonb) to service_role;
