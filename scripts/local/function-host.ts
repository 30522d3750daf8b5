// scripts/local/function-host.ts — runs edge functions under Deno for the local runner and proxies to them.
// One Deno process per `functions/<name>/index.ts` (folders starting with `_` are shared code), started
// through serve-function.ts on a port chosen here; requests to /functions/v1/<name>/<rest> reach the
// function as /<name>/<rest>, as Supabase's edge runtime does, with bodies streamed both ways.
import { Buffer } from "node:buffer";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { REPO_ROOT } from "./database.ts";
import { onProcessExit, waitForExit } from "./shutdown.ts";

export type FunctionState = "starting" | "ready" | "exited" | "stopped";

export interface FunctionInfo {
  name: string;
  entrypoint: string;
  state: FunctionState;
  pid?: number;
  port?: number;
  restarts: number;
  lastExit?: string;
}

export interface FunctionHostOptions {
  functionsDir: string;
  env: Record<string, string>;
  startTimeoutMs: number;
  log: (line: string) => void;
}

const DENO = path.join(REPO_ROOT, "node_modules/.bin/deno");
const BOOTSTRAP = path.join(REPO_ROOT, "scripts/local/serve-function.ts");
const SLUG = /^[A-Za-z][A-Za-z0-9_-]*$/;
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
]);

interface Fn extends FunctionInfo {
  child?: ChildProcess;
  starting?: Promise<void>;
  output: string[];
}

