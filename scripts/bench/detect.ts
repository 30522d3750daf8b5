// scripts/bench/detect.ts — `npm run bench:detect`: detection-cycle time against series count. For 1k, 10k and 50k
// service+operation series (each 3 signal series: latency p95, error rate, throughput; plus 4 per service:
// throughput, error rate, cpu, memory; and 2 per service edge, each service calling two) it builds the state 7 days
// of minute history leave in the incremental engine (baselines + seasonal profiles + the trailing window of points
// and rollups; scripts/bench/detect/state.ts), then
// times `select * from anomaly.detect()` over consecutive new minutes (a few operations with injected incidents, so
// hits and the anomaly lifecycle do real work) with whatever detectors are registered, breaks each cycle down per
// step and per detector, profiles one cycle with auto_explain, times a burst cycle (a tenth of the services silent in
// one minute: thousands of anomalies open at once), and compares with a full set-based recompute of the
// baselines from raw history. Target (issue): under 0.5 s per cycle at 10k series on a 2-CPU machine.
// Runs on an embedded Postgres 17 of its own (.data/pg17-bench-detect, port TS_BENCH_PG_PORT or 54335;
// synchronous_commit=off, other settings default) unless DATABASE_URL is set; every size gets a fresh database
// (a copy of a migrated template) that is dropped afterwards.
//
//   npm run bench:detect [-- --sizes 1000,10000,50000 --cycles 5 --cycle-seconds 120 --recompute-points 5000000]
//   npm run bench:detect -- --quick          smoke run (1k series, 3 cycles; under a minute)
//   more: --window <min> (trailing window of the state; default 120, more if a registered detector reads further),
//   --explain-ms 5 (auto_explain threshold of the profiled cycle, run at sizes up to 10k),
//   --deploys <n> (services that rolled out a new version 20 min before; default 4 % of them, at most 10),
//   --keep (keep each size's database, ts_bench_detect_<series>, to look into afterwards)
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { REPO_ROOT, startDatabase } from "../local/database.ts";
import { dropDatabase, recreateDatabase } from "../local/databases.ts";
import { prepareDatabase } from "../local/migrate.ts";
import { canTrackFunctions, type CycleSample, type Profile, profileCycle, runCycle } from "./detect/cycle.ts";
import { fullRecompute, type Recompute } from "./detect/recompute.ts";
import {
  buildState,
  type BuiltState,
  HISTORY_DAYS,
  installBenchSchema,
  loadMinute,
  OPS_PER_SERVICE,
  populate,
  type Population,
  silenceServices,
} from "./detect/state.ts";

