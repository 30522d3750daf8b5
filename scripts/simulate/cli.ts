// scripts/simulate/cli.ts — command-line parsing for `npm run simulate` (node:util parseArgs) and its usage
// text. Pure: turns argv into SimulateOptions or throws a CliError whose message says what to fix.

import { parseArgs } from "node:util";
import { DEFAULT_ENDPOINT, DEFAULT_TRUTH_PATH, type SimulateOptions } from "./index.ts";
import { parseScenario, ScenarioError, scenarioHelp } from "./scenarios.ts";

export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

export const USAGE = `Usage: npm run simulate -- [options]

Sends OpenTelemetry traces of a small shop (frontend, checkout, payments, inventory, users) to an OTLP/HTTP
endpoint with the official OpenTelemetry JS SDK, optionally with injected faults, and writes the ground truth.

Time:
  --start <ISO|-6h|now>   back-dated start (floored to the minute); default: --minutes before now
  --minutes <n>           simulated minutes (default 60)
  --live                  pace in real time from now instead of back-dating (no --start)

Traffic:
  --rate <n>              traces per minute at the weekday peak (default 120)
  --seed <n>              PRNG seed; same seed + start + scenarios = same spans (default 1)
  --amplitude <0..0.99>   depth of the night trough (default 0.6)
  --peak-hour <0..24>     UTC hour of the daily peak (default 15)
  --weekend-factor <x>    traffic multiplier on Saturday/Sunday (default 0.75)
  --environment <name>    deployment.environment.name (default production)

Faults (repeatable):
  --scenario <name[@offset][:key=value,...]>
                          e.g. --scenario latency_regression@45m
                               --scenario "error_spike@90m:service=payments,duration=5m"
                               --scenario "traffic_spike@2h:operation=GET /product/:id,factor=5"

Export:
  --endpoint <url>        base URL; spans go to <url>/v1/traces
                          (default ${DEFAULT_ENDPOINT})
  --protocol <proto|json> OTLP encoding: protobuf (default) or JSON
  --key <key>             sent as header x-ingest-key (default: env TS_INGEST_KEY)
  --header <name: value>  extra request header (repeatable), e.g. "Authorization: Bearer <anon key>"
  --batch-size <n>        spans per request (default 2000)
  --concurrency <n>       requests in flight while back-dating (default 4)
  --timeout <ms>          per-request timeout incl. retries on 429/502/503/504 (default 30000)
  --dry-run               generate and run through the SDK, send nothing

Output:
  --truth <path>          ground-truth JSON (default ${DEFAULT_TRUTH_PATH})
  --no-truth              do not write it
  --quiet                 no progress lines
  --verbose               print exporter diagnostics
  -h, --help              this text

Exit status: 0 when every span was exported, 1 when any export failed or was rejected, 2 on bad arguments,
130 when interrupted (Ctrl-C: what was generated is flushed and the ground truth says "interrupted").

Scenarios (offsets are from the run start; parameters optional):
${scenarioHelp()}
`;

export interface CliResult {
  help: boolean;
  quiet: boolean;
  options: SimulateOptions;
}

function number(
  name: string,
  text: string | undefined,
  check: (n: number) => boolean,
  what: string,
): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || !check(n)) {
    throw new CliError(`--${name} must be ${what}, got "${text}"`);
  }
  return n;
}

