// scripts/bench/quality/corpus.ts — the labelled corpus of `npm run bench:quality`: one simulator run per scenario
// (clean warm-up history, the fault, a tail to see it end) plus clean days with normal diurnal traffic, in a full
// and a `--quick` size. Pure: it only plans runs; the simulator's ground truth labels them.

export interface RunPlan {
  /** Unique, also part of the database name: [a-z0-9_]. */
  id: string;
  kind: "scenario" | "clean";
  /** The scenario this run is about ("clean" for clean runs). */
  scenario: string;
  /** Simulator scenario texts (offsets from the run start). */
  scenarios: string[];
  /** Run start (ISO, whole minute, in the past). */
  start: string;
  minutes: number;
  /** Traces per minute at the weekday peak. */
  rate: number;
  seed: number;
  /** Minutes of clean history before the fault (0 for clean runs). */
  warmup: number;
  /**
   * Minute (from the run start) at which live cycles begin. Before it the history is ingested and rolled up in bulk
   * and the engine's first cycle learns its baselines from it — its own cold-start path, as when it is installed on
   * a database that already holds rollups. 0 steps every minute of the run live (--live-warmup).
   */
  liveFrom: number;
  /**
   * Minute from which anomalies count (first_seen at or after it). Earlier ones are cold start (no baseline yet,
   * or scored from bulk history), not steady state; for clean runs, the time before it is not counted as clean.
   */
  countFrom: number;
}

export interface CorpusOptions {
  quick: boolean;
  /** Clean minutes before each fault. Default 180 (quick: 65). The z-score detectors need 60 minutes. */
  warmup?: number;
  /** Peak traces/minute of scenario runs. Default 90 (quick: 60). */
  rate?: number;
  /** Simulated clean days. Default 1 (quick: 0.125, three hours). */
  cleanDays?: number;
  /** Peak traces/minute of clean days. Default 40 (quick: 30). */
  cleanRate?: number;
  /** Only these scenarios (names); default all. */
  only?: string[];
  /** Base seed. Default 11. */
  seed?: number;
  /**
   * Draw the whole corpus once per seed (run ids get a `_s<seed>` suffix); overrides `seed`. One corpus of one
   * incident per kind is small: tuning on one draw overfits it.
   */
  seeds?: number[];
  /** Unscored minutes at the start of every run. Default BURN_IN (capped at the warm-up). */
  burnIn?: number;
  /** Step every minute of the warm-up live instead of loading it in bulk. */
  liveWarmup?: boolean;
  /** Live minutes before each fault when the warm-up is loaded in bulk. Default 30 (quick: 15). */
  liveLead?: number;
}

/** Default burn-in: the default detectors' trailing window is 60 minutes. */
export const BURN_IN = 60;

export interface Fault {
  scenario: string;
  /** Simulator scenario; `@W` is replaced by the warm-up offset. */
  spec: string;
  minutes: number;
  /** A shorter variant for --quick (same kind and size of fault, less time). */
  quick?: { spec: string; minutes: number };
  note: string;
}

/** The faults of the corpus: the list, each at a fixed size. */
export const FAULTS: readonly Fault[] = [
  {
    scenario: "latency_regression",
    spec: "latency_regression@W:service=inventory,factor=2.5,duration=30m",
    minutes: 30,
    quick: { spec: "latency_regression@W:service=inventory,factor=2.5,duration=15m", minutes: 15 },
    note: "a deploy of inventory makes it 2.5x slower (rolled back after 30 minutes)",
  },
  {
    scenario: "error_spike",
    spec: "error_spike@W:service=payments,rate=0.3,duration=3m",
    minutes: 3,
    note: "a short error spike: 30 % of payments calls fail for 3 minutes",
  },
  {
    scenario: "traffic_spike",
    spec: "traffic_spike@W:factor=3,duration=10m",
    minutes: 10,
    note: "3x entry traffic for 10 minutes",
  },
  {
    scenario: "traffic_drop",
    spec: "traffic_drop@W:factor=0.2,duration=15m",
    minutes: 15,
    note: "entry traffic drops to 20 % for 15 minutes",
  },
  {
    scenario: "cpu_spike",
    spec: "cpu_spike@W:service=inventory,level=0.95,duration=10m",
    minutes: 10,
    note: "inventory CPU at 95 % for 10 minutes (latency unchanged)",
  },
  {
    scenario: "slow_degradation",
    spec: "slow_degradation@W:service=users,factor=3,duration=60m",
    minutes: 60,
    quick: { spec: "slow_degradation@W:service=users,factor=3,duration=30m", minutes: 30 },
    note: "users latency creeps up to 3x over an hour",
  },
];

