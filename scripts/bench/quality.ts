// scripts/bench/quality.ts — `npm run bench:quality`: detection quality on a labelled simulator corpus (one fault
// per run after clean warm-up history, plus clean days; two draws of it by default, seeds 11 and 23), scored as
// incidents — recall, precision, F1, median/p90 detection delay, false alarms per clean day — per scenario and per
// detector, the legacy mean + k·σ rule beside the
// default configuration, written in full to .data/bench-quality.json. Embedded Postgres 17 unless DATABASE_URL.

// Usage: npm run bench:quality [-- --quick] [--warmup 180] [--rate 90] [--clean-days 1] [--only error_spike,clean]

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  connect,
  createPreparedDatabase,
  describeEngine,
  dropDatabase,
  type EngineCaps,
  engineCaps,
  openServer,
  q,
  type RegisteredDetector,
  registeredDetectors,
  type ServerHandle,
  uniqueName,
} from "../replay/engine.ts";
import { databaseUrl } from "../local/databases.ts";
import { FAULTS, planCorpus, type RunPlan } from "./quality/corpus.ts";
import {
  detectorTable,
  LEGACY_DETECTOR,
  legacyTable,
  scenarioTable,
  targetChecks,
  targetTable,
} from "./quality/report.ts";
import { executeRun, type RunResult } from "./quality/run.ts";
import {
  COMPATIBLE_TYPES,
  detectorNames,
  evaluate,
  FAMILY_TYPE,
  incidentsOfType,
  matches,
  type Metrics,
  perDetector,
  perScenario,
  type RunOutcome,
  type ScoredAnomaly,
} from "./quality/score.ts";

