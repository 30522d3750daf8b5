// scripts/bench/quality/score.ts — scoring anomalies against labelled incidents, as incidents: which anomaly matches
// which incident (service or affected series, time window, compatible type), recall, precision, F1, detection delay,
// distinct alerts per incident and false alarms per clean day — overall, per scenario and per detector. Pure.
// Alerts are what people receive: the reported anomalies of one engine incident (public.trace_anomalies.incident_id,
// a slow service and its callers) form one alert, which is a true positive when any of its anomalies matches a
// labelled incident. Precision, F1 and false alarms count alerts; the per-anomaly figures are kept beside them.

/** The ground-truth incident fields scoring needs (scripts/simulate TruthIncident has them all). */
export interface Incident {
  id: string;
  scenario: string;
  anomaly_type: string;
  service: string;
  operation: string | null;
  /** ISO. */
  start: string;
  end: string;
  affected: Array<{ service: string; operation: string | null }>;
}

export interface ScoredAnomaly {
  id: string;
  type: string;
  service: string;
  operation: string | null;
  firstSeenMs: number;
  /** Event time at which live detection would have fired (the engine's detected_event_at). */
  detectedMs: number;
  /**
   * Event-time clock of the replay cycle that opened it (cycles run at the end of each minute, like a cron schedule
   * on the minute), when known.
   */
  observedMs?: number | null;
  /**
   * The engine incident it belongs to (public.trace_anomalies.incident_id); anomalies sharing it are one alert.
   * Absent: the anomaly is an alert of its own.
   */
  incidentId?: string;
  /** Detectors that fired it (explanation.detectors names; for hit-derived episodes, the one detector). */
  detectors: string[];
  /**
   * Part of what the default configuration reports (a public.trace_anomalies row). False for episodes rebuilt
   * from anomaly.detector_hits of detectors whose hits open no anomalies (the legacy rule).
   */
  reported: boolean;
}

/** One independent run (its own database and time line): its incidents and what was detected. */
export interface RunOutcome {
  id: string;
  kind: "scenario" | "clean";
  /** Scenario name of a scenario run, null for a clean run. */
  scenario: string | null;
  /** Simulated days, counted for clean runs only (false alarms per clean day). */
  days: number;
  incidents: Incident[];
  anomalies: ScoredAnomaly[];
}

/**
 * Which anomaly types can stand for which incident type. An anomaly of another type never matches (it is a false
 * positive even if it is on the right service at the right time).
 */
export const COMPATIBLE_TYPES: Readonly<Record<string, readonly string[]>> = {
  DEPLOY_REGRESSION: ["LATENCY", "DEPLOY_REGRESSION"],
  LATENCY: ["LATENCY"],
  ERROR_RATE: ["ERROR_RATE"],
  THROUGHPUT: ["THROUGHPUT"],
  RESOURCE: ["RESOURCE"],
};

/** The match window around an incident: first_seen in [start - BEFORE, end + AFTER]. */
export const MATCH_BEFORE_MS = 2 * 60_000;
export const MATCH_AFTER_MS = 10 * 60_000;

/**
 * True when `a` is evidence of incident `i`: a compatible type, first seen inside the window, and on the incident's
 * path — the incident's own service (any operation: its database calls slow down too), an affected series of the
 * ground truth, a service-level series of an affected service, or a caller's client span to an affected operation
 * (an affected service's span named like an affected operation: OpenTelemetry client spans carry the callee's
 * route, and the ground truth lists only the callers' server operations).
 */
export function matches(a: ScoredAnomaly, i: Incident): boolean {
  if (!(COMPATIBLE_TYPES[i.anomaly_type] ?? [i.anomaly_type]).includes(a.type)) return false;
  const start = Date.parse(i.start);
  const end = Date.parse(i.end);
  if (a.firstSeenMs < start - MATCH_BEFORE_MS || a.firstSeenMs > end + MATCH_AFTER_MS) return false;
  if (a.service === i.service) return true;
  const own = i.affected.filter((x) => x.service === a.service);
  if (own.length === 0) return false;
  if (a.operation === null || own.some((x) => x.operation === null || x.operation === a.operation)) {
    return true;
  }
  return i.affected.some((x) => x.operation === a.operation);
}

