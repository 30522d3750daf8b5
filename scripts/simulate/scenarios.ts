// scripts/simulate/scenarios.ts — named fault scenarios: their parameters and defaults, the CLI syntax
// `name@offset:key=value,...`, resolution onto a run's time line, the conditions they impose on generated
// traffic at any instant, and the ground-truth incidents they stand for. Pure.

import {
  type Conditions,
  downstreamOf,
  ENTRY_SERVICE,
  operationsOf,
  ROUTE_MIX,
  SERVICE_NAMES,
  serviceDef,
  SERVICES,
  upstreamOf,
} from "./topology.ts";
import { hash32 } from "./traffic.ts";
import { formatDuration, iso, MS, parseDuration } from "./time.ts";

export type AnomalyType = "LATENCY" | "ERROR_RATE" | "THROUGHPUT" | "RESOURCE" | "DEPLOY_REGRESSION";

export const SCENARIO_NAMES = [
  "clean",
  "latency_regression",
  "error_spike",
  "traffic_spike",
  "traffic_drop",
  "cpu_spike",
  "slow_degradation",
  "deploy",
] as const;
export type ScenarioName = typeof SCENARIO_NAMES[number];

type ParamKind = "duration" | "number" | "service" | "operation" | "version";
export type ParamValue = string | number | null;

interface ParamDef {
  kind: ParamKind;
  /** null = "not set" (e.g. operation null = every operation of the service). */
  default: ParamValue;
  min?: number;
  max?: number;
  /** Whether min/max are exclusive. */
  exclusive?: boolean;
  help: string;
}

interface ScenarioDef {
  name: ScenarioName;
  anomalyType: AnomalyType | null;
  needsStart: boolean;
  help: string;
  params: Record<string, ParamDef>;
}

const service = (def: string, help = "service to affect"): ParamDef => ({
  kind: "service",
  default: def,
  help,
});
const operation: ParamDef = {
  kind: "operation",
  default: null,
  help: "one server operation of that service (default: all of them)",
};
const duration = (def: string | null, help = "how long it lasts"): ParamDef => ({
  kind: "duration",
  default: def === null ? null : parseDuration(def),
  min: 0,
  exclusive: true,
  help,
});

export const SCENARIOS: Readonly<Record<ScenarioName, ScenarioDef>> = {
  clean: {
    name: "clean",
    anomalyType: null,
    needsStart: false,
    help: "no fault: diurnal traffic with baseline latency and errors only",
    params: {},
  },
  latency_regression: {
    name: "latency_regression",
    anomalyType: "DEPLOY_REGRESSION",
    needsStart: true,
    help: "the service deploys a new service.version whose operations are factor× slower",
    params: {
      service: service("payments"),
      operation,
      factor: { kind: "number", default: 2.5, min: 0, exclusive: true, help: "latency multiplier" },
      version: { kind: "version", default: null, help: "new service.version (default: patch + 1)" },
      duration: duration(null, "roll back after this long (default: never, until the run ends)"),
    },
  },
  error_spike: {
    name: "error_spike",
    anomalyType: "ERROR_RATE",
    needsStart: true,
    help: "the operation(s) fail with probability `rate` (errors propagate to callers as usual)",
    params: {
      service: service("payments"),
      operation,
      rate: { kind: "number", default: 0.3, min: 0, max: 1, help: "failure probability 0..1" },
      duration: duration("5m"),
    },
  },
  traffic_spike: {
    name: "traffic_spike",
    anomalyType: "THROUGHPUT",
    needsStart: true,
    help: "entry traffic ×factor (service must be frontend; operation picks one route)",
    params: {
      service: service(ENTRY_SERVICE, "the entry service (frontend)"),
      operation: { ...operation, help: "one entry route, e.g. GET /product/:id (default: all routes)" },
      factor: { kind: "number", default: 4, min: 1, exclusive: true, help: "traffic multiplier (> 1)" },
      duration: duration("10m"),
    },
  },
  traffic_drop: {
    name: "traffic_drop",
    anomalyType: "THROUGHPUT",
    needsStart: true,
    help:
      "frontend: entry traffic ×factor; another service: callers stop calling it (fallback/circuit open) " +
      "except for a `factor` share; factor=0 makes it silent",
    params: {
      service: service(ENTRY_SERVICE),
      operation: { ...operation, help: "frontend only: one entry route (default: all routes)" },
      factor: {
        kind: "number",
        default: 0.1,
        min: 0,
        max: 1,
        exclusive: false,
        help: "remaining share 0..1 (< 1)",
      },
      duration: duration("15m"),
    },
  },
  cpu_spike: {
    name: "cpu_spike",
    anomalyType: "RESOURCE",
    needsStart: true,
    help: "process.cpu.utilization of every instance of the service jumps to `level`",
    params: {
      service: service("inventory"),
      level: { kind: "number", default: 0.95, min: 0, max: 1, help: "CPU utilisation 0..1 during the spike" },
      latency_factor: {
        kind: "number",
        default: 1,
        min: 0,
        exclusive: true,
        help: "latency multiplier while saturated (default 1: CPU only, so the label stays RESOURCE)",
      },
      duration: duration("10m"),
    },
  },
  slow_degradation: {
    name: "slow_degradation",
    anomalyType: "LATENCY",
    needsStart: true,
    help: "latency creeps up linearly from ×1 to ×factor over `duration`, then recovers (restart)",
    params: {
      service: service("users"),
      operation,
      factor: { kind: "number", default: 3, min: 1, exclusive: true, help: "multiplier reached at the end" },
      duration: duration("60m"),
    },
  },
  deploy: {
    name: "deploy",
    anomalyType: null,
    needsStart: true,
    help:
      "a harmless deploy: service.version changes, nothing else (a negative example for deploy detectors)",
    params: {
      service: service(ENTRY_SERVICE),
      version: { kind: "version", default: null, help: "new service.version (default: patch + 1)" },
    },
  },
};

