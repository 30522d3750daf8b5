-- 20261125001350_error_zscore_needs_five_errors.sql — error_zscore asks for 5 errors in the minute, as the other
-- error-rate detectors do (error_sigma_band, error_proportion, the CUSUM run, deploy_regression). With 3, a quiet
-- operation's minute of 3 errors in 30 spans against a 0.23 % baseline scored z = 9.8 and opened an anomaly on its
-- own (single_detector_min_score 6): the quality corpus' only false alert (seed 23, frontend GET /product/:id, 18
-- minutes before its traffic spike). Such a minute is improbable per test (binomial tail 5e-5) but not per day: an
-- engine tests every operation every minute (~29,000 tests a day for 20 operations), so about one a day happens by
-- chance; 5 of 30 (1e-8) does not. A z-score on a normal approximation cannot see that at small counts; the count
-- floor does.

update anomaly.config_keys
   set defaults = defaults || '{"min_error_count": 5}'
 where key = 'detect.zscore';
