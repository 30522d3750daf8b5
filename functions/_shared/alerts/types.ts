// functions/_shared/alerts/types.ts — zod schemas for what alert-dispatch reads from the database (one claimed
// group per anomaly.alert_claim row) and the config it works with; the TypeScript types derive from them.
import { z } from "zod";

export const SEVERITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"] as const;
export const Severity = z.enum(SEVERITIES);
export type Severity = z.infer<typeof Severity>;

const timestamp = z.union([z.string(), z.date()]).transform((v) => new Date(v).toISOString());

export const AnomalySnapshot = z.object({
  id: z.string(),
  incident_id: z.string(),
  anomaly_type: z.string(),
  subtype: z.string(),
  severity: Severity,
  status: z.enum(["OPEN", "ACKNOWLEDGED", "RESOLVED"]),
  service: z.string(),
  operation: z.string().nullable().optional(),
  fingerprint: z.string(),
  description: z.string().default(""),
  score: z.number().nullable().optional(),
  observed_value: z.number().nullable().optional(),
  expected_value: z.number().nullable().optional(),
  series_signal: z.string().nullable().optional(),
  first_seen: timestamp,
  last_seen: timestamp,
  resolved_at: timestamp.nullable().optional(),
  trace_id: z.string().nullable().optional(),
  explanation: z.record(z.string(), z.unknown()).default({}),
});
export type AnomalySnapshot = z.infer<typeof AnomalySnapshot>;

export const AlertEvent = z.enum(["opened", "escalated", "resolved", "repeat"]);
export type AlertEvent = z.infer<typeof AlertEvent>;

export const ClaimedAnomaly = z.object({
  outbox_id: z.coerce.number().int(),
  event: AlertEvent,
  alert_severity: Severity,
  anomaly: AnomalySnapshot,
});
export type ClaimedAnomaly = z.infer<typeof ClaimedAnomaly>;

export const Channel = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(["telegram", "webhook"]),
  telegram_chat_id: z.string().nullable().optional(),
  telegram_thread_id: z.coerce.number().int().nullable().optional(),
  webhook_url: z.string().nullable().optional(),
  webhook_format: z.enum(["generic", "alertmanager"]).default("generic"),
});
export type Channel = z.infer<typeof Channel>;

export const AlertsConfig = z.object({
  max_attempts: z.number().int().min(1),
  backoff_base_seconds: z.number().positive(),
  backoff_max_seconds: z.number().positive(),
  lease_seconds: z.number().int().positive(),
  send_timeout_ms: z.number().int().positive(),
  max_anomalies_per_message: z.number().int().min(1),
  dashboard_url: z.string().default(""),
  grafana_url: z.string().default(""),
  tempo_datasource_uid: z.string().default("tempo"),
});
export type AlertsConfig = z.infer<typeof AlertsConfig>;

export const Incident = z.object({
  id: z.string(),
  size: z.coerce.number().int(),
  open: z.coerce.number().int(),
  services: z.array(z.string()),
  first_seen: timestamp,
});
export type Incident = z.infer<typeof Incident>;

/** One claimed group: everything needed to build and send one message. */
export const AlertClaim = z.object({
  claim_id: z.string(),
  channel: Channel,
  group_key: z.string(),
  event: z.enum(["firing", "resolved"]),
  outbox_ids: z.array(z.coerce.number().int()).min(1),
  idempotency_key: z.string(),
  attempt: z.coerce.number().int().min(1),
  parts_sent: z.coerce.number().int().min(0),
  anomalies: z.array(ClaimedAnomaly).min(1),
  incident: Incident.nullable(),
  config: AlertsConfig,
});
export type AlertClaim = z.infer<typeof AlertClaim>;

/** What happened to one send attempt; `deferred` puts the group back without using an attempt. */
export interface Outcome {
  kind: "delivered" | "retry" | "permanent" | "deferred";
  statusCode?: number;
  error?: string;
  /** For retry/deferred: the delay the receiver asked for (429 retry_after, Retry-After), in ms. */
  retryAfterMs?: number;
  partsSent?: number;
}
