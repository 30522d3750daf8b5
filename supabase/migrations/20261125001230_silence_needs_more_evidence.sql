-- 20261125001230_silence_needs_more_evidence.sql — a silence is judged on an hour of activity at p <= 1e-4.
-- throughput_silence tests every silent minute of every throughput series, about 1,440 chances a day per series, at
-- p <= 0.001 against a silent-minute probability estimated from 30 minutes. On the clean day of the quality corpus
-- (seed 23) that reported checkout — 11.5 spans a minute in traces of several spans, about two traces a minute —
-- silent for 2 minutes at 07:23: an expected event at that volume, not an outage. Now:
--   * active_window_minutes 30 -> 60: the silent-minute share and the dispersion of the counts are estimated from
--     twice the minutes (the share's floor 0.5 / (window + 1) halves, so a busy steady series still fires after
--     min_silent_minutes = 2: (0.5/61)^2 = 6.7e-5);
--   * max_p_value 0.001 -> 0.0001: a series of few arrivals a minute needs one more silent minute (checkout: 3).
update anomaly.config_keys
   set defaults = defaults || '{"active_window_minutes": 60, "max_p_value": 0.0001}'
 where key = 'detect.throughput_silence';