const { values: args } = parseArgs({
  options: {
    sizes: { type: "string" },
    cycles: { type: "string" },
    "cycle-seconds": { type: "string" },
    window: { type: "string" },
    "recompute-points": { type: "string" },
    "explain-ms": { type: "string" },
    deploys: { type: "string" },
    quick: { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
  },
});
const QUICK = args.quick;
const SIZES = (args.sizes ?? (QUICK ? "1000" : "1000,10000,50000")).split(",").map((s) => Number(s.trim()));
const CYCLES = Number(args.cycles ?? (QUICK ? 3 : 5));
/** The burst cycle silences every BURST_EVERY-th service (a tenth of them). */
const BURST_EVERY = 10;
/** Measured cycles stop early (after at least 2) once they have taken this long: 50k cycles take about a minute. */
const CYCLE_SECONDS = Number(args["cycle-seconds"] ?? 120);
const RECOMPUTE_POINTS = Number(args["recompute-points"] ?? (QUICK ? 2_000_000 : 5_000_000));
const EXPLAIN_MS = Number(args["explain-ms"] ?? 5);
const TARGET_SECONDS = 0.5;
const MIN_WINDOW = 120;
const TARGET_SERIES = 10_000;
/** The first timed minute: a Monday afternoon near the diurnal peak, the same whatever the day of the run. */
const T0 = new Date("2026-11-23T13:00:00Z");
const TEMPLATE = "ts_bench_detect_tpl";
const DATABASE = "ts_bench_detect";

const numbers: Record<string, number> = {
  sizes: Math.min(...SIZES),
  cycles: CYCLES,
  "cycle-seconds": CYCLE_SECONDS,
};
for (const [name, v] of Object.entries(numbers)) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} takes positive integers`);
}

const started = performance.now();
const log = (line: string) =>
  console.error(`[bench:detect ${((performance.now() - started) / 1000).toFixed(0).padStart(4)}s] ${line}`);
const noNotices = { onnotice: () => {} };

interface Detector {
  name: string;
  family: string;
  fn: string;
  legacy: boolean;
}

interface SizeResult {
  population: Population;
  state: BuiltState;
  cycles: CycleSample[];
  warmup: CycleSample;
  minuteSeconds: number[];
  profile: Profile | null;
  /** One cycle over a minute in which every BURST_EVERY-th service sent nothing (thousands of anomalies at once). */
  burst: { operations: number; sample: CycleSample };
  recompute: Recompute;
}

// A cluster of its own (not the demo's .data/pg17): a demo or test sharing that server would stop it under a long run,
// and the gigabytes of state stay out of it. DATABASE_URL still wins.
const server = await startDatabase({
  dataDir: path.join(REPO_ROOT, ".data", "pg17-bench-detect"),
  port: Number(process.env.TS_BENCH_PG_PORT || 54335),
});
const results: SizeResult[] = [];
let detectors: Detector[] = [];
let windowMinutes = 0;
let context = "";
try {
  // 1. A migrated template (compat + `supabase db push` + the generator's schema); every size starts from a copy.
  log(`migrating the template database ${TEMPLATE}`);
  const template = await recreateDatabase(server.url, TEMPLATE);
  await prepareDatabase(template);
  let windowNeeds: { detector: string; key: string; minutes: number }[] = [];
  {
    const sql = postgres(template, { max: 1, ...noNotices });
    await sql`update anomaly.jobs set enabled = false`; // nothing else competes for the database during the run
    await installBenchSchema(sql);
    detectors = await sql<Detector[]>`
      select name, family, function_name as fn, legacy from anomaly.detectors where enabled order by family, name`;
    // how far back each detector reads: its *window_minutes, or lookback + baseline minutes together
    windowNeeds = await sql<{ detector: string; key: string; minutes: number }[]>`
      select d.name as detector, string_agg(e.key, ' + ') as key,
             greatest(max(e.value::int) filter (where e.key like '%window_minutes'),
                      sum(e.value::int) filter (where e.key ~ '(lookback|baseline)_minutes$'))::int as minutes
      from anomaly.detectors d, jsonb_each_text(anomaly.config(d.config_key)) e
      where d.enabled and e.key ~ '(window|lookback|baseline)_minutes$' and e.value ~ '^[0-9]+$'
      group by d.name`;
    const [s] = await sql<Record<string, string>[]>`
      select current_setting('server_version') as version, current_setting('shared_buffers') as shared_buffers,
             current_setting('work_mem') as work_mem, current_setting('synchronous_commit') as synchronous_commit,
             current_setting('max_parallel_workers_per_gather') as parallel, current_setting('is_superuser') as su`;
    context = `${server.embedded ? "embedded Postgres" : "DATABASE_URL: Postgres"} ${s.version} ` +
      `(shared_buffers ${s.shared_buffers}, work_mem ${s.work_mem}, synchronous_commit ${s.synchronous_commit}, ` +
      `${s.parallel} parallel workers per gather), ${process.platform}/${process.arch}, ` +
      `${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, load average at the start ` +
      os.loadavg()[0].toFixed(1);
    await sql.end();
  }
  if (detectors.length === 0) throw new Error("no enabled detector is registered in anomaly.detectors");

  log(`detectors: ${detectors.map((d) => d.name).join(", ")}`);
  // The trailing window the state holds: what the hungriest detector reads back plus 5 minutes, and at least
  // MIN_WINDOW. Fewer than ~100 distinct minutes would all land in ANALYZE's most-common-values list, and the
  // planner would then estimate 1 row for every new minute (a plan production, with 8 days of points, never sees).
  const need = windowNeeds.reduce((a, w) => (w.minutes > a.minutes ? w : a), {
    detector: "",
    key: "",
    minutes: 0,
  });
  windowMinutes = args.window ? Number(args.window) : Math.max(MIN_WINDOW, need.minutes + 5);
  if (!Number.isInteger(windowMinutes) || windowMinutes < 31) {
    throw new Error("--window must be an integer of at least 31 minutes");
  }
  log(
    `trailing window: ${windowMinutes} min (${
      need.detector || "no detector"
    } reads back ${need.minutes} min)`,
  );
  if (windowMinutes < MIN_WINDOW) {
    log(`WARNING: a window under ${MIN_WINDOW} min gives the planner row estimates production does not have`);
  }
  for (const w of windowNeeds.filter((w) => w.minutes >= windowMinutes)) {
    log(
      `WARNING: ${w.detector} reads ${w.key} = ${w.minutes} min, more than the ${windowMinutes} min of the state`,
    );
  }

  header();

  // 2. Each size: fresh database, synthetic state, cycles, a profiled cycle, the full recompute.
  for (const ops of SIZES) {
    log(`${ops.toLocaleString("en-US")} operations: building the state of ${HISTORY_DAYS} days of history`);
    const url = await recreateDatabase(server.url, `${DATABASE}_${ops}`, TEMPLATE);
    const setup = postgres(url, { max: 2, ...noNotices, connection: { maintenance_work_mem: "512MB" } });
    const sql = postgres(url, { max: 1, ...noNotices });
    try {
      const population = await populate(setup, ops, T0, args.deploys ? Number(args.deploys) : undefined);
      const [{ slot }] = await setup<{ slot: number }[]>`
        select (anomaly.config('detect.baseline') ->> 'day_slot_minutes')::int as slot`;
      const state = await buildState(setup, T0, windowMinutes, slot, log);
      await setup.end();

      const track = await canTrackFunctions(sql);
      const minuteSeconds: number[] = [];
      const samples: CycleSample[] = [];
      let measured = 0;
      for (let i = 0; i <= CYCLES; i++) {
        if (i > 2 && measured > CYCLE_SECONDS) {
          log(`  stopping after ${i - 1} measured cycles (--cycle-seconds ${CYCLE_SECONDS})`);
          break;
        }
        const bucket = new Date(T0.getTime() + i * 60_000);
        const t = performance.now();
        await loadMinute(sql, bucket);
        minuteSeconds.push((performance.now() - t) / 1000);
        const sample = await runCycle(sql, bucket, track);
        samples.push(sample);
        if (i > 0) measured += sample.seconds;
        log(
          `  cycle ${i === 0 ? "0 (warm-up)" : i}: ${sample.seconds.toFixed(3)} s, ${sample.hits} hits, ` +
            `${sample.opened} opened / ${sample.updated} updated${
              sample.errors.length ? `, ${sample.errors.length} detector errors` : ""
            }`,
        );
      }
      // One cycle under auto_explain, at the sizes up to the target's (the larger ones only cost time).
      let profile: Profile | null = null;
      if (ops <= Math.max(TARGET_SERIES, Math.min(...SIZES))) {
        const profileBucket = new Date(T0.getTime() + samples.length * 60_000);
        await loadMinute(sql, profileBucket);
        profile = await profileCycle(url, profileBucket, EXPLAIN_MS);
        if (profile) log(`  profiled cycle (auto_explain): ${profile.seconds.toFixed(3)} s`);
      }
      // A partial outage: a tenth of the services silent in one minute while the watermark advances, so one cycle
      // opens an anomaly for most of their series (the lifecycle must stay linear in that count).
      const burstBucket = new Date(T0.getTime() + (samples.length + (profile ? 1 : 0)) * 60_000);
      await loadMinute(sql, burstBucket);
      const burstOps = await silenceServices(sql, burstBucket, BURST_EVERY);
      const burstSample = await runCycle(sql, burstBucket, track);
      log(
        `  burst cycle (every ${BURST_EVERY}th service silent, ${int(burstOps)} operations): ` +
          `${burstSample.seconds.toFixed(3)} s, ${burstSample.hits} hits, ${burstSample.opened} opened`,
      );
      const recompute = await fullRecompute(sql, T0, RECOMPUTE_POINTS, log);
      log(
        `  full recompute: ${recompute.measuredSeconds.toFixed(1)} s measured` +
          (recompute.extrapolated
            ? `, ${recompute.seconds.toFixed(1)} s extrapolated to 7 days x all series`
            : ""),
      );
      const result: SizeResult = {
        population,
        state,
        cycles: samples.slice(1),
        warmup: samples[0],
        minuteSeconds,
        profile,
        burst: { operations: burstOps, sample: burstSample },
        recompute,
      };
      results.push(result);
      details(result);
    } finally {
      await setup.end().catch(() => {});
      await sql.end({ timeout: 5 });
    }
    if (!args.keep) await dropDatabase(server.url, `${DATABASE}_${ops}`);
  }
  await dropDatabase(server.url, TEMPLATE);
  summary();
} finally {
  await server.stop();
}

// ------------------------------------------------------------------------------------------ report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nearest-rank percentile. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(p * s.length) - 1)];
}

function int(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
function pad(s: string, n: number): string {
  return s.padStart(n);
}
function padr(s: string, n: number): string {
  return s.padEnd(n);
}

function out(line = ""): void {
  console.log(line);
}

/** What was measured and how: printed once, before the first size. */
function header(): void {
  out(`detection-cycle benchmark: ${context}`);
  out(
    `"series" = service+operation pairs (${OPS_PER_SERVICE} per service); each is 3 signal series (latency ` +
      `p95, error rate, throughput), and each service adds 4 (throughput, error rate, cpu, memory) and 2 for each of ` +
      `the two services it calls (calls, error rate of the edge).`,
  );
  out(
    `state: what ${HISTORY_DAYS} days of minute history leave behind (series_state with n = ${
      int(HISTORY_DAYS * 1440)
    }, every day and week seasonal slot filled) + the trailing ${windowMinutes} min of signal points and rollups, ` +
      `not the ${HISTORY_DAYS} days of points themselves. The bulk tables are analyzed, not vacuumed (recent points ` +
      `not all-visible, as in production between the rare insert-triggered vacuums); autovacuum is off on them.`,
  );
  out(
    `cycle: one new minute of rollups (incidents injected: latency x4, errors 40 %, throughput x0.1, silence), ` +
      `watermark +1 min, \`select * from anomaly.detect()\` incl. commit; median and p90 (nearest rank) of ` +
      `consecutive cycles after 1 warm-up cycle.`,
  );
  out(`detectors enabled: ${detectors.map((d) => d.name + (d.legacy ? " (legacy)" : "")).join(", ")}`);
}

