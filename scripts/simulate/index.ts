// scripts/simulate/index.ts — the simulator as a library: `simulate(options)` generates the shop's traffic
// (back-dated as fast as the receiver allows, or live in real time), sends it through the OpenTelemetry SDK's
// OTLP exporters, and writes the ground truth of what it injected. The CLI (main.ts), the demo, integration
// tests and benchmarks all call this.

import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { generateMinute, type MinuteBatch, resourceAttributes, type RunPlan } from "./generate.ts";
import {
  captureExporterDiagnostics,
  createOtlpExporter,
  DiscardingExporter,
  OtelEmitter,
  type Protocol,
  tracesUrl,
} from "./otel.ts";
import {
  Effects,
  parseScenario,
  type ResolvedScenario,
  resolveScenarios,
  type ScenarioSpec,
  type TruthEvent,
  type TruthIncident,
  truthOf,
} from "./scenarios.ts";
import { floorMinute, iso, MS, parseStart } from "./time.ts";
import { SERVICES } from "./topology.ts";
import { DEFAULT_DIURNAL, type DiurnalModel } from "./traffic.ts";

export { parseScenario, scenario, SCENARIO_NAMES, ScenarioError } from "./scenarios.ts";
export type { AnomalyType, ScenarioName, ScenarioSpec, TruthEvent, TruthIncident } from "./scenarios.ts";
export type { Protocol } from "./otel.ts";

export const DEFAULT_ENDPOINT = "http://127.0.0.1:54321/functions/v1/otlp-ingest";
export const DEFAULT_TRUTH_PATH = ".data/ground-truth.json";

export interface SimulateOptions {
  /** Base URL; spans go to `<endpoint>/v1/traces`. Default DEFAULT_ENDPOINT. */
  endpoint?: string;
  /** Sent as header `x-ingest-key`. Default: env TS_INGEST_KEY (none if unset). */
  key?: string | null;
  /** Extra request headers (e.g. Authorization for a Supabase function that verifies JWTs). */
  headers?: Record<string, string>;
  /** "proto" (application/x-protobuf, default) or "json" (application/json). */
  protocol?: Protocol;
  /** Pace in real time from now instead of back-dating. */
  live?: boolean;
  /**
   * Back-dated start: ISO text, relative text ("-6h"), epoch ms or Date; floored to the minute.
   * Default: `minutes` before now, so the run ends about now. Not allowed with `live` (a live run starts at
   * the current instant, not on a minute boundary).
   */
  start?: string | number | Date;
  /** Simulated minutes. Default 60. */
  minutes?: number;
  /** Traces per minute at the weekday peak. Default 120. */
  rate?: number;
  /** PRNG seed; the same seed, start and scenarios give the same spans. Default 1. */
  seed?: number;
  /** Scenario texts (`error_spike@30m:service=payments`) or specs from `scenario()`. */
  scenarios?: Array<string | ScenarioSpec>;
  /** Where to write the ground truth JSON; null writes nothing. Default DEFAULT_TRUTH_PATH. */
  truthPath?: string | null;
  /** Overrides of the diurnal model (amplitude, peakHourUtc, weekendFactor, minuteJitter). */
  diurnal?: Partial<DiurnalModel>;
  /** deployment.environment.name on every resource. Default "production". */
  environment?: string;
  /** Generate and run everything through the SDK, but send nothing. */
  dryRun?: boolean;
  /** Use this exporter instead of an OTLP one (tests, benchmarks). */
  exporter?: SpanExporter;
  /** Spans per export request. Default 2000. */
  batchSize?: number;
  /** Export requests in flight while back-dating. Default 4. */
  concurrency?: number;
  /** Per-request timeout including the exporter's retries (429/502/503/504). Default 30000. */
  exportTimeoutMs?: number;
  /** Give up when this many export requests failed and none succeeded. Default 3. */
  failFastAfter?: number;
  signal?: AbortSignal;
  /** Called after each simulated minute. */
  onProgress?: (progress: SimulationProgress) => void;
  /** Print exporter diagnostics to stderr. */
  verbose?: boolean;
  /** Clock (epoch ms); for tests. */
  now?: () => number;
}

