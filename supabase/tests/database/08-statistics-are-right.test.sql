-- 08: the shared statistics give known answers: multi-quantiles agree with histogram_quantile, the normal
-- distribution matches reference values (scipy), the proportion and rank tests reproduce textbook and hand-computed
-- numbers, robust median/MAD are right, and bad arguments raise TSH01.
begin;
select plan(38);

-- ---------------------------------------------------------------- histogram_quantiles
-- 400 deterministic histograms of 1..60 buckets (some with zero counts) against one histogram_quantile call per quantile.
create temp table hists on commit drop as
select h, (select jsonb_object_agg(100 + b * (1 + h % 3), (h * 7919 + b * 104729) % 17)
           from generate_series(0, h % 60) b) as histogram
from generate_series(1, 400) h;

select is_empty($$
  select h from hists
  where anomaly.histogram_quantiles(histogram, array[0.99, 0, 0.5, 1, 0.95, 0.5, 0.01, 0.999, 0.25])
        is distinct from array[anomaly.histogram_quantile(histogram, 0.99), anomaly.histogram_quantile(histogram, 0),
                               anomaly.histogram_quantile(histogram, 0.5), anomaly.histogram_quantile(histogram, 1),
                               anomaly.histogram_quantile(histogram, 0.95), anomaly.histogram_quantile(histogram, 0.5),
                               anomaly.histogram_quantile(histogram, 0.01), anomaly.histogram_quantile(histogram, 0.999),
                               anomaly.histogram_quantile(histogram, 0.25)]
$$, 'histogram_quantiles agrees exactly with histogram_quantile for any order of quantiles, duplicates included');

select is_empty($$
  select h from hists, lateral (select sum(value::bigint) as total from jsonb_each_text(histogram)) t
  where anomaly.histogram_rank_ms(histogram, greatest(1, ceil(0.95 * t.total))::bigint)
        is distinct from anomaly.histogram_quantile(histogram, 0.95)
     or anomaly.histogram_rank_ms(histogram, 1) is distinct from anomaly.histogram_quantile(histogram, 0)
$$, 'histogram_rank_ms (one pass in jsonb key order) reads the same bucket as histogram_quantile');
select throws_ok($$ select anomaly.histogram_rank_ms('{"5": 1, "-1": 2}', 2) $$, 'TSH01', null,
  'keys that are not increasing integers in jsonb order (a negative bucket) are refused');

select is(anomaly.histogram_quantiles('{"144": 90, "160": 10}', array[0.5, 0.95]),
  array[power(2::double precision, 143.5 / 8) / 1000, power(2::double precision, 159.5 / 8) / 1000],
  'quantiles are read at the geometric middle of their bucket, in milliseconds');
select is(anomaly.histogram_quantiles('{"144": 90, "160": 10}', array[0.9, 0.91]),
  array[power(2::double precision, 143.5 / 8) / 1000, power(2::double precision, 159.5 / 8) / 1000],
  'the rank is ceil(q * n): p90 of 100 is the 90th value, p91 the 91st');
select is(anomaly.histogram_quantiles('{}', array[0.5, 0.99]), array[null, null]::double precision[],
  'an empty histogram gives one NULL per quantile');
select is(anomaly.histogram_quantiles('{"144": 3}', array[]::double precision[]), array[]::double precision[],
  'no quantiles asked, none returned');
select throws_ok($$ select anomaly.histogram_quantiles('{"144": 3}', array[0.5, 1.5]) $$, 'TSH01',
  'every quantile must be between 0 and 1', 'a quantile above 1 is refused with TSH01');
select throws_ok($$ select anomaly.histogram_quantiles('{"144": 3}', array[0.5, null]) $$, 'TSH01',
  'every quantile must be between 0 and 1', 'a NULL quantile is refused with TSH01');
select throws_ok($$ select anomaly.histogram_quantiles('{"144": -3}', array[0.5]) $$, 'TSH01',
  'latency histogram counts must be non-negative numbers', 'a negative count is refused with TSH01');
select throws_ok($$ select anomaly.histogram_quantiles('[1, 2]', array[0.5]) $$, 'TSH01',
  'a latency histogram must be a JSON object {"<bucket>": count}', 'a histogram that is not an object is refused');

