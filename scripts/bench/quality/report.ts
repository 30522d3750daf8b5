// scripts/bench/quality/report.ts — the tables `npm run bench:quality` prints: per scenario, per detector, the default
// configuration beside the legacy mean + k·σ rule, and the targets (F1 ≥ 0.9, median delay ≤ 3 min, ≤ 1 false
// alarm per clean day) with PASS/FAIL. Pure.

import { table } from "../../replay/output.ts";
import type { Metrics } from "./score.ts";

export const TARGETS = { f1: 0.9, medianDelayMinutes: 3, falseAlarmsPerCleanDay: 1 } as const;

export const LEGACY_DETECTOR = "legacy_mean_ksigma";

const ratio = (x: number | null) => (x === null ? "-" : x.toFixed(2));
const minutes = (ms: number | null) => (ms === null ? "-" : `${(ms / 60_000).toFixed(1)} min`);
const perDay = (x: number | null) => (x === null ? "-" : x.toFixed(1));

/** The columns every metrics table shares. */
export function metricCells(m: Metrics): Record<string, string> {
  return {
    incidents: `${m.detected}/${m.incidents}`,
    recall: ratio(m.recall),
    alerts: String(m.alerts),
    "TP/FP": `${m.truePositives}/${m.falsePositives}`,
    precision: ratio(m.precision),
    F1: ratio(m.f1),
    anomalies: String(m.anomalies),
    "anomaly precision": ratio(m.anomalyPrecision),
    "median delay": minutes(m.medianDelayMs),
    "p90 delay": minutes(m.p90DelayMs),
    "alerts/incident": m.alertsPerIncident === null ? "-" : m.alertsPerIncident.toFixed(1),
    "anomalies/incident": m.anomaliesPerIncident === null ? "-" : m.anomaliesPerIncident.toFixed(1),
    "false alarms/clean day": perDay(m.falseAlarmsPerCleanDay),
  };
}

export function scenarioTable(rows: Array<[string, Metrics]>, overall: Metrics): string {
  return table([
    ...rows.map(([name, m]) => ({ scenario: name, ...metricCells(m) })),
    { scenario: "ALL (default configuration)", ...metricCells(overall) },
  ]);
}

export interface DetectorRow {
  name: string;
  status: string;
  hits: number | null;
  metrics: Metrics;
  /** Scenarios with at least one incident this detector caught. */
  caught: string[];
}

export function detectorTable(rows: DetectorRow[]): string {
  return table(
    rows.map((r) => {
      const { "alerts/incident": _a, "anomalies/incident": _n, "p90 delay": _p, incidents, ...rest } =
        metricCells(
          r.metrics,
        );
      return {
        detector: r.name,
        status: r.status,
        hits: r.hits === null ? "-" : String(r.hits),
        "own-kind incidents": incidents,
        ...rest,
        "caught scenarios": r.caught.join(" ") || "-",
      };
    }),
    "(no detectors)",
  );
}

/** The default configuration beside the legacy rule; "n/a" rows when the engine has no legacy detector. */
export function legacyTable(rows: Array<{ rule: string; metrics: Metrics | null }>): string {
  const cols = [
    "incidents",
    "recall",
    "alerts",
    "precision",
    "F1",
    "median delay",
    "false alarms/clean day",
  ];
  return table(rows.map(({ rule, metrics }) => {
    const c = metrics ? metricCells(metrics) : null;
    return { rule, ...Object.fromEntries(cols.map((k) => [k, c ? c[k] : "n/a"])) };
  }));
}

export interface TargetCheck {
  name: string;
  target: string;
  value: string;
  pass: boolean;
}

export function targetChecks(m: Metrics): TargetCheck[] {
  const delayMin = m.medianDelayMs === null ? null : m.medianDelayMs / 60_000;
  return [
    { name: "F1", target: `>= ${TARGETS.f1}`, value: ratio(m.f1), pass: m.f1 !== null && m.f1 >= TARGETS.f1 },
    {
      name: "median detection delay",
      target: `<= ${TARGETS.medianDelayMinutes} min`,
      value: minutes(m.medianDelayMs),
      pass: delayMin !== null && delayMin <= TARGETS.medianDelayMinutes,
    },
    {
      name: "false alarms per clean day",
      target: `<= ${TARGETS.falseAlarmsPerCleanDay}`,
      value: perDay(m.falseAlarmsPerCleanDay),
      pass: m.falseAlarmsPerCleanDay !== null && m.falseAlarmsPerCleanDay <= TARGETS.falseAlarmsPerCleanDay,
    },
  ];
}

export function targetTable(checks: TargetCheck[]): string {
  return table(
    checks.map((c) => ({ target: c.name, wanted: c.target, got: c.value, result: c.pass ? "PASS" : "FAIL" })),
  );
}
