// scripts/replay/output.ts — what replay prints: the anomaly record (one JSON object per line with `--json`, a
// readable table otherwise) and the mapping of a detector's z-like score onto [0, 1] for the scored series. Pure.

/** An anomaly as replay reports it; `detected_at` is the event time at which live detection would have fired. */
export interface ReplayAnomaly {
  type: string;
  subtype: string;
  service: string;
  operation: string | null;
  severity: string;
  score: number;
  first_seen: string;
  detected_at: string;
  detector: string;
  explanation: Record<string, unknown>;
}

/** Keys of a `--json` line, in order (exactly the fields of the issue). */
export const JSON_FIELDS = [
  "type",
  "subtype",
  "service",
  "operation",
  "severity",
  "score",
  "first_seen",
  "detected_at",
  "detector",
  "explanation",
] as const;

/** One `--json` line: exactly JSON_FIELDS, in that order. */
export function jsonLine(a: ReplayAnomaly): string {
  const o: Record<string, unknown> = {};
  for (const k of JSON_FIELDS) o[k] = a[k];
  return JSON.stringify(o);
}

/**
 * Maps a detector score s (z-like, ≥ threshold when it fires) to [0, 1]: 1 − 2^(−max(0, s)/threshold). A score at
 * the detector's threshold maps to 0.5, twice the threshold to 0.75, three times to 0.875; 0 and below map to 0.
 */
export function unitScore(s: number, threshold: number): number {
  if (!Number.isFinite(s) || s <= 0) return 0;
  const t = threshold > 0 && Number.isFinite(threshold) ? threshold : 3;
  return 1 - Math.pow(2, -s / t);
}

/** ISO text (to the second, "Z") of a timestamp, or "-". */
export function isoSeconds(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "-";
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A plain text table; every cell is already a string. */
export function table(rows: Array<Record<string, string>>, empty = "(no anomalies)"): string {
  if (rows.length === 0) return empty;
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join("  ").trimEnd();
  return [
    line(cols),
    line(width.map((w) => "-".repeat(w))),
    ...rows.map((r) => line(cols.map((c) => r[c] ?? ""))),
  ]
    .join("\n");
}

/** The default (human) rendering of replayed anomalies, in detection order. */
export function anomalyTable(anomalies: ReplayAnomaly[]): string {
  return table(anomalies.map((a) => ({
    "fires at (event time)": a.detected_at,
    "first seen": a.first_seen,
    severity: a.severity,
    type: a.type,
    service: a.service,
    operation: a.operation ?? "",
    detector: a.detector,
    score: a.score.toFixed(1),
    what: summary(a),
  })));
}

function summary(a: ReplayAnomaly): string {
  const e = a.explanation;
  const observed = typeof e.observed === "number" ? e.observed : undefined;
  const expected = typeof e.expected === "number" ? e.expected : undefined;
  const signal = typeof e.signal === "string" ? e.signal : a.subtype;
  const unit = typeof e.unit === "string" ? e.unit : unitOf(signal);
  if (observed === undefined || expected === undefined) {
    return typeof e.description === "string" ? e.description : a.subtype;
  }
  const f = (x: number) => {
    if (unit === "ratio") return `${(100 * x).toFixed(1)} %`;
    if (unit === "bytes") return `${(x / 1048576).toFixed(0)} MiB`;
    const n = Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toFixed(3);
    return unit ? `${n} ${unit}` : n;
  };
  return `${signal} ${f(observed)} vs ${f(expected)}`;
}

/** The unit of an engine signal name (latency_p95, error_rate, throughput, cpu, memory). */
function unitOf(signal: string): string {
  if (signal.startsWith("latency")) return "ms";
  if (signal.includes("error") || signal === "cpu") return "ratio";
  if (signal === "throughput") return "/min";
  if (signal === "memory") return "bytes";
  return "";
}