/** Minutes simulated after a fault ends (recovery, and the +10 minute match window). */
const TAIL_MINUTES = 15;
/** Every fault starts at this UTC time of a weekday (near the diurnal peak at 15:00). */
const FAULT_AT = "2026-11-18T14:00:00Z";
/** Counted clean time starts at midnight of a weekday (quick: 09:00, into the daily ramp-up). */
const CLEAN_START = "2026-11-17T00:00:00Z";
const QUICK_CLEAN_START = "2026-11-17T09:00:00Z";

export function planCorpus(opts: CorpusOptions): RunPlan[] {
  if (opts.seeds && opts.seeds.length > 0) {
    const seeds = opts.seeds;
    return seeds.flatMap((seed) =>
      planCorpus({ ...opts, seeds: undefined, seed }).map((r) =>
        seeds.length > 1 ? { ...r, id: `${r.id}_s${seed}` } : r
      )
    );
  }
  const q = opts.quick;
  const warmup = opts.warmup ?? (q ? 65 : 180);
  const rate = opts.rate ?? (q ? 60 : 90);
  const cleanDays = opts.cleanDays ?? (q ? 0.125 : 1);
  const cleanRate = opts.cleanRate ?? (q ? 30 : 40);
  const seed = opts.seed ?? 11;
  const only = opts.only && opts.only.length > 0 ? new Set(opts.only) : null;
  const burnIn = opts.burnIn ?? BURN_IN;
  const liveLead = opts.liveLead ?? (q ? 15 : 30);
  const runs: RunPlan[] = [];
  FAULTS.forEach((fault, i) => {
    if (only && !only.has(fault.scenario)) return;
    const f = q && fault.quick ? { ...fault, ...fault.quick } : fault;
    const start = new Date(Date.parse(FAULT_AT) - warmup * 60_000).toISOString();
    runs.push({
      id: f.scenario,
      kind: "scenario",
      scenario: f.scenario,
      scenarios: [f.spec.replace("@W", `@${warmup}m`)],
      start,
      minutes: warmup + f.minutes + TAIL_MINUTES,
      rate,
      seed: seed + i,
      warmup,
      ...(opts.liveWarmup
        ? { liveFrom: 0, countFrom: Math.min(burnIn, warmup) }
        : { liveFrom: Math.max(0, warmup - liveLead), countFrom: Math.max(0, warmup - liveLead) }),
    });
  });
  if (!only || only.has("clean")) {
    const counted = Math.max(60, Math.round(cleanDays * 1440));
    // A harmless deploy halfway through (a negative example for deploy detectors).
    const deployAt = burnIn + Math.floor(counted / 2);
    runs.push({
      id: "clean",
      kind: "clean",
      scenario: "clean",
      scenarios: [`deploy@${deployAt}m:service=frontend`],
      start: new Date(Date.parse(q ? QUICK_CLEAN_START : CLEAN_START) - burnIn * 60_000).toISOString(),
      minutes: burnIn + counted,
      rate: cleanRate,
      seed: seed + 100,
      warmup: 0,
      liveFrom: opts.liveWarmup ? 0 : burnIn,
      countFrom: burnIn,
    });
  }
  return runs;
}
