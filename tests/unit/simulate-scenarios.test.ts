// tests/unit/simulate-scenarios.test.ts — scenario syntax (`name@offset:key=value`), the error messages for
// bad input, placement on a run (truncation, version changes), and the ground-truth incidents they produce.

import { describe, expect, it } from "vitest";
import {
  bumpVersion,
  Effects,
  parseScenario,
  resolveScenarios,
  scenario,
  ScenarioError,
  truthOf,
} from "../../scripts/simulate/scenarios.ts";

const START = Date.UTC(2026, 0, 14, 8);
const MIN = 60_000;

describe("parseScenario", () => {
  it("parses name, offset and parameters, filling defaults", () => {
    const s = parseScenario("error_spike@90m:service=payments,duration=5m");
    expect(s.name).toBe("error_spike");
    expect(s.offsetMs).toBe(90 * MIN);
    expect(s.params).toEqual({ service: "payments", operation: null, rate: 0.3, duration: 5 * MIN });

    const r = parseScenario("latency_regression@45m");
    expect(r.params).toMatchObject({ service: "payments", factor: 2.5, version: null, duration: null });
    expect(parseScenario("clean").name).toBe("clean");
    expect(parseScenario("cpu_spike@1h30m:service=users,level=0.9").params.level).toBe(0.9);
  });

  it("accepts operations containing spaces, slashes and colons", () => {
    const s = parseScenario("traffic_spike@2h:operation=GET /product/:id,factor=5");
    expect(s.params.operation).toBe("GET /product/:id");
    expect(s.params.factor).toBe(5);
    const e = parseScenario("error_spike@10m:service=checkout,operation=shop.CheckoutService/PlaceOrder");
    expect(e.params.operation).toBe("shop.CheckoutService/PlaceOrder");
  });

  it("builds the same spec from values with scenario()", () => {
    expect(scenario("error_spike", "90m", { service: "payments", duration: "5m" }).params)
      .toEqual(parseScenario("error_spike@90m:service=payments,duration=5m").params);
  });

  const bad: Array<[string, RegExp]> = [
    ["", /empty --scenario/],
    ["explode@5m", /unknown scenario "explode".*known scenarios: clean, latency_regression/],
    ["error_spike", /needs a start offset, e\.g\. error_spike@30m/],
    ["error_spike@soon", /start offset "soon" is not a duration/],
    ["error_spike@45", /start offset "45" is not a duration/],
    ["error_spike@5m:service", /parameter "service" is not key=value/],
    ["error_spike@5m:speed=3", /has no parameter "speed"; it accepts service, operation, rate, duration/],
    ["error_spike@5m:service=pay", /unknown service "pay"; services are frontend, checkout, payments/],
    ["error_spike@5m:rate=1.5", /rate must be between 0 and 1, got 1.5/],
    ["error_spike@5m:rate=lots", /rate "lots" is not a number/],
    ["error_spike@5m:duration=0", /duration must be longer than 0/],
    ["error_spike@5m:duration=5", /duration "5" is not a duration/],
    ["error_spike@5m:service=users,service=payments", /"service" is given twice/],
    [
      "error_spike@5m:operation=GET /nope",
      /payments has no operation "GET \/nope"; its operations are "POST/,
    ],
    ["traffic_spike@5m:service=payments", /service must be frontend/],
    ["traffic_spike@5m:factor=0.5", /factor must be greater than 1/],
    ["traffic_drop@5m:factor=1", /factor must be below 1/],
    ["traffic_drop@5m:service=users,operation=GET /users/{id}", /operation applies only to service=frontend/],
    ["clean:x=1", /takes no parameters/],
    ["latency_regression@5m:version=!!", /version "!!" should look like/],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text)} with a clear message`, () => {
      expect(() => parseScenario(text)).toThrow(ScenarioError);
      expect(() => parseScenario(text)).toThrow(message);
    });
  }
});

describe("resolveScenarios and Effects", () => {
  it("refuses scenarios that start after the run and truncates those that run past it", () => {
    expect(() => resolveScenarios([parseScenario("error_spike@2h")], START, 60)).toThrow(
      /starts at 2h but the run is only 60 minutes long/,
    );
    const [r] = resolveScenarios([parseScenario("error_spike@55m:duration=10m")], START, 60);
    expect(r.startMs).toBe(START + 55 * MIN);
    expect(r.endMs).toBe(START + 60 * MIN);
    expect(r.truncated).toBe(true);
  });

  it("changes service.version at a regression and rolls back after its duration", () => {
    const resolved = resolveScenarios(
      [parseScenario("latency_regression@10m:service=payments,factor=3,duration=20m")],
      START,
      60,
    );
    const fx = new Effects(resolved, 1);
    expect(fx.version("payments", START + 9 * MIN)).toBe("1.4.2");
    expect(fx.version("payments", START + 10 * MIN)).toBe("1.4.3");
    expect(fx.version("payments", START + 30 * MIN)).toBe("1.4.2");
    expect(fx.version("users", START + 15 * MIN)).toBe("1.12.4");
    expect(fx.instances("payments", "1.4.3")).not.toEqual(fx.instances("payments", "1.4.2"));
    const during = fx.conditionsAt(START + 15 * MIN);
    expect(during.latencyFactor("payments", "POST /payments/charge")).toBe(3);
    expect(during.latencyFactor("users", "GET /users/{id}")).toBe(1);
    expect(fx.conditionsAt(START + 5 * MIN).latencyFactor("payments", "POST /payments/charge")).toBe(1);
  });

  it("applies error, traffic, CPU and degradation effects only inside their windows", () => {
    const fx = new Effects(
      resolveScenarios(
        [
          parseScenario("error_spike@10m:service=users,operation=GET /users/{id},rate=0.5,duration=5m"),
          parseScenario("traffic_spike@20m:factor=4,duration=10m"),
          parseScenario("traffic_drop@20m:service=inventory,factor=0,duration=10m"),
          parseScenario("cpu_spike@40m:service=checkout,level=0.9"),
          parseScenario("slow_degradation@0:service=inventory,factor=3,duration=60m"),
        ],
        START,
        120,
      ),
      1,
    );
    const at = (m: number) => fx.conditionsAt(START + m * MIN);
    expect(at(12).errorRate("users", "GET /users/{id}", 0.001)).toBe(0.5);
    expect(at(12).errorRate("users", "GET /users/session", 0.001)).toBe(0.001);
    expect(at(16).errorRate("users", "GET /users/{id}", 0.001)).toBe(0.001);
    expect(fx.trafficFactor("GET /", START + 25 * MIN)).toBe(4);
    expect(fx.trafficFactor("GET /", START + 31 * MIN)).toBe(1);
    expect(at(25).callProbability("inventory")).toBe(0);
    expect(at(31).callProbability("inventory")).toBe(1);
    expect(fx.cpuLevel("checkout", START + 45 * MIN)).toBe(0.9);
    expect(fx.cpuLevel("checkout", START + 55 * MIN)).toBeNull();
    expect(at(30).latencyFactor("inventory", "GET /products")).toBeCloseTo(2, 6);
    expect(at(59.9).latencyFactor("inventory", "GET /products")).toBeCloseTo(3, 1);
    expect(at(61).latencyFactor("inventory", "GET /products")).toBe(1);
  });

  it("bumps versions by one patch level", () => {
    expect(bumpVersion("1.4.2")).toBe("1.4.3");
    expect(bumpVersion("v2.9")).toBe("v2.10");
    expect(bumpVersion("1.0.0-rc1")).toBe("1.0.0-rc2");
  });
});

describe("ground truth", () => {
  it("lists every injected incident with type, service, operation, window and parameters", () => {
    const resolved = resolveScenarios(
      [
        parseScenario("clean"),
        parseScenario("latency_regression@45m"),
        parseScenario("error_spike@90m:service=payments,duration=5m"),
        parseScenario("traffic_spike@20m:operation=POST /checkout,factor=3"),
        parseScenario("traffic_drop@100m"),
        parseScenario("cpu_spike@60m:service=users"),
        parseScenario("slow_degradation@30m:service=inventory,operation=GET /products/{id}"),
        parseScenario("deploy@10m:service=frontend"),
      ],
      START,
      180,
    );
    const { incidents, events } = truthOf(resolved);
    const summary = incidents.map((
      i,
    ) => [i.scenario, i.anomaly_type, i.service, i.operation, i.start, i.end]);
    const t = (m: number) => new Date(START + m * MIN).toISOString();
    expect(summary).toEqual([
      ["traffic_spike", "THROUGHPUT", "frontend", "POST /checkout", t(20), t(30)],
      ["slow_degradation", "LATENCY", "inventory", "GET /products/{id}", t(30), t(90)],
      ["latency_regression", "DEPLOY_REGRESSION", "payments", null, t(45), t(180)],
      ["cpu_spike", "RESOURCE", "users", null, t(60), t(70)],
      ["error_spike", "ERROR_RATE", "payments", null, t(90), t(95)],
      ["traffic_drop", "THROUGHPUT", "frontend", null, t(100), t(115)],
    ]);
    const regression = incidents.find((i) => i.scenario === "latency_regression")!;
    expect(regression.params).toEqual({
      service: "payments",
      operation: null,
      factor: 2.5,
      version: "1.4.3",
      duration: null,
    });
    expect(regression.truncated).toBe(true);
    expect(regression.affected).toEqual([
      { service: "payments", operation: "POST /payments/charge" },
      { service: "checkout", operation: "shop.CheckoutService/PlaceOrder" },
      { service: "frontend", operation: "POST /checkout" },
    ]);
    const spike = incidents.find((i) => i.scenario === "error_spike")!;
    expect(spike.params).toEqual({ service: "payments", operation: null, rate: 0.3, duration: "5m" });
    const traffic = incidents.find((i) => i.scenario === "traffic_spike")!;
    expect(traffic.affected.map((a) => a.service).sort()).toEqual(
      ["checkout", "frontend", "inventory", "payments", "users", "users"].sort(),
    );
    expect(events).toEqual([
      {
        type: "deploy",
        scenario: "deploy",
        service: "frontend",
        from_version: "2.14.3",
        to_version: "2.14.4",
        at: t(10),
        rollback: false,
      },
      {
        type: "deploy",
        scenario: "latency_regression",
        service: "payments",
        from_version: "1.4.2",
        to_version: "1.4.3",
        at: t(45),
        rollback: false,
      },
    ]);
  });
});