export interface SimulationProgress {
  minute: number;
  minutes: number;
  simulatedTime: string;
  traces: number;
  spans: number;
  exportedSpans: number;
  failedSpans: number;
  pendingSpans: number;
}

export type RunStatus = "running" | "complete" | "interrupted" | "failed";

export interface GroundTruthRun {
  status: RunStatus;
  mode: "backdated" | "live";
  seed: number;
  start: string;
  /** End of the simulated window (exclusive); for an interrupted or failed run, of what was generated. */
  end: string;
  minutes: number;
  /** Minutes actually generated (less than `minutes` when interrupted or failed). */
  minutes_generated: number;
  rate: number;
  protocol: Protocol | null;
  endpoint: string | null;
  dry_run: boolean;
  scenarios: string[];
  diurnal: DiurnalModel;
  environment: string;
  services: Array<{ name: string; version: string; instances: number }>;
  traces: number;
  spans: number;
  /** Traces whose root (frontend) span has status ERROR. */
  error_traces: number;
  exported_spans: number;
  failed_spans: number;
  rejected_spans: number;
  export_requests: number;
  failed_requests: number;
  errors: string[];
  generated_at: string;
  wall_seconds: number;
}

export interface GroundTruth {
  schema: "trace-sentinel/ground-truth@1";
  run: GroundTruthRun;
  incidents: TruthIncident[];
  events: TruthEvent[];
}

export interface SimulationResult {
  /** Every span was exported and none was rejected or failed. */
  ok: boolean;
  status: RunStatus;
  truth: GroundTruth;
  truthPath: string | null;
  traces: number;
  spans: number;
  exportedSpans: number;
  failedSpans: number;
  rejectedSpans: number;
  exportRequests: number;
  failedRequests: number;
  errors: string[];
  wallSeconds: number;
  tracesPerSecond: number;
  spansPerSecond: number;
}

