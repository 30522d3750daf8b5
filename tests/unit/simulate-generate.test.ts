// tests/unit/simulate-generate.test.ts — the pure trace generator: trace structure (ids, parent/child across
// services, time containment, semantic attributes), determinism, baseline error rates, and that each
// scenario shows up in the generated spans/resources (version change + slower spans, errors, traffic, CPU).

import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import {
  generateMinute,
  type MinuteBatch,
  resourceAttributes,
  type RunPlan,
} from "../../scripts/simulate/generate.ts";
import { Effects, parseScenario, resolveScenarios } from "../../scripts/simulate/scenarios.ts";
import { generateTrace, type SpanSpec, type TraceSpec } from "../../scripts/simulate/topology.ts";
import { DEFAULT_DIURNAL, Rng } from "../../scripts/simulate/traffic.ts";

const START = Date.UTC(2026, 0, 14, 12); // a Wednesday, near the daily peak
const MIN = 60_000;

function plan(scenarios: string[], minutes: number, rate = 120, seed = 7): RunPlan {
  return {
    seed,
    startMs: START,
    minutes,
    rate,
    diurnal: DEFAULT_DIURNAL,
    effects: new Effects(resolveScenarios(scenarios.map(parseScenario), START, minutes), seed),
    environment: "test",
  };
}

function minutes(p: RunPlan, from: number, to: number): MinuteBatch[] {
  const out: MinuteBatch[] = [];
  for (let m = from; m < to; m++) out.push(generateMinute(p, m));
  return out;
}

const serverSpans = (batches: MinuteBatch[], service: string, name?: string): SpanSpec[] =>
  batches.flatMap((b) =>
    b.traces.flatMap((t) =>
      t.spans.filter((s) => s.kind === SpanKind.SERVER && s.service === service && (!name || s.name === name))
    )
  );

const durationsMs = (spans: SpanSpec[]) =>
  spans.map((s) => (s.endUs - s.startUs) / 1000).sort((a, b) => a - b);
const median = (xs: number[]) => xs[Math.floor(xs.length / 2)];
const errorShare = (spans: SpanSpec[]) =>
  spans.filter((s) => s.status.code === SpanStatusCode.ERROR).length / Math.max(spans.length, 1);