/** The table of the issue, after all sizes. */
function summary(): void {
  out("");
  const head = [
    "series",
    "signal series",
    "cycles",
    "cycle median (s)",
    "p90 (s)",
    "burst (s)",
    "full recompute (s)",
    "speed-up",
  ];
  const widths = [8, 14, 6, 17, 8, 10, 20, 9];
  out(head.map((h, i) => pad(h, widths[i])).join("  "));
  for (const r of results) {
    const times = r.cycles.map((c) => c.seconds);
    const m = median(times);
    const rc = r.recompute;
    out(
      [
        int(r.population.operations),
        int(r.population.signalSeries),
        String(times.length),
        m.toFixed(3),
        pct(times, 0.9).toFixed(3),
        r.burst.sample.seconds.toFixed(3),
        `${rc.seconds < 100 ? rc.seconds.toFixed(1) : int(rc.seconds)}${rc.extrapolated ? " *" : ""}`,
        `${int(rc.seconds / m)}x`,
      ].map((v, i) => pad(v, widths[i])).join("  "),
    );
  }
  const load = os.loadavg().map((x) => x.toFixed(1)).join(" / ");
  out(
    `load average at the end (1 / 5 / 15 min): ${load} on ${os.cpus().length} CPUs (others' work inflates times)`,
  );
  const atTarget = results.find((r) => r.population.operations === TARGET_SERIES);
  const m = atTarget ? median(atTarget.cycles.map((c) => c.seconds)) : undefined;
  out(
    `target (issue): < ${TARGET_SECONDS} s per cycle at ${int(TARGET_SERIES)} series on this machine: ` +
      (m === undefined
        ? "not measured in this run"
        : m < TARGET_SECONDS
        ? `MET (${m.toFixed(3)} s)`
        : `MISSED (${m.toFixed(3)} s, ${(m / TARGET_SECONDS).toFixed(1)}x the target)`),
  );
  out(
    "full recompute = rebuilding the baselines from raw minute points, set-based (seasonal day/week profiles and " +
      "EWMA mean/variance by GROUP BY, written and indexed; work_mem 64MB). Holt and CUSUM are recursive and not " +
      "included, so it is a lower bound. speed-up = full recompute / cycle median. burst = one cycle over a minute " +
      `in which every ${BURST_EVERY}th service sent nothing (most of their series open an anomaly at once).`,
  );
  for (const r of results.filter((x) => x.recompute.extrapolated)) {
    const rc = r.recompute;
    out(
      `* extrapolated: at ${int(r.population.operations)} series measured on ${rc.days} day x ${
        int(rc.series)
      } ` +
        `of ${int(rc.seriesTotal)} signal series (${int(rc.points)} points, ${
          rc.measuredSeconds.toFixed(1)
        } s) and ` +
        `scaled linearly x${
          ((7 / rc.days) * (rc.seriesTotal / rc.series)).toFixed(1)
        } to 7 days x all series.`,
    );
  }
}

