// functions/_shared/alerts/links.ts — links in alerts: the anomaly in the dashboard and its exemplar trace in
// Grafana Explore (Tempo data source), from the `alerts` config (dashboard_url, grafana_url, tempo_datasource_uid).
import type { AlertsConfig, AnomalySnapshot } from "./types.ts";

const trimSlash = (url: string) => url.replace(/\/+$/, "");

/** <dashboard_url>/anomalies/<id>, or undefined when no dashboard URL is configured. */
export function dashboardLink(
  cfg: Pick<AlertsConfig, "dashboard_url">,
  anomalyId: string,
): string | undefined {
  return cfg.dashboard_url
    ? `${trimSlash(cfg.dashboard_url)}/anomalies/${encodeURIComponent(anomalyId)}`
    : undefined;
}

/** Grafana Explore opening the exemplar trace in the Tempo data source, around the anomaly's window. */
export function traceLink(
  cfg: Pick<AlertsConfig, "grafana_url" | "tempo_datasource_uid">,
  a: Pick<AnomalySnapshot, "trace_id" | "first_seen" | "last_seen">,
): string | undefined {
  if (!cfg.grafana_url || !a.trace_id) return undefined;
  const from = Date.parse(a.first_seen) - 15 * 60_000;
  const to = Date.parse(a.last_seen) + 15 * 60_000;
  const left = {
    datasource: cfg.tempo_datasource_uid,
    queries: [{
      refId: "A",
      datasource: { type: "tempo", uid: cfg.tempo_datasource_uid },
      queryType: "traceql",
      query: a.trace_id,
    }],
    range: { from: String(from), to: String(to) },
  };
  return `${trimSlash(cfg.grafana_url)}/explore?orgId=1&left=${encodeURIComponent(JSON.stringify(left))}`;
}