function checkTrace(t: TraceSpec) {
  const byId = new Map(t.spans.map((s) => [s.spanId, s]));
  expect(byId.size).toBe(t.spans.length);
  const roots = t.spans.filter((s) => s.parentSpanId === null);
  expect(roots).toHaveLength(1);
  expect(roots[0]).toMatchObject({ service: "frontend", kind: SpanKind.SERVER, name: t.route });
  for (const s of t.spans) {
    expect(s.traceId).toBe(t.traceId);
    expect(s.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(s.endUs).toBeGreaterThanOrEqual(s.startUs);
    if (s.parentSpanId === null) continue;
    const parent = byId.get(s.parentSpanId)!;
    expect(parent).toBeDefined();
    expect(s.startUs).toBeGreaterThanOrEqual(parent.startUs);
    expect(s.endUs).toBeLessThanOrEqual(parent.endUs);
    if (s.kind === SpanKind.SERVER) {
      // A server span's parent is the caller's client span, in another service.
      expect(parent.kind).toBe(SpanKind.CLIENT);
      expect(parent.service).not.toBe(s.service);
      expect(parent.name).toBe(s.name.startsWith("shop.") ? s.name : parent.name);
    } else {
      expect(parent.service).toBe(s.service);
    }
  }
}

describe("generateTrace", () => {
  it("builds a checkout trace across five services with client/server pairs and DB spans", () => {
    const t = generateTrace(new Rng(5), "POST /checkout", START * 1000);
    checkTrace(t);
    expect(new Set(t.spans.map((s) => s.service))).toEqual(
      new Set(["frontend", "checkout", "payments", "inventory", "users"]),
    );
    const rpc = t.spans.filter((s) => s.name === "shop.CheckoutService/PlaceOrder");
    expect(rpc.map((s) => s.kind).sort()).toEqual([SpanKind.SERVER, SpanKind.CLIENT]);
    expect(rpc[0].attributes["rpc.system"]).toBe("grpc");
    const db = t.spans.filter((s) => s.attributes["db.system"] === "postgresql");
    expect(db.length).toBeGreaterThanOrEqual(4);
    expect(db.some((s) => /WHERE email = '[^']+@example\.com'/.test(String(s.attributes["db.statement"]))))
      .toBe(true);
    const charge = t.spans.find((s) => s.kind === SpanKind.SERVER && s.service === "payments")!;
    expect(charge.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.route": "/payments/charge",
      "http.response.status_code": 201,
    });
    const gateway = t.spans.find((s) => s.attributes["server.address"] === "api.cardgateway.example")!;
    expect(gateway.kind).toBe(SpanKind.CLIENT);
  });

  it("is deterministic for a seed", () => {
    const a = generateTrace(new Rng(11), "GET /", START * 1000);
    const b = generateTrace(new Rng(11), "GET /", START * 1000);
    expect(a).toEqual(b);
    expect(generateTrace(new Rng(12), "GET /", START * 1000).traceId).not.toBe(a.traceId);
  });

  it("rejects unknown routes", () => {
    expect(() => generateTrace(new Rng(1), "GET /admin", 0)).toThrow(/unknown route "GET \/admin"/);
  });
});

describe("generateMinute", () => {
  it("produces well-formed traces, ordered by start, inside the minute, same data for the same seed", () => {
    const p = plan([], 3);
    const b = generateMinute(p, 1);
    expect(b.traces.length).toBeGreaterThan(60);
    for (const t of b.traces) checkTrace(t);
    const starts = b.traces.map((t) => t.startUs);
    expect(starts).toEqual([...starts].sort((x, y) => x - y));
    expect(starts[0]).toBeGreaterThanOrEqual((START + MIN) * 1000);
    expect(starts.at(-1)!).toBeLessThan((START + 2 * MIN) * 1000);
    expect(generateMinute(plan([], 3), 1)).toEqual(b);
    expect(generateMinute(plan([], 3, 120, 8), 1).traces[0].traceId).not.toBe(b.traces[0].traceId);
  });

  it("keeps baseline error rates of server operations low (about 0.1–1.5%)", () => {
    const batches = minutes(plan([], 60), 0, 60);
    for (const svc of ["frontend", "checkout", "payments", "inventory", "users"]) {
      const share = errorShare(serverSpans(batches, svc));
      expect(share, svc).toBeGreaterThan(0.0003);
      expect(share, svc).toBeLessThan(0.015);
    }
  });

  it("latency_regression changes service.version and raises that service's latency", () => {
    const p = plan(["latency_regression@30m:service=payments,factor=2.5"], 60);
    const before = minutes(p, 0, 30);
    const after = minutes(p, 30, 60);
    const pb = serverSpans(before, "payments");
    const pa = serverSpans(after, "payments");
    expect(new Set(pb.map((s) => s.version))).toEqual(new Set(["1.4.2"]));
    expect(new Set(pa.map((s) => s.version))).toEqual(new Set(["1.4.3"]));
    expect(new Set(pa.map((s) => s.instance)).size).toBe(1);
    expect(pa[0].instance).not.toBe(pb[0].instance);
    const ratio = median(durationsMs(pa)) / median(durationsMs(pb));
    expect(ratio).toBeGreaterThan(2.1);
    expect(ratio).toBeLessThan(2.9);
    // Callers get slower too (the extra time is inside their spans); unrelated services do not.
    expect(median(durationsMs(serverSpans(after, "frontend", "POST /checkout")))).toBeGreaterThan(
      1.8 * median(durationsMs(serverSpans(before, "frontend", "POST /checkout"))),
    );
    const usersRatio = median(durationsMs(serverSpans(after, "users"))) /
      median(durationsMs(serverSpans(before, "users")));
    expect(usersRatio).toBeGreaterThan(0.85);
    expect(usersRatio).toBeLessThan(1.15);
    // Resources carry the version too.
    const res = resourceAttributes(p, after[0], "payments", pa[0].instance, "1.4.3");
    expect(res["service.version"]).toBe("1.4.3");
  });

  it("error_spike raises the operation's error rate only during its window", () => {
    const p = plan(["error_spike@10m:service=payments,rate=0.4,duration=10m"], 30, 240);
    const during = errorShare(serverSpans(minutes(p, 10, 20), "payments"));
    const outside = errorShare(serverSpans([...minutes(p, 0, 10), ...minutes(p, 20, 30)], "payments"));
    expect(during).toBeGreaterThan(0.3);
    expect(during).toBeLessThan(0.5);
    expect(outside).toBeLessThan(0.03);
    // Failures propagate: the checkout route fails much more often during the spike.
    expect(errorShare(serverSpans(minutes(p, 10, 20), "frontend", "POST /checkout"))).toBeGreaterThan(0.25);
  });

  it("traffic_spike and traffic_drop change the number of traces; a downstream drop silences the service", () => {
    const count = (bs: MinuteBatch[]) => bs.reduce((n, b) => n + b.traces.length, 0);
    const spike = plan(["traffic_spike@10m:factor=4,duration=10m"], 30);
    expect(count(minutes(spike, 10, 20)) / count(minutes(spike, 0, 10))).toBeGreaterThan(3.2);
    const drop = plan(["traffic_drop@10m:factor=0.1,duration=10m"], 30);
    expect(count(minutes(drop, 10, 20)) / count(minutes(drop, 0, 10))).toBeLessThan(0.2);
    const silent = plan(["traffic_drop@10m:service=inventory,factor=0,duration=10m"], 30);
    expect(serverSpans(minutes(silent, 10, 20), "inventory")).toHaveLength(0);
    expect(serverSpans(minutes(silent, 0, 10), "inventory").length).toBeGreaterThan(100);
    for (const b of minutes(silent, 10, 12)) for (const t of b.traces) checkTrace(t);
  });

  it("cpu_spike lifts process.cpu.utilization of the service in its minutes; memory stays plausible", () => {
    const p = plan(["cpu_spike@5m:service=inventory,level=0.95,duration=5m"], 15);
    const cpu = (m: number, svc: string) => {
      const b = generateMinute(p, m);
      const inst = p.effects.instances(svc, p.effects.version(svc, b.startMs))[0];
      return resourceAttributes(p, b, svc, inst, "x");
    };
    for (let m = 0; m < 15; m++) {
      const r = cpu(m, "inventory");
      const v = r["process.cpu.utilization"] as number;
      if (m >= 5 && m < 10) expect(v).toBeGreaterThan(0.9);
      else expect(v).toBeLessThan(0.7);
      expect(r["process.memory.usage"]).toBeGreaterThan(100 * 1024 * 1024);
      expect(cpu(m, "users")["process.cpu.utilization"]).toBeLessThan(0.7);
    }
    expect(cpu(2, "inventory")["process.cpu.utilization"]).not.toBe(
      cpu(3, "inventory")["process.cpu.utilization"],
    );
  });

  it("slow_degradation creeps up over its window and recovers after it", () => {
    const p = plan(["slow_degradation@0:service=users,factor=3,duration=40m"], 50, 240);
    const m = (a: number, b: number) =>
      median(durationsMs(serverSpans(minutes(p, a, b), "users", "GET /users/session")));
    const early = m(0, 5);
    const mid = m(18, 22);
    const late = m(35, 40);
    expect(mid / early).toBeGreaterThan(1.5);
    expect(late / mid).toBeGreaterThan(1.2);
    expect(m(42, 50) / early).toBeLessThan(1.3);
  });
});
