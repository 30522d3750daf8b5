// tests/unit/alerts-fixtures.ts — small literal claims for the alerting unit tests (no database).
import type { AlertClaim, AnomalySnapshot } from "../../functions/_shared/alerts/types.ts";

export const CONFIG: AlertClaim["config"] = {
  max_attempts: 8,
  backoff_base_seconds: 5,
  backoff_max_seconds: 900,
  lease_seconds: 120,
  send_timeout_ms: 10000,
  max_anomalies_per_message: 10,
  dashboard_url: "https://sentinel.example.com",
  grafana_url: "https://grafana.example.com/",
  tempo_datasource_uid: "tempo",
};

export function anomaly(over: Partial<AnomalySnapshot> = {}): AnomalySnapshot {
  return {
    id: "11111111-1111-4111-8111-111111111111",
    incident_id: "11111111-1111-4111-8111-111111111111",
    anomaly_type: "LATENCY",
    subtype: "p95",
    severity: "CRITICAL",
    status: "OPEN",
    service: "checkout",
    operation: "POST /inventory/reserve",
    fingerprint: "LATENCY|p95|checkout|POST /inventory/reserve|latency",
    description: "",
    score: 17.8,
    observed_value: 68.4,
    expected_value: 13.2,
    series_signal: "latency_p95",
    first_seen: "2026-11-25T09:55:00.000Z",
    last_seen: "2026-11-25T10:07:00.000Z",
    resolved_at: null,
    trace_id: "58aa91bffaeb569c874cd7e2a2d88453",
    explanation: {
      band: [2.3, 24.1],
      culprit: {
        culprit: {
          service: "inventory",
          operation: "POST /inventory/reserve",
          self_time_ms_baseline: 3.4,
          self_time_ms_anomalous: 23,
        },
      },
      attributes: [{ key: "service.version", value: "2.0.0", lift: 4.1 }],
      detectors: [{ name: "latency_mad" }, { name: "latency_spc" }],
    },
    ...over,
  };
}

export function claim(
  over: Partial<AlertClaim> = {},
  anomalies: AnomalySnapshot[] = [anomaly()],
): AlertClaim {
  return {
    claim_id: "22222222-2222-4222-8222-222222222222",
    channel: {
      id: "33333333-3333-4333-8333-333333333333",
      name: "ops",
      kind: "telegram",
      telegram_chat_id: "-1001234",
      telegram_thread_id: null,
      webhook_url: null,
      webhook_format: "generic",
    },
    group_key: `${anomalies[0].incident_id}:firing`,
    event: "firing",
    outbox_ids: anomalies.map((_, i) => i + 1),
    idempotency_key: "ts-abc",
    attempt: 1,
    parts_sent: 0,
    anomalies: anomalies.map((a, i) => ({
      outbox_id: i + 1,
      event: "opened",
      alert_severity: a.severity,
      anomaly: a,
    })),
    incident: {
      id: anomalies[0].incident_id,
      size: anomalies.length,
      open: anomalies.length,
      services: [...new Set(anomalies.map((a) => a.service))],
      first_seen: anomalies[0].first_seen,
    },
    config: CONFIG,
    ...over,
  };
}
