// tests/unit/quality-score.test.ts — the quality benchmark's scoring on hand-made incidents and anomalies with known
// answers: the match rule (type table, window edges, affected services, own run only), recall/precision/F1, delays,
// alerts per incident, false alarms per clean day, per-detector figures, hit episodes, and the corpus plan.

import { describe, expect, it } from "vitest";
import { FAULTS, planCorpus } from "../../scripts/bench/quality/corpus.ts";
import { targetChecks } from "../../scripts/bench/quality/report.ts";
import {
  COMPATIBLE_TYPES,
  detectorNames,
  evaluate,
  explanationDetectors,
  hitEpisodes,
  type Incident,
  matches,
  perDetector,
  perScenario,
  quantile,
  type RunOutcome,
  type ScoredAnomaly,
} from "../../scripts/bench/quality/score.ts";
import { parseScenario, SCENARIO_NAMES } from "../../scripts/simulate/index.ts";

const MIN = 60_000;
const T0 = Date.parse("2026-11-18T14:00:00Z");
const at = (m: number) => T0 + m * MIN;
const iso = (m: number) => new Date(at(m)).toISOString();

function incident(over: Partial<Incident> = {}): Incident {
  return {
    id: "latency_regression-1",
    scenario: "latency_regression",
    anomaly_type: "DEPLOY_REGRESSION",
    service: "inventory",
    operation: null,
    start: iso(0),
    end: iso(30),
    affected: [
      { service: "inventory", operation: "GET /products/{id}" },
      { service: "frontend", operation: "GET /product/:id" },
    ],
    ...over,
  };
}

let n = 0;
function anomaly(over: Partial<ScoredAnomaly> & { first?: number; detected?: number } = {}): ScoredAnomaly {
  const { first = 1, detected = (over.first ?? 1) + 2, ...rest } = over;
  return {
    id: `a${++n}`,
    type: "LATENCY",
    service: "inventory",
    operation: "GET /products/{id}",
    firstSeenMs: at(first),
    detectedMs: at(detected),
    detectors: ["latency_zscore"],
    reported: true,
    ...rest,
  };
}

describe("matches", () => {
  it("follows the compatibility table", () => {
    const cases: Array<[string, string, boolean]> = [
      ["DEPLOY_REGRESSION", "LATENCY", true],
      ["DEPLOY_REGRESSION", "DEPLOY_REGRESSION", true],
      ["DEPLOY_REGRESSION", "ERROR_RATE", false],
      ["LATENCY", "LATENCY", true],
      ["LATENCY", "DEPLOY_REGRESSION", false],
      ["ERROR_RATE", "ERROR_RATE", true],
      ["ERROR_RATE", "LATENCY", false],
      ["THROUGHPUT", "THROUGHPUT", true],
      ["THROUGHPUT", "RESOURCE", false],
      ["RESOURCE", "RESOURCE", true],
      ["RESOURCE", "LATENCY", false],
    ];
    for (const [incidentType, anomalyType, expected] of cases) {
      expect(
        matches(anomaly({ type: anomalyType }), incident({ anomaly_type: incidentType })),
        `${incidentType} <- ${anomalyType}`,
      ).toBe(expected);
    }
    expect(Object.keys(COMPATIBLE_TYPES).sort()).toEqual(
      ["DEPLOY_REGRESSION", "ERROR_RATE", "LATENCY", "RESOURCE", "THROUGHPUT"],
    );
  });

  it("takes first_seen from 2 minutes before the start to 10 minutes after the end, edges included", () => {
    const i = incident();
    expect(matches(anomaly({ first: -2 }), i)).toBe(true);
    expect(matches(anomaly({ firstSeenMs: at(-2) - 1 }), i)).toBe(false);
    expect(matches(anomaly({ first: 40 }), i)).toBe(true);
    expect(matches(anomaly({ firstSeenMs: at(40) + 1 }), i)).toBe(false);
  });

  it("accepts the incident's path: own service, affected series, callers' client spans; nothing else", () => {
    const i = incident();
    expect(matches(anomaly({ service: "inventory", operation: "SELECT shop.products" }), i)).toBe(true);
    expect(matches(anomaly({ service: "inventory", operation: null }), i)).toBe(true);
    expect(matches(anomaly({ service: "frontend", operation: "GET /product/:id" }), i)).toBe(true);
    expect(matches(anomaly({ service: "frontend", operation: null }), i)).toBe(true);
    // frontend's client span to inventory carries inventory's route
    expect(matches(anomaly({ service: "frontend", operation: "GET /products/{id}" }), i)).toBe(true);
    expect(matches(anomaly({ service: "frontend", operation: "GET /users/session" }), i)).toBe(false);
    expect(matches(anomaly({ service: "payments", operation: "GET /products/{id}" }), i)).toBe(false);
    expect(matches(anomaly({ service: "payments", operation: "POST /payments/charge" }), i)).toBe(false);
    const wide = incident({ service: "frontend", affected: [{ service: "users", operation: null }] });
    expect(matches(anomaly({ service: "users", operation: "SELECT shop.users" }), wide)).toBe(true);
  });
});

