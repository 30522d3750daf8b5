// scripts/local/runner.ts — the local stand-in for Supabase's gateway, Edge Runtime, pg_net, pg_cron and Realtime.
// One HTTP server on 127.0.0.1: /functions/v1/<name>/* runs functions/<name>/index.ts under Deno, /realtime/v1/sse
// relays realtime.send() broadcasts, /health reports state; alongside it drains the compat net queue and runs
// compat cron jobs (only where pg_net / pg_cron are absent), so SQL behaves as it does on a Supabase project.
import { randomBytes } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import path from "node:path";
import process from "node:process";
import postgres from "postgres";
import { REPO_ROOT } from "./database.ts";
import { type CronRunResult, type CronWorker, runCronJobNow, startCronWorker } from "./cron-worker.ts";
import { FunctionHost, type FunctionInfo, sendJson } from "./function-host.ts";
import { type NetWorker, startNetWorker } from "./net-worker.ts";
import { type RealtimeRelay, startRealtimeRelay } from "./realtime-relay.ts";

export { runCronJobNow };
export type { CronRunResult, FunctionInfo };

export interface RunnerOptions {
  /** The database the functions and workers use (SUPABASE_DB_URL for functions). */
  dbUrl: string;
  /** Port on 127.0.0.1 (default env TS_RUNNER_PORT, else 54321; 0 picks a free one). */
  port?: number;
  /** Folder of `<name>/index.ts` functions (default `<repo>/functions`). */
  functionsDir?: string;
  /** Extra environment for every function. */
  env?: Record<string, string>;
  /** Service role key handed to functions and stored in Vault (default: random per run). */
  serviceRoleKey?: string;
  /** How long each function may take to answer on its first start (default 120 s: Deno may download npm packages). */
  startTimeoutMs?: number;
  /** Store `project_url` and `service_role_key` in Vault (default true). */
  registerVaultSecrets?: boolean;
  /** Function output and worker messages (default console.log). */
  log?: (line: string) => void;
}

export interface Runner {
  /** Base URL, e.g. http://127.0.0.1:54321 (SUPABASE_URL for functions). */
  url: string;
  port: number;
  serviceRoleKey: string;
  functions(): FunctionInfo[];
  functionUrl(name: string): string;
  health(): RunnerHealth;
  /** Runs a cron job now, through the stand-in scheduler (serialised with its clock runs) or directly. */
  runCronJobNow(jobname: string): Promise<CronRunResult>;
  /** Sends everything in net.http_request_queue now and waits until the responses are recorded. */
  drainNetQueue(): Promise<void>;
  stop(): Promise<void>;
}

export interface RunnerHealth {
  status: "ok" | "stopping";
  url: string;
  functions: (FunctionInfo & { url: string })[];
  workers: Record<"net" | "cron" | "realtime", { state: string; reason?: string } & Record<string, unknown>>;
}

const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type, last-event-id",
  "access-control-allow-methods": "GET, OPTIONS",
};