export interface Metrics {
  incidents: number;
  detected: number;
  /** detected / incidents; null without incidents. */
  recall: number | null;
  /** Alerts: anomalies grouped by engine incident (incidentId). */
  alerts: number;
  /** Alerts with at least one anomaly matching a labelled incident. */
  truePositives: number;
  falsePositives: number;
  /** Alerts matching some incident / all alerts; null without alerts. */
  precision: number | null;
  /** F1 of recall and the alert precision. */
  f1: number | null;
  anomalies: number;
  /** Anomalies matching some incident. */
  anomalyTruePositives: number;
  /** Anomalies matching some incident / all anomalies; null without anomalies. */
  anomalyPrecision: number | null;
  /** F1 of recall and the anomaly precision. */
  anomalyF1: number | null;
  /** detected_at - incident start of the earliest matching anomaly, per detected incident (ms, ascending). */
  delaysMs: number[];
  medianDelayMs: number | null;
  p90DelayMs: number | null;
  /** The same delays by the clock of the replay cycle that opened the anomaly (null when not known for all). */
  medianCycleDelayMs: number | null;
  /** Mean number of matching alerts per detected incident (ideally 1: the incident's anomalies in one message). */
  alertsPerIncident: number | null;
  /** Mean number of matching anomalies per detected incident (callers of a slow service add to it). */
  anomaliesPerIncident: number | null;
  cleanDays: number;
  /** Alerts in clean runs (none can match). */
  cleanFalseAlarms: number;
  /** cleanFalseAlarms / cleanDays; null without clean runs. */
  falseAlarmsPerCleanDay: number | null;
}

