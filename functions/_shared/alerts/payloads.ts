// functions/_shared/alerts/payloads.ts — webhook bodies for a claimed group: the generic Trace Sentinel shape
// (version "1": the incident and its anomalies with facts and links) or the Alertmanager webhook shape (version "4":
// receiver, status, alerts[] with labels/annotations/startsAt/endsAt/generatorURL/fingerprint, groupKey, ...), so an
// existing Alertmanager receiver (PagerDuty bridges, Karma, custom hooks) accepts it as is.
import { dashboardLink, traceLink } from "./links.ts";
import { facts } from "./summary.ts";
import type { AlertClaim } from "./types.ts";

/** Alertmanager's "zero time" for endsAt of a firing alert. */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/** The generic JSON body. */
export function genericPayload(claim: AlertClaim, now = new Date().toISOString()) {
  return {
    version: "1",
    id: claim.idempotency_key,
    status: claim.event,
    channel: claim.channel.name,
    sent_at: now,
    attempt: claim.attempt,
    incident: claim.incident,
    anomalies: claim.anomalies.map(({ event, alert_severity, anomaly: a }) => {
      const f = facts(a);
      return {
        id: a.id,
        event,
        severity: a.severity,
        alert_severity,
        status: a.status,
        type: a.anomaly_type,
        subtype: a.subtype,
        service: a.service,
        operation: a.operation ?? null,
        fingerprint: a.fingerprint,
        summary: `${f.title} on ${f.where}`,
        observed: a.observed_value ?? null,
        expected: a.expected_value ?? null,
        observed_vs_expected: f.observedVsExpected ?? null,
        first_seen: a.first_seen,
        last_seen: a.last_seen,
        resolved_at: a.resolved_at ?? null,
        culprit: f.culprit ?? null,
        attributes: f.attributes ?? null,
        exemplar_trace_id: a.trace_id ?? null,
        links: {
          dashboard: dashboardLink(claim.config, a.id) ?? null,
          trace: traceLink(claim.config, a) ?? null,
        },
      };
    }),
  };
}

/** Short stable fingerprint (16 hex) of a string, like Alertmanager's label-set fingerprints. */
function fingerprint16(text: string): string {
  // FNV-1a 64-bit, enough to tell alerts apart in a receiver; no crypto needed.
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(text)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

/** The Alertmanager (webhook_config, version 4) body. */
export function alertmanagerPayload(claim: AlertClaim, now = new Date().toISOString()) {
  const alerts = claim.anomalies.map(({ anomaly: a }) => {
    const f = facts(a);
    const resolved = claim.event === "resolved";
    const labels: Record<string, string> = {
      alertname: `TraceSentinel${a.anomaly_type}`,
      severity: a.severity.toLowerCase(),
      anomaly_type: a.anomaly_type,
      subtype: a.subtype,
      service: a.service,
      incident_id: a.incident_id,
    };
    if (a.operation) labels.operation = a.operation;
    const annotations: Record<string, string> = {
      summary: `${a.severity} ${f.title} on ${f.where}`,
      description: [f.observedVsExpected, f.band].filter(Boolean).join(" ") || a.description,
    };
    if (f.culprit) annotations.culprit = f.culprit;
    if (f.attributes) annotations.attributes = f.attributes;
    const trace = traceLink(claim.config, a);
    if (trace) annotations.trace_url = trace;
    if (a.trace_id) annotations.exemplar_trace_id = a.trace_id;
    return {
      status: resolved ? "resolved" : "firing",
      labels,
      annotations,
      startsAt: a.first_seen,
      endsAt: resolved ? (a.resolved_at ?? now) : ZERO_TIME,
      generatorURL: dashboardLink(claim.config, a.id) ?? "",
      fingerprint: fingerprint16(a.fingerprint),
    };
  });
  const common = (key: "labels" | "annotations") => {
    const [first, ...rest] = alerts;
    return Object.fromEntries(
      Object.entries(first[key]).filter(([k, v]) =>
        rest.every((x) => (x[key] as Record<string, string>)[k] === v)
      ),
    );
  };
  return {
    version: "4",
    groupKey: `{}:{incident_id="${claim.incident?.id ?? claim.group_key.split(":")[0]}"}`,
    truncatedAlerts: 0,
    status: claim.event,
    receiver: claim.channel.name,
    groupLabels: { incident_id: claim.incident?.id ?? claim.group_key.split(":")[0] },
    commonLabels: common("labels"),
    commonAnnotations: common("annotations"),
    externalURL: claim.config.dashboard_url || "",
    alerts,
  };
}
