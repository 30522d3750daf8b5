// functions/_shared/alerts/summary.ts — the facts an alert states about one anomaly, as plain text: what and where,
// observed vs expected, since when, the culprit, over-represented attributes. Shared by the Telegram formatter and
// the webhook payloads; no markup here (the formatter escapes).
import type { AnomalySnapshot } from "./types.ts";

export interface AnomalyFacts {
  title: string;
  where: string;
  observedVsExpected?: string;
  band?: string;
  culprit?: string;
  attributes?: string;
  deploy?: string;
  detectors?: string;
}

const fmt = (n: number | null | undefined): string =>
  n == null || !Number.isFinite(n)
    ? "-"
    : Math.abs(n) >= 100
    ? n.toFixed(0)
    : Math.abs(n) >= 10
    ? n.toFixed(1)
    : n.toFixed(2);
const pct = (n: number | null | undefined): string => (n == null ? "-" : `${(100 * n).toFixed(1)} %`);

/** "p95 68.4 ms vs 13.2 ms expected" and friends, by the anomaly's signal. */
export function observedVsExpected(a: AnomalySnapshot): string | undefined {
  const e = a.explanation as Record<string, unknown>;
  const observed = a.observed_value ?? (typeof e.observed === "number" ? e.observed : null);
  const expected = a.expected_value ?? (typeof e.expected === "number" ? e.expected : null);
  if (observed == null && expected == null) return undefined;
  const signal = a.series_signal ?? (typeof e.signal === "string" ? e.signal : null);
  switch (signal) {
    case "error_rate":
      return `errors ${pct(observed)} vs ${pct(expected)} expected`;
    case "throughput":
      return `${fmt(observed)}/min vs ${fmt(expected)}/min expected`;
    case "cpu":
      return `cpu ${pct(observed)} vs ${pct(expected)} expected`;
    case "memory":
      return `memory ${fmt(observed == null ? null : observed / 2 ** 20)} MiB vs ${
        fmt(expected == null ? null : expected / 2 ** 20)
      } MiB expected`;
    default:
      return `${(signal ?? "latency_p95").replace("latency_", "")} ${fmt(observed)} ms vs ${
        fmt(expected)
      } ms expected`;
  }
}

/** Human duration between two instants: "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function duration(fromIso: string, toIso: string): string {
  const s = Math.max(0, Math.round((Date.parse(toIso) - Date.parse(fromIso)) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h${m % 60 ? ` ${m % 60} min` : ""}`;
  return `${Math.floor(h / 24)} d${h % 24 ? ` ${h % 24} h` : ""}`;
}

/** "2026-11-25 09:55 UTC". */
export function utc(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** The facts of one anomaly (plain text, unescaped). */
export function facts(a: AnomalySnapshot): AnomalyFacts {
  const e = a.explanation as Record<string, unknown>;
  const out: AnomalyFacts = {
    title: `${a.anomaly_type} ${a.subtype}`,
    where: a.operation ? `${a.service} ${a.operation}` : a.service,
    observedVsExpected: observedVsExpected(a),
  };
  const band = e.band as [number | null, number | null] | undefined;
  if (Array.isArray(band) && band.length === 2 && (band[0] != null || band[1] != null)) {
    out.band = `band ${fmt(band[0])} .. ${fmt(band[1])}`;
  }
  const culprit = ((e.culprit ?? {}) as { culprit?: Record<string, unknown> }).culprit;
  if (culprit && culprit.service) {
    const before = Number(culprit.self_time_ms_baseline);
    const after = Number(culprit.self_time_ms_anomalous);
    out.culprit = `${culprit.service} ${culprit.operation ?? ""}`.trim() +
      (Number.isFinite(before) && Number.isFinite(after)
        ? ` self-time ${fmt(before)} -> ${fmt(after)} ms per trace`
        : "");
  }
  const attrs = e.attributes as { key: string; value: unknown; lift?: number }[] | undefined;
  if (Array.isArray(attrs) && attrs.length) {
    out.attributes = attrs.slice(0, 4)
      .map((x) => `${x.key}=${String(x.value)}${x.lift != null ? ` (x${fmt(Number(x.lift))})` : ""}`)
      .join(", ");
  }
  const details = (e.details ?? {}) as Record<string, unknown>;
  if (details.previous_version && details.new_version) {
    out.deploy = `deploy ${details.previous_version} -> ${details.new_version}`;
  }
  const detectors = e.detectors as { name: string }[] | undefined;
  if (Array.isArray(detectors) && detectors.length) {
    out.detectors = detectors.slice(0, 4).map((d) => d.name).join(", ");
  }
  return out;
}