const USAGE = `npm run bench:quality [-- options]
  --quick            a small corpus for tests/CI (65-minute warm-ups, shorter faults, lower rates, 3 clean hours)
  --warmup N         clean minutes before each fault (default 180; quick 65)
  --rate N           peak traces/minute of scenario runs (default 90; quick 60)
  --clean-days X     counted clean days (default 1; quick 0.125), after a 60-minute burn-in
  --clean-rate N     peak traces/minute of clean days (default 40; quick 30)
  --only a,b         only these scenarios (${FAULTS.map((f) => f.scenario).join(", ")}, clean)
  --seed N           one draw of the corpus with this base seed
  --seeds a,b        one draw per base seed, scored together (default 11,23; quick: 11)
  --live-lead N      live minutes before each fault (default 30; quick 15): the warm-up before them is loaded in
                     bulk and the engine's first cycle learns its baselines from it; anomalies count from there
  --live-warmup      step every warm-up minute live instead (slower); anomalies then count after the burn-in
  --burn-in N        with --live-warmup, and for clean runs: unscored minutes at the start (default 60)
  --out FILE         full results as JSON (default .data/bench-quality.json)
  --database-url URL a server to work on (default DATABASE_URL, else the embedded Postgres 17); every run gets
                     a fresh database there
  --jobs N           runs at a time (default 2: one simulating while the other's database works)
  --keep             keep the run databases
  --rescore FILE     print the tables for a saved results file again (after changing the scoring), no runs`;

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    warmup: { type: "string" },
    rate: { type: "string" },
    "clean-days": { type: "string" },
    "clean-rate": { type: "string" },
    only: { type: "string" },
    seed: { type: "string" },
    seeds: { type: "string" },
    "burn-in": { type: "string" },
    "live-warmup": { type: "boolean", default: false },
    "live-lead": { type: "string" },
    jobs: { type: "string" },
    out: { type: "string", default: ".data/bench-quality.json" },
    "database-url": { type: "string" },
    keep: { type: "boolean", default: false },
    rescore: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const num = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`bench:quality: --${name} must be a positive number, got "${v}"\n\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const plans = planCorpus({
  quick: args.quick!,
  warmup: num("warmup", args.warmup),
  rate: num("rate", args.rate),
  cleanDays: num("clean-days", args["clean-days"]),
  cleanRate: num("clean-rate", args["clean-rate"]),
  only: args.only?.split(",").map((s) => s.trim()).filter(Boolean),
  seed: num("seed", args.seed),
  seeds: args.seed !== undefined
    ? undefined
    : (args.seeds ?? (args.quick ? "11" : "11,23")).split(",").map((x) => Number(x.trim())).filter((x) =>
      Number.isInteger(x) && x >= 0
    ),
  burnIn: args["burn-in"] === undefined ? undefined : Number(args["burn-in"]),
  liveWarmup: args["live-warmup"],
  liveLead: args["live-lead"] === undefined ? undefined : Number(args["live-lead"]),
});
const jobs = num("jobs", args.jobs) ?? 2;
if (plans.length === 0) {
  console.error(`bench:quality: --only matched no scenario\n\n${USAGE}`);
  process.exit(2);
}

if (args.rescore) {
  // Score a saved run again (after a change to the scoring rules) without simulating anything.
  const saved = JSON.parse(await readFile(args.rescore, "utf8")) as SavedReport;
  // deno-lint-ignore no-explicit-any
  const runs = saved.runs.map((r: any): SavedRun => ({
    ...r,
    scenario: r.scenario !== undefined ? r.scenario : r.kind === "clean" ? null : r.plan.scenario,
    days: r.days ?? r.counted_clean_days ?? 0,
    hitsByDetector: r.hitsByDetector ?? r.hits_by_detector ?? {},
    detectorErrors: r.detectorErrors ?? r.detector_errors ?? [],
  }));
  summarize(runs, { mode: saved.mode, engine: saved.engine });
  process.exit(0);
}

const t0 = performance.now();
const log = (m: string) =>
  console.error(`[bench:quality ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${m}`);

let server: ServerHandle | undefined;
let exitCode = 0;
const template = uniqueName("ts_quality_tmpl");
const runDatabase = (i: number) => `${template.replace("_tmpl", "")}_${i}`;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`bench:quality: ${signal}, dropping the benchmark databases`);
    const names = args.keep ? [] : [template, ...plans.map((_, i) => runDatabase(i))];
    void Promise.all(names.map((n) => server ? dropDatabase(server.url, n).catch(() => {}) : undefined))
      .finally(async () => {
        await server?.stop().catch(() => {});
        process.exit(130);
      });
  });
}
try {
  server = await openServer(args["database-url"], log);
  await createPreparedDatabase(server.url, template);
  const tsql = connect(databaseUrl(server.url, template));
  let caps: EngineCaps;
  let detectors: RegisteredDetector[];
  const setup: string[] = [];
  try {
    caps = await engineCaps(tsql);
    detectors = await registeredDetectors(tsql, caps);
    // The legacy rule is compared in the same run: switch it on if it is registered but off (its hits open no
    // anomalies, so the default configuration's output does not change).
    const legacy = detectors.find((d) => d.name === LEGACY_DETECTOR);
    if (legacy && !legacy.enabled && legacy.legacy && caps.registry?.enabled) {
      await tsql.unsafe(
        `update anomaly.${q(caps.registry.table)} set ${q(caps.registry.enabled)} = true where ${
          q(caps.registry.name)
        } = $1`,
        [LEGACY_DETECTOR],
      );
      setup.push(`enabled ${LEGACY_DETECTOR} (registered but off; its hits open no anomalies)`);
    }
  } finally {
    await tsql.end({ timeout: 5 });
  }
  log(`template database ${template} prepared; engine: ${describeEngine(caps)}`);
  for (const s of setup) log(s);
  const enabledDefault = detectors.filter((d) => d.enabled && !d.legacy).map((d) => d.name);
  log(
    `detectors: ${
      detectors.map((d) => `${d.name}${d.legacy ? " (legacy)" : d.enabled ? "" : " (off)"}`).join(", ") ||
      "none registered"
    }`,
  );
  log(
    `${plans.length} runs: ${
      plans.map((p) => `${p.id} (${p.minutes} min @ ${p.rate}/min, live from +${p.liveFrom}m)`).join(", ")
    }`,
  );

  // Runs are independent (own database, own simulator): `--jobs` of them at a time. Concurrent simulations in one
  // process share OpenTelemetry's global diag logger, which only carries export error texts; a failed export is
  // caught by the run's own exporter.
  const results: RunResult[] = new Array(plans.length);
  // Longest live stretch first, so the last runs finish together.
  const queue = plans.map((p, i) => ({ i, cost: p.minutes - p.liveFrom })).sort((a, b) => b.cost - a.cost);
  await Promise.all(Array.from({ length: Math.min(jobs, plans.length) }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const i = job.i;
      const plan = plans[i];
      const r = await executeRun(server!.url, template, runDatabase(i), plan, caps, {
        keep: args.keep,
        log,
      });
      results[i] = r;
      const reported = r.anomalies.filter((a) => a.reported);
      const matched = reported.filter((a) => r.incidents.some((inc) => matches(a, inc))).length;
      log(
        `${plan.id}: ${r.spans} spans, ${r.cycles} cycles, ${reported.length} anomalies (${matched} matching), ` +
          `${r.wallSeconds.toFixed(1)} s (database ${r.dbSeconds.toFixed(1)} s: ingest ${
            r.stepSeconds.ingest.toFixed(1)
          }, rollup ${r.stepSeconds.rollup.toFixed(1)}, detect ${r.stepSeconds.detect.toFixed(1)})` +
          (r.detectorErrors.length ? `; detector errors: ${r.detectorErrors.join(" | ")}` : ""),
      );
    }
  }));

  const report = summarize(
    results.map((r) => ({
      ...r,
      stats: {
        spans: r.spans,
        cycles: r.cycles,
        wall_seconds: round(r.wallSeconds),
        database_seconds: round(r.dbSeconds),
        encode_seconds: round(r.encodeSeconds),
        step_seconds: {
          ingest: round(r.stepSeconds.ingest),
          rollup: round(r.stepSeconds.rollup),
          detect: round(r.stepSeconds.detect),
        },
        cycle_ms_by_tenth: r.cycleMsByTenth,
      },
    })),
    {
      mode: args.quick ? "quick" : "full",
      engine: {
        migrations: caps.migrations,
        detector_hits: caps.hits !== null,
        detected_event_at: caps.detectedEventAt,
        allowed_lateness_seconds: caps.latenessSeconds,
        detectors,
        enabled_by_default: enabledDefault,
        setup,
      },
    },
  );
  await mkdir(dirname(args.out!), { recursive: true });
  await writeFile(
    args.out!,
    JSON.stringify({ ...report, wall_seconds: round((performance.now() - t0) / 1000) }, null, 2) + "\n",
  );
  console.log(`\nFull results: ${args.out} (${round((performance.now() - t0) / 1000)} s)`);
} catch (err) {
  console.error(err);
  exitCode = 1;
} finally {
  if (server && !args.keep) await dropDatabase(server.url, template).catch(() => {});
  await server?.stop();
}
process.exit(exitCode);

interface EngineInfo {
  migrations: string[];
  detector_hits: boolean;
  detected_event_at: boolean;
  allowed_lateness_seconds: number;
  detectors: RegisteredDetector[];
  enabled_by_default: string[];
  setup: string[];
}

/** A run as saved in the results file (and as summarize takes it). */
interface SavedRun extends RunOutcome {
  plan: RunPlan;
  hitsByDetector: Record<string, number>;
  detectorErrors: string[];
  stats?: Record<string, unknown>;
}

interface SavedReport {
  mode: string;
  engine: EngineInfo;
  runs: SavedRun[];
}

/** Scores the runs, prints the tables and returns the results document. */
function summarize(runs: SavedRun[], meta: { mode: string; engine: EngineInfo }) {
  const { engine } = meta;
  const detectors = engine.detectors;
  const overall = evaluate(runs);
  const scenarios = [...perScenario(runs)].sort((a, b) => order(a[0]) - order(b[0]));
  const names = detectorNames(runs, detectors.map((d) => d.name));
  const ownKind = new Map<string, string>();
  for (const d of detectors) {
    if (d.family && FAMILY_TYPE[d.family]) ownKind.set(d.name, FAMILY_TYPE[d.family]);
  }
  const byDetector = perDetector(runs, names, ownKind);
  const hits = (d: string) =>
    engine.detector_hits ? runs.reduce((s, r) => s + (r.hitsByDetector?.[d] ?? 0), 0) : null;
  const caught = (d: string) => [
    ...new Set(
      runs.filter((r) =>
        r.incidents.some((i) => r.anomalies.some((a) => a.detectors.includes(d) && matches(a, i)))
      )
        .map((r) => r.scenario ?? "clean"),
    ),
  ];
  const status = (d: string) => {
    const reg = detectors.find((x) => x.name === d);
    if (!reg) return "unregistered";
    return `${reg.legacy ? "legacy" : reg.enabled ? "on" : "off"}${reg.family ? ` ${reg.family}` : ""}`;
  };
  const legacyReg = detectors.find((d) => d.name === LEGACY_DETECTOR);
  const legacyPresent = legacyReg !== undefined || names.includes(LEGACY_DETECTOR);
  const legacyAll = legacyPresent ? evaluate(runs, (a) => a.detectors.includes(LEGACY_DETECTOR)) : null;
  const legacyType = legacyReg?.family ? FAMILY_TYPE[legacyReg.family] : undefined;
  const sideBySide: Array<{ rule: string; metrics: Metrics | null }> = [
    { rule: "default configuration, all incidents", metrics: overall },
    { rule: `${LEGACY_DETECTOR}, all incidents`, metrics: legacyAll },
  ];
  if (legacyType) {
    // Like for like: the legacy rule only watches one signal family; compare on that kind of incident and anomaly.
    const kind = incidentsOfType(legacyType);
    const sameType = (a: ScoredAnomaly) =>
      (COMPATIBLE_TYPES[legacyType] ?? [legacyType]).includes(a.type) ||
      a.type === legacyType;
    sideBySide.push(
      {
        rule: `default configuration, ${legacyType} anomalies and incidents`,
        metrics: evaluate(runs, (a) => a.reported && sameType(a), kind),
      },
      {
        rule: `${LEGACY_DETECTOR}, ${legacyType} incidents`,
        metrics: evaluate(runs, (a) => a.detectors.includes(LEGACY_DETECTOR), kind),
      },
    );
  }
  const checks = targetChecks(overall);
  const engineLine = `${engine.migrations.length} migrations (last ${engine.migrations.at(-1) ?? "?"}); ` +
    `detector_hits: ${engine.detector_hits ? "yes" : "no"}; detected_event_at: ${
      engine.detected_event_at ? "yes" : "no"
    }`;

  console.log("");
  console.log(`Detection quality — ${meta.mode} corpus; engine: ${engineLine}`);
  console.log(
    "Scored as incidents: an anomaly matches an incident of its run when its type is compatible, it lies on the " +
      "incident's path (its service, an affected series, a caller's client span to it) and it was first seen from " +
      "2 min before the incident to 10 min after it; delay = detected_at (event time live detection fires) - start. " +
      "Alerts = reported anomalies grouped by the engine's incident_id (what alerting sends as one message); " +
      "precision, F1 and false alarms count alerts, anomaly precision counts rows.",
  );
  console.log("\nPer scenario (default configuration):");
  console.log(scenarioTable(scenarios, overall));
  console.log(
    "\nPer detector (anomalies listing it in explanation.detectors; legacy: episodes of its hits). Recall and delay " +
      "count the incidents of the detector's own kind (its family):",
  );
  console.log(detectorTable(names.map((d) => ({
    name: d,
    status: status(d),
    hits: hits(d),
    metrics: byDetector.get(d)!,
    caught: caught(d),
  }))));
  console.log("\nLegacy rule side by side:");
  console.log(legacyTable(sideBySide));
  console.log("\nTargets (default configuration):");
  console.log(targetTable(checks));
  if (overall.medianCycleDelayMs !== null) {
    console.log(
      `(median delay by the clock of the replay cycle that opened the anomaly — a schedule running on the minute: ` +
        `${(overall.medianCycleDelayMs / 60_000).toFixed(1)} min)`,
    );
  }

  return {
    schema: "trace-sentinel/bench-quality@1",
    generated_at: new Date().toISOString(),
    mode: meta.mode,
    engine,
    targets: checks,
    overall: metricsJson(overall),
    per_scenario: Object.fromEntries(scenarios.map(([n, m]) => [n, metricsJson(m)])),
    per_detector: Object.fromEntries(names.map((d) => [d, {
      status: status(d),
      own_kind: ownKind.get(d) ?? null,
      hits: hits(d),
      caught_scenarios: caught(d),
      ...metricsJson(byDetector.get(d)!),
    }])),
    legacy: legacyPresent
      ? Object.fromEntries(sideBySide.map((x) => [x.rule, x.metrics ? metricsJson(x.metrics) : null]))
      : "n/a",
    per_scenario_per_detector: Object.fromEntries(names.map((d) => [
      d,
      Object.fromEntries(
        [...perScenario(runs, (a) => a.detectors.includes(d))].map(([n, m]) => [n, metricsJson(m)]),
      ),
    ])),
    runs: runs.map((r) => ({
      id: r.id,
      kind: r.kind,
      scenario: r.scenario,
      days: r.days,
      plan: r.plan,
      stats: r.stats,
      hitsByDetector: r.hitsByDetector,
      detectorErrors: r.detectorErrors,
      incidents: r.incidents,
      anomalies: r.anomalies.map((a) => ({
        id: a.id,
        type: a.type,
        service: a.service,
        operation: a.operation,
        firstSeenMs: a.firstSeenMs,
        detectedMs: a.detectedMs,
        observedMs: a.observedMs ?? null,
        incidentId: a.incidentId ?? null,
        detectors: a.detectors,
        reported: a.reported,
        first_seen: new Date(a.firstSeenMs).toISOString(),
        detected_at: new Date(a.detectedMs).toISOString(),
        matches: r.incidents.filter((i) => matches(a, i)).map((i) => i.id),
      })),
    })),
  };
}

function order(name: string): number {
  const i = FAULTS.findIndex((f) => f.scenario === name);
  return i < 0 ? FAULTS.length : i;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

function metricsJson(m: Metrics) {
  const r3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    incidents: m.incidents,
    detected: m.detected,
    recall: r3(m.recall),
    alerts: m.alerts,
    true_positives: m.truePositives,
    false_positives: m.falsePositives,
    precision: r3(m.precision),
    f1: r3(m.f1),
    anomalies: m.anomalies,
    anomaly_true_positives: m.anomalyTruePositives,
    anomaly_precision: r3(m.anomalyPrecision),
    anomaly_f1: r3(m.anomalyF1),
    median_delay_minutes: m.medianDelayMs === null ? null : r3(m.medianDelayMs / 60_000),
    p90_delay_minutes: m.p90DelayMs === null ? null : r3(m.p90DelayMs / 60_000),
    median_cycle_delay_minutes: m.medianCycleDelayMs === null ? null : r3(m.medianCycleDelayMs / 60_000),
    delays_minutes: m.delaysMs.map((d) => r3(d / 60_000)),
    alerts_per_incident: r3(m.alertsPerIncident),
    anomalies_per_incident: r3(m.anomaliesPerIncident),
    clean_days: m.cleanDays,
    clean_false_alarms: m.cleanFalseAlarms,
    false_alarms_per_clean_day: r3(m.falseAlarmsPerCleanDay),
  };
}