/** A parsed --scenario value (offset relative to the run start). */
export interface ScenarioSpec {
  name: ScenarioName;
  /** Milliseconds after the run start; 0 for scenarios that need none. */
  offsetMs: number;
  /** Every parameter with defaults filled in; durations in milliseconds. */
  params: Record<string, ParamValue>;
  /** The text it was parsed from (or a canonical rendering). */
  raw: string;
}

export class ScenarioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScenarioError";
  }
}

const knownNames = () => SCENARIO_NAMES.join(", ");

/**
 * Parses `name[@offset][:key=value,key=value]`, e.g. `error_spike@90m:service=payments,duration=5m`.
 * Throws ScenarioError with a message that names the problem and what is accepted.
 */
export function parseScenario(text: string): ScenarioSpec {
  const raw = text.trim();
  if (raw === "") {
    throw new ScenarioError("empty --scenario value; expected e.g. error_spike@30m:service=payments");
  }
  const m = /^([^@:]*)(?:@([^:]*))?(?::(.*))?$/s.exec(raw)!;
  const name = m[1].trim();
  if (!(SCENARIO_NAMES as readonly string[]).includes(name)) {
    throw new ScenarioError(`unknown scenario "${name}" in "${raw}"; known scenarios: ${knownNames()}`);
  }
  const def = SCENARIOS[name as ScenarioName];
  let offsetMs = 0;
  if (m[2] !== undefined) {
    const d = parseDuration(m[2]);
    if (d === null) {
      throw new ScenarioError(
        `scenario "${raw}": start offset "${m[2]}" is not a duration (use e.g. 90s, 45m, 2h, 1h30m)`,
      );
    }
    offsetMs = d;
  } else if (def.needsStart) {
    throw new ScenarioError(`scenario "${raw}": ${name} needs a start offset, e.g. ${name}@30m`);
  }
  const given: Record<string, string> = {};
  if (m[3] !== undefined && m[3].trim() !== "") {
    for (const part of m[3].split(",")) {
      const eq = part.indexOf("=");
      if (eq < 0) throw new ScenarioError(`scenario "${raw}": parameter "${part.trim()}" is not key=value`);
      const key = part.slice(0, eq).trim();
      const value = part.slice(eq + 1).trim();
      if (!(key in def.params)) {
        const accepted = Object.keys(def.params);
        throw new ScenarioError(
          `scenario "${raw}": ${name} has no parameter "${key}"; ` +
            (accepted.length ? `it accepts ${accepted.join(", ")}` : "it takes no parameters"),
        );
      }
      if (key in given) throw new ScenarioError(`scenario "${raw}": parameter "${key}" is given twice`);
      if (value === "") throw new ScenarioError(`scenario "${raw}": parameter "${key}" has an empty value`);
      given[key] = value;
    }
  }
  return { name: def.name, offsetMs, params: checkParams(def, given, raw), raw };
}

