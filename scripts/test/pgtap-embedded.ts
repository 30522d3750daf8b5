// scripts/test/pgtap-embedded.ts — the pgTAP suite once more on the embedded Postgres 17 (what the demo runs on),
// because Supabase runs both 15 and 17. The embedded server has no pgTAP package, so Debian's plain
// pgtap.sql is loaded into schema `extensions` of a fresh database, then scripts/test/pgtap.sh runs pg_prove.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { recreateDatabase } from "../local/databases.ts";
import { REPO_ROOT, startDatabase } from "../local/database.ts";
import { prepareDatabase } from "../local/migrate.ts";

const PGTAP_SQL = "/usr/share/postgresql/15/extension/pgtap.sql";

const db = await startDatabase({ databaseUrl: null });
let failed = false;
try {
  const url = await recreateDatabase(db.url, "ts_pgtap");
  await prepareDatabase(url);
  if (!fs.existsSync(PGTAP_SQL)) {
    throw new Error(`${PGTAP_SQL} is missing: run scripts/test/pg15.sh start first`);
  }
  execFileSync("psql", [
    "-q",
    "-X",
    "-v",
    "ON_ERROR_STOP=1",
    url,
    "-c",
    "set search_path = extensions",
    "-f",
    PGTAP_SQL,
  ], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, PGOPTIONS: "-c client_min_messages=warning" },
  });
  try {
    execFileSync(path.join(REPO_ROOT, "scripts/test/pgtap.sh"), [url], { stdio: "inherit" });
  } catch {
    failed = true;
  }
} finally {
  await db.stop();
}
process.exit(failed ? 1 : 0);