/** Invalid simulate() options (bad start, minutes, rate, …); scenario problems throw ScenarioError. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

interface Prepared {
  plan: RunPlan;
  resolved: ResolvedScenario[];
  specs: ScenarioSpec[];
  live: boolean;
}

/** Validates options and builds the run plan (no I/O). Throws with a clear message on bad input. */
export function prepareRun(options: SimulateOptions): Prepared {
  const now = (options.now ?? Date.now)();
  const minutes = options.minutes ?? 60;
  if (!Number.isInteger(minutes) || minutes < 1) {
    throw new ConfigError(`minutes must be a whole number ≥ 1, got ${minutes}`);
  }
  const rate = options.rate ?? 120;
  if (!(rate > 0) || !Number.isFinite(rate)) {
    throw new ConfigError(`rate must be a positive number, got ${rate}`);
  }
  const seed = options.seed ?? 1;
  if (!Number.isInteger(seed)) throw new ConfigError(`seed must be an integer, got ${seed}`);
  const live = options.live ?? false;
  if (live && options.start !== undefined) {
    throw new ConfigError("start cannot be combined with live (a live run starts now)");
  }
  let startMs: number;
  if (live) startMs = Math.floor(now); // live runs start now and last exactly `minutes`
  else if (options.start === undefined) startMs = floorMinute(now) - minutes * MS.m;
  else if (options.start instanceof Date) startMs = floorMinute(options.start.getTime());
  else if (typeof options.start === "number") startMs = floorMinute(options.start);
  else {
    try {
      startMs = floorMinute(parseStart(options.start, now));
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  }
  if (Number.isNaN(startMs)) throw new ConfigError("start is not a valid time");
  if (!live && startMs + minutes * MS.m > now + MS.m) {
    throw new ConfigError(
      `a back-dated run from ${iso(startMs)} for ${minutes} minutes would end in the future (${
        iso(startMs + minutes * MS.m)
      }); use an earlier start, fewer minutes, or live mode`,
    );
  }
  const specs = (options.scenarios ?? []).map((s) => typeof s === "string" ? parseScenario(s) : s);
  const resolved = resolveScenarios(specs, startMs, minutes);
  const diurnal = { ...DEFAULT_DIURNAL, ...options.diurnal };
  const plan: RunPlan = {
    seed,
    startMs,
    minutes,
    rate,
    diurnal,
    effects: new Effects(resolved, seed),
    environment: options.environment ?? "production",
  };
  return { plan, resolved, specs, live };
}

/** Runs a simulation. Resolves with counts; rejects only on invalid options. */
export async function simulate(options: SimulateOptions = {}): Promise<SimulationResult> {
  const wallStart = performance.now();
  const { plan, resolved, specs, live } = prepareRun(options);
  const clock = options.now ?? Date.now;
  const batchSize = options.batchSize ?? 2000;
  const concurrency = options.concurrency ?? 4;
  const highWater = batchSize * concurrency;
  const protocol = options.protocol ?? "proto";
  if (protocol !== "proto" && protocol !== "json") {
    throw new ConfigError(`protocol must be proto or json, got ${protocol}`);
  }
  const endpoint = options.endpoint ?? DEFAULT_ENDPOINT;
  const usesOtlp = !options.dryRun && options.exporter === undefined;
  const key = options.key === undefined ? process.env.TS_INGEST_KEY : options.key;
  const headers: Record<string, string> = { ...options.headers };
  if (key) headers["x-ingest-key"] = key;

  const exporter = options.exporter ?? (options.dryRun ? new DiscardingExporter() : createOtlpExporter({
    protocol,
    endpoint,
    headers,
    timeoutMillis: options.exportTimeoutMs ?? 30_000,
    concurrencyLimit: concurrency + 4,
  }));
  const batches = new Map<number, MinuteBatch>();
  const emitter = new OtelEmitter({
    exporter,
    maxExportBatchSize: batchSize,
    maxQueueSize: highWater * 4 + 100_000,
    scheduledDelayMillis: live ? 1000 : 200,
    exportTimeoutMillis: (options.exportTimeoutMs ?? 30_000) + 5000,
    resourceAttributes: (service, instance, version, minute) =>
      resourceAttributes(plan, batches.get(minute)!, service, instance, version),
  });
  const uninstall = captureExporterDiagnostics(emitter.counting, options.verbose ?? false);
  const counters = emitter.counting.counters;
  const failFastAfter = options.failFastAfter ?? 3;

  const truthPath = options.truthPath === undefined ? DEFAULT_TRUTH_PATH : options.truthPath;
  const { incidents, events } = truthOf(resolved);
  let status: RunStatus = "running";
  let minutesDone = 0;
  let errorTraces = 0;
  const truth = (): GroundTruth => {
    const endMs = plan.startMs + minutesDone * MS.m;
    const cut = status === "interrupted" || status === "failed";
    return {
      schema: "trace-sentinel/ground-truth@1",
      run: {
        status,
        mode: live ? "live" : "backdated",
        seed: plan.seed,
        start: iso(plan.startMs),
        end: iso(cut ? endMs : plan.startMs + plan.minutes * MS.m),
        minutes: plan.minutes,
        minutes_generated: minutesDone,
        rate: plan.rate,
        protocol: usesOtlp ? protocol : null,
        endpoint: usesOtlp ? tracesUrl(endpoint) : null,
        dry_run: options.dryRun ?? false,
        scenarios: specs.map((s) => s.raw),
        diurnal: plan.diurnal,
        environment: plan.environment,
        services: SERVICES.map((s) => ({ name: s.name, version: s.version, instances: s.instances })),
        traces: emitter.tracesEmitted,
        spans: emitter.spansEnded,
        error_traces: errorTraces,
        exported_spans: counters.exportedSpans,
        failed_spans: counters.failedSpans,
        rejected_spans: counters.rejectedSpans,
        export_requests: counters.requests,
        failed_requests: counters.failedRequests,
        errors: [...counters.errors],
        generated_at: new Date().toISOString(),
        wall_seconds: round3((performance.now() - wallStart) / 1000),
      },
      // An interrupted run only claims the incidents it actually generated.
      incidents: cut
        ? incidents.filter((i) => Date.parse(i.start) < endMs).map((i) =>
          Date.parse(i.end) > endMs ? { ...i, end: iso(endMs), truncated: true } : i
        )
        : incidents,
      events: cut ? events.filter((e) => Date.parse(e.at) < endMs) : events,
    };
  };
  if (truthPath !== null) await writeJson(truthPath, truth());

  const failedFast = () =>
    failFastAfter > 0 && counters.failedRequests >= failFastAfter && counters.exportedSpans === 0;
  const stopped = () => options.signal?.aborted === true || failedFast();

  try {
    for (let m = 0; m < plan.minutes && !stopped(); m++) {
      const batch = generateMinute(plan, m);
      batches.set(m, batch);
      if (live) {
        const queue = [...batch.traces].sort((a, b) => a.startUs + a.durationUs - (b.startUs + b.durationUs));
        let i = 0;
        while (i < queue.length && !stopped()) {
          const nowUs = clock() * 1000;
          while (i < queue.length && queue[i].startUs + queue[i].durationUs <= nowUs) {
            emitter.emitTrace(queue[i], m);
            if (queue[i].error) errorTraces++;
            i++;
          }
          if (i < queue.length) {
            const waitMs = (queue[i].startUs + queue[i].durationUs - nowUs) / 1000;
            await sleep(Math.min(500, Math.max(1, waitMs)), options.signal);
          }
        }
        if (!stopped() && m === plan.minutes - 1) {
          // Let the last minute run out on the wall clock before finishing.
          const endMs = plan.startMs + plan.minutes * MS.m;
          while (clock() < endMs && !stopped()) await sleep(Math.min(500, endMs - clock()), options.signal);
        }
      } else {
        let n = 0;
        for (const t of batch.traces) {
          emitter.emitTrace(t, m);
          if (t.error) errorTraces++;
          if (++n % 200 === 0) await emitter.relieve(highWater);
          if (stopped()) break;
        }
        await emitter.relieve(highWater);
      }
      minutesDone = m + 1;
      batches.delete(m - 2);
      emitter.retireBefore(m - 1);
      options.onProgress?.({
        minute: m + 1,
        minutes: plan.minutes,
        simulatedTime: iso(batch.startMs + MS.m),
        traces: emitter.tracesEmitted,
        spans: emitter.spansEnded,
        exportedSpans: counters.exportedSpans,
        failedSpans: counters.failedSpans,
        pendingSpans: emitter.pending(),
      });
    }
    await emitter.shutdown();
  } finally {
    uninstall();
  }

  status = failedFast() ? "failed" : options.signal?.aborted ? "interrupted" : "complete";
  if (failedFast()) {
    emitter.counting.noteError(
      `gave up after ${counters.failedRequests} failed export requests and none succeeded (is ${
        tracesUrl(endpoint)
      } up, and is the key right?)`,
    );
  }
  const final = truth();
  if (truthPath !== null) await writeJson(truthPath, final);
  const wallSeconds = (performance.now() - wallStart) / 1000;
  const notExported = emitter.spansEnded - counters.exportedSpans;
  return {
    ok: status !== "failed" && counters.failedSpans === 0 && counters.rejectedSpans === 0 &&
      notExported === 0,
    status,
    truth: final,
    truthPath,
    traces: emitter.tracesEmitted,
    spans: emitter.spansEnded,
    exportedSpans: counters.exportedSpans,
    failedSpans: counters.failedSpans,
    rejectedSpans: counters.rejectedSpans,
    exportRequests: counters.requests,
    failedRequests: counters.failedRequests,
    errors: [...counters.errors],
    wallSeconds: round3(wallSeconds),
    tracesPerSecond: Math.round(emitter.tracesEmitted / Math.max(wallSeconds, 1e-3)),
    spansPerSecond: Math.round(emitter.spansEnded / Math.max(wallSeconds, 1e-3)),
  };
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