/**
 * Builds a spec from values (library use), validated exactly like the CLI syntax. `offset` is a duration text
 * ("45m") or milliseconds. Example: scenario("error_spike", "90m", { service: "payments", duration: "5m" }).
 */
export function scenario(
  name: ScenarioName,
  offset?: string | number,
  params: Record<string, string | number> = {},
): ScenarioSpec {
  const at = offset === undefined ? "" : `@${typeof offset === "number" ? `${offset}ms` : offset}`;
  const kv = Object.entries(params).map(([k, v]) => `${k}=${v}`).join(",");
  return parseScenario(`${name}${at}${kv ? `:${kv}` : ""}`);
}

function checkParams(
  def: ScenarioDef,
  given: Record<string, string>,
  raw: string,
): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  const where = `scenario "${raw}"`;
  for (const [key, p] of Object.entries(def.params)) {
    const text = given[key];
    if (text === undefined) {
      out[key] = p.default;
      continue;
    }
    switch (p.kind) {
      case "duration": {
        const d = parseDuration(text);
        if (d === null) {
          throw new ScenarioError(`${where}: ${key} "${text}" is not a duration (e.g. 5m, 90s, 1h)`);
        }
        if (d <= 0) throw new ScenarioError(`${where}: ${key} must be longer than 0`);
        out[key] = d;
        break;
      }
      case "number": {
        const n = Number(text);
        if (!Number.isFinite(n)) throw new ScenarioError(`${where}: ${key} "${text}" is not a number`);
        const lo = p.min ?? -Infinity;
        const hi = p.max ?? Infinity;
        const tooLow = p.exclusive ? n <= lo : n < lo;
        const tooHigh = p.exclusive ? n >= hi : n > hi;
        if (tooLow || tooHigh) {
          const range = p.max === undefined
            ? `${p.exclusive ? "greater than" : "at least"} ${lo}`
            : `between ${lo} and ${hi}${p.exclusive ? " (exclusive)" : ""}`;
          throw new ScenarioError(`${where}: ${key} must be ${range}, got ${text}`);
        }
        out[key] = n;
        break;
      }
      case "service":
        if (!SERVICE_NAMES.includes(text)) {
          throw new ScenarioError(
            `${where}: unknown service "${text}"; services are ${SERVICE_NAMES.join(", ")}`,
          );
        }
        out[key] = text;
        break;
      case "version":
        if (!/^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/.test(text)) {
          throw new ScenarioError(`${where}: version "${text}" should look like 1.4.3`);
        }
        out[key] = text;
        break;
      case "operation":
        out[key] = text; // checked below, once the service is known
        break;
    }
  }
  // Cross-parameter checks.
  const svc = out.service as string | undefined;
  if (out.operation !== undefined && out.operation !== null && svc !== undefined) {
    const ops = operationsOf(svc);
    if (!ops.includes(out.operation as string)) {
      throw new ScenarioError(
        `${where}: ${svc} has no operation "${out.operation}"; its operations are ${
          ops.map((o) => `"${o}"`).join(", ")
        }`,
      );
    }
  }
  if (def.name === "traffic_spike" && svc !== ENTRY_SERVICE) {
    throw new ScenarioError(
      `${where}: traffic_spike changes entry traffic, so service must be ${ENTRY_SERVICE}; ` +
        `pick a route with operation=..., e.g. operation=POST /checkout to load checkout and payments`,
    );
  }
  if (def.name === "traffic_drop" && svc !== ENTRY_SERVICE && out.operation !== null) {
    throw new ScenarioError(`${where}: operation applies only to service=${ENTRY_SERVICE} (an entry route)`);
  }
  if (def.name === "traffic_drop" && (out.factor as number) >= 1) {
    throw new ScenarioError(`${where}: factor must be below 1 for a drop, got ${out.factor}`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------ resolution

export interface ResolvedScenario {
  id: string;
  name: ScenarioName;
  anomalyType: AnomalyType | null;
  service: string | null;
  operation: string | null;
  startMs: number;
  endMs: number;
  /** The scenario ran past the end of the run (or has no end) and was cut at the run end. */
  truncated: boolean;
  params: Record<string, ParamValue>;
  raw: string;
  /** For version changes: the versions before and after. */
  fromVersion?: string;
  toVersion?: string;
}

/** Patch + 1 of a dotted version ("1.4.2" -> "1.4.3"); otherwise appends ".1". */
export function bumpVersion(version: string): string {
  const m = /^(.*?)(\d+)([^\d]*)$/.exec(version);
  if (!m) return `${version}.1`;
  return `${m[1]}${Number(m[2]) + 1}${m[3]}`;
}

/**
 * Places parsed scenarios on a run [runStartMs, runStartMs + minutes): checks they start inside the run, cuts
 * them at its end, and works out version changes in start order. Throws ScenarioError on conflicts.
 */
export function resolveScenarios(
  specs: ScenarioSpec[],
  runStartMs: number,
  minutes: number,
): ResolvedScenario[] {
  const runEnd = runStartMs + minutes * MS.m;
  const ordered = specs.map((s, i) => ({ s, i })).sort((a, b) => a.s.offsetMs - b.s.offsetMs || a.i - b.i);
  const versions = new Map<string, Array<{ atMs: number; version: string }>>();
  for (const s of SERVICES) versions.set(s.name, [{ atMs: -Infinity, version: s.version }]);
  const versionAt = (svc: string, t: number) => {
    let v = "";
    for (const p of versions.get(svc)!) if (p.atMs <= t) v = p.version;
    return v;
  };
  const out: ResolvedScenario[] = [];
  let n = 0;
  for (const { s } of ordered) {
    const def = SCENARIOS[s.name];
    if (s.name === "clean") continue;
    if (s.offsetMs >= minutes * MS.m) {
      throw new ScenarioError(
        `scenario "${s.raw}" starts at ${
          formatDuration(s.offsetMs)
        } but the run is only ${minutes} minutes long`,
      );
    }
    const startMs = runStartMs + s.offsetMs;
    const dur = s.params.duration as number | null | undefined;
    const wanted = dur === undefined || dur === null ? Infinity : startMs + dur;
    const endMs = Math.min(wanted, runEnd);
    const r: ResolvedScenario = {
      id: `${s.name}-${++n}`,
      name: s.name,
      anomalyType: def.anomalyType,
      service: (s.params.service as string | undefined) ?? null,
      operation: (s.params.operation as string | null | undefined) ?? null,
      startMs,
      endMs,
      truncated: wanted > runEnd && s.name !== "deploy",
      params: s.params,
      raw: s.raw,
    };
    if (s.name === "latency_regression" || s.name === "deploy") {
      const svc = r.service!;
      const from = versionAt(svc, startMs);
      const to = (s.params.version as string | null) ?? bumpVersion(from);
      if (to === from) throw new ScenarioError(`scenario "${s.raw}": ${svc} already runs version ${to}`);
      const timeline = versions.get(svc)!;
      timeline.push({ atMs: startMs, version: to });
      if (endMs < runEnd && s.name === "latency_regression") timeline.push({ atMs: endMs, version: from });
      timeline.sort((a, b) => a.atMs - b.atMs);
      r.fromVersion = from;
      r.toVersion = to;
      r.params = { ...r.params, version: to };
      if (s.name === "deploy") r.endMs = startMs;
    }
    out.push(r);
  }
  return out;
}

// ------------------------------------------------------------------------------------------ effects

/** Kubernetes-like pod name: `<service>-<template hash>-<suffix>`, stable for (seed, service, version, i). */
export function instanceId(seed: number, service: string, version: string, i: number): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  const enc = (h: number, len: number) => {
    let s = "";
    for (let k = 0; k < len; k++) {
      s += alphabet[h % alphabet.length];
      h = Math.floor(h / alphabet.length);
    }
    return s;
  };
  return `${service}-${enc(hash32(seed, service, version), 6)}${
    enc(hash32(seed, service, version, "t"), 4)
  }-${enc(hash32(seed, service, version, i), 5)}`;
}

/** The scenarios of a run, queryable at any instant. */
export class Effects {
  readonly scenarios: ResolvedScenario[];
  private readonly seed: number;
  private readonly timelines = new Map<string, Array<{ atMs: number; version: string }>>();
  private readonly instanceCache = new Map<string, readonly string[]>();

  constructor(scenarios: ResolvedScenario[], seed: number) {
    this.scenarios = scenarios;
    this.seed = seed;
    for (const s of SERVICES) this.timelines.set(s.name, [{ atMs: -Infinity, version: s.version }]);
    for (const r of scenarios) {
      if (r.toVersion === undefined) continue;
      const t = this.timelines.get(r.service!)!;
      t.push({ atMs: r.startMs, version: r.toVersion });
      const runsToEnd = r.truncated || r.params.duration === null || r.params.duration === undefined;
      if (r.name === "latency_regression" && !runsToEnd) t.push({ atMs: r.endMs, version: r.fromVersion! });
      t.sort((a, b) => a.atMs - b.atMs);
    }
  }

  private active(t: number): ResolvedScenario[] {
    return this.scenarios.filter((r) => r.startMs <= t && t < r.endMs);
  }

  version(service: string, t: number): string {
    let v = "";
    for (const p of this.timelines.get(service)!) if (p.atMs <= t) v = p.version;
    return v;
  }

  instances(service: string, version: string): readonly string[] {
    const key = `${service}@${version}`;
    let ids = this.instanceCache.get(key);
    if (!ids) {
      ids = Array.from(
        { length: serviceDef(service).instances },
        (_, i) => instanceId(this.seed, service, version, i),
      );
      this.instanceCache.set(key, ids);
    }
    return ids;
  }

  /** Multiplier on the frontend arrival rate of `route` at time t. */
  trafficFactor(route: string, t: number): number {
    let f = 1;
    for (const r of this.active(t)) {
      if (r.name !== "traffic_spike" && r.name !== "traffic_drop") continue;
      if (r.service !== ENTRY_SERVICE) continue;
      if (r.operation !== null && r.operation !== route) continue;
      f *= r.params.factor as number;
    }
    return f;
  }

  /** Times inside [fromMs, toMs) at which some scenario starts or ends (where rates may jump). */
  edgesWithin(fromMs: number, toMs: number): number[] {
    const out: number[] = [];
    for (const r of this.scenarios) {
      if (r.startMs > fromMs && r.startMs < toMs) out.push(r.startMs);
      if (r.endMs > fromMs && r.endMs < toMs) out.push(r.endMs);
    }
    return out;
  }

  /** CPU utilisation forced by a cpu_spike at t, or null. */
  cpuLevel(service: string, t: number): number | null {
    let level: number | null = null;
    for (const r of this.active(t)) {
      if (r.name === "cpu_spike" && r.service === service) {
        level = Math.max(level ?? 0, r.params.level as number);
      }
    }
    return level;
  }

  /** The Conditions the trace generator sees for a trace starting at t. */
  conditionsAt(t: number): Conditions {
    const active = this.active(t);
    const version = (svc: string) => this.version(svc, t);
    return {
      deployment: (svc) => {
        const v = version(svc);
        return { version: v, instances: this.instances(svc, v) };
      },
      latencyFactor: (svc, op) => {
        let f = 1;
        for (const r of active) {
          if (r.service !== svc) continue;
          if (r.operation !== null && r.operation !== op) continue;
          if (r.name === "latency_regression") f *= r.params.factor as number;
          else if (r.name === "cpu_spike") f *= r.params.latency_factor as number;
          else if (r.name === "slow_degradation") {
            const k = r.params.factor as number;
            const full = r.params.duration as number;
            f *= 1 + (k - 1) * Math.min(1, (t - r.startMs) / full);
          }
        }
        return f;
      },
      errorRate: (svc, op, base) => {
        let p = base;
        for (const r of active) {
          if (r.name !== "error_spike" || r.service !== svc) continue;
          if (r.operation !== null && r.operation !== op) continue;
          p = Math.max(p, r.params.rate as number);
        }
        return p;
      },
      callProbability: (svc) => {
        let p = 1;
        for (const r of active) {
          if (r.name === "traffic_drop" && r.service === svc && svc !== ENTRY_SERVICE) {
            p *= r.params.factor as number;
          }
        }
        return p;
      },
    };
  }
}

// ------------------------------------------------------------------------------------------ ground truth

export interface TruthIncident {
  id: string;
  scenario: ScenarioName;
  anomaly_type: AnomalyType;
  service: string;
  operation: string | null;
  start: string;
  end: string;
  /** Parameters with defaults filled in; durations as text (e.g. "5m"). */
  params: Record<string, string | number | null>;
  /** Cut at the run end (or open-ended, e.g. a regression that is never rolled back). */
  truncated: boolean;
  /**
   * Series that should show the anomaly too: for latency/errors the operation(s) and their callers up to the
   * entry routes; for throughput every operation the changed traffic reaches; for CPU the service itself.
   */
  affected: Array<{ service: string; operation: string | null }>;
}

export interface TruthEvent {
  type: "deploy";
  scenario: ScenarioName;
  service: string;
  from_version: string;
  to_version: string;
  at: string;
  /** A rollback (the end of a latency_regression with a duration) is recorded as a second event. */
  rollback: boolean;
}

function displayParams(
  p: Record<string, ParamValue>,
  def: ScenarioDef,
): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  for (const [k, v] of Object.entries(p)) {
    out[k] = def.params[k]?.kind === "duration" && typeof v === "number" ? formatDuration(v) : v;
  }
  return out;
}