/** One size's breakdown, printed as soon as it is measured. */
function details(r: SizeResult): void {
  const c = r.cycles;
  const all = [r.warmup, ...c];
  const s = r.state;
  const gib = (s.sizeBytes / 2 ** 30).toFixed(1);
  out("");
  out(
    `--- ${int(r.population.operations)} series (${int(r.population.services)} services, ` +
      `${
        int(r.population.signalSeries)
      } signal series, ${r.population.incidents} operations with incidents, ` +
      `${r.population.deployingServices} services deploying a new version)`,
  );
  out(
    `state: ${int(s.signalPoints)} signal points, ${int(s.operationMinutes)} operation-minutes, ` +
      `${int(s.profileRows)} seasonal-profile rows; ${gib} GiB, built in ${s.seconds.toFixed(0)} s.`,
  );
  const minute = median(r.minuteSeconds).toFixed(2);
  out(
    `cycles: ${c.length} measured after a warm-up of ${
      r.warmup.seconds.toFixed(3)
    } s; writing each new minute ` +
      `of rollups took ${minute} s (rollup's work, not part of the cycle).`,
  );
  const errors = new Map<string, string>();
  for (const x of all) for (const e of x.errors) errors.set(e.detector, e.message);
  const runMs = median(c.map((x) => x.runMs)).toFixed(0);
  const lifecycle = `${sum(all, "opened")} opened, ${sum(all, "updated")} updated, ${
    sum(all, "resolved")
  } resolved`;
  out(
    `anomaly.detection_runs (median per cycle): ${runMs} ms in the database, ` +
      `${int(median(c.map((x) => x.rowsRead)))} points extracted, ${
        int(median(c.map((x) => x.hits)))
      } hits; ` +
      `anomalies over all ${all.length} cycles: ${lifecycle}; detector errors: ` +
      (errors.size ? [...errors].map(([d, m]) => `${d}: ${m}`).join("; ") : "none"),
  );
  const b = r.burst.sample;
  const lifecycleMs = (b.functions.get("anomaly.apply_hits")?.totalMs ?? 0).toFixed(0);
  out(
    `burst: a minute in which every ${BURST_EVERY}th service sent nothing (${
      int(r.burst.operations)
    } operations; ` +
      `a partial outage while the watermark advances): ${b.seconds.toFixed(3)} s, ${int(b.hits)} hits, ` +
      `${int(b.opened)} anomalies opened (lifecycle, apply_hits incl. the alert and incident triggers: ` +
      `${lifecycleMs} ms).`,
  );

  if (c[0].functions.size === 0) {
    out("per-step times: not available (track_functions needs a superuser)");
  } else {
    const cycleMs = median(c.map((x) => x.seconds * 1000));
    const fnMs = (name: string) => median(c.map((x) => x.functions.get(name)?.totalMs ?? 0));
    const steps: [string, number][] = [
      ["extract_signals", fnMs("anomaly.extract_signals")],
      ...detectors.map((d) => [`detector ${d.name}`, fnMs(d.fn)] as [string, number]),
      ["update_baselines", fnMs("anomaly.update_baselines")],
      ["apply_hits", fnMs("anomaly.apply_hits")],
    ];
    const detectMs = fnMs("anomaly.detect");
    const known = steps.reduce((a, [, v]) => a + v, 0);
    steps.push(["rest of detect() (hit inserts, loop, run row)", Math.max(0, detectMs - known)]);
    steps.push(["commit + client round trip", Math.max(0, cycleMs - detectMs)]);
    out("step (pg_stat_xact_user_functions, median of cycles)      ms   share");
    for (const [name, ms] of [...steps].sort((a, b) => b[1] - a[1])) {
      const share = ((100 * ms) / cycleMs).toFixed(0);
      out(`  ${padr(name, 50)} ${pad(ms.toFixed(1), 8)}  ${pad(share, 4)} %`);
    }
    const stepFns = new Set([
      "anomaly.detect",
      "anomaly.extract_signals",
      "anomaly.update_baselines",
      "anomaly.apply_hits",
      ...detectors.map((d) => d.fn),
    ]);
    const helpers = [...c[0].functions.entries()]
      .filter(([f]) => !stepFns.has(f) && !f.startsWith("bench."))
      .map(([f, t]) => ({ f, calls: t.calls, ms: median(c.map((x) => x.functions.get(f)?.selfMs ?? 0)) }))
      .filter((h) => h.ms >= 1).sort((a, b) => b.ms - a.ms).slice(0, 5);
    if (helpers.length) {
      const list = helpers.map((h) => `${h.f} ${h.ms.toFixed(1)} ms in ${int(h.calls)} calls`).join(", ");
      out(`  helper functions inside those (self time): ${list}`);
    }
  }

  if (r.profile) {
    out(
      `profiled cycle: ${
        r.profile.seconds.toFixed(3)
      } s under auto_explain (analyze + timing, which inflates ` +
        `nested loops; statements >= ${EXPLAIN_MS} ms). Costliest statements, and their costliest plan nodes by ` +
        `exclusive time:`,
    );
    for (const st of r.profile.statements.slice(0, 8)) {
      const times = st.count > 1 ? ` (x${st.count})` : "";
      out(`  ${pad(st.ms.toFixed(0), 6)} ms  ${st.where}: ${st.excerpt}${times}`);
      for (const n of st.nodes.slice(0, 3).filter((n) => n.selfMs >= 1)) {
        const loops = n.loops > 1 ? `, ${int(n.loops)} loops` : "";
        out(`  ${pad(n.selfMs.toFixed(0), 6)} ms      ${n.label} (${int(n.rows)} rows${loops})`);
      }
    }
  }
  if (c[0].functions.has("anomaly.update_baselines")) {
    const ms = median(c.map((x) => x.functions.get("anomaly.update_baselines")?.totalMs ?? 0));
    out(
      `replaying update_baselines (with Holt and CUSUM) over ${HISTORY_DAYS} days instead would take ` +
        `~${int((ms * HISTORY_DAYS * 1440) / 1000)} s (${int(HISTORY_DAYS * 1440)} x ${ms.toFixed(1)} ms).`,
    );
  }
}

function sum(xs: CycleSample[], key: "opened" | "updated" | "resolved"): number {
  return xs.reduce((a, x) => a + x[key], 0);
}