/** Starts the runner; see the file header. Resolves once every function answers. */
export async function startRunner(opts: RunnerOptions): Promise<Runner> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const port = opts.port ?? Number(process.env.TS_RUNNER_PORT || 54321);
  const functionsDir = path.resolve(opts.functionsDir ?? path.join(REPO_ROOT, "functions"));
  const serviceRoleKey = opts.serviceRoleKey ?? `sb_secret_local_${randomBytes(24).toString("base64url")}`;
  const sql = postgres(opts.dbUrl, { max: 4, onnotice: () => {} });

  let host: FunctionHost | undefined;
  let netWorker: NetWorker | undefined;
  let cronWorker: CronWorker | undefined;
  let relay: RealtimeRelay | undefined;
  let stopping: Promise<void> | undefined;
  let url = "";

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { code: "RUNNER_ERROR", message: (err as Error).message });
      else res.destroy();
    });
  });
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = new URL(req.url ?? "/", "http://runner.local");
    const fnMatch = /^\/functions\/v1\/([^/?]+)(\/.*)?$/.exec(target.pathname);
    if (fnMatch) {
      const name = decodeURIComponent(fnMatch[1]);
      if (!host?.has(name)) {
        sendJson(res, 404, { code: "NOT_FOUND", message: "Requested function was not found" });
        return;
      }
      // As on Supabase, the function sees /<name>/<rest>: the /functions/v1 prefix is stripped.
      await host.proxy(name, `/${fnMatch[1]}${fnMatch[2] ?? ""}${target.search}`, req, res);
      return;
    }
    if (req.method === "OPTIONS") {
      res.writeHead(204, CORS);
      res.end();
      return;
    }
    if (target.pathname === "/health" && (req.method === "GET" || req.method === "HEAD")) {
      res.setHeader("access-control-allow-origin", "*");
      sendJson(res, 200, health());
      return;
    }
    if (target.pathname === "/realtime/v1/sse" && req.method === "GET") {
      const topics = target.searchParams.getAll("topic").filter(Boolean);
      if (topics.length === 0) {
        res.setHeader("access-control-allow-origin", "*");
        sendJson(res, 400, { code: "BAD_REQUEST", message: "give at least one ?topic=" });
      } else if (!relay || relay.state !== "running") {
        res.setHeader("access-control-allow-origin", "*");
        sendJson(res, 503, {
          code: "UNAVAILABLE",
          message: `realtime relay ${relay?.reason ?? "not running"}`,
        });
      } else {
        relay.subscribe(req, res, topics);
      }
      return;
    }
    sendJson(res, 404, { code: "NOT_FOUND", message: `no route for ${req.method} ${target.pathname}` });
  }

  function health(): RunnerHealth {
    const worker = (w: NetWorker | CronWorker | RealtimeRelay | undefined) =>
      w ? { state: w.state, reason: w.reason, ...w.stats } : { state: "not started" };
    return {
      status: stopping ? "stopping" : "ok",
      url,
      functions: (host?.list() ?? []).map((f) => ({ ...f, url: `${url}/functions/v1/${f.name}` })),
      workers: { net: worker(netWorker), cron: worker(cronWorker), realtime: worker(relay) },
    };
  }

  async function stop(): Promise<void> {
    await Promise.allSettled([cronWorker?.stop(), netWorker?.stop(), relay?.stop()]);
    await new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    await host?.stop();
    await sql.end({ timeout: 5 });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "EADDRINUSE"
            ? new Error(`port ${port} is in use (set TS_RUNNER_PORT to another port)`)
            : err,
        ));
      server.listen(port, "127.0.0.1", () => resolve());
    });
    const actualPort = (server.address() as net.AddressInfo).port;
    url = `http://127.0.0.1:${actualPort}`;

    if (opts.registerVaultSecrets ?? true) {
      await upsertVaultSecret(sql, "project_url", url, "Trace Sentinel local runner base URL");
      await upsertVaultSecret(
        sql,
        "service_role_key",
        serviceRoleKey,
        "Trace Sentinel local runner service key",
      );
    }

    host = new FunctionHost({
      functionsDir,
      startTimeoutMs: opts.startTimeoutMs ?? 120_000,
      log,
      env: {
        SUPABASE_URL: url,
        SUPABASE_DB_URL: opts.dbUrl,
        SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
        SUPABASE_SECRET_KEYS: JSON.stringify({ default: serviceRoleKey }),
        DENO_TLS_CA_STORE: "system",
        DENO_DIR: process.env.DENO_DIR || path.join(REPO_ROOT, ".deno"),
        ...opts.env,
      },
    });
    await host.startAll();

    netWorker = await startNetWorker(sql, log);
    cronWorker = await startCronWorker(sql, opts.dbUrl, log);
    relay = await startRealtimeRelay(sql, log);

    return {
      url,
      port: actualPort,
      serviceRoleKey,
      functions: () => host?.list() ?? [],
      functionUrl: (name: string) => `${url}/functions/v1/${name}`,
      health,
      runCronJobNow: (jobname: string) => cronWorker!.runNow(jobname),
      drainNetQueue: () => netWorker!.drain(),
      stop: () => stopping ??= stop(),
    };
  } catch (err) {
    stopping ??= stop();
    await stopping.catch(() => {});
    throw err;
  }
}

/** Creates or updates a Vault secret through the vault API (Supabase's Vault and the compat one share it). */
async function upsertVaultSecret(
  sql: postgres.Sql,
  name: string,
  value: string,
  description: string,
): Promise<void> {
  const [vault] = await sql<{ ok: boolean }[]>`select to_regclass('vault.secrets') is not null as ok`;
  if (!vault.ok) return;
  const [existing] = await sql<{ id: string }[]>`select id::text from vault.secrets where name = ${name}`;
  if (existing) {
    await sql`select vault.update_secret(${existing.id}::uuid, ${value})`;
  } else {
    await sql`select vault.create_secret(${value}, ${name}, ${description})`;
  }
}