describe("evaluate", () => {
  it("scores incidents, true/false positives, delays and alerts per incident", () => {
    const runs: RunOutcome[] = [
      {
        id: "latency_regression",
        kind: "scenario",
        scenario: "latency_regression",
        days: 0,
        incidents: [incident()],
        anomalies: [
          anomaly({ first: 1, detected: 3 }), // TP, delay 3
          anomaly({ service: "frontend", operation: "GET /product/:id", first: 0, detected: 2 }), // TP, delay 2
          anomaly({ service: "payments", first: 5 }), // FP: not affected
          anomaly({ type: "ERROR_RATE", first: 5 }), // FP: wrong type
        ],
      },
      {
        id: "error_spike",
        kind: "scenario",
        scenario: "error_spike",
        days: 0,
        incidents: [
          incident({
            id: "error_spike-1",
            scenario: "error_spike",
            anomaly_type: "ERROR_RATE",
            service: "payments",
            affected: [],
          }),
        ],
        anomalies: [anomaly({ type: "ERROR_RATE", service: "payments", first: 0, detected: 6 })], // TP, delay 6
      },
      {
        id: "traffic_drop",
        kind: "scenario",
        scenario: "traffic_drop",
        days: 0,
        incidents: [
          incident({
            id: "traffic_drop-1",
            scenario: "traffic_drop",
            anomaly_type: "THROUGHPUT",
            service: "frontend",
            affected: [],
          }),
        ],
        anomalies: [],
      },
      {
        id: "clean",
        kind: "clean",
        scenario: null,
        days: 2,
        incidents: [],
        // Same time and service as the regression of another run: must not match it (runs are separate).
        anomalies: [anomaly({ first: 1 }), anomaly({ type: "THROUGHPUT", service: "frontend", first: 100 })],
      },
    ];
    const m = evaluate(runs);
    expect(m.incidents).toBe(3);
    expect(m.detected).toBe(2);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    expect(m.anomalies).toBe(7);
    expect(m.alerts).toBe(7);
    expect(m.truePositives).toBe(3);
    expect(m.falsePositives).toBe(4);
    expect(m.precision).toBeCloseTo(3 / 7, 12);
    expect(m.f1).toBeCloseTo((2 * (2 / 3) * (3 / 7)) / (2 / 3 + 3 / 7), 12);
    expect(m.delaysMs).toEqual([2 * MIN, 6 * MIN]); // earliest detection per incident
    expect(m.medianDelayMs).toBe(4 * MIN);
    expect(m.p90DelayMs).toBeCloseTo(5.6 * MIN, 6);
    expect(m.alertsPerIncident).toBe(1.5);
    expect(m.anomaliesPerIncident).toBe(1.5);
    expect(m.cleanDays).toBe(2);
    expect(m.cleanFalseAlarms).toBe(2);
    expect(m.falseAlarmsPerCleanDay).toBe(1);

    const per = perScenario(runs);
    expect([...per.keys()]).toEqual(["latency_regression", "error_spike", "traffic_drop", "clean"]);
    expect(per.get("latency_regression")).toMatchObject({ detected: 1, truePositives: 2, falsePositives: 2 });
    expect(per.get("traffic_drop")).toMatchObject({ recall: 0, precision: null, f1: null });
    expect(per.get("clean")).toMatchObject({ incidents: 0, recall: null, falseAlarmsPerCleanDay: 1 });
  });

  it("counts an engine incident as one alert: true when any of its anomalies matches, false otherwise", () => {
    const run: RunOutcome = {
      id: "g",
      kind: "scenario",
      scenario: "latency_regression",
      days: 0,
      incidents: [incident()],
      anomalies: [
        // the slow service and a caller's collateral row of another type: one alert, a true positive
        anomaly({ incidentId: "i1" }),
        anomaly({ incidentId: "i1", type: "RESOURCE", service: "frontend", operation: null }),
        // an unrelated pair opening together elsewhere: one false alert
        anomaly({ incidentId: "i2", service: "search", first: 200 }),
        anomaly({ incidentId: "i2", service: "search", operation: "SELECT", first: 201 }),
        // no incident recorded: an alert of its own
        anomaly({ service: "payments", first: 300 }),
      ],
    };
    const m = evaluate([run]);
    expect(m).toMatchObject({
      alerts: 3,
      truePositives: 1,
      falsePositives: 2,
      anomalies: 5,
      anomalyTruePositives: 1,
    });
    expect(m.precision).toBeCloseTo(1 / 3, 12);
    expect(m.anomalyPrecision).toBeCloseTo(1 / 5, 12);
    expect(m.f1).toBeCloseTo(0.5, 12);
    const clean = evaluate([{ ...run, id: "c", kind: "clean", scenario: null, days: 1, incidents: [] }]);
    expect(clean.cleanFalseAlarms).toBe(3);
  });

  it("gives null figures with nothing to score, and 0 F1 when nothing matches", () => {
    expect(evaluate([])).toMatchObject({ recall: null, precision: null, f1: null, medianDelayMs: null });
    const run: RunOutcome = {
      id: "x",
      kind: "scenario",
      scenario: "x",
      days: 0,
      incidents: [incident()],
      anomalies: [anomaly({ service: "payments" })],
    };
    expect(evaluate([run])).toMatchObject({ recall: 0, precision: 0, f1: 0 });
  });

  it("counts per detector the anomalies that list it, and leaves unreported episodes out by default", () => {
    const run: RunOutcome = {
      id: "r",
      kind: "scenario",
      scenario: "latency_regression",
      days: 0,
      incidents: [incident()],
      anomalies: [
        anomaly({ detectors: ["latency_zscore", "latency_ewma"], first: 1, detected: 3 }),
        anomaly({ detectors: ["latency_ewma"], service: "payments" }),
        anomaly({ detectors: ["legacy_mean_ksigma"], reported: false, first: 0, detected: 2 }),
      ],
    };
    expect(evaluate([run])).toMatchObject({ anomalies: 2, truePositives: 1, medianDelayMs: 3 * MIN });
    const names = detectorNames([run], ["latency_seasonal"]);
    expect(names).toEqual(["latency_ewma", "latency_seasonal", "latency_zscore", "legacy_mean_ksigma"]);
    const per = perDetector([run], names);
    expect(per.get("latency_ewma")).toMatchObject({
      anomalies: 2,
      truePositives: 1,
      precision: 0.5,
      recall: 1,
    });
    expect(per.get("latency_zscore")).toMatchObject({ anomalies: 1, precision: 1, recall: 1 });
    expect(per.get("latency_seasonal")).toMatchObject({ anomalies: 0, recall: 0, precision: null });
    expect(per.get("legacy_mean_ksigma")).toMatchObject({ anomalies: 1, recall: 1, medianDelayMs: 2 * MIN });
  });
});

