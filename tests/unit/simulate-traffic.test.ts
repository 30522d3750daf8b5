// tests/unit/simulate-traffic.test.ts — the simulator's seeded randomness (determinism, distributions),
// duration/start parsing, and the diurnal rate model (night trough below the day peak, weekends lower).

import { describe, expect, it } from "vitest";
import {
  DEFAULT_DIURNAL,
  diurnalFactor,
  expectedRate,
  hash32,
  mulberry32,
  Rng,
} from "../../scripts/simulate/traffic.ts";
import { formatDuration, parseDuration, parseStart, usToHrTime } from "../../scripts/simulate/time.ts";

const draw = (rng: Rng, n: number) => Array.from({ length: n }, () => rng.nextU32());

describe("PRNG", () => {
  it("gives the same sequence for the same seed and a different one for another seed", () => {
    expect(draw(new Rng(42), 20)).toEqual(draw(new Rng(42), 20));
    expect(draw(new Rng(42), 20)).not.toEqual(draw(new Rng(43), 20));
    const a = mulberry32(7);
    const b = mulberry32(7);
    expect(Array.from({ length: 5 }, a)).toEqual(Array.from({ length: 5 }, b));
  });

  it("derives independent streams from labels", () => {
    expect(draw(Rng.derive(1, "minute", 10), 8)).toEqual(draw(Rng.derive(1, "minute", 10), 8));
    expect(draw(Rng.derive(1, "minute", 10), 8)).not.toEqual(draw(Rng.derive(1, "minute", 11), 8));
    expect(hash32("a", 1)).not.toBe(hash32("a1"));
  });

  it("draws uniform numbers in [0, 1) with a sensible mean", () => {
    const rng = new Rng(1);
    let sum = 0;
    for (let i = 0; i < 20000; i++) {
      const x = rng.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      sum += x;
    }
    expect(sum / 20000).toBeCloseTo(0.5, 1);
  });

  it("draws log-normal latencies around the requested median and Poisson counts around the mean", () => {
    const rng = new Rng(9);
    const xs = Array.from({ length: 20001 }, () => rng.logNormal(40, 0.5)).sort((a, b) => a - b);
    expect(xs[10000]).toBeGreaterThan(38);
    expect(xs[10000]).toBeLessThan(42);
    for (const lambda of [3, 30, 300]) {
      let sum = 0;
      for (let i = 0; i < 5000; i++) sum += rng.poisson(lambda);
      expect(sum / 5000).toBeGreaterThan(lambda * 0.95);
      expect(sum / 5000).toBeLessThan(lambda * 1.05);
    }
    expect(rng.poisson(0)).toBe(0);
  });

  it("makes lower-case hex ids of the requested length", () => {
    const rng = new Rng(3);
    const ids = new Set(Array.from({ length: 10000 }, () => rng.hex(16)));
    expect(ids.size).toBe(10000);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(rng.hex(32)).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("diurnal model", () => {
  const wednesday = (h: number) => Date.UTC(2026, 0, 14, h);

  it("has a night trough well below the afternoon peak", () => {
    const peak = diurnalFactor(wednesday(15));
    const trough = diurnalFactor(wednesday(3));
    expect(peak).toBeCloseTo(1, 6);
    expect(trough).toBeCloseTo((1 - 0.6) / (1 + 0.6), 6);
    expect(trough).toBeLessThan(peak / 3);
    // Monotonic from the trough up to the peak.
    let last = 0;
    for (let h = 3; h <= 15; h++) {
      const f = diurnalFactor(wednesday(h));
      expect(f).toBeGreaterThanOrEqual(last);
      last = f;
    }
  });

  it("lowers weekends and follows the configured peak hour", () => {
    const saturday = Date.UTC(2026, 0, 17, 15);
    expect(diurnalFactor(saturday)).toBeCloseTo(DEFAULT_DIURNAL.weekendFactor, 6);
    const shifted = { ...DEFAULT_DIURNAL, peakHourUtc: 20 };
    expect(diurnalFactor(wednesday(20), shifted)).toBeCloseTo(1, 6);
    expect(expectedRate(wednesday(15), 120)).toBeCloseTo(120, 6);
  });
});

describe("durations and start times", () => {
  it("parses and formats durations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("45m")).toBe(2_700_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1.5d")).toBe(129_600_000);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["", "45", "m", "5 m", "5x", "-5m", "5m3"]) expect(parseDuration(bad)).toBeNull();
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(300_000)).toBe("5m");
  });

  it("parses --start as ISO or relative to now", () => {
    const now = Date.UTC(2026, 0, 14, 12);
    expect(parseStart("-6h", now)).toBe(now - 6 * 3_600_000);
    expect(parseStart("2026-01-13T00:00:00Z", now)).toBe(Date.UTC(2026, 0, 13));
    expect(parseStart("now", now)).toBe(now);
    expect(() => parseStart("-6x", now)).toThrow(/not a duration/);
    expect(() => parseStart("yesterday", now)).toThrow(/ISO-8601/);
  });

  it("converts epoch microseconds to exact HrTime", () => {
    expect(usToHrTime(1_768_384_800_011_468)).toEqual([1_768_384_800, 11_468_000]);
  });
});
