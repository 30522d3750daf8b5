// scripts/bench/tempo.ts — `npm run bench:tempo`: spans/s staged by the tempo-ingest edge function pulling from a
// local Tempo-shaped server (search + protobuf trace-by-id, default budgets: traces fetched per invocation), against
// the same simulated traffic pushed through otlp-ingest by the OpenTelemetry SDK, and how long metrics mode takes
// for the same hour. Runs on the embedded Postgres 17 unless DATABASE_URL is set; prints one figure per line.
//
//   npm run bench:tempo [-- --minutes 60 --rate 120 --concurrency 4 --max-traces 2000]
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { TempoServer } from "../../tests/fakes/tempo-server.ts";
import { startDatabase } from "../local/database.ts";
import { recreateDatabase } from "../local/databases.ts";
import { ensureIngestKey, prepareDatabase } from "../local/migrate.ts";
import { type Runner, startRunner } from "../local/runner.ts";
import { simulate } from "../simulate/index.ts";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "60" },
    rate: { type: "string", default: "120" },
    concurrency: { type: "string", default: "4" },
    "max-traces": { type: "string", default: "2000" },
  },
});
// A fixed weekday afternoon (near the diurnal peak): the same input whatever the time of day.
const SIM = {
  start: "2026-11-18T13:00:00Z",
  minutes: Number(args.minutes),
  rate: Number(args.rate),
  seed: 3,
  truthPath: null,
};
const log = (line: string) => console.error(`[bench:tempo] ${line}`);

async function invoke(runner: Runner, source: string): Promise<Record<string, unknown>> {
  const res = await fetch(runner.functionUrl("tempo-ingest"), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${runner.serviceRoleKey}` },
    body: JSON.stringify({ source }),
  });
  if (res.status !== 200) throw new Error(`tempo-ingest answered ${res.status}: ${await res.text()}`);
  return (await res.json()).sources[0];
}

const server = await startDatabase();
let runner: Runner | undefined;
let tempo: TempoServer | undefined;
try {
  const url = server.embedded ? await recreateDatabase(server.url, "ts_bench_tempo") : server.url;
  await prepareDatabase(url);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  await sql`update anomaly.jobs set enabled = false`; // nothing else competes for the database during the run
  const key = await ensureIngestKey(url, "bench");
  runner = await startRunner({ dbUrl: url, port: 0, log: () => {} });

  // 1. Push: the simulator's SDK exporter (protobuf) into otlp-ingest.
  log(`simulating ${SIM.minutes} minutes at ${SIM.rate} traces/min into otlp-ingest`);
  const pushed = await simulate({ ...SIM, endpoint: runner.functionUrl("otlp-ingest"), key });
  if (!pushed.ok) throw new Error(`push failed: ${pushed.errors.join("; ")}`);
  await sql`truncate anomaly.spans, anomaly.rollup_dirty, anomaly.open_traces`;

  // 2. Pull: the same traffic into a Tempo-shaped server, then tempo-ingest with the default budgets.
  tempo = await TempoServer.start();
  const fed = await simulate({ ...SIM, endpoint: tempo.url, key: null });
  if (!fed.ok) throw new Error(`feeding the Tempo-shaped server failed: ${fed.errors.join("; ")}`);
  tempo.prepareBodies();
  const cursor = new Date(Date.parse(SIM.start) - 60_000);
  await sql`insert into anomaly.tempo_sources ${
    sql({
      name: "bench",
      base_url: tempo.url,
      cursor,
      lag_seconds: 0,
      max_window_seconds: 86_400,
      fetch_concurrency: Number(args.concurrency),
      max_traces_per_run: Number(args["max-traces"]),
    })
  }`;
  log(`pulling ${fed.traces} traces / ${fed.spans} spans through tempo-ingest`);
  const perInvocation: Array<{ traces: number; seconds: number }> = [];
  const t0 = performance.now();
  // Until every trace is staged (the rest of the back-dated week to now is empty and only costs searches).
  for (let fetched = 0; fetched < fed.traces;) {
    const t = performance.now();
    const r = await invoke(runner, "bench");
    perInvocation.push({ traces: Number(r.traces_fetched), seconds: (performance.now() - t) / 1000 });
    fetched += Number(r.traces_fetched);
    if (r.status === "failed") throw new Error(`run failed: ${r.error}`);
    if (r.status === "ok") break;
  }
  const pullSeconds = (performance.now() - t0) / 1000;
  const [{ staged }] = await sql`select count(*)::int as staged from anomaly.spans`;
  if (staged !== fed.spans) throw new Error(`staged ${staged} spans, expected ${fed.spans}`);
  const [runs] = await sql`select sum(searches)::int as searches, sum(splits)::int as splits
                           from anomaly.tempo_runs where source = 'bench'`;

  // 3. Metrics mode over the same hour.
  await sql`insert into anomaly.tempo_sources ${
    sql({
      name: "bench-metrics",
      base_url: tempo.url,
      cursor,
      mode: "metrics",
      lag_seconds: 0,
      max_window_seconds: 86_400,
    })
  }`;
  const tm = performance.now();
  const m = await invoke(runner, "bench-metrics");
  const metricsSeconds = (performance.now() - tm) / 1000;
  if (m.status === "failed") throw new Error(`metrics run failed: ${m.error}`);

  const pullRate = staged / pullSeconds;
  console.log(
    `tempo-ingest, traces mode: ${staged} spans / ${fed.traces} traces in ${pullSeconds.toFixed(1)} s = ` +
      `${
        Math.round(pullRate)
      } spans/s (${perInvocation.length} invocations, ${runs.searches} searches, ${runs.splits} splits)`,
  );
  console.log(
    `  traces fetched per invocation (budget ${
      args["max-traces"]
    }, fetch_concurrency ${args.concurrency}): ` +
      perInvocation.map((p) => `${p.traces} in ${p.seconds.toFixed(1)} s`).join(", "),
  );
  console.log(
    `otlp-ingest push of the same traffic (simulator, SDK protobuf exporter): ${
      Math.round(pushed.spansPerSecond)
    } spans/s` +
      ` -> pull/push = ${(pullRate / pushed.spansPerSecond).toFixed(2)}`,
  );
  console.log(
    `tempo-ingest, metrics mode: ${m.series_minutes} series-minutes for ${SIM.minutes} minutes (a 24 h query_range window) in ${
      metricsSeconds.toFixed(2)
    } s (3 query_range calls)`,
  );
  await sql.end();
} finally {
  await runner?.stop();
  await tempo?.stop();
  await server.stop();
}
process.exit(0);
