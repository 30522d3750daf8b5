-- 20261125001150_incident_lookup_by_index.sql — anomaly.related_incident stays an index lookup during bursts.
-- The incident trigger (20261125000900) looks up related open anomalies once per inserted anomaly. When detection (or
-- a replay) opens thousands of anomalies in one transaction, the planner still sees the small trace_anomalies of
-- before the transaction and scans it sequentially for each row: quadratic (10,000 anomalies: about 70 s measured by
-- `npm run bench:alerts`). Its lookups are served by trace_anomalies_service_idx and service_edge_minutes' key, so
-- the function runs with sequential scans disabled. Behaviour is unchanged.

alter function anomaly.related_incident(text, timestamptz, uuid) set enable_seqscan = off;