-- ---------------------------------------------------------------- normal distribution (reference: scipy.stats.norm)
select ok(abs(anomaly.normal_cdf(1.96) - 0.9750021048517795) < 1e-12, 'normal_cdf(1.96) = 0.97500210485');
select is(anomaly.normal_cdf(0), 0.5::double precision, 'normal_cdf(0) = 0.5');
select ok(abs(anomaly.normal_cdf(-3) - 0.0013498980316300933) < 1e-15
          and abs(anomaly.normal_cdf(-1) - 0.15865525393145707) < 1e-15
          and abs(anomaly.normal_cdf(0.5) - 0.6914624612740131) < 1e-15
          and abs(anomaly.normal_cdf(2.5) - 0.9937903346742238) < 1e-15,
  'normal_cdf matches reference values to 1e-15');
select ok(abs(anomaly.normal_cdf(-6) / 9.865876450376946e-10 - 1) < 1e-7
          and abs(anomaly.normal_sf(5) / 2.866515718791933e-07 - 1) < 1e-7
          and abs(anomaly.normal_sf(8) / 6.22096057427174e-16 - 1) < 1e-7
          and abs(anomaly.normal_sf(10) / 7.61985302416047e-24 - 1) < 1e-7,
  'far tails keep their relative accuracy (normal_sf(10) = 7.6e-24)');
select is_empty($$
  select z from generate_series(-40, 40, 0.01) z
  where abs(anomaly.normal_cdf(z) + anomaly.normal_sf(z) - 1) > 1e-15
     or abs(anomaly.normal_cdf(z) - anomaly.normal_sf(-z)) > 0
     or anomaly.normal_cdf(z) not between 0 and 1
$$, 'cdf + sf = 1 and cdf(z) = sf(-z) across [-40, 40]');
select is_empty($$
  select z from generate_series(-40, 40, 0.01) z
  where anomaly.normal_cdf(z + 0.01) < anomaly.normal_cdf(z)
$$, 'normal_cdf never decreases');
select ok(anomaly.normal_cdf('Infinity') = 1 and anomaly.normal_cdf('-Infinity') = 0 and anomaly.normal_sf(40) = 0
          and anomaly.normal_cdf(null) is null,
  'infinite and NULL arguments give 1, 0 and NULL');

-- ---------------------------------------------------------------- proportion_z
select is(anomaly.proportion_z(60, 100, 0.5), 1.9::double precision,
  '60 heads in 100 fair tosses: z = (10 - 0.5) / 5 = 1.9 with continuity correction');
select ok(abs(anomaly.proportion_z(40, 200, 0.15) - 9.5 / sqrt(25.5)) < 1e-12,
  '40 of 200 against 15 %: z = 9.5 / sqrt(25.5) = 1.881');
select ok(abs(anomaly.proportion_z(20, 200, 0.15) + 9.5 / sqrt(25.5)) < 1e-12, 'a rate below the baseline gives negative z');
select is(anomaly.proportion_z(50, 100, 0.5), 0::double precision, 'the expected count gives z = 0');
select is(anomaly.proportion_z(10, 1000, 0.0102), 0::double precision,
  'a difference under half a count is absorbed by the continuity correction');
select is(anomaly.proportion_z(0, 0, 0.3), 0::double precision, 'no trials: z = 0, no evidence either way');
select ok(anomaly.proportion_z(0, 100, 0) = 0 and abs(anomaly.proportion_z(3, 100, 0) - 2.5 / sqrt(0.4975)) < 1e-12
          and anomaly.proportion_z(10, 100, 0) > anomaly.proportion_z(3, 100, 0)
          and abs(anomaly.proportion_z(97, 100, 1) + 2.5 / sqrt(0.4975)) < 1e-12,
  'a baseline of 0 or 1 gives finite z that grows with the count (variance floored at half an expected event)');
select throws_ok($$ select anomaly.proportion_z(11, 10, 0.5) $$, 'TSH01',
  'proportion_z needs 0 <= successes <= trials', 'more successes than trials is refused with TSH01');
select throws_ok($$ select anomaly.proportion_z(1, 10, 1.5) $$, 'TSH01',
  'the baseline rate must be a proportion between 0 and 1', 'a baseline rate above 1 is refused with TSH01');

-- ---------------------------------------------------------------- Mann–Whitney on histograms
select results_eq($$ select u, z, p_value, effect from anomaly.mann_whitney_histograms(
                       '{"140": 30, "144": 50, "148": 20}', '{"140": 30, "144": 50, "148": 20}') $$,
  $$ values (5000::double precision, 0::double precision, 1::double precision, 0.5::double precision) $$,
  'identical histograms: U = n_a n_b / 2, z = 0, p = 1, effect 0.5');
