// scripts/local/main.ts — `npm run local`: the whole local stack in one process.
// Starts the database (DATABASE_URL or the embedded Postgres 17), applies compat + migrations + seed, creates
// an ingest key, starts the runner (functions, net/cron stand-ins, realtime SSE relay) and prints where
// everything is; runs until SIGINT/SIGTERM, then stops the runner, its Deno children and the database.
import process from "node:process";
import { type DatabaseHandle, startDatabase } from "./database.ts";
import { ensureIngestKey, prepareDatabase } from "./migrate.ts";
import { type Runner, startRunner } from "./runner.ts";

function redactPassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

async function main(): Promise<void> {
  let db: DatabaseHandle | undefined;
  let runner: Runner | undefined;
  let stopping: Promise<void> | undefined;

  const shutdown = (signal: string) => {
    if (stopping) return;
    console.log(`\n${signal}: stopping the local stack...`);
    stopping = (async () => {
      const force = setTimeout(() => {
        console.error("shutdown is taking too long; exiting");
        process.exit(1);
      }, 20_000);
      try {
        await runner?.stop();
        await db?.stop();
      } finally {
        clearTimeout(force);
      }
    })().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => shutdown(signal));

  const t0 = Date.now();
  try {
    db = await startDatabase({ log: (m) => console.log(`db: ${m}`) });
    if (stopping) return;
    await prepareDatabase(db.url, { log: (m) => console.log(`db: ${m}`) });

    let ingestKey: string | undefined;
    try {
      ingestKey = await ensureIngestKey(db.url, `local-${new Date().toISOString()}`);
    } catch (err) {
      if ((err as { code?: string }).code !== "42883") throw err;
      console.warn("db: anomaly.create_ingest_key() does not exist yet; no ingest key created");
    }
    if (stopping) return;

    runner = await startRunner({ dbUrl: db.url });
    const lines = [
      "",
      `Trace Sentinel local stack is up (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      `  database        ${redactPassword(db.url)}${
        db.embedded ? "  (embedded Postgres 17; password: postgres)" : ""
      }`,
      `  runner          ${runner.url}   (health: ${runner.url}/health)`,
      `  realtime (SSE)  ${runner.url}/realtime/v1/sse?topic=<topic>`,
      `  service key     ${runner.serviceRoleKey}   (also in Vault as service_role_key)`,
      ...(ingestKey ? [`  ingest key      ${ingestKey}   (shown once; only its sha256 is stored)`] : []),
      "  functions:",
      ...runner.functions().map((f) => `    ${f.name.padEnd(16)}${runner!.functionUrl(f.name)}`),
      "",
      "Press Ctrl+C to stop.",
    ];
    console.log(lines.join("\n"));
  } catch (err) {
    console.error(`local stack failed to start: ${(err as Error).message}`);
    await runner?.stop().catch(() => {});
    await db?.stop().catch(() => {});
    process.exit(1);
  }
}

await main();
