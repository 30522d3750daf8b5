// functions/_shared/alerts/format.ts — the Telegram message for one claimed group (an incident's anomalies, firing or
// resolved) in HTML parse mode: severity, what/where, observed vs expected, since when, culprit, over-represented
// attributes, incident size, dashboard and trace links. Every value is length-capped before escaping so a line
// always fits, then the blocks are packed into 4096-character parts.
import { escapeAttr, escapeHtml, truncate } from "./html.ts";
import { dashboardLink, traceLink } from "./links.ts";
import { splitMessage, TELEGRAM_LIMIT } from "./split.ts";
import { duration, facts, utc } from "./summary.ts";
import type { AlertClaim, ClaimedAnomaly, Severity } from "./types.ts";

const ICON: Record<Severity, string> = { CRITICAL: "🔴", HIGH: "🟠", MEDIUM: "🟡", LOW: "🔵" };
const RANK: Record<Severity, number> = { LOW: 1, MEDIUM: 2, HIGH: 3, CRITICAL: 4 };
/** Longest plain value on a line (service names, operations, attribute lists) before escaping. */
const FIELD_MAX = 300;

const t = (text: string, max = FIELD_MAX) => escapeHtml(truncate(text, max));
const link = (href: string, label: string) => `<a href="${escapeAttr(href)}">${escapeHtml(label)}</a>`;

/** Worst severity among the claimed anomalies (current severity, which only rises while open). */
export function worstSeverity(items: ClaimedAnomaly[]): Severity {
  return items.reduce<Severity>(
    (w, i) => (RANK[i.anomaly.severity] > RANK[w] ? i.anomaly.severity : w),
    "LOW",
  );
}

function eventNote(item: ClaimedAnomaly): string {
  switch (item.event) {
    case "escalated":
      return ` (escalated to ${item.alert_severity})`;
    case "repeat":
      return " (still open: reminder)";
    default:
      return "";
  }
}

/** Lines of one anomaly. */
function anomalyBlock(item: ClaimedAnomaly, claim: AlertClaim, now: string): string[] {
  const a = item.anomaly;
  const f = facts(a);
  const resolved = claim.event === "resolved";
  const lines: string[] = [];
  const head = resolved
    ? `✅ <b>RESOLVED</b> ${t(f.title)} · <b>${t(a.service)}</b>`
    : `${ICON[a.severity]} <b>${a.severity}</b> ${t(f.title)} · <b>${t(a.service)}</b>`;
  lines.push(
    head + (a.operation ? ` <code>${t(a.operation)}</code>` : "") +
      (resolved ? "" : escapeHtml(eventNote(item))),
  );
  if (f.observedVsExpected) lines.push(t(f.observedVsExpected) + (f.band ? ` (${t(f.band)})` : ""));
  if (resolved) {
    const end = a.resolved_at ?? now;
    lines.push(`lasted ${duration(a.first_seen, end)}: ${utc(a.first_seen)} to ${utc(end)}`);
  } else {
    lines.push(`since ${utc(a.first_seen)} (${duration(a.first_seen, now)})`);
  }
  if (!resolved) {
    if (f.culprit) lines.push(`culprit: ${t(f.culprit)}`);
    if (f.deploy) lines.push(t(f.deploy));
    if (f.attributes) lines.push(`over-represented: ${t(f.attributes)}`);
  }
  const links = [
    dashboardLink(claim.config, a.id) && link(dashboardLink(claim.config, a.id)!, "dashboard"),
    traceLink(claim.config, a) && link(traceLink(claim.config, a)!, "exemplar trace"),
  ].filter(Boolean);
  if (links.length) lines.push(links.join(" · "));
  else if (a.trace_id) lines.push(`exemplar trace <code>${t(a.trace_id, 64)}</code>`);
  return lines;
}

/** The message parts (each at most `limit` characters of Telegram HTML) for a claimed group. */
export function formatTelegram(
  claim: AlertClaim,
  now = new Date().toISOString(),
  limit = TELEGRAM_LIMIT,
): string[] {
  const items = claim.anomalies;
  const max = claim.config.max_anomalies_per_message;
  const shown = items.slice(0, max);
  const incident = claim.incident;
  const blocks: string[][] = [];
  if (items.length > 1 || (incident && incident.size > 1)) {
    const size = incident?.size ?? items.length;
    const services = incident?.services ?? [...new Set(items.map((i) => i.anomaly.service))];
    const header = claim.event === "resolved"
      ? `✅ <b>Resolved</b>: ${items.length} of ${size} anomalies of the incident on ${
        t(services.join(", "))
      }`
      : `${ICON[worstSeverity(items)]} <b>Incident</b>: ${size} related anomal${
        size === 1 ? "y" : "ies"
      } on ${t(services.join(", "))}` +
        (incident && incident.size > items.length ? ` (${items.length} of them in this alert)` : "");
    blocks.push([header]);
  }
  for (const item of shown) blocks.push(anomalyBlock(item, claim, now));
  if (items.length > shown.length) {
    blocks.push([`… and ${items.length - shown.length} more anomalies of this incident (see the dashboard)`]);
  }
  return splitMessage(blocks, limit);
}
