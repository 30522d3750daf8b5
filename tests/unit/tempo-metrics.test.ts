// tests/unit/tempo-metrics.test.ts — metrics mode without a network: the TraceQL metrics queries, the histogram
// synthesised from Tempo's quantiles (it must read back as those quantiles with the same nearest-rank rule the
// SQL uses, within one log bucket), and how query_range answers (jsonpb zero omission, gaps, PARTIAL, exemplars)
// become operation_minutes rows.

import { describe, expect, it } from "vitest";
import {
  bucketMiddleMs,
  histogramFromQuantiles,
  latencyBucket,
  metricsQueries,
  minuteRows,
  type QueryRangeResponse,
  QueryRangeResponseSchema,
} from "../../functions/_shared/tempo/metrics.ts";

/** Nearest-rank read-back exactly as anomaly.extract_signals does it. */
function readQuantile(h: Record<string, number>, q: number): number {
  const n = Object.values(h).reduce((a, b) => a + b, 0);
  const rank = Math.max(1, Math.ceil(q * n));
  let running = 0;
  for (const b of Object.keys(h).map(Number).sort((a, b) => a - b)) {
    running += h[String(b)];
    if (running >= rank) return bucketMiddleMs(b);
  }
  return NaN;
}

describe("queries", () => {
  it("groups by service and span name, errors and quantiles inside the source's filter", () => {
    expect(metricsQueries("{}")).toEqual({
      counts: "{} | rate() by (resource.service.name, name, resource.service.version)",
      errors: "{ status = error } | rate() by (resource.service.name, name)",
      quantiles: "{} | quantile_over_time(duration, 0.5, 0.95, 0.99) by (resource.service.name, name)",
    });
    const q = metricsQueries('{ resource.service.name = "api" }');
    expect(q.errors).toBe(
      '{ (resource.service.name = "api") && status = error } | rate() by (resource.service.name, name)',
    );
    expect(q.counts.startsWith('{ resource.service.name = "api" } | rate()')).toBe(true);
  });
});

describe("histogram from quantiles", () => {
  it("uses the SQL bucket formula (250 ms -> bucket 144)", () => {
    expect(latencyBucket(250)).toBe(144);
    expect(latencyBucket(0.0005)).toBe(0);
    expect(latencyBucket(1)).toBe(80); // exactly 2^10 µs stays in its own bucket
  });
  for (const n of [1, 2, 7, 20, 100, 1234]) {
    it(`reads back p50/p95/p99 within one bucket for ${n} spans`, () => {
      const [p50, p95, p99] = [12.3, 48.1, 230.7];
      const h = histogramFromQuantiles(n, p50, p95, p99);
      expect(Object.values(h).reduce((a, b) => a + b, 0)).toBe(n);
      for (const [q, want] of [[0.5, p50], [0.95, p95], [0.99, p99]] as const) {
        const got = readQuantile(h, q);
        // a single span is its own p95/p99; otherwise each quantile lands in its own bucket
        if (n === 1 || (q === 0.95 && Math.ceil(0.95 * n) === Math.ceil(0.5 * n))) continue;
        if (q === 0.99 && Math.ceil(0.99 * n) === Math.ceil(0.95 * n)) {
          expect(Math.abs(got / p95 - 1)).toBeLessThan(0.045);
          continue;
        }
        expect(Math.abs(got / want - 1)).toBeLessThan(0.045);
      }
    });
  }
  it("makes quantiles monotone", () => {
    const h = histogramFromQuantiles(100, 50, 10, 5);
    expect(Object.keys(h)).toEqual([String(latencyBucket(50))]);
  });
});

describe("query_range answers to minute rows", () => {
  const T = Date.parse("2026-11-25T09:00:00Z");
  const lbl = (svc: string, op: string, extra: Array<[string, unknown]> = []) => [
    { key: "resource.service.name", value: { stringValue: svc } },
    { key: "name", value: { stringValue: op } },
    ...extra.map(([key, value]) => ({ key, value })),
  ];
  const parse = (x: unknown): QueryRangeResponse => QueryRangeResponseSchema.parse(x);
  const counts = parse({
    series: [
      {
        labels: lbl("api", "GET /", [["resource.service.version", { stringValue: "1.0" }]]),
        samples: [{ timestampMs: String(T), value: 2 }, { timestampMs: String(T + 60_000), value: 0.5 }, {
          timestampMs: String(T + 120_000),
        }],
      },
      {
        labels: lbl("api", "GET /", [["resource.service.version", { stringValue: "1.1" }]]),
        samples: [{ timestampMs: String(T), value: 1 }],
      },
      { labels: lbl("api", "GET /late"), samples: [{ timestampMs: String(T + 600_000), value: 1 }] },
    ],
  });
  const errors = parse({
    series: [{ labels: lbl("api", "GET /"), samples: [{ timestampMs: String(T), value: 4 }] }],
  });
  const quantiles = parse({
    series: [
      {
        labels: lbl("api", "GET /", [["p", { doubleValue: 0.5 }]]),
        samples: [{ timestampMs: String(T), value: 0.01 }, { timestampMs: String(T + 60_000), value: 0.02 }],
      },
      {
        labels: lbl("api", "GET /", [["p", { doubleValue: 0.95 }]]),
        samples: [{ timestampMs: String(T), value: 0.05 }],
        exemplars: [
          {
            labels: [{ key: "trace:id", value: { stringValue: "abc" } }],
            value: 0.2,
            timestampMs: String(T + 5),
          },
          {
            labels: [{ key: "trace:id", value: { stringValue: "def" } }],
            value: 0.3,
            timestampMs: String(T + 9),
          },
        ],
      },
      {
        labels: lbl("api", "GET /", [["p", { doubleValue: 0.99 }]]),
        samples: [{ timestampMs: String(T), value: 0.1 }],
      },
    ],
  });

  const { rows, withoutQuantiles } = minuteRows({ counts, errors, quantiles }, T, T + 300_000);

  it("turns rates into counts per minute, summing versions, and skips empty minutes", () => {
    expect(rows.map((r) => [r.bucket, r.span_count])).toEqual([
      ["2026-11-25T09:00:00.000Z", 180],
      ["2026-11-25T09:01:00.000Z", 30],
    ]);
    expect(rows[0].versions).toEqual({ "1.0": 120, "1.1": 60 });
  });
  it("caps errors at the count, links the largest exemplar, and keeps the window", () => {
    expect(rows[0].error_count).toBe(180);
    expect(rows[0].slowest_trace_id).toBe("0".repeat(29) + "def");
    expect(rows[1].error_count).toBe(0);
    expect(rows.some((r) => r.operation === "GET /late")).toBe(false); // outside [from, to)
    expect(withoutQuantiles).toBe(0);
  });
  it("reads Tempo's seconds as milliseconds and synthesises the histogram", () => {
    expect(readQuantile(rows[0].latency_histogram, 0.95) / 50).toBeCloseTo(1, 1);
    expect(rows[0].duration_max_ms).toBeCloseTo(100);
    expect(rows[1].latency_histogram).toEqual({ [String(latencyBucket(20))]: 30 });
  });
  it("refuses an answer that is not a QueryRangeResponse", () => {
    expect(QueryRangeResponseSchema.safeParse({ series: [{ samples: [{ value: 1 }] }] }).success).toBe(false);
  });
});
