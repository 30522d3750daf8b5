-- 20261125000760_explanations.sql — why a latency or error anomaly happened, read from the staged spans: the
-- (service, operation) whose self time grew (the culprit) and the attribute values over-represented in the anomalous
-- spans. Run once per new anomaly, so each reads a bounded sample of spans, never a whole window of traffic.

-- ============================================================== bounded span samples
create function anomaly._sample_series_spans(
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
  -- so an explanation can be recomputed and a test can rely on it.
  with few as materialized (
    select sp.*
    from anomaly.spans sp
    where sp.service_name = p_service and sp.name = p_operation
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
    where sp.service_name = p_service and sp.name = p_operation
      -- seconds, not days: adding a day-valued interval would follow the session time zone across DST
      and sp.start_time >= p_from + make_interval(secs => extract(epoch from p_through - p_from) * g.i / p_samples)
      and sp.start_time < p_from + make_interval(secs => extract(epoch from p_through - p_from) * (g.i + 1) / p_samples)
    order by sp.start_time
    limit 1
  ) s
  where (select count(*) from few) > p_samples
$$;
comment on function anomaly._sample_series_spans(text, text, timestamptz, timestamptz, integer) is
  'At most p_samples spans of one series (service_name, span name) starting in [p_from, p_through): all of them when '
  'there are no more than p_samples, else the first span of each of p_samples equal slices of the window (an even, '
  'deterministic sample). Cost: at most p_samples + 1 rows read in start order, plus p_samples index probes on '
  'anomaly.spans (service_name, start_time) for a busy window. Used by the explain_* functions. '
  'Example: select count(*) from anomaly._sample_series_spans(''api'', ''GET /items'', now() - interval ''1 hour'', now(), 500).';

create function anomaly._check_explain_arguments(
  p_from timestamptz, p_through timestamptz, p_baseline_from timestamptz, p_baseline_through timestamptz
)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_from is null or p_through is null or p_baseline_from is null or p_baseline_through is null then
    raise exception using errcode = 'TSH01', message = 'an explanation needs both windows',
      detail = format('got [%s, %s) and baseline [%s, %s)', p_from, p_through, p_baseline_from, p_baseline_through),
      hint = 'Pass the anomalous window [first_seen, last_seen) and a baseline window before it, e.g. the hour before first_seen.';
  end if;
  if p_from >= p_through or p_baseline_from >= p_baseline_through then
    raise exception using errcode = 'TSH01', message = 'each window must end after it starts (the end is exclusive)',
      detail = format('got [%s, %s) and baseline [%s, %s)', p_from, p_through, p_baseline_from, p_baseline_through),
      hint = 'For minute buckets pass the last bucket + interval ''1 minute'' as the end.';
  end if;
end
$$;
comment on function anomaly._check_explain_arguments(timestamptz, timestamptz, timestamptz, timestamptz) is
  'Validates the anomalous and baseline windows of the explain_* functions: all four bounds given and each window '
  'non-empty ([from, through), through exclusive); raises TSH01 otherwise. '
  'Example: select anomaly._check_explain_arguments(now() - interval ''5 minutes'', now(), now() - interval ''1 hour'', now() - interval ''5 minutes'').';

-- ============================================================== the culprit of a latency anomaly
create function anomaly.explain_latency_culprit(
  p_service text, p_operation text, p_from timestamptz, p_through timestamptz,
  p_baseline_from timestamptz, p_baseline_through timestamptz, p_max_traces integer default 200
)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  -- The slowest traces are taken from an even sample of 20 spans per wanted trace (all spans of a quiet window):
  -- the top 5 % of that sample are the slow ones, and the read stays bounded however busy the window is.
  v_pool integer;
  v_result jsonb;
begin
  perform anomaly._check_explain_arguments(p_from, p_through, p_baseline_from, p_baseline_through);
  if p_service is null or p_operation is null or p_max_traces is null or p_max_traces not between 1 and 2000 then
    raise exception using errcode = 'TSH01', message = 'explain_latency_culprit needs a service, an operation and 1..2000 traces',
      detail = format('got service %s, operation %s, p_max_traces %s', coalesce(p_service, 'NULL'),
                      coalesce(p_operation, 'NULL'), coalesce(p_max_traces::text, 'NULL')),
      hint = 'The default of 200 traces per side keeps an explanation well under a second.';
  end if;
  v_pool := least(20 * p_max_traces, 10000);

  with recursive
  -- One anchor span per trace: the series' slowest span in the trace.
  anomalous as (
    select x.trace_id, x.span_id, x.start_time, x.end_time, x.duration_ns
    from (
      select distinct on (s.trace_id) s.trace_id, s.span_id, s.start_time, s.end_time, s.duration_ns
      from anomaly._sample_series_spans(p_service, p_operation, p_from, p_through, v_pool) s
      order by s.trace_id, s.duration_ns desc, s.span_id
    ) x
    order by x.duration_ns desc, x.trace_id
    limit p_max_traces
  ),
  baseline as (
    select distinct on (s.trace_id) s.trace_id, s.span_id, s.start_time, s.end_time, s.duration_ns
    from anomaly._sample_series_spans(p_service, p_operation, p_baseline_from, p_baseline_through, p_max_traces) s
    order by s.trace_id, s.duration_ns desc, s.span_id
  ),
  anchors as materialized (
    select true as anomalous, a.* from anomalous a
    union all
    select false, b.* from baseline b
  ),
  -- The spans of each anchor's trace that start within a minute of the anchor (children may start a little early
  -- under clock skew); one index lookup on (trace_id, span_id) per anchor, pruned to the partitions of that time.
  tspans as materialized (
    select a.anomalous, s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name,
           s.start_time, s.end_time, s.duration_ns
    from anchors a
    join anomaly.spans s
      on s.trace_id = a.trace_id
     and s.start_time >= a.start_time - interval '1 minute'
     and s.start_time <= a.end_time + interval '1 minute'
  ),
  -- The anchor and its descendants, 32 levels deep at most (which also ends any parent cycle in bad data).
  tree (anomalous, trace_id, span_id, service_name, name, start_time, end_time, duration_ns, depth) as (
    select s.anomalous, s.trace_id, s.span_id, s.service_name, s.name, s.start_time, s.end_time, s.duration_ns, 0
    from anchors a
    join tspans s on s.anomalous = a.anomalous and s.trace_id = a.trace_id and s.span_id = a.span_id
     and s.start_time = a.start_time
    union all
    select t.anomalous, c.trace_id, c.span_id, c.service_name, c.name, c.start_time, c.end_time, c.duration_ns,
           t.depth + 1
    from tree t
    join tspans c on c.anomalous = t.anomalous and c.trace_id = t.trace_id and c.parent_span_id = t.span_id
    where t.depth < 32
  ),
  -- Each span once, even if bad data reaches it twice.
  nodes as materialized (
    select distinct on (anomalous, trace_id, span_id) anomalous, trace_id, span_id, service_name, name,
           start_time, end_time, duration_ns
    from tree
    order by anomalous, trace_id, span_id, start_time
  ),
  -- Self time = duration - the length of the union of the direct children's intervals clipped to the span, so
  -- concurrent children are not counted twice and work that outlives the span does not count. One row per
  -- (span, child), or one row with no child for a leaf.
  kids as (
    select p.anomalous, p.trace_id, p.span_id, p.service_name, p.name, p.duration_ns,
           -- (greatest/least skip NULLs, so a leaf's missing child must stay NULL explicitly)
           case when c.span_id is not null then greatest(c.start_time, p.start_time) end as cs,
           case when c.span_id is not null then least(c.end_time, p.end_time) end as ce
    from nodes p
    left join tspans c
      on c.anomalous = p.anomalous and c.trace_id = p.trace_id and c.parent_span_id = p.span_id
     and c.end_time > p.start_time and c.start_time < p.end_time
  ),
  self_times as (
    -- Sorted by start, each child interval adds only what lies beyond the furthest end seen so far.
    select anomalous, service_name, name,
           greatest(0, duration_ns / 1e6::double precision
                       - coalesce(sum(greatest(0, extract(epoch from ce - greatest(cs, prev_end)))), 0)::double precision
                         * 1000) as self_ms
    from (
      select k.*, max(k.ce) over (partition by k.anomalous, k.trace_id, k.span_id order by k.cs, k.ce
                                  rows between unbounded preceding and 1 preceding) as prev_end
      from kids k
    ) x
    group by anomalous, trace_id, span_id, service_name, name, duration_ns
  ),
  counts as (
    select count(*) filter (where anomalous) as n_anomalous,
           count(*) filter (where not anomalous) as n_baseline,
           avg(duration_ns / 1e6::double precision) filter (where anomalous) as ms_anomalous,
           avg(duration_ns / 1e6::double precision) filter (where not anomalous) as ms_baseline
    from anchors
  ),
  -- Mean self time per trace: a trace without the operation contributes 0.
  per_operation as (
    select st.service_name, st.name,
           coalesce(sum(st.self_ms) filter (where st.anomalous), 0) / c.n_anomalous as anomalous_ms,
           coalesce(sum(st.self_ms) filter (where not st.anomalous), 0) / c.n_baseline as baseline_ms
    from self_times st
    cross join counts c
    where c.n_anomalous > 0 and c.n_baseline > 0
    group by st.service_name, st.name, c.n_anomalous, c.n_baseline
  ),
  ranked as (
    select p.*, p.anomalous_ms - p.baseline_ms as delta_ms,
           (p.anomalous_ms - p.baseline_ms)
             / nullif(sum(greatest(p.anomalous_ms - p.baseline_ms, 0)) over (), 0) as share,
           row_number() over (order by p.anomalous_ms - p.baseline_ms desc, p.service_name, p.name) as rank
    from per_operation p
  ),
  candidates as (
    select rank, jsonb_build_object(
             'service', service_name, 'operation', name,
             'self_time_ms_baseline', round(baseline_ms::numeric, 3),
             'self_time_ms_anomalous', round(anomalous_ms::numeric, 3),
             'delta_ms', round(delta_ms::numeric, 3),
             'share_of_increase', round(share::numeric, 4)) as candidate
    from ranked
    where rank <= 5 and round(delta_ms::numeric, 3) > 0   -- growing by at least a microsecond, not float noise
  )
  select jsonb_build_object(
           'culprit', (select candidate from candidates where rank = 1),
           'candidates', coalesce((select jsonb_agg(candidate order by rank) from candidates), '[]'::jsonb),
           'traces_compared', jsonb_build_object('anomalous', c.n_anomalous, 'baseline', c.n_baseline),
           'duration_ms', jsonb_build_object('baseline', round(c.ms_baseline::numeric, 3),
                                             'anomalous', round(c.ms_anomalous::numeric, 3)))
    into v_result
    from counts c;
  return v_result;
end
$$;
comment on function anomaly.explain_latency_culprit(text, text, timestamptz, timestamptz, timestamptz, timestamptz, integer) is
  'Names the (service, operation) whose self time grew most under a latency anomaly of (p_service, p_operation). '
  'Anchors, one span of the series per trace: the p_max_traces slowest traces of [p_from, p_through) (all spans of a '
  'window holding up to min(20 * p_max_traces, 10000), else the slowest of an even sample that size) and an even '
  'sample of p_max_traces spans of [p_baseline_from, p_baseline_through). For each anchor it walks the anchor and its '
  'descendants (parent_span_id, at most 32 levels) and takes every span''s self time: its duration minus the union of '
  'its direct children''s intervals clipped to it. Self time is summed per (service_name, name) and averaged per trace '
  'on each side. Returns {"culprit": {service, operation, self_time_ms_baseline, self_time_ms_anomalous, delta_ms, '
  'share_of_increase (of the sum of all positive deltas)}, "candidates": [top 5 by delta_ms, growing ones only], '
  '"traces_compared": {anomalous, baseline}, "duration_ms": {baseline, anomalous} (mean anchor duration)}; the culprit '
  'may be the operation itself, and is null when either side has no spans or nothing grew. '
  'Cost bound: at most min(20 * p_max_traces, 10000) + 1 spans read from the anomalous window and p_max_traces + 1 '
  'from the baseline (or that many index probes on (service_name, start_time) when a window is busier), then one '
  '(trace_id, span_id) index lookup per anchor (<= 2 * p_max_traces traces, spans within a minute of the anchor) and '
  'a depth-bounded walk over those spans only. Raises TSH01 for missing or empty windows or p_max_traces outside '
  '1..2000. Example: select anomaly.explain_latency_culprit(''frontend'', ''GET /checkout'', ''2026-03-01 01:00+00'', '
  '''2026-03-01 01:05+00'', ''2026-03-01 00:00+00'', ''2026-03-01 01:00+00'') -> culprit payments SELECT payments.';

-- ============================================================== over-represented attribute values
create function anomaly.explain_overrepresented_attributes(
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
  v_result jsonb;
begin
  perform anomaly._check_explain_arguments(p_from, p_through, p_baseline_from, p_baseline_through);
  if p_service is null or p_operation is null then
    raise exception using errcode = 'TSH01', message = 'explain_overrepresented_attributes needs a service and an operation',
      detail = format('got service %s, operation %s', coalesce(p_service, 'NULL'), coalesce(p_operation, 'NULL')),
      hint = 'Pass the series of the anomaly (public.trace_anomalies.service and operation).';
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
    select s.* from anomaly._sample_series_spans(p_service, p_operation, p_baseline_from, p_baseline_through,
                                                 c_baseline_sample) s
  ),
  threshold as (
    select percentile_cont(0.95) within group (order by duration_ns) as p95_ns from baseline
  ),
  anomalous as materialized (
    select s.*
    from anomaly._sample_series_spans(p_service, p_operation, p_from, p_through, c_window_sample) s
    cross join threshold t
    where case p_anomalous_predicate
            when 'slow' then s.duration_ns > t.p95_ns
            else s.status_code = 2 end
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
  'with the series'' spans in [p_baseline_from, p_baseline_through). Anomalous spans: for ''slow'' those slower than the '
  'baseline p95 (of the baseline sample), for ''error'' those with status_code 2. A key''s value is read from the span '
  'attributes, else the resource attributes, else the typed columns (service.version, service.instance.id, http.route, '
  'http.request.method, http.response.status_code). Returns up to 5 [{key, value, anomalous_share, baseline_share, '
  'lift, count}] by lift, keeping values carried by >= 20 % of the anomalous spans (rarer ones cannot explain the '
  'anomaly) with lift >= 1.5; lift = anomalous_share / Laplace-smoothed baseline share ((n + 1) / (N + 2)), so a value '
  'absent from the baseline gets a large finite lift. [] when either side has no spans. Cost bound: at most 5 001 '
  'spans read from the anomalous window and 2 001 from the baseline (or 5 000 / 2 000 index probes on (service_name, '
  'start_time) when a window is busier), times at most 64 keys. Raises TSH01 for missing or empty windows, an unknown '
  'predicate or more than 64 keys. Example: select anomaly.explain_overrepresented_attributes(''payments'', ''POST /pay'', '
  '''2026-03-01 01:00+00'', ''2026-03-01 01:05+00'', ''2026-03-01 00:00+00'', ''2026-03-01 01:00+00'') '
  '-> [{"key": "host.name", "value": "node-7", ...}, {"key": "service.version", "value": "2.0.0", ...}].';

grant execute on function
  anomaly._sample_series_spans(text, text, timestamptz, timestamptz, integer),
  anomaly._check_explain_arguments(timestamptz, timestamptz, timestamptz, timestamptz),
  anomaly.explain_latency_culprit(text, text, timestamptz, timestamptz, timestamptz, timestamptz, integer),
  anomaly.explain_overrepresented_attributes(text, text, timestamptz, timestamptz, timestamptz, timestamptz, text[], text)
to service_role;
