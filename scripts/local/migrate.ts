// scripts/local/migrate.ts — bring a plain Postgres to the state of a Supabase project's database.
// Applies the compat bootstrap (scripts/local/compat.sql), then the real migrations with the real
// Supabase CLI (`supabase db push --db-url`, which records history as on the platform), then
// supabase/seed.sql when it exists; and creates ingest keys for the local stack.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import postgres from "postgres";
import { REPO_ROOT } from "./database.ts";

export interface PrepareOptions {
  /** Project root holding scripts/local/compat.sql and supabase/ (default: this repository). */
  root?: string;
  /** Progress messages (default: none). */
  log?: (message: string) => void;
}

export interface PrepareResult {
  /** What `supabase db push` printed (stdout and stderr). */
  pushOutput: string;
  seeded: boolean;
}

const PUSH_TIMEOUT_MS = 180_000;

/** Adds `sslmode=disable` unless the URL already says which sslmode to use (the CLI needs it locally). */
export function withSslModeDisable(url: string): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has("sslmode")) parsed.searchParams.set("sslmode", "disable");
  return parsed.toString();
}

/** Compat bootstrap, migrations (Supabase CLI) and seed; safe to run again on a prepared database. */
export async function prepareDatabase(url: string, opts: PrepareOptions = {}): Promise<PrepareResult> {
  const root = path.resolve(opts.root ?? REPO_ROOT);
  const log = opts.log ?? (() => {});
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    // One preparer at a time per database (the compat file's guards are check-then-create).
    await sql`select pg_advisory_lock(hashtext('trace-sentinel:prepare-database'))`;

    log("applying scripts/local/compat.sql");
    const compat = fs.readFileSync(path.join(root, "scripts/local/compat.sql"), "utf8");
    await runScript(sql, compat, "scripts/local/compat.sql");

    log("applying supabase/migrations with `supabase db push`");
    const pushOutput = await supabaseDbPush(url, root);

    const seedFile = path.join(root, "supabase/seed.sql");
    const seeded = fs.existsSync(seedFile);
    if (seeded) {
      log("applying supabase/seed.sql");
      await runScript(sql, fs.readFileSync(seedFile, "utf8"), "supabase/seed.sql");
    }
    return { pushOutput, seeded };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Creates an ingest key named `name` with anomaly.create_ingest_key and returns its plaintext (shown once). */
export async function ensureIngestKey(url: string, name: string): Promise<string> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ key: string }[]>`select anomaly.create_ingest_key(${name}) as key`;
    if (!row?.key) throw new Error("anomaly.create_ingest_key returned no key");
    return row.key;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function runScript(sql: postgres.Sql, text: string, name: string): Promise<void> {
  try {
    // No parameters + simple protocol: the server runs the whole multi-statement text.
    await sql.unsafe(text).simple();
  } catch (err) {
    const e = err as postgres.PostgresError;
    const where = e.position ? ` near character ${e.position}` : "";
    throw new Error(`${name} failed${where}: ${e.message}${e.where ? `\n${e.where}` : ""}`, { cause: err });
  }
}

function supabaseDbPush(url: string, root: string): Promise<string> {
  const cli = path.join(REPO_ROOT, "node_modules/.bin/supabase");
  const args = [
    "db",
    "push",
    "--db-url",
    withSslModeDisable(url),
    "--yes",
    "--include-all",
    "--workdir",
    root,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      cli,
      args,
      { cwd: root, timeout: PUSH_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, CI: "1" } },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`.trim();
        if (err) {
          const code = (err as { code?: number | string }).code ?? "?";
          reject(
            new Error(`supabase db push failed (exit ${code}):\n${redact(stderr.trim() || output, url)}`),
          );
        } else {
          resolve(redact(output, url));
        }
      },
    );
  });
}

/** Keeps a URL's password out of error messages and logs. */
function redact(text: string, url: string): string {
  const password = new URL(url).password;
  return password ? text.split(password).join("***") : text;
}