/** Quantile by linear interpolation between closest ranks (p in 0..1) of ascending values; null when empty. */
export function quantile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Anomaly type of each detector family of the registry (as the engine's lifecycle maps them). */
export const FAMILY_TYPE: Readonly<Record<string, string>> = {
  latency: "LATENCY",
  error_rate: "ERROR_RATE",
  throughput: "THROUGHPUT",
  resource: "RESOURCE",
  deploy: "DEPLOY_REGRESSION",
};

/** Incidents an anomaly of `type` can stand for (a detector's "own kind" of incident). */
export function incidentsOfType(type: string): (i: Incident) => boolean {
  return (i) => (COMPATIBLE_TYPES[i.anomaly_type] ?? [i.anomaly_type]).includes(type);
}

/** The reported anomalies grouped into alerts by engine incident (an anomaly without one is its own alert). */
export function alertsOf(anomalies: ScoredAnomaly[]): ScoredAnomaly[][] {
  const groups = new Map<string, ScoredAnomaly[]>();
  for (const a of anomalies) {
    const key = a.incidentId ?? `anomaly:${a.id}`;
    const g = groups.get(key);
    if (g) g.push(a);
    else groups.set(key, [a]);
  }
  return [...groups.values()];
}

const f1Of = (recall: number | null, precision: number | null) =>
  recall === null || precision === null
    ? null
    : recall + precision === 0
    ? 0
    : (2 * recall * precision) / (recall + precision);

/**
 * Scores runs. `keep` selects the anomalies that count (e.g. one detector's); `counts` the incidents that count for
 * recall and delay (default all; e.g. only a detector's own kind). Every anomaly matching some incident of its own
 * run is a true positive (several per incident are fine: callers of a slow service, several signals) whether or not
 * that incident counts for recall; the rest are false positives, including every anomaly of a clean run.
 */
export function evaluate(
  runs: RunOutcome[],
  keep: (a: ScoredAnomaly) => boolean = (a) => a.reported,
  counts: (i: Incident) => boolean = () => true,
): Metrics {
  let incidents = 0;
  let detected = 0;
  let anomalies = 0;
  let tp = 0;
  let alerts = 0;
  let alertTp = 0;
  let matchedPerIncident = 0;
  let anomaliesPerIncident = 0;
  let cleanDays = 0;
  let cleanFalseAlarms = 0;
  const delays: number[] = [];
  const cycleDelays: number[] = [];
  let cycleKnown = true;
  for (const run of runs) {
    const kept = run.anomalies.filter(keep);
    anomalies += kept.length;
    const matching = new Set(kept.filter((a) => run.incidents.some((i) => matches(a, i))));
    tp += matching.size;
    const grouped = alertsOf(kept);
    const falseAlerts = grouped.filter((g) => !g.some((a) => matching.has(a))).length;
    alerts += grouped.length;
    alertTp += grouped.length - falseAlerts;
    if (run.kind === "clean") {
      cleanDays += run.days;
      cleanFalseAlarms += falseAlerts;
    }
    for (const i of run.incidents.filter(counts)) {
      incidents++;
      const hits = kept.filter((a) => matches(a, i));
      if (hits.length === 0) continue;
      detected++;
      matchedPerIncident += alertsOf(hits).length;
      anomaliesPerIncident += hits.length;
      delays.push(Math.min(...hits.map((a) => a.detectedMs)) - Date.parse(i.start));
      if (hits.every((a) => typeof a.observedMs === "number")) {
        cycleDelays.push(Math.min(...hits.map((a) => a.observedMs as number)) - Date.parse(i.start));
      } else cycleKnown = false;
    }
  }
  delays.sort((a, b) => a - b);
  cycleDelays.sort((a, b) => a - b);
  const recall = incidents ? detected / incidents : null;
  const precision = alerts ? alertTp / alerts : null;
  const anomalyPrecision = anomalies ? tp / anomalies : null;
  return {
    incidents,
    detected,
    recall,
    alerts,
    truePositives: alertTp,
    falsePositives: alerts - alertTp,
    precision,
    f1: f1Of(recall, precision),
    anomalies,
    anomalyTruePositives: tp,
    anomalyPrecision,
    anomalyF1: f1Of(recall, anomalyPrecision),
    delaysMs: delays,
    medianDelayMs: quantile(delays, 0.5),
    p90DelayMs: quantile(delays, 0.9),
    medianCycleDelayMs: cycleKnown ? quantile(cycleDelays, 0.5) : null,
    alertsPerIncident: detected ? matchedPerIncident / detected : null,
    anomaliesPerIncident: detected ? anomaliesPerIncident / detected : null,
    cleanDays,
    cleanFalseAlarms,
    falseAlarmsPerCleanDay: cleanDays > 0 ? cleanFalseAlarms / cleanDays : null,
  };
}

/** Metrics per scenario: that scenario's runs only (clean runs under the name "clean"). */
export function perScenario(
  runs: RunOutcome[],
  keep?: (a: ScoredAnomaly) => boolean,
): Map<string, Metrics> {
  const names = [...new Set(runs.map((r) => r.scenario ?? "clean"))];
  return new Map(names.map((n) => [n, evaluate(runs.filter((r) => (r.scenario ?? "clean") === n), keep)]));
}

/** Every detector named by some anomaly, plus `known` ones (registered, maybe silent), sorted. */
export function detectorNames(runs: RunOutcome[], known: string[] = []): string[] {
  const names = new Set(known);
  for (const r of runs) for (const a of r.anomalies) for (const d of a.detectors) names.add(d);
  return [...names].sort();
}

/**
 * Metrics per detector: the anomalies it fired (it is listed in their explanation.detectors). With `ownKind`
 * (detector -> anomaly type, from its family), recall and delay count only incidents of that kind: a CPU detector
 * is not expected to find an error spike.
 */
export function perDetector(
  runs: RunOutcome[],
  detectors: string[],
  ownKind: Map<string, string> = new Map(),
): Map<string, Metrics> {
  return new Map(detectors.map((d) => {
    const type = ownKind.get(d);
    return [d, evaluate(runs, (a) => a.detectors.includes(d), type ? incidentsOfType(type) : undefined)];
  }));
}

/** Names listed in an anomaly explanation's `detectors` array ({name, score} objects or plain names). */
export function explanationDetectors(explanation: unknown, fallback: string): string[] {
  const list = (explanation as { detectors?: unknown } | null)?.detectors;
  const out: string[] = [];
  if (Array.isArray(list)) {
    for (const d of list) {
      const name = typeof d === "string" ? d : (d as { name?: unknown } | null)?.name;
      if (typeof name === "string" && !out.includes(name)) out.push(name);
    }
  }
  if (out.length === 0 && fallback) out.push(fallback);
  return out;
}

/**
 * Episodes of one detector's hits, as the lifecycle would fold them: hits of the same series and subtype whose
 * minutes are at most `quietMinutes` apart form one episode; detected at the first minute + 1 minute + lateness.
 */
export function hitEpisodes(
  hits: Array<
    {
      detector: string;
      type: string;
      service: string;
      operation: string | null;
      subtype: string;
      bucketMs: number;
    }
  >,
  quietMinutes: number,
  latenessMs: number,
): ScoredAnomaly[] {
  const groups = new Map<string, typeof hits>();
  for (const h of hits) {
    const key = [h.detector, h.type, h.subtype, h.service, h.operation ?? ""].join("|");
    let g = groups.get(key);
    if (!g) groups.set(key, g = []);
    g.push(h);
  }
  const out: ScoredAnomaly[] = [];
  for (const [key, g] of groups) {
    g.sort((a, b) => a.bucketMs - b.bucketMs);
    let first = g[0];
    let last = g[0];
    const close = () =>
      out.push({
        id: `${key}@${first.bucketMs}`,
        type: first.type,
        service: first.service,
        operation: first.operation,
        firstSeenMs: first.bucketMs,
        detectedMs: first.bucketMs + 60_000 + latenessMs,
        detectors: [first.detector],
        reported: false,
      });
    for (const h of g.slice(1)) {
      if (h.bucketMs - last.bucketMs > quietMinutes * 60_000) {
        close();
        first = h;
      }
      last = h;
    }
    close();
  }
  return out.sort((a, b) => a.firstSeenMs - b.firstSeenMs || a.id.localeCompare(b.id));
}