describe("helpers", () => {
  it("quantile interpolates between ranks", () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(quantile([5], 0.9)).toBe(5);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([0, 10], 0.9)).toBe(9);
  });

  it("reads detector names from an explanation, falling back to the row's detector", () => {
    expect(
      explanationDetectors({ detectors: [{ name: "a", score: 4 }, { name: "b" }, "c", { name: "a" }] }, "x"),
    )
      .toEqual(["a", "b", "c"]);
    expect(explanationDetectors({}, "zscore")).toEqual(["zscore"]);
    expect(explanationDetectors(null, "zscore")).toEqual(["zscore"]);
  });

  it("folds hits into episodes split by more than quiet minutes, detected at first + 1 min + lateness", () => {
    const h = (m: number, service = "inventory") => ({
      detector: "legacy_mean_ksigma",
      type: "LATENCY",
      service,
      operation: "GET /products/{id}",
      subtype: "latency_p95",
      bucketMs: at(m),
    });
    const eps = hitEpisodes([h(0), h(3), h(8), h(14), h(2, "users")], 5, 60_000);
    expect(eps.map((e) => [e.service, (e.firstSeenMs - T0) / MIN, (e.detectedMs - T0) / MIN])).toEqual([
      ["inventory", 0, 2],
      ["users", 2, 4],
      ["inventory", 14, 16],
    ]);
    expect(eps.every((e) => !e.reported && e.detectors[0] === "legacy_mean_ksigma")).toBe(true);
  });

  it("checks the issue's targets", () => {
    const m = evaluate([{
      id: "c",
      kind: "clean",
      scenario: null,
      days: 1,
      incidents: [],
      anomalies: [anomaly(), anomaly()],
    }]);
    expect(targetChecks(m).map((c) => [c.name, c.pass])).toEqual([
      ["F1", false],
      ["median detection delay", false],
      ["false alarms per clean day", false],
    ]);
  });
});

