// scripts/demo.ts — `npm run demo`: the whole pipeline end to end on the embedded Postgres 17 (or DATABASE_URL).
// Boots the database and the local runner, applies the migrations with the Supabase CLI, sends 100 back-dated
// minutes of shop traffic through the real otlp-ingest function with the OpenTelemetry SDK (a latency
// regression after a deploy and an error spike injected), runs rollup and detection, prints the anomalies and the
// Telegram alerts that reached a local Bot API stand-in (scripts/demo/alerts.ts), exits.
//
//   npm run demo                 the full demo (about a minute)
//   npm run demo -- --smoke      a smaller run that fails (exit 1) unless both injected incidents are found and at
//                                least one Telegram alert arrived
//   npm run demo -- --source tempo   the same traffic through a Tempo-shaped server, pulled by tempo-ingest
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startDemoAlerts } from "./demo/alerts.ts";
import { startDatabase } from "./local/database.ts";
import { recreateDatabase } from "./local/databases.ts";
import { ensureIngestKey, prepareDatabase } from "./local/migrate.ts";
import { startRunner } from "./local/runner.ts";
import { simulate } from "./simulate/index.ts";
import { simulateThroughTempo } from "./demo/tempo-source.ts";

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    minutes: { type: "string" },
    rate: { type: "string" },
    protocol: { type: "string", default: "proto" },
    source: { type: "string", default: "otlp" },
  },
});

if (args.source !== "otlp" && args.source !== "tempo") throw new Error("--source is otlp (default) or tempo");
const MINUTES = Number(args.minutes ?? (args.smoke ? 90 : 100));
const RATE = Number(args.rate ?? (args.smoke ? 60 : 120));
const REGRESSION = { service: "inventory", at: 55 };
const ERROR_SPIKE = { service: "payments", at: 75 };
const t0 = Date.now();
const say = (line: string) =>
  console.log(`[demo ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`);