/** Parses argv (without node and script). `env` supplies TS_INGEST_KEY. */
export function parseCli(argv: string[], env: Record<string, string | undefined> = {}): CliResult {
  // parseArgs refuses option values that start with "-"; `--start -6h` is the documented form, so join it.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--start" && /^-\d/.test(argv[i + 1] ?? "")) args.push(`--start=${argv[++i]}`);
    else args.push(argv[i]);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: false,
      strict: true,
      options: {
        start: { type: "string" },
        minutes: { type: "string" },
        live: { type: "boolean" },
        rate: { type: "string" },
        seed: { type: "string" },
        amplitude: { type: "string" },
        "peak-hour": { type: "string" },
        "weekend-factor": { type: "string" },
        environment: { type: "string" },
        scenario: { type: "string", multiple: true },
        endpoint: { type: "string" },
        protocol: { type: "string" },
        key: { type: "string" },
        header: { type: "string", multiple: true },
        "batch-size": { type: "string" },
        concurrency: { type: "string" },
        timeout: { type: "string" },
        "dry-run": { type: "boolean" },
        truth: { type: "string" },
        "no-truth": { type: "boolean" },
        quiet: { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new CliError(`${(e as Error).message} (see --help)`);
  }
  const v = parsed.values;
  if (v.help) return { help: true, quiet: false, options: {} };

  const isInt = (n: number) => Number.isInteger(n);
  const options: SimulateOptions = {};
  if (v.live && v.start !== undefined) {
    throw new CliError("--start and --live exclude each other (a live run starts now)");
  }
  options.live = v.live ?? false;
  if (v.start !== undefined) options.start = v.start;
  options.minutes = number("minutes", v.minutes, (n) => isInt(n) && n >= 1, "a whole number ≥ 1") ?? 60;
  options.rate = number("rate", v.rate, (n) => n > 0, "a positive number of traces per minute");
  options.seed = number("seed", v.seed, isInt, "an integer");
  const diurnal: SimulateOptions["diurnal"] = {};
  const amp = number("amplitude", v.amplitude, (n) => n >= 0 && n < 1, "between 0 and 0.99");
  if (amp !== undefined) diurnal.amplitude = amp;
  const peak = number("peak-hour", v["peak-hour"], (n) => n >= 0 && n <= 24, "an hour between 0 and 24");
  if (peak !== undefined) diurnal.peakHourUtc = peak;
  const wf = number("weekend-factor", v["weekend-factor"], (n) => n > 0, "a positive number");
  if (wf !== undefined) diurnal.weekendFactor = wf;
  options.diurnal = diurnal;
  if (v.environment !== undefined) options.environment = v.environment;

  try {
    options.scenarios = (v.scenario ?? []).map((s) => parseScenario(s));
  } catch (e) {
    if (e instanceof ScenarioError) throw new CliError(`--scenario: ${e.message}`);
    throw e;
  }

  if (v.endpoint !== undefined) {
    try {
      const u = new URL(v.endpoint);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http(s)");
    } catch {
      throw new CliError(`--endpoint "${v.endpoint}" is not an http(s) URL`);
    }
    options.endpoint = v.endpoint;
  }
  if (v.protocol !== undefined && v.protocol !== "proto" && v.protocol !== "json") {
    throw new CliError(`--protocol must be proto or json, got "${v.protocol}"`);
  }
  options.protocol = (v.protocol as "proto" | "json" | undefined) ?? "proto";
  options.key = v.key ?? env.TS_INGEST_KEY ?? null;
  const headers: Record<string, string> = {};
  for (const h of v.header ?? []) {
    const i = h.indexOf(":");
    if (i <= 0) throw new CliError(`--header "${h}" should be "Name: value"`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  options.headers = headers;
  options.batchSize = number("batch-size", v["batch-size"], (n) => isInt(n) && n >= 1, "a whole number ≥ 1");
  options.concurrency = number("concurrency", v.concurrency, (n) => isInt(n) && n >= 1 && n <= 32, "1..32");
  options.exportTimeoutMs = number("timeout", v.timeout, (n) => n >= 100, "at least 100 (milliseconds)");
  options.dryRun = v["dry-run"] ?? false;
  if (v["no-truth"] && v.truth !== undefined) throw new CliError("--truth and --no-truth exclude each other");
  options.truthPath = v["no-truth"] ? null : v.truth ?? DEFAULT_TRUTH_PATH;
  options.verbose = v.verbose ?? false;
  for (const k of Object.keys(options) as Array<keyof SimulateOptions>) {
    if (options[k] === undefined) delete options[k];
  }
  return { help: false, quiet: v.quiet ?? false, options };
}
