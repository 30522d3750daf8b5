// scripts/simulate/generate.ts — turns a run plan (seed, start, minutes, peak rate, diurnal model, scenarios)
// into minute batches of trace specs plus the resource attributes (service.version, instance, CPU, memory)
// each service instance reports in that minute. Pure and deterministic: minute m of a given seed is the same
// data in every run that covers it under the same scenarios.

import {
  ATTR_DEPLOYMENT_ENVIRONMENT_NAME,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_NAMESPACE,
  ATTR_SERVICE_VERSION,
} from "@opentelemetry/semantic-conventions";
import type { Effects } from "./scenarios.ts";
import {
  type AttrValue,
  ENTRY_SERVICE,
  generateTrace,
  ROUTE_MIX,
  serviceDef,
  type TraceSpec,
} from "./topology.ts";
import { DEFAULT_DIURNAL, diurnalFactor, type DiurnalModel, hash32, Rng } from "./traffic.ts";
import { MS } from "./time.ts";

// Incubating resource keys (copied, see topology.ts).
export const ATTR_HOST_NAME = "host.name";
export const ATTR_PROCESS_PID = "process.pid";
export const ATTR_PROCESS_RUNTIME_NAME = "process.runtime.name";
export const ATTR_PROCESS_CPU_UTILIZATION = "process.cpu.utilization";
export const ATTR_PROCESS_MEMORY_USAGE = "process.memory.usage";
export const ATTR_K8S_POD_NAME = "k8s.pod.name";
export const ATTR_K8S_NAMESPACE_NAME = "k8s.namespace.name";

export interface RunPlan {
  seed: number;
  /** Run start, epoch ms, on a minute boundary. */
  startMs: number;
  minutes: number;
  /** Traces per minute at the weekday peak. */
  rate: number;
  diurnal: DiurnalModel;
  effects: Effects;
  /** deployment.environment.name on every resource. */
  environment: string;
}

export interface MinuteBatch {
  /** 0-based minute of the run. */
  index: number;
  startMs: number;
  /** Traces per minute the diurnal model expects here (before scenarios and noise). */
  expectedRate: number;
  /** Traces started in this minute, by start time. */
  traces: TraceSpec[];
  /** Load relative to the peak rate (what CPU and memory follow). */
  load: number;
}

/** Generates minute `index` of the run. */
export function generateMinute(plan: RunPlan, index: number): MinuteBatch {
  const startMs = plan.startMs + index * MS.m;
  const endMs = startMs + MS.m;
  const rng = Rng.derive(plan.seed, "minute", Math.floor(startMs / MS.m));
  const diurnal = plan.diurnal ?? DEFAULT_DIURNAL;
  const expected = plan.rate * diurnalFactor(startMs + 30_000, diurnal);
  const jitter = diurnal.minuteJitter > 0 ? Math.exp(diurnal.minuteJitter * rng.normal()) : 1;
  const probes = [startMs, ...plan.effects.edgesWithin(startMs, endMs), endMs - 1];

  const arrivals: Array<{ t: number; route: string }> = [];
  for (const [route, share] of ROUTE_MIX) {
    // Thinning: draw at the highest factor in the minute, keep each arrival with factor(t) / max.
    const maxFactor = Math.max(...probes.map((t) => plan.effects.trafficFactor(route, t)));
    if (maxFactor <= 0) continue;
    const n = rng.poisson(expected * jitter * share * maxFactor);
    for (let i = 0; i < n; i++) {
      const t = startMs + rng.next() * MS.m;
      const f = plan.effects.trafficFactor(route, t);
      if (f >= maxFactor || rng.chance(f / maxFactor)) arrivals.push({ t, route });
    }
  }
  arrivals.sort((a, b) => a.t - b.t);
  const traces = arrivals.map(({ t, route }) => {
    const startUs = Math.round(t * 1000);
    return generateTrace(rng, route, startUs, plan.effects.conditionsAt(t));
  });
  return {
    index,
    startMs,
    expectedRate: expected,
    traces,
    load: Math.min(3, traces.length / Math.max(plan.rate, 1)),
  };
}

/**
 * Resource attributes of one service instance in one minute: identity (service.name/version/instance.id,
 * host.name) plus process.cpu.utilization (0..1) and process.memory.usage (bytes) that follow the load, with
 * per-instance noise and cpu_spike overrides.
 */
export function resourceAttributes(
  plan: RunPlan,
  batch: MinuteBatch,
  service: string,
  instance: string,
  version: string,
): Record<string, AttrValue> {
  const def = serviceDef(service);
  const rng = Rng.derive(plan.seed, "resource", instance, Math.floor(batch.startMs / MS.m));
  const minuteMid = batch.startMs + 30_000;
  let load = batch.load;
  if (service !== ENTRY_SERVICE) {
    load *= plan.effects.conditionsAt(minuteMid).callProbability(service);
  }
  const spike = plan.effects.cpuLevel(service, minuteMid);
  const cpu = spike !== null
    ? clamp(spike + 0.012 * rng.normal(), 0.01, 0.999)
    : clamp(def.cpu.idle + def.cpu.peak * load + 0.015 * rng.normal(), 0.005, 0.99);
  // Memory: idle + load share + a garbage-collection sawtooth of about 5% + 1% noise.
  const phase = hash32(plan.seed, instance) % 17;
  const saw = ((Math.floor(batch.startMs / MS.m) + phase) % 17) / 17;
  const memory = Math.round(
    def.memory.idle * (1 + 0.05 * saw + 0.01 * rng.normal()) + def.memory.peak * Math.min(load, 1.5),
  );
  const pid = 1 + (hash32(plan.seed, instance, "pid") % 32000);
  return {
    [ATTR_SERVICE_NAME]: service,
    [ATTR_SERVICE_NAMESPACE]: "shop",
    [ATTR_SERVICE_VERSION]: version,
    [ATTR_SERVICE_INSTANCE_ID]: instance,
    [ATTR_DEPLOYMENT_ENVIRONMENT_NAME]: plan.environment,
    [ATTR_HOST_NAME]: `node-${1 + (hash32(plan.seed, instance, "host") % 6)}.shop.internal`,
    [ATTR_K8S_NAMESPACE_NAME]: "shop",
    [ATTR_K8S_POD_NAME]: instance,
    [ATTR_PROCESS_PID]: pid,
    [ATTR_PROCESS_RUNTIME_NAME]: "nodejs",
    [ATTR_PROCESS_CPU_UTILIZATION]: Math.round(cpu * 10000) / 10000,
    [ATTR_PROCESS_MEMORY_USAGE]: memory,
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
