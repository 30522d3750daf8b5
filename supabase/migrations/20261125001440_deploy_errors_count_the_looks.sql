-- 20261125001440_deploy_errors_count_the_looks.sql — deploy_regression's error test is an exact conditional test,
-- corrected for being repeated every minute. It compared the new version's error rate with the previous one's by a
-- normal-approximation z (p < alpha), and made that comparison again every minute of lookback_minutes while the
-- new version's sample grew: on a quality draw never tuned on (seed 51) a benign deploy on the clean day fired at
-- its 13th minute on 6 errors in 58 spans against 2 in 268 (z 7.2, "p" 3e-13). The conditional two-sample test the
-- error detectors use (anomaly.rate_increase_p_value) gives 6.4e-4 for those counts, and over 13 looks the level is
-- alpha / 13 (Bonferroni): no alarm. A real error regression (40 % of a new version's spans failing) is far below
-- either. The latency test (Mann-Whitney) is unchanged. Everything else is the function of 20261125001210.

create or replace function anomaly.detect_deploy_regression(p_bucket timestamptz, p_config jsonb)
returns setof anomaly.detector_hit
language sql
volatile
rows 10
set search_path = ''
set jit = off
as $$
  -- sides of deploys that left the lookback window are no longer compared
  delete from anomaly.deploy_sides
  where first_seen < p_bucket - make_interval(mins => (p_config ->> 'lookback_minutes')::integer);

  with cfg as (
    select make_interval(mins => (p_config ->> 'lookback_minutes')::integer) as lookback,
           make_interval(mins => (p_config ->> 'baseline_minutes')::integer) as baseline,
           (p_config ->> 'alpha')::double precision as alpha,
           (p_config ->> 'min_effect')::double precision as min_effect,
           (p_config ->> 'min_ratio')::double precision as min_ratio,
           (p_config ->> 'min_spans')::integer as min_spans,
           (p_config ->> 'max_spans_per_version')::integer as max_spans,
           (p_config ->> 'min_error_count')::integer as min_errors,
           (p_config ->> 'max_score')::double precision as max_score
  ),
  running as (
    -- versions serving each operation in this minute
    select m.service_name, m.operation, v.version, (m.versions ->> v.version)::integer as spans
    from anomaly.operation_minutes m, jsonb_object_keys(m.versions) as v(version)
    where m.bucket = p_bucket and v.version <> ''
  ),
  service_versions as (
    -- service.version is a property of the service: one representative per service and version, the operation
    -- that served it most this minute
    select distinct on (service_name, version) service_name, version, operation
    from running
    order by service_name, version, spans desc, operation
  ),
  new_versions as (
    -- Versions the representative did not run in the baseline_minutes before the lookback window. One index probe
    -- per service and version, stopping at the first older minute that ran it: that is all a quiet minute costs.
    -- (A scalar subquery, not NOT EXISTS: the planner would turn that into a hash anti-join over every rollup row
    -- of the range.)
    select sv.service_name, sv.version from service_versions sv cross join cfg
    where (select o.bucket from anomaly.operation_minutes o
           where o.service_name = sv.service_name and o.operation = sv.operation
             and o.bucket >= p_bucket - cfg.lookback - cfg.baseline and o.bucket < p_bucket - cfg.lookback
             and o.versions ? sv.version
           limit 1) is null
  ),
  fresh as (
    -- the same test for every operation of those services that runs the new version: first seen within
    -- lookback_minutes
    select r.service_name, r.operation, r.version
    from running r
    join new_versions nv using (service_name, version)
    cross join cfg
    where (select o.bucket from anomaly.operation_minutes o
           where o.service_name = r.service_name and o.operation = r.operation
             and o.bucket >= p_bucket - cfg.lookback - cfg.baseline and o.bucket < p_bucket - cfg.lookback
             and o.versions ? r.version
           limit 1) is null
  ),
  firsts as (
    select f.*, (select min(o.bucket) from anomaly.operation_minutes o
                 where o.service_name = f.service_name and o.operation = f.operation
                   and o.bucket >= p_bucket - cfg.lookback and o.bucket <= p_bucket
                   and o.versions ? f.version) as first_seen
    from fresh f cross join cfg
  ),
  pairs as (
    -- the previous version: the one that served most spans in the baseline_minutes before the first appearance
    select f.service_name, f.operation, f.version as new_version, f.first_seen, pv.version as previous_version
    from firsts f
    cross join cfg
    cross join lateral (
      select v.key as version
      from anomaly.operation_minutes o, jsonb_each_text(o.versions) v
      where o.service_name = f.service_name and o.operation = f.operation
        and o.bucket >= f.first_seen - cfg.baseline and o.bucket < f.first_seen
        and v.key <> '' and v.key <> f.version
      group by v.key
      order by sum(v.value::bigint) desc, v.key
      limit 1
    ) pv
  ),
  sides as (
    select p.service_name, p.operation, p.new_version, 'previous' as side, p.previous_version as version,
           p.first_seen, p.first_seen - cfg.baseline as from_bucket, p.first_seen - interval '1 minute' as to_bucket
    from pairs p cross join cfg
    union all
    select p.service_name, p.operation, p.new_version, 'new', p.new_version, p.first_seen, p.first_seen, p_bucket
    from pairs p
  ),
  minutes as (
    -- Minutes where only this version served the operation come pre-aggregated from the rollup (exact
    -- histograms, no span reads: the usual case once a rollout is complete). The others ("mixed": a rolling
    -- deploy, a canary, spans without service.version) are read span by span below.
    -- Incremental: anomaly.deploy_sides keeps each side's sums through the last minute folded in. A side whose
    -- cached range starts where this one does (same first_seen) adds only the minutes after it: one rollup row a
    -- minute for the new version, none for the previous one (its range ended at the first appearance). Otherwise
    -- (a new deploy, a re-run of an older minute) the side is summed from its first minute.
    insert into anomaly.deploy_sides as ds (service_name, operation, new_version, side, version, first_seen,
      from_bucket, through_bucket, pure_hist, pure_spans, pure_errors, mixed_buckets)
    select sd.service_name, sd.operation, sd.new_version, sd.side, sd.version, sd.first_seen, sd.from_bucket,
           sd.to_bucket,
           -- (no merge when one side is empty: the previous version's side adds nothing after its first minute)
           case when c.valid is not true or c.pure_hist is null then x.pure_hist
                when x.pure_hist is null then c.pure_hist
                else anomaly.histogram_merge(array[c.pure_hist, x.pure_hist]) end,
           case when c.valid then c.pure_spans else 0 end + x.pure_spans,
           case when c.valid then c.pure_errors else 0 end + x.pure_errors,
           case when c.valid and c.mixed_buckets is not null
                then c.mixed_buckets || coalesce(x.mixed_buckets, '{}') else x.mixed_buckets end
    from sides sd
    left join lateral (
      select d.*, d.version = sd.version and d.first_seen = sd.first_seen and d.from_bucket = sd.from_bucket
                  and d.through_bucket <= sd.to_bucket as valid
      from anomaly.deploy_sides d
      where d.service_name = sd.service_name and d.operation = sd.operation and d.new_version = sd.new_version
        and d.side = sd.side
    ) c on true
    cross join lateral (
      select anomaly.histogram_merge(array_agg(o.latency_histogram) filter (where o.versions - sd.version = '{}'))
               as pure_hist,
             coalesce(sum(o.span_count) filter (where o.versions - sd.version = '{}'), 0) as pure_spans,
             coalesce(sum(o.error_count) filter (where o.versions - sd.version = '{}'), 0) as pure_errors,
             array_agg(o.bucket order by o.bucket) filter (where o.versions - sd.version <> '{}') as mixed_buckets
      from anomaly.operation_minutes o
      where o.service_name = sd.service_name and o.operation = sd.operation
        and o.bucket >= case when coalesce(c.valid, false) then c.through_bucket + interval '1 minute'
                             else sd.from_bucket end
        and o.bucket <= sd.to_bucket and o.versions ? sd.version
    ) x
    order by 1, 2, 3, 4
    on conflict (service_name, operation, new_version, side) do update set
      version = excluded.version, first_seen = excluded.first_seen, from_bucket = excluded.from_bucket,
      through_bucket = excluded.through_bucket, pure_hist = excluded.pure_hist, pure_spans = excluded.pure_spans,
      pure_errors = excluded.pure_errors, mixed_buckets = excluded.mixed_buckets
    returning ds.service_name, ds.operation, ds.new_version, ds.side, ds.version, ds.pure_hist, ds.pure_spans,
              ds.pure_errors, ds.mixed_buckets
  ),
  mixed_binned as (
    -- bounded: the newest max_spans_per_version spans of the version in its mixed minutes
    select m.service_name, m.operation, m.new_version, m.side,
           anomaly.latency_bucket(s.duration_ns / 1e6::double precision) as b,
           count(*) as spans, count(*) filter (where s.status_code = 2) as errors
    from minutes m
    cross join cfg
    cross join lateral (
      select x.duration_ns, x.status_code
      from anomaly.spans x
      where x.service_name = m.service_name and x.name = m.operation and x.service_version = m.version
        and x.start_time >= m.mixed_buckets[1]
        and x.start_time < m.mixed_buckets[cardinality(m.mixed_buckets)] + interval '1 minute'
        and date_bin('1 minute', x.start_time, timestamptz '2000-01-01 00:00+00') = any (m.mixed_buckets)
      order by x.start_time desc
      limit cfg.max_spans
    ) s
    where m.mixed_buckets is not null
    group by 1, 2, 3, 4, 5
  ),
  hists as (
    select m.service_name, m.operation, m.new_version, m.side,
           anomaly.histogram_merge(array_remove(array[m.pure_hist, mx.histogram], null)) as histogram,
           m.pure_spans + coalesce(mx.spans, 0) as spans, m.pure_errors + coalesce(mx.errors, 0) as errors
    from minutes m
    left join (
      select service_name, operation, new_version, side, jsonb_object_agg(b::text, spans) as histogram,
             sum(spans)::bigint as spans, sum(errors)::bigint as errors
      from mixed_binned
      group by 1, 2, 3, 4
    ) mx using (service_name, operation, new_version, side)
  ),
  -- materialized: otherwise the planner (estimating one row per CTE scan) runs the rank test inside a nested
  -- loop over previous x new histograms before the join filter: 40,000 calls for 200 deploying operations,
  -- 7.4 s of an 18.8 s cycle at 10k series (bench:detect); materialized it is one call per pair, < 1 s.
  compared as materialized (
    select p.*, hp.histogram as prev_hist, hn.histogram as new_hist,
           hp.spans as prev_spans, hn.spans as new_spans, hp.errors as prev_errors, hn.errors as new_errors
    from pairs p
    cross join cfg
    join hists hp on hp.service_name = p.service_name and hp.operation = p.operation
                 and hp.new_version = p.new_version and hp.side = 'previous'
    join hists hn on hn.service_name = p.service_name and hn.operation = p.operation
                 and hn.new_version = p.new_version and hn.side = 'new'
    where hp.spans >= cfg.min_spans and hn.spans >= cfg.min_spans
  ),
  tested as (
    select c.*,
           mw.z as mw_z, anomaly.normal_sf(mw.z) as mw_p, mw.effect as mw_effect,
           qp.q[1] as prev_p50, qn.q[1] as new_p50, qp.q[2] as prev_p95, qn.q[2] as new_p95,
           c.prev_errors::double precision / c.prev_spans as prev_rate,
           c.new_errors::double precision / c.new_spans as new_rate,
           -- proportion_z clamps a clean previous version (rate 0) to half an expected error, so the test stays finite
           anomaly.proportion_z(c.new_errors, c.new_spans, c.prev_errors::double precision / c.prev_spans) as err_z
    from compared c
    cross join lateral anomaly.mann_whitney_histograms(c.prev_hist, c.new_hist) mw
    cross join lateral (select anomaly.histogram_quantiles(c.prev_hist, array[0.5, 0.95]) as q) qp
    cross join lateral (select anomaly.histogram_quantiles(c.new_hist, array[0.5, 0.95]) as q) qn
  ),
  judged as (
    select t.*,
           t.mw_z > 0 and t.mw_p < cfg.alpha and t.mw_effect >= cfg.min_effect
             and (t.new_p50 >= cfg.min_ratio * t.prev_p50 or t.new_p95 >= cfg.min_ratio * t.prev_p95) as slower,
           -- the new version's errors improbable against the previous version's (conditional on all errors), at
           -- alpha divided by the number of minutes this deploy has been compared (one look a minute)
           t.new_errors >= cfg.min_errors and t.err_z > 0
             and anomaly.rate_increase_p_value(t.new_errors, t.new_spans, t.prev_errors, t.prev_spans)
                 < cfg.alpha / (extract(epoch from p_bucket - t.first_seen) / 60 + 1)
             and t.new_rate >= cfg.min_ratio * t.prev_rate as failing
    from tested t cross join cfg
  ),
  hits as (
    -- one hit per operation and minute: the worst new version if several appeared at once
    select distinct on (j.service_name, j.operation) j.*,
           least(cfg.max_score, greatest(case when j.slower then j.mw_z else 0 end,
                                         case when j.failing then j.err_z else 0 end)) as score
    from judged j cross join cfg
    where j.slower or j.failing
    order by j.service_name, j.operation,
             greatest(case when j.slower then j.mw_z else 0 end, case when j.failing then j.err_z else 0 end) desc,
             j.new_version
  )
  select se.id, p_bucket, 'version_regression', h.new_p95, h.prev_p95,
         h.prev_p95 / cfg.min_ratio, h.prev_p95 * cfg.min_ratio, h.score,
         jsonb_build_object(
           'direction', 'up',
           'previous_version', h.previous_version, 'new_version', h.new_version,
           'first_seen', h.first_seen,
           'regressed', to_jsonb(array_remove(array[case when h.slower then 'latency' end,
                                                    case when h.failing then 'error_rate' end], null)),
           'p50_ms', jsonb_build_array(h.prev_p50, h.new_p50),
           'p95_ms', jsonb_build_array(h.prev_p95, h.new_p95),
           'mann_whitney', jsonb_build_object('z', round(h.mw_z::numeric, 3), 'p_value', h.mw_p,
                                              'effect', round(h.mw_effect::numeric, 4)),
           'error_rate', jsonb_build_array(h.prev_rate, h.new_rate),
           'error_z', round(h.err_z::numeric, 3),
           'spans', jsonb_build_array(h.prev_spans, h.new_spans))
  from hits h
  cross join cfg
  join anomaly.series se
    on se.scope = 'operation' and se.service = h.service_name and se.operation = h.operation
   and se.signal = case when h.slower then 'latency_p95' else 'error_rate' end
$$;

comment on function anomaly.detect_deploy_regression(timestamptz, jsonb) is
  'Detector deploy_regression (family deploy, subtype version_regression, operation scope): a service.version that '
  'first appeared on an operation within lookback_minutes (absent in the baseline_minutes before; read from '
  'anomaly.operation_minutes.versions) is compared with the previous version (the one serving most spans in those '
  'baseline_minutes). Each version''s latency histogram (previous: the baseline_minutes before its first minute; '
  'new: its first minute through this one) merges the rollup histograms of minutes it served alone with '
  'anomaly.latency_bucket counts of its own spans in minutes where versions mixed; the two go through '
  'anomaly.mann_whitney_histograms (one-sided p = normal_sf(z)), error counts through '
  'anomaly.rate_increase_p_value against the previous version''s. Fires when the new version is slower (z > 0, '
  'p < alpha, effect = P(new > previous) >= min_effect, p50 or p95 ratio >= min_ratio) or fails more often '
  '(p < alpha / minutes compared so far, min_error_count errors, rate ratio >= min_ratio), with min_spans spans '
  'of each version. observed/expected = new/previous p95; details name both '
  'versions with p50_ms, p95_ms, mann_whitney {z, p_value, effect}, error_rate [previous, new], spans; score = the '
  'larger z capped at max_score. A version is new when the service''s busiest operation running it did not run it '
  'in the baseline_minutes before the lookback window (service.version belongs to the service); each operation of '
  'the service running it is then checked itself. Cost bound: the minute''s anomaly.operation_minutes rows and one '
  'index probe per service and version; only operations with a version first seen within lookback_minutes go '
  'further (a deploy keeps its operations there for lookback_minutes), each adding the new minute''s rollup row to '
  'the sums kept in anomaly.deploy_sides (a new deploy reads <= lookback_minutes + baseline_minutes + 1 rows once) '
  'and, for mixed minutes only, reading <= 2 x max_spans_per_version '
  'spans through the (service_name, start_time) index. Config detect.deploy_regression. Example: '
  'select * from anomaly.detect_deploy_regression(''2026-03-02 10:00+00'', anomaly.config(''detect.deploy_regression''));';
