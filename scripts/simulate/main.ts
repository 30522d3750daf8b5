// scripts/simulate/main.ts — `npm run simulate`: parses the command line, runs simulate(), prints progress and
// a summary, and exits 0 only when every span was exported (1 on export failures, 2 on bad arguments).
// Ctrl-C stops generating, flushes what was made, writes the ground truth as "interrupted" and exits 130.

import process from "node:process";
import { CliError, parseCli, USAGE } from "./cli.ts";
import { ConfigError, simulate, type SimulationProgress } from "./index.ts";
import { ScenarioError } from "./scenarios.ts";

async function main(): Promise<number> {
  let cli;
  try {
    cli = parseCli(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof CliError) {
      console.error(`simulate: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (cli.help) {
    console.log(USAGE);
    return 0;
  }

  const controller = new AbortController();
  let interrupts = 0;
  process.on("SIGINT", () => {
    if (++interrupts > 1) process.exit(130);
    console.error("\nsimulate: stopping (Ctrl-C again to quit at once) …");
    controller.abort();
  });

  const o = cli.options;
  let lastPrint = 0;
  const progress = (p: SimulationProgress) => {
    const now = Date.now();
    if (cli.quiet || (now - lastPrint < 2000 && p.minute !== p.minutes && !o.live)) return;
    lastPrint = now;
    console.error(
      `  minute ${p.minute}/${p.minutes} (${p.simulatedTime}) traces=${p.traces} spans=${p.spans} ` +
        `exported=${p.exportedSpans} failed=${p.failedSpans} queued=${p.pendingSpans}`,
    );
  };

  let result;
  try {
    if (!cli.quiet) {
      const target = o.dryRun ? "nowhere (dry run)" : `${o.endpoint ?? "default endpoint"} (${o.protocol})`;
      console.error(
        `simulate: ${o.live ? "live" : "back-dated"}, ${o.minutes} min, peak ${
          o.rate ?? 120
        } traces/min, seed ${o.seed ?? 1}, to ${target}`,
      );
    }
    result = await simulate({ ...o, signal: controller.signal, onProgress: progress });
  } catch (e) {
    if (e instanceof ScenarioError || e instanceof ConfigError) {
      console.error(`simulate: ${e.message}`);
      return 2;
    }
    throw e;
  }

  const t = result.truth.run;
  console.log(
    [
      `simulate: ${result.status}: ${t.start} .. ${t.end} (${t.minutes_generated}/${t.minutes} min, seed ${t.seed})`,
      `  traces ${result.traces} (errors at root: ${t.error_traces}), spans ${result.spans}`,
      `  exported ${result.exportedSpans} spans in ${result.exportRequests} requests, failed ${result.failedSpans} ` +
      `(${result.failedRequests} requests), rejected ${result.rejectedSpans}`,
      `  ${result.wallSeconds}s wall, ${result.tracesPerSecond} traces/s, ${result.spansPerSecond} spans/s`,
      `  incidents: ${
        result.truth.incidents.map((i) =>
          `${i.scenario}(${i.service}${i.operation ? ` ${i.operation}` : ""}) ${i.start}`
        )
          .join("; ") || "none"
      }`,
      `  ground truth: ${result.truthPath ?? "(not written)"}`,
      ...result.errors.map((e) => `  error: ${e}`),
    ].join("\n"),
  );
  if (!result.ok) return 1;
  return result.status === "interrupted" ? 130 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
