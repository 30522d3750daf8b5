// scripts/replay/main.ts — `npm run replay`: backtest the SQL detectors on a univariate series (`--series`) or on
// OTLP/Tempo trace files (`--traces`), on a throwaway database (embedded Postgres 17 unless --database-url or
// DATABASE_URL names a server). Progress goes to stderr; results (scored CSV, anomaly table or JSON lines) to stdout.
// Run with --help for usage.

import { readFile, writeFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { parseSeriesCsv, SeriesCsvError, type Spacing, writeScoredCsv } from "./csv.ts";
import {
  connect,
  createPreparedDatabase,
  describeEngine,
  dropDatabase,
  engineCaps,
  openServer,
  type ServerHandle,
  uniqueName,
} from "./engine.ts";
import { anomalyTable, isoSeconds, jsonLine, type ReplayAnomaly } from "./output.ts";
import { TraceFileError } from "./otlp-files.ts";
import { replaySeries, type Signal, SIGNALS } from "./series.ts";
import { loadTraceDir, replayTraces } from "./traces.ts";

const USAGE = `npm run replay -- --series FILE.csv [options]     score a timestamp,value series
npm run replay -- --traces DIR [options]          replay OTLP/Tempo JSON trace files in event time

--series FILE        CSV of timestamp,value (ISO-8601, or epoch seconds / milliseconds; header optional)
  --signal S         what the values are: latency (ms, default), throughput (requests/minute), errors (rate 0..1)
  --out FILE         write timestamp,value,score,is_anomaly here (default: stdout; with --json: not written)
  --spacing S        auto (default), minutes (bucket by timestamp), rows (row i = minute i; for 5-min/hourly data)
  --base N           spans behind each latency / error-rate minute (default 100)
  --detectors a,b    only these detectors score the points (default: the families that can fire on this signal,
                     legacy ones excepted — their hits open no anomalies; e.g. --detectors legacy_mean_ksigma
                     shows the old mean + k·sigma rule)
  --all-detectors    keep every registered detector running (slower; the others cannot fire on a flat column)
  --step N           minutes per detection step: 1 is the live cadence; default auto = 5 when the engine logs
                     anomaly.detector_hits (same per-minute verdicts, twice as fast), else 1
--traces DIR         every *.json in DIR: OTLP/JSON ExportTraceServiceRequest (or JSON lines of them), Tempo
                     trace-by-id v1 {"batches": …} or v2 {"trace": …} (base64 ids and enum names accepted)
  --shift-to-now     move the whole corpus (whole minutes) so that it ends now
common:
  --json             one JSON object per line per anomaly: type, subtype, service, operation, severity, score,
                     first_seen, detected_at (event time at which live detection would have fired), detector,
                     explanation
  --database-url URL a server to work on (default: DATABASE_URL, else the embedded Postgres 17). Replay always
                     creates its own database there and drops it afterwards.
  --keep             keep that database and print its URL
  --quiet            no progress on stderr`;

const { values: args } = (() => {
  try {
    return parseArgs({
      options: {
        series: { type: "string" },
        traces: { type: "string" },
        signal: { type: "string", default: "latency" },
        out: { type: "string" },
        spacing: { type: "string", default: "auto" },
        base: { type: "string", default: "100" },
        step: { type: "string", default: "auto" },
        detectors: { type: "string" },
        "all-detectors": { type: "boolean", default: false },
        "shift-to-now": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        "database-url": { type: "string" },
        keep: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    });
  } catch (e) {
    usageError((e as Error).message);
  }
})();

function usageError(message: string): never {
  console.error(`replay: ${message}\n\n${USAGE}`);
  process.exit(2);
}

if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!args.series === !args.traces) usageError("give exactly one of --series FILE or --traces DIR");
if (!(args.signal in SIGNALS)) {
  usageError(`--signal must be latency, throughput or errors, got "${args.signal}"`);
}
if (!["auto", "minutes", "rows"].includes(args.spacing!)) {
  usageError(`--spacing must be auto, minutes or rows, got "${args.spacing}"`);
}
const base = Number(args.base);
if (!Number.isInteger(base) || base < 1 || base > 1_000_000) usageError(`--base must be a whole number ≥ 1`);
const step = args.step === "auto" ? undefined : Number(args.step);
if (step !== undefined && (!Number.isInteger(step) || step < 1 || step > 1440)) {
  usageError(`--step must be auto or a whole number 1..1440`);
}

const t0 = performance.now();
const log = args.quiet
  ? () => {}
  : (m: string) =>
    console.error(`[replay ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${m}`);

let exitCode = 0;
let server: ServerHandle | undefined;
/** Drops the throwaway database; set once it exists (and run on Ctrl-C too). */
let dropOwnDatabase: (() => Promise<void>) | undefined;
// Output piped into `head` closes early: keep going so the database is still dropped.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`replay: ${signal}, dropping the replay database`);
    void (dropOwnDatabase?.() ?? Promise.resolve()).finally(async () => {
      await server?.stop().catch(() => {});
      process.exit(130);
    });
  });
}
try {
  // Read and check the input before starting anything.
  const seriesInput = args.series
    ? parseSeriesCsv(await readFile(args.series, "utf8"), {
      min: SIGNALS[args.signal as Signal].min,
      max: SIGNALS[args.signal as Signal].max,
      what: SIGNALS[args.signal as Signal].what,
    })
    : undefined;
  const traceInput = args.traces
    ? await loadTraceDir(args.traces, { shiftToNow: args["shift-to-now"] })
    : undefined;
  if (seriesInput) log(`${seriesInput.length} points from ${args.series}`);
  if (traceInput) {
    const shapes = Object.entries(traceInput.shapes).map(([k, v]) => `${v} ${k}`).join(", ");
    log(
      `${traceInput.spans.length} spans from ${traceInput.files} files (${shapes})` +
        (traceInput.rejected
          ? `; ${traceInput.rejected} spans rejected: ${traceInput.errors.join("; ")}`
          : "") +
        (traceInput.shiftedMs ? `; shifted by ${(traceInput.shiftedMs / 60_000).toFixed(0)} minutes` : ""),
    );
    if (traceInput.spans.length === 0) throw new Error("no valid spans to replay");
  }

  server = await openServer(args["database-url"], log);
  const name = uniqueName("ts_replay");
  const serverUrl = server.url;
  dropOwnDatabase = () => args.keep ? Promise.resolve() : dropDatabase(serverUrl, name).catch(() => {});
  const url = await createPreparedDatabase(server.url, name);
  log(`fresh database ${name}${server.embedded ? " on the embedded Postgres 17" : ""}, migrations applied`);
  const sql = connect(url);
  let anomalies: ReplayAnomaly[] = [];
  try {
    const caps = await engineCaps(sql);
    log(`engine: ${describeEngine(caps)}`);
    if (seriesInput) {
      const r = await replaySeries(sql, caps, seriesInput, {
        signal: args.signal as Signal,
        spacing: args.spacing as Spacing | "auto",
        base,
        step,
        detectors: args.detectors?.split(",").map((d) => d.trim()).filter(Boolean),
        allDetectors: args["all-detectors"],
        log,
      });
      log(
        `scored ${r.minutes} minutes (spacing ${r.spacing}, ${r.step} minute(s) per step, verdicts from ${r.source}) ` +
          `in ${r.wallSeconds.toFixed(1)} s; ${r.scores.filter((s) => s.isAnomaly).length} points flagged`,
      );
      const csv = writeScoredCsv(seriesInput.map((p, i) => ({
        raw: p.raw,
        value: p.value,
        score: r.scores[i].score,
        isAnomaly: r.scores[i].isAnomaly,
      })));
      if (args.out) {
        await writeFile(args.out, csv);
        log(`wrote ${args.out}`);
      } else if (!args.json) {
        process.stdout.write(csv);
      }
      anomalies = r.anomalies;
    } else if (traceInput) {
      const r = await replayTraces(sql, caps, traceInput.spans, { log });
      log(
        `replayed ${r.spans} spans over ${r.minutes} minutes (${isoSeconds(r.startMs)} .. ${
          isoSeconds(r.endMs)
        }), ` +
          `${r.cycles} rollup+detect cycles, in ${r.wallSeconds.toFixed(1)} s`,
      );
      anomalies = r.anomalies;
      if (!args.json) console.log(anomalyTable(anomalies));
    }
    if (args.json) { for (const a of anomalies) console.log(jsonLine(a)); }
    else if (args.series) log(`${anomalies.length} anomalies:\n${anomalyTable(anomalies)}`);
  } finally {
    await sql.end({ timeout: 5 });
    if (args.keep) log(`kept ${url.replace(/:\/\/([^:@/]+):[^@/]+@/, "://$1:***@")}`);
    else await dropOwnDatabase();
  }
} catch (err) {
  const fsError = typeof (err as { code?: unknown })?.code === "string" && "path" in (err as object);
  if (err instanceof SeriesCsvError || err instanceof TraceFileError) {
    console.error(`replay: ${args.series ?? ""}${args.series ? ": " : ""}${err.message}`);
    exitCode = 2;
  } else if (fsError) {
    console.error(`replay: cannot read ${(err as { path: string }).path}: ${(err as { code: string }).code}`);
    exitCode = 2;
  } else {
    console.error(err);
    exitCode = 1;
  }
} finally {
  await server?.stop();
}
process.exit(exitCode);