function affectedBy(r: ResolvedScenario): TruthIncident["affected"] {
  const svc = r.service!;
  switch (r.name) {
    case "cpu_spike":
      return [{ service: svc, operation: null }];
    case "traffic_spike":
    case "traffic_drop":
      if (svc === ENTRY_SERVICE) return downstreamOf(r.operation === null ? null : [r.operation]);
      return [{ service: svc, operation: null }];
    default:
      return upstreamOf(svc, r.operation);
  }
}

/** Ground-truth incidents (scenarios that are anomalies) and version-change events of resolved scenarios. */
export function truthOf(resolved: ResolvedScenario[]): { incidents: TruthIncident[]; events: TruthEvent[] } {
  const incidents: TruthIncident[] = [];
  const events: TruthEvent[] = [];
  for (const r of resolved) {
    const def = SCENARIOS[r.name];
    if (r.toVersion !== undefined) {
      events.push({
        type: "deploy",
        scenario: r.name,
        service: r.service!,
        from_version: r.fromVersion!,
        to_version: r.toVersion,
        at: iso(r.startMs),
        rollback: false,
      });
      if (r.name === "latency_regression" && !r.truncated && r.params.duration !== null) {
        events.push({
          type: "deploy",
          scenario: r.name,
          service: r.service!,
          from_version: r.toVersion,
          to_version: r.fromVersion!,
          at: iso(r.endMs),
          rollback: true,
        });
      }
    }
    if (def.anomalyType === null) continue;
    incidents.push({
      id: r.id,
      scenario: r.name,
      anomaly_type: def.anomalyType,
      service: r.service!,
      operation: r.operation,
      start: iso(r.startMs),
      end: iso(r.endMs),
      params: displayParams(r.params, def),
      truncated: r.truncated,
      affected: affectedBy(r),
    });
  }
  events.sort((a, b) => a.at.localeCompare(b.at));
  return { incidents, events };
}

/** The scenario, service and operation reference printed by --help. */
export function scenarioHelp(): string {
  const lines: string[] = [];
  for (const def of Object.values(SCENARIOS)) {
    lines.push(`  ${def.name}${def.anomalyType ? ` (${def.anomalyType})` : ""}: ${def.help}`);
    for (const [k, p] of Object.entries(def.params)) {
      const dflt = p.default === null
        ? ""
        : ` [default ${p.kind === "duration" ? formatDuration(p.default as number) : String(p.default)}]`;
      lines.push(`      ${k}=  ${p.help}${dflt}`);
    }
  }
  lines.push("", "Services and their operations (for service= and operation=):");
  for (const svc of SERVICE_NAMES) lines.push(`  ${svc}: ${operationsOf(svc).join(", ")}`);
  lines.push(
    `  (frontend operations are the entry routes; traffic mix ${
      ROUTE_MIX.map(([r, w]) => `${r} ${Math.round(w * 100)}%`).join(", ")
    })`,
  );
  return lines.join("\n");
}