describe("planCorpus", () => {
  it("covers every fault of the issue plus clean time, in both sizes, with valid simulator scenarios", () => {
    for (const quick of [false, true]) {
      const plans = planCorpus({ quick });
      expect(plans.map((p) => p.scenario)).toEqual([...FAULTS.map((f) => f.scenario), "clean"]);
      for (const p of plans) {
        for (const s of p.scenarios) expect(SCENARIO_NAMES).toContain(parseScenario(s).name);
        expect(Date.parse(p.start) + p.minutes * MIN).toBeLessThan(Date.parse("2026-11-25T00:00:00Z"));
        expect(p.countFrom).toBeGreaterThanOrEqual(p.liveFrom);
      }
      const clean = plans.find((p) => p.kind === "clean")!;
      expect((clean.minutes - clean.countFrom) / 1440).toBe(quick ? 0.125 : 1);
    }
    for (
      const f of [
        "latency_regression",
        "error_spike",
        "traffic_spike",
        "traffic_drop",
        "cpu_spike",
        "slow_degradation",
      ]
    ) {
      expect(FAULTS.map((x) => x.scenario)).toContain(f);
    }
    const full = planCorpus({ quick: false });
    const spike = full.find((p) => p.scenario === "error_spike")!;
    expect(spike.scenarios).toEqual(["error_spike@180m:service=payments,rate=0.3,duration=3m"]);
    expect(spike.liveFrom).toBe(150);
    expect(planCorpus({ quick: false, liveWarmup: true }).find((p) => p.id === "error_spike")).toMatchObject({
      liveFrom: 0,
      countFrom: 60,
    });
    expect(planCorpus({ quick: true, only: ["cpu_spike"] }).map((p) => p.id)).toEqual(["cpu_spike"]);
  });

  it("draws the corpus once per seed, with distinct run ids and the seeds of each draw", () => {
    const two = planCorpus({ quick: true, only: ["cpu_spike", "clean"], seeds: [11, 23] });
    expect(two.map((p) => p.id)).toEqual(["cpu_spike_s11", "clean_s11", "cpu_spike_s23", "clean_s23"]);
    expect(two.map((p) => p.scenario)).toEqual(["cpu_spike", "clean", "cpu_spike", "clean"]);
    const one = planCorpus({ quick: true, only: ["cpu_spike"], seed: 23 });
    expect(two[2]).toEqual({ ...one[0], id: "cpu_spike_s23" });
    expect(two[0].seed).not.toBe(two[2].seed);
    expect(planCorpus({ quick: true, only: ["clean"], seeds: [23] }).map((p) => p.id)).toEqual(["clean"]);
  });
});
