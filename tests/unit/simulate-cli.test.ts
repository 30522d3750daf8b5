// tests/unit/simulate-cli.test.ts — `npm run simulate` argument parsing: defaults, every option, `--start -6h`,
// repeatable --scenario/--header, and clear errors for bad values.

import { describe, expect, it } from "vitest";
import { CliError, parseCli, USAGE } from "../../scripts/simulate/cli.ts";
import { DEFAULT_TRUTH_PATH } from "../../scripts/simulate/index.ts";

describe("parseCli", () => {
  it("has sensible defaults and reads the key from TS_INGEST_KEY", () => {
    const { help, options } = parseCli([], { TS_INGEST_KEY: "k-env" });
    expect(help).toBe(false);
    expect(options).toMatchObject({
      live: false,
      minutes: 60,
      protocol: "proto",
      key: "k-env",
      truthPath: DEFAULT_TRUTH_PATH,
      scenarios: [],
      dryRun: false,
    });
    expect(options.endpoint).toBeUndefined();
  });

  it("parses every option, including a negative --start and repeated --scenario/--header", () => {
    const { quiet, options } = parseCli([
      "--start",
      "-6h",
      "--minutes",
      "360",
      "--rate",
      "300",
      "--seed",
      "42",
      "--protocol",
      "json",
      "--endpoint",
      "http://127.0.0.1:9999/functions/v1/otlp-ingest",
      "--key",
      "k-cli",
      "--header",
      "Authorization: Bearer abc",
      "--scenario",
      "latency_regression@45m",
      "--scenario",
      "error_spike@90m:service=payments,duration=5m",
      "--amplitude",
      "0.5",
      "--peak-hour",
      "14",
      "--weekend-factor",
      "0.6",
      "--batch-size",
      "1000",
      "--concurrency",
      "8",
      "--timeout",
      "5000",
      "--truth",
      "/tmp/x.json",
      "--quiet",
    ], { TS_INGEST_KEY: "k-env" });
    expect(quiet).toBe(true);
    expect(options).toMatchObject({
      start: "-6h",
      minutes: 360,
      rate: 300,
      seed: 42,
      protocol: "json",
      endpoint: "http://127.0.0.1:9999/functions/v1/otlp-ingest",
      key: "k-cli",
      headers: { Authorization: "Bearer abc" },
      diurnal: { amplitude: 0.5, peakHourUtc: 14, weekendFactor: 0.6 },
      batchSize: 1000,
      concurrency: 8,
      exportTimeoutMs: 5000,
      truthPath: "/tmp/x.json",
    });
    expect(options.scenarios!.map((s) => typeof s === "string" ? s : s.name)).toEqual([
      "latency_regression",
      "error_spike",
    ]);
    expect(parseCli(["--start=-2d"]).options.start).toBe("-2d");
    expect(parseCli(["--no-truth", "--live", "--minutes", "5"]).options).toMatchObject({
      truthPath: null,
      live: true,
      minutes: 5,
    });
  });

  it("returns help and the usage text names every scenario", () => {
    expect(parseCli(["--help"]).help).toBe(true);
    expect(parseCli(["-h"]).help).toBe(true);
    for (const name of ["latency_regression", "error_spike", "traffic_spike", "traffic_drop", "cpu_spike"]) {
      expect(USAGE).toContain(name);
    }
    expect(USAGE).toContain("--start <ISO|-6h|now>");
  });

  const bad: Array<[string[], RegExp]> = [
    [["--minutes", "0"], /--minutes must be a whole number ≥ 1, got "0"/],
    [["--minutes", "ten"], /--minutes must be/],
    [["--rate=-5"], /--rate must be a positive number/],
    [["--protocol", "grpc"], /--protocol must be proto or json, got "grpc"/],
    [["--endpoint", "localhost:4318"], /--endpoint "localhost:4318" is not an http\(s\) URL/],
    [["--live", "--start", "-1h"], /--start and --live exclude each other/],
    [["--header", "NoColon"], /--header "NoColon" should be "Name: value"/],
    [["--scenario", "error_spike"], /--scenario: .*needs a start offset/],
    [["--frobnicate"], /Unknown option '--frobnicate'.*see --help/],
    [["--truth", "a.json", "--no-truth"], /exclude each other/],
    [["--concurrency", "100"], /--concurrency must be 1..32/],
  ];
  for (const [argv, message] of bad) {
    it(`rejects ${argv.join(" ")}`, () => {
      expect(() => parseCli(argv)).toThrow(CliError);
      expect(() => parseCli(argv)).toThrow(message);
    });
  }
});