/** Function folders with an index.ts, skipping `_shared` and other names that are not Supabase slugs. */
export function discoverFunctions(functionsDir: string): { name: string; entrypoint: string }[] {
  if (!fs.existsSync(functionsDir)) return [];
  return fs.readdirSync(functionsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && SLUG.test(d.name))
    .map((d) => ({ name: d.name, entrypoint: path.join(functionsDir, d.name, "index.ts") }))
    .filter((f) => fs.existsSync(f.entrypoint))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export class FunctionHost {
  #fns = new Map<string, Fn>();
  #opts: FunctionHostOptions;
  #stopping = false;
  #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  #unregisterExit: () => void;

  constructor(opts: FunctionHostOptions) {
    this.#opts = opts;
    for (const f of discoverFunctions(opts.functionsDir)) {
      this.#fns.set(f.name, { ...f, state: "stopped", restarts: 0, output: [] });
    }
    this.#unregisterExit = onProcessExit(() => this.#killAll("SIGKILL"));
  }

  /** Starts every function and waits until each answers on its port; rejects (after killing all) if one fails. */
  async startAll(): Promise<void> {
    try {
      await Promise.all([...this.#fns.values()].map((fn) => this.#start(fn)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  list(): FunctionInfo[] {
    return [...this.#fns.values()].map(({ name, entrypoint, state, pid, port, restarts, lastExit }) => ({
      name,
      entrypoint,
      state,
      pid,
      port,
      restarts,
      lastExit,
    }));
  }

  has(name: string): boolean {
    return this.#fns.has(name);
  }

  /** Proxies `req` to function `name` with the URL path `forwardPath` (`/<name>/<rest>?<query>`). */
  async proxy(
    name: string,
    forwardPath: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> {
    const fn = this.#fns.get(name);
    if (!fn) throw new Error(`unknown function ${name}`);
    if (fn.state !== "ready") {
      // A function that crashed is started again on its next request, as the edge runtime would.
      try {
        await this.#start(fn);
      } catch (err) {
        sendJson(res, 503, {
          code: "BOOT_ERROR",
          message: `Function failed to start: ${(err as Error).message}`,
        });
        return;
      }
    }
    const headers: http.OutgoingHttpHeaders = {};
    for (const [key, value] of Object.entries(req.headers)) {
      if (!HOP_BY_HOP.has(key) && value !== undefined) headers[key] = value;
    }
    const upstream = http.request({
      host: "127.0.0.1",
      port: fn.port,
      method: req.method,
      path: forwardPath,
      headers,
      agent: this.#agent,
    });
    upstream.on("response", (up) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [key, value] of Object.entries(up.headers)) {
        if (!HOP_BY_HOP.has(key) && value !== undefined) out[key] = value;
      }
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      res.flushHeaders();
      up.pipe(res);
      up.on("error", () => res.destroy());
    });
    upstream.on("error", (err) => {
      if (res.headersSent) res.destroy();
      else sendJson(res, 502, { code: "BAD_GATEWAY", message: `function ${name}: ${err.message}` });
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#unregisterExit();
    const children = [...this.#fns.values()].map((fn) => fn.child).filter((c): c is ChildProcess => !!c);
    this.#killAll("SIGTERM");
    await Promise.all(children.map(async (child) => {
      if (child.pid && !(await waitForExit(child.pid, 3000))) child.kill("SIGKILL");
      if (child.pid) await waitForExit(child.pid, 2000);
    }));
    for (const fn of this.#fns.values()) {
      fn.state = "stopped";
      fn.child = undefined;
    }
    this.#agent.destroy();
  }

  #killAll(signal: NodeJS.Signals): void {
    for (const fn of this.#fns.values()) {
      if (fn.child && fn.child.exitCode === null && fn.child.signalCode === null) fn.child.kill(signal);
    }
  }

  #start(fn: Fn): Promise<void> {
    if (this.#stopping) return Promise.reject(new Error("runner is stopping"));
    if (fn.state === "ready") return Promise.resolve();
    fn.starting ??= this.#spawn(fn).finally(() => {
      fn.starting = undefined;
    });
    return fn.starting;
  }

  async #spawn(fn: Fn): Promise<void> {
    if (fn.pid !== undefined) fn.restarts++;
    const port = await freePort();
    fn.port = port;
    fn.state = "starting";
    fn.output = [];
    const args = ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys"];
    args.push("--config", path.join(REPO_ROOT, "deno.json"));
    // Without a committed deno.lock, do not let several Deno processes race to write one.
    if (!fs.existsSync(path.join(REPO_ROOT, "deno.lock"))) args.push("--no-lock");
    args.push(BOOTSTRAP, fn.entrypoint);
    const child = spawn(DENO, args, {
      cwd: REPO_ROOT,
      env: {
        // Deno's download/progress colours are noise once prefixed and piped into our log.
        ...(process.stdout.isTTY ? {} : { NO_COLOR: "1" }),
        ...process.env,
        ...this.#opts.env,
        TS_FUNCTION_PORT: String(port),
        TS_EXIT_ON_STDIN_EOF: "1",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    fn.child = child;
    fn.pid = child.pid;
    const onLine = (line: string) => {
      fn.output.push(line);
      if (fn.output.length > 60) fn.output.shift();
      this.#opts.log(`[${fn.name}] ${line}`);
    };
    lines(child.stdout, onLine);
    lines(child.stderr, onLine);
    child.stdin?.on("error", () => {}); // EPIPE once the child is gone

    const exited = new Promise<string>((resolve) => {
      child.once("exit", (code, signal) => {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        if (fn.child === child) {
          fn.child = undefined;
          fn.state = this.#stopping ? "stopped" : "exited";
          fn.lastExit = how;
          if (!this.#stopping) this.#opts.log(`[${fn.name}] Deno process ended (${how})`);
        }
        resolve(how);
      });
      child.once("error", (err) => resolve(`spawn error: ${err.message}`));
    });

    const deadline = Date.now() + this.#opts.startTimeoutMs;
    let ended: string | undefined;
    exited.then((how) => {
      ended = how;
    });
    while (!ended && Date.now() < deadline) {
      if (await portAnswers(port)) {
        if (ended) break;
        fn.state = "ready";
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const tail = fn.output.slice(-20).join("\n");
    if (!ended) child.kill("SIGKILL");
    throw new Error(
      `function ${fn.name} did not start (${
        ended ?? `no answer on port ${port} within ${this.#opts.startTimeoutMs} ms`
      })` +
        (tail ? `:\n${tail}` : ""),
    );
  }
}

function lines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      onLine(buffered.slice(0, nl).replace(/\r$/, ""));
      buffered = buffered.slice(nl + 1);
    }
  });
  stream.on("end", () => {
    if (buffered) onLine(buffered);
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** A TCP port on 127.0.0.1 that is free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
