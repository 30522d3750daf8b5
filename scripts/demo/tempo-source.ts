// scripts/demo/tempo-source.ts — the Tempo path of `npm run demo -- --source tempo` (and of `npm run bench:tempo`):
// the simulator's OpenTelemetry SDK exports to a local Tempo-shaped server (tests/fakes/tempo-server.ts, which
// receives OTLP like Tempo's distributor and answers Tempo's query API), a tempo_sources row points at it, and the
// real tempo-ingest edge function is invoked (as the pg_cron job would) until it has caught up.

import type postgres from "postgres";
import type { Runner } from "../local/runner.ts";
import { simulate, type SimulateOptions, type SimulationResult } from "../simulate/index.ts";
import { TempoServer } from "../../tests/fakes/tempo-server.ts";

export interface TempoPullResult {
  sim: SimulationResult;
  /** tempo-ingest invocations until the source was caught up. */
  invocations: number;
  tracesFetched: number;
  spansStaged: number;
  pullSeconds: number;
  spansPerSecond: number;
  tempoUrl: string;
}

export interface TempoSourceOptions {
  runner: Runner;
  sql: postgres.Sql;
  simulate: Omit<SimulateOptions, "endpoint" | "key">;
  /** Source columns to override (budgets, limits). */
  source?: Record<string, unknown>;
  say?: (line: string) => void;
}

/** Simulates into a Tempo-shaped server, then pulls everything through tempo-ingest. Stops the server after. */
export async function simulateThroughTempo(opts: TempoSourceOptions): Promise<TempoPullResult> {
  const say = opts.say ?? (() => {});
  const tempo = await TempoServer.start();
  try {
    const sim = await simulate({ ...opts.simulate, endpoint: tempo.url, key: null });
    if (!sim.ok) throw new Error(`simulation into the Tempo-shaped server failed: ${sim.errors.join("; ")}`);
    say(
      `simulator exported ${sim.traces} traces / ${sim.spans} spans to a Tempo-shaped server at ${tempo.url}`,
    );

    const start = Date.parse(sim.truth.run.start);
    const row = {
      name: "demo-tempo",
      base_url: tempo.url,
      cursor: new Date(start - 60_000),
      lag_seconds: 0,
      search_limit: 2000,
      max_traces_per_run: 50_000,
      max_seconds_per_run: 120,
      fetch_concurrency: 8,
      ...opts.source,
    };
    await opts.sql`delete from anomaly.tempo_sources where name = ${row.name as string}`;
    await opts.sql`insert into anomaly.tempo_sources ${opts.sql(row)}`;

    const t0 = Date.now();
    let invocations = 0;
    let tracesFetched = 0;
    let spansStaged = 0;
    for (;;) {
      invocations++;
      const res = await fetch(opts.runner.functionUrl("tempo-ingest"), {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${opts.runner.serviceRoleKey}`,
        },
        body: JSON.stringify({ source: row.name }),
      });
      if (res.status !== 200) throw new Error(`tempo-ingest answered ${res.status}: ${await res.text()}`);
      const [report] = (await res.json()).sources as Array<Record<string, unknown>>;
      if (report.status === "busy") {
        await new Promise((r) => setTimeout(r, 1000)); // the cron stand-in's own run holds the lease
        continue;
      }
      tracesFetched += Number(report.traces_fetched ?? 0);
      spansStaged += Number(report.spans_staged ?? 0);
      if (report.status === "failed") throw new Error(`tempo-ingest run failed: ${report.error}`);
      if (report.status === "ok") break;
      if (invocations > 100) throw new Error("tempo-ingest did not catch up in 100 invocations");
    }
    // Runs started by the cron stand-in meanwhile are counted from the run table, not the answers.
    const [totals] = await opts.sql`
      select coalesce(sum(traces_fetched), 0)::int as fetched, coalesce(sum(spans_staged), 0)::int as staged
      from anomaly.tempo_runs where source = ${row.name as string}`;
    tracesFetched = Math.max(tracesFetched, totals.fetched);
    spansStaged = Math.max(spansStaged, totals.staged);
    const pullSeconds = (Date.now() - t0) / 1000;
    return {
      sim,
      invocations,
      tracesFetched,
      spansStaged,
      pullSeconds,
      spansPerSecond: spansStaged / pullSeconds,
      tempoUrl: tempo.url,
    };
  } finally {
    await tempo.stop();
  }
}