const server = await startDatabase({ log: say });
const alerts = await startDemoAlerts();
let runner: Awaited<ReturnType<typeof startRunner>> | undefined;
let exitCode = 0;
const functionLog: string[] = []; // the runner's and functions' output, shown when something fails
try {
  // A fresh database per run on the embedded server; with DATABASE_URL the given database is used as is.
  const url = server.embedded ? await recreateDatabase(server.url, "trace_sentinel_demo") : server.url;
  say(`database ${redact(url)}${server.embedded ? " (embedded Postgres 17)" : ""}`);
  await prepareDatabase(url);
  say("compat bootstrap + migrations applied with `supabase db push`");

  const sql = postgres(url, { max: 2, onnotice: () => {} });
  // The demo drives rollup and detection itself so its output is deterministic; the schedule stays registered.
  await sql`update anomaly.jobs set enabled = false where name = 'rollup-detect'`;
  const key = await ensureIngestKey(url, "demo");
  runner = await startRunner({
    dbUrl: url,
    port: Number(process.env.TS_RUNNER_PORT || 54321),
    env: alerts.env,
    log: (line) => {
      functionLog.push(line);
      if (functionLog.length > 200) functionLog.shift();
      if (process.env.TS_DEMO_VERBOSE) say(line);
    },
  });
  say(`local runner at ${runner.url} serving ${runner.functions().map((f) => f.name).join(", ")}`);
  await alerts.configure(sql, runner.url);

  const scenarios = [
    `latency_regression@${REGRESSION.at}m:service=${REGRESSION.service},factor=3`,
    `error_spike@${ERROR_SPIKE.at}m:service=${ERROR_SPIKE.service},rate=0.5,duration=6m`,
  ];
  say(`simulating ${MINUTES} back-dated minutes at up to ${RATE} traces/min with: ${scenarios.join("; ")}`);
  const simOptions = {
    protocol: args.protocol === "json" ? "json" as const : "proto" as const,
    minutes: MINUTES,
    rate: RATE,
    seed: 7,
    scenarios,
    truthPath: ".data/demo-ground-truth.json",
  };
  let sim;
  if (args.source === "tempo") {
    const pulled = await simulateThroughTempo({ runner, sql, simulate: simOptions, say });
    sim = pulled.sim;
    say(
      `tempo-ingest pulled ${pulled.tracesFetched} traces / ${pulled.spansStaged} spans in ${pulled.invocations} ` +
        `invocation(s) (${Math.round(pulled.spansPerSecond)} spans/s, protobuf trace-by-id)`,
    );
  } else {
    sim = await simulate({ ...simOptions, endpoint: runner.functionUrl("otlp-ingest"), key });
    if (!sim.ok) throw new Error(`simulation failed: ${sim.errors.join("; ")}`);
    say(
      `sent ${sim.traces} traces / ${sim.spans} spans through otlp-ingest ` +
        `(${Math.round(sim.spansPerSecond)} spans/s, OpenTelemetry SDK ${args.protocol} exporter)`,
    );
  }

  // Roll up until every touched minute is done, then detect.
  let series = 0;
  const rollupStarted = Date.now();
  for (;;) {
    const [r] = await sql`select * from anomaly.rollup()`;
    series += r.series_minutes;
    const [{ pending }] = await sql`select count(*)::int as pending from anomaly.rollup_dirty`;
    if (pending === 0 && r.series_minutes === 0) break;
  }
  const detectStarted = Date.now();
  const [d] = await sql`select * from anomaly.detect()`;
  const [run] = await sql`select count(*)::int as detectors from anomaly.detectors where enabled`;
  say(
    `rollup wrote ${series} series-minutes in ${((detectStarted - rollupStarted) / 1000).toFixed(1)} s; ` +
      `${run.detectors} detectors scored through ${iso(d.scored_through)} in ${
        ((Date.now() - detectStarted) / 1000).toFixed(1)
      } s (${d.hits} hits)`,
  );

  const anomalies = await sql`
    select severity, anomaly_type, subtype, series_signal, service, operation, detector, observed_value,
           expected_value, first_seen, last_seen, occurrences, score, confidence, trace_id, explanation
    from public.trace_anomalies order by first_seen, service, anomaly_type`;
  const start = Date.parse(sim.truth.run.start);
  const minute = (t: Date | string) => `+${Math.round((new Date(t).getTime() - start) / 60000)}m`;
  console.log("");
  console.log(table(anomalies.map((a) => ({
    severity: a.severity,
    type: a.anomaly_type,
    service: a.service,
    operation: a.operation ?? "",
    "observed vs expected": observedVsExpected(a.series_signal, a.observed_value, a.expected_value),
    since: minute(a.first_seen),
    score: fmt(a.score),
    detectors: (a.explanation.detectors ?? []).map((d: { name: string }) => d.name).join(","),
  }))));
  console.log("");
  console.log("Why (top anomalies by score):");
  for (const a of [...anomalies].sort((x, y) => y.score - x.score).slice(0, 6)) {
    console.log(
      `  ${a.severity} ${a.anomaly_type} ${a.service} ${a.operation ?? ""} since ${minute(a.first_seen)}`,
    );
    for (const line of explain(a.explanation)) console.log(`      ${line}`);
    if (a.trace_id) console.log(`      exemplar trace ${a.trace_id}`);
  }
  console.log("");
  console.log("Injected (ground truth):");
  for (const i of sim.truth.incidents) {
    console.log(
      `  ${i.anomaly_type.padEnd(18)} ${i.service.padEnd(10)} from +${
        Math.round((Date.parse(i.start) - start) / 60000)
      }m ${i.scenario}`,
    );
  }
  console.log("");

  const found = (types: string[], service: string) =>
    anomalies.some((a) => types.includes(a.anomaly_type) && a.service === service);
  const regressionFound = found(["LATENCY", "DEPLOY_REGRESSION"], REGRESSION.service);
  const spikeFound = found(["ERROR_RATE"], ERROR_SPIKE.service);
  say(`latency regression on ${REGRESSION.service}: ${regressionFound ? "detected" : "MISSED"}`);
  say(`error spike on ${ERROR_SPIKE.service}: ${spikeFound ? "detected" : "MISSED"}`);
  if (!regressionFound || !spikeFound) exitCode = 1;
  alerts.print(await alerts.deliver(sql, runner));
  console.log("");
  say(`alerts: ${alerts.messages.length} Telegram messages arrived`);
  if (alerts.messages.length === 0) exitCode = 1;
  await sql.end();
  say(`done; the runner served ${runner.url}; stopping everything`);
} catch (err) {
  console.error(err);
  if (functionLog.length) {
    console.error(`last lines of the runner and functions:\n${functionLog.slice(-40).join("\n")}`);
  }
  exitCode = 1;
} finally {
  await runner?.stop();
  await alerts.stop();
  await server.stop();
}
process.exit(exitCode);

