// tests/unit/replay-csv.test.ts — the `--series` file format and its streaming plan, without a database: timestamps
// (ISO with and without zone, epoch s/ms), headers and extra columns, errors naming the line, minute buckets and
// aggregation, row spacing, the scored output, the synthetic minute rows per signal and the detection steps.

import { describe, expect, it } from "vitest";
import {
  parseSeriesCsv,
  parseTimestamp,
  SeriesCsvError,
  splitCsvLine,
  toMinutes,
  writeScoredCsv,
} from "../../scripts/replay/csv.ts";
import { chunks, minuteRow, SIGNALS } from "../../scripts/replay/series.ts";

const T = Date.parse("2026-11-20T10:00:00Z");

describe("parseTimestamp", () => {
  it("reads ISO-8601 with a zone, and without one as UTC", () => {
    expect(parseTimestamp("2026-11-20T10:00:00Z")).toBe(T);
    expect(parseTimestamp("2026-11-20T11:00:00+01:00")).toBe(T);
    expect(parseTimestamp("2026-11-20 10:00:00")).toBe(T);
    expect(parseTimestamp("2026-11-20T10:00")).toBe(T);
    expect(parseTimestamp("2026-11-20T10:00:30.250Z")).toBe(T + 30_250);
    expect(parseTimestamp("2026-11-20")).toBe(Date.parse("2026-11-20T00:00:00Z"));
  });

  it("reads epoch seconds below 1e11 and milliseconds above", () => {
    expect(parseTimestamp(String(T / 1000))).toBe(T);
    expect(parseTimestamp(String(T))).toBe(T);
    expect(parseTimestamp("1763632800.5")).toBe(1763632800500);
  });

  it("gives NaN for anything else", () => {
    for (const bad of ["", "yesterday", "2026-13-45", "10:00", "2026/11/20 10:00"]) {
      expect(parseTimestamp(bad), bad).toBeNaN();
    }
  });
});

describe("splitCsvLine", () => {
  it("handles quotes and doubled quotes", () => {
    expect(splitCsvLine('"2026-11-20T10:00:00Z", 5 ,"a ""b"", c"', 1)).toEqual([
      "2026-11-20T10:00:00Z",
      "5",
      'a "b", c',
    ]);
    expect(() => splitCsvLine('"open, 5', 7)).toThrow(/line 7: unterminated quoted field/);
  });
});

describe("parseSeriesCsv", () => {
  it("reads a headed file, skips blanks and comments, and sorts by time", () => {
    const text = [
      "timestamp,value",
      "# a comment",
      "2026-11-20T10:02:00Z,3",
      "",
      "2026-11-20T10:00:00Z,1",
      "2026-11-20T10:01:00Z,2.5",
    ].join("\n");
    const points = parseSeriesCsv(text);
    expect(points.map((p) => p.value)).toEqual([1, 2.5, 3]);
    expect(points.map((p) => p.line)).toEqual([5, 6, 3]);
    expect(points[0].raw).toBe("2026-11-20T10:00:00Z");
  });

  it("finds the columns by header name and ignores extra ones (e.g. a label column)", () => {
    const points = parseSeriesCsv(`is_anomaly,value,timestamp\n0,7,${T / 1000}\n1,9,${T / 1000 + 60}\n`);
    expect(points.map((p) => [p.ms, p.value])).toEqual([[T, 7], [T + 60_000, 9]]);
  });

  it("takes the first two columns without a header, with CRLF and a BOM", () => {
    const points = parseSeriesCsv("\uFEFF1763632800,1\r\n1763632860,2\r\n");
    expect(points.map((p) => p.value)).toEqual([1, 2]);
  });

  it("names the line of a bad row", () => {
    const bad = (text: string, pattern: RegExp) => {
      let err: unknown;
      try {
        parseSeriesCsv(text, { min: 0, max: 1, what: "error rate" });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SeriesCsvError);
      expect((err as Error).message).toMatch(pattern);
    };
    bad("timestamp,value\n1763632800,0.1\nnot-a-time,0.2\n", /^line 3: timestamp "not-a-time"/);
    bad("timestamp,value\n1763632800,abc\n", /^line 2: value "abc" is not a number/);
    bad("timestamp,value\n1763632800\n", /^line 2: expected at least 2 columns/);
    bad("timestamp,value\n1763632800,1.5\n", /^line 2: value 1.5 is outside 0..1 \(error rate\)/);
    bad("time,amount\n1763632800,1\n", /^line 1: header "time,amount" has no timestamp and value columns/);
    bad("timestamp,value\n", /no data rows/);
  });
});