select ok(z > 10 and p_value < 1e-20 and effect > 0.95,
  'a new version 3 buckets slower: large positive z, tiny p, effect near 1')
from anomaly.mann_whitney_histograms('{"140": 30, "141": 120, "142": 200, "143": 120, "144": 30}',
                                     '{"143": 30, "144": 120, "145": 200, "146": 120, "147": 30}');
select ok(z < -10 and effect < 0.05, 'a faster new version gives negative z and effect near 0')
from anomaly.mann_whitney_histograms('{"143": 30, "144": 120, "145": 200, "146": 120, "147": 30}',
                                     '{"140": 30, "141": 120, "142": 200, "143": 120, "144": 30}');
-- By hand: A = {10, 10, 20}, B = {20, 30, 30}. U_B = (2 + 0.5) + 3 + 3 = 8.5 of 9 pairs; ties t = 2, 2, 2 so
-- sum(t^3 - t) = 18; var = 9/12 * (7 - 18/30) = 4.8; z = (8.5 - 4.5 - 0.5) / sqrt(4.8) = 1.5975; p = 0.110149
-- (scipy.stats.mannwhitneyu([20, 30, 30], [10, 10, 20], method='asymptotic') gives U 8.5, p 0.1101489).
select ok(u = 8.5 and abs(z - 3.5 / sqrt(4.8)) < 1e-12 and abs(p_value - 0.11014892418594699) < 1e-9
          and abs(effect - 8.5 / 9) < 1e-12,
  'a hand-computed example: U 8.5, tie-corrected z 1.5975, p 0.1101, effect 0.944')
from anomaly.mann_whitney_histograms('{"10": 2, "20": 1}', '{"20": 1, "30": 2}');
select results_eq($$ select u, z, p_value, effect from anomaly.mann_whitney_histograms('{"144": 5}', '{"144": 7}') $$,
  $$ values (17.5::double precision, 0::double precision, 1::double precision, 0.5::double precision) $$,
  'all values tied in one bucket: no evidence of a shift');
select results_eq($$ select u, z, p_value, effect from anomaly.mann_whitney_histograms('{"144": 5}', '{}') $$,
  $$ values (null::double precision, null::double precision, null::double precision, null::double precision) $$,
  'an empty side gives one row of NULLs');
select throws_ok($$ select * from anomaly.mann_whitney_histograms('{"144": 5}', '"fast"') $$, 'TSH01',
  'a latency histogram must be a JSON object {"<bucket>": count}', 'a histogram that is not an object is refused');

-- ---------------------------------------------------------------- robust median / MAD
select results_eq($$ select median, mad from anomaly.robust_stats(array[1, 1, 2, 2, 4, 6, 9]) $$,
  $$ values (2::double precision, 1.4826::double precision) $$,
  'median 2 and MAD 1 * 1.4826 of {1, 1, 2, 2, 4, 6, 9}');
select results_eq($$ select median, mad from anomaly.robust_stats(array[4, null, 1, 3, 2, 1000]) $$,
  $$ values (3::double precision, 1.4826 * 1.0::double precision) $$,
  'NULLs are ignored and one wild value moves neither statistic much');
select throws_ok($$ select * from anomaly.robust_stats(array[1, 'NaN']::double precision[]) $$, 'TSH01',
  'robust_stats needs finite values', 'NaN is refused with TSH01');

-- ---------------------------------------------------------------- declared properties and grants
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.oid in ('anomaly.histogram_quantiles(jsonb, double precision[])'::regprocedure,
                  'anomaly.normal_cdf(double precision)'::regprocedure, 'anomaly.normal_sf(double precision)'::regprocedure,
                  'anomaly.proportion_z(bigint, bigint, double precision)'::regprocedure,
                  'anomaly.mann_whitney_histograms(jsonb, jsonb)'::regprocedure,
                  'anomaly.robust_stats(double precision[])'::regprocedure)
    and (p.provolatile <> 'i' or p.proparallel <> 's'
         or not has_function_privilege('service_role', p.oid, 'execute')
         or has_function_privilege('anon', p.oid, 'execute')
         or has_function_privilege('authenticated', p.oid, 'execute'))
$$, 'the statistics are immutable, parallel safe and callable by service_role only');

select * from finish();
rollback;