/** "p95 40.7 ms vs 7.3 ms" and friends, by the signal the anomaly is about. */
function observedVsExpected(signal: string | null, observed: number | null, expected: number | null): string {
  switch (signal) {
    case "error_rate":
      return `${pct(observed)} vs ${pct(expected)} errors`;
    case "throughput":
      return `${fmt(observed)}/min vs ${fmt(expected)}/min`;
    case "cpu":
      return `cpu ${pct(observed)} vs ${pct(expected)}`;
    case "memory":
      return `mem ${fmt(observed == null ? null : observed / 2 ** 20)} MiB vs ${
        fmt(expected == null ? null : expected / 2 ** 20)
      } MiB`;
    default:
      return `${(signal ?? "latency_p95").replace("latency_", "")} ${fmt(observed)} ms vs ${
        fmt(expected)
      } ms`;
  }
}

/** Readable lines from an anomaly's explanation jsonb: detectors, band, culprit, attributes, versions. */
function explain(e: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const detectors = (e.detectors ?? []) as { name: string; score: number }[];
  if (detectors.length) {
    lines.push(
      `detectors: ${detectors.map((d) => `${d.name} (${fmt(Number(d.score))})`).join(", ")}` +
        (e.confidence != null ? `; confidence ${fmt(Number(e.confidence))}` : ""),
    );
  }
  const band = e.band as [number | null, number | null] | undefined;
  if (band) lines.push(`expected band ${fmt(band[0])} .. ${fmt(band[1])}`);
  const details = (e.details ?? {}) as Record<string, unknown>;
  if (details.previous_version) {
    lines.push(`deploy: ${details.previous_version} -> ${details.new_version}`);
  }
  const culprit = ((e.culprit ?? {}) as { culprit?: Record<string, unknown> }).culprit;
  if (culprit) {
    lines.push(
      `culprit: ${culprit.service} ${culprit.operation} self-time ${
        fmt(Number(culprit.self_time_ms_baseline))
      } -> ` +
        `${fmt(Number(culprit.self_time_ms_anomalous))} ms per trace`,
    );
  }
  const attrs = (e.attributes ?? []) as { key: string; value: unknown; lift: number }[];
  if (Array.isArray(attrs) && attrs.length) {
    lines.push(
      `over-represented: ${attrs.map((x) => `${x.key}=${x.value} (x${fmt(Number(x.lift))})`).join(", ")}`,
    );
  }
  return lines;
}

function iso(d: Date | null): string {
  return d ? new Date(d).toISOString().slice(0, 16) + "Z" : "-";
}
function fmt(n: number | null): string {
  return n == null ? "-" : n >= 100 ? n.toFixed(0) : n.toFixed(1);
}
function pct(n: number | null): string {
  return n == null ? "-" : `${(100 * n).toFixed(1)} %`;
}
function redact(url: string): string {
  return url.replace(/:\/\/([^:@/]+):[^@/]+@/, "://$1:***@");
}
function table(rows: Record<string, string>[]): string {
  if (rows.length === 0) return "(no anomalies)";
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join("  ");
  return [line(cols), line(width.map((w) => "-".repeat(w))), ...rows.map((r) => line(cols.map((c) => r[c])))]
    .join("\n");
}