describe("toMinutes", () => {
  const pts = (...xs: Array<[number, number]>) =>
    parseSeriesCsv(xs.map(([s, v]) => `${T / 1000 + s},${v}`).join("\n"));

  it("buckets by minute and aggregates points sharing one (mean, or sum for counts)", () => {
    const p = pts([0, 10], [20, 20], [40, 30], [60, 5], [180, 7]);
    const mean = toMinutes(p, "minutes", "mean");
    expect(mean.minutes.map((m) => [m.bucketMs - T, m.value, m.points])).toEqual([
      [0, 20, [0, 1, 2]],
      [60_000, 5, [3]],
      [180_000, 7, [4]],
    ]);
    expect(toMinutes(p, "minutes", "sum").minutes[0].value).toBe(60);
  });

  it("places row i on minute i for coarse series, and picks that automatically", () => {
    const hourly = pts([0, 1], [3600, 2], [7200, 3], [10800, 4]);
    const auto = toMinutes(hourly, "auto", "mean");
    expect(auto.spacing).toBe("rows");
    expect(auto.minutes.map((m) => m.bucketMs - T)).toEqual([0, 60_000, 120_000, 180_000]);
    expect(toMinutes(pts([0, 1], [60, 2], [120, 3], [240, 4]), "auto", "mean").spacing).toBe("minutes");
  });
});

describe("writeScoredCsv", () => {
  it("echoes the timestamp text and writes score to 4 places and 0/1", () => {
    expect(writeScoredCsv([
      { raw: "2026-11-20 10:00:00", value: 1.5, score: 0.12345, isAnomaly: false },
      { raw: "a,b", value: 2, score: 0.9, isAnomaly: true },
    ])).toBe('timestamp,value,score,is_anomaly\n2026-11-20 10:00:00,1.5,0.1235,0\n"a,b",2,0.9000,1\n');
  });
});

describe("synthetic minutes", () => {
  it("maps each signal's value onto an operation_minutes row", () => {
    expect(minuteRow("latency", 250, 100)).toEqual({ spans: 100, errors: 0, latencyMs: 250 });
    expect(minuteRow("throughput", 41.6, 100)).toEqual({ spans: 42, errors: 0, latencyMs: 10 });
    expect(minuteRow("throughput", 0.2, 100)).toBeNull();
    expect(minuteRow("errors", 0.25, 100)).toEqual({ spans: 100, errors: 25, latencyMs: 10 });
    expect(minuteRow("errors", 1, 40)).toEqual({ spans: 40, errors: 40, latencyMs: 10 });
    expect(SIGNALS.errors.max).toBe(1);
  });

  it("cuts steps at the step size, at gaps, and where data follows a silent minute", () => {
    const minutes = (values: Array<[number, number]>) =>
      values.map(([m, value], i) => ({ bucketMs: T + m * 60_000, value, points: [i] }));
    const regular = minutes(Array.from({ length: 12 }, (_, i) => [i, 5] as [number, number]));
    expect(chunks(regular, 5, "latency")).toEqual([[0, 5], [5, 10], [10, 12]]);
    expect(chunks(regular, 1, "latency")).toHaveLength(12);
    const gappy = minutes([[0, 5], [1, 5], [4, 5], [5, 5]]);
    expect(chunks(gappy, 5, "latency")).toEqual([[0, 2], [2, 4]]);
    const silent = minutes([[0, 5], [1, 0], [2, 0], [3, 5], [4, 5]]);
    expect(chunks(silent, 5, "throughput")).toEqual([[0, 3], [3, 5]]);
    expect(chunks(silent, 5, "latency")).toEqual([[0, 5]]);
  });
});
