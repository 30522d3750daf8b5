// scripts/local/serve-function.ts — Deno bootstrap the local runner starts once per edge function.
// Usage: deno run ... serve-function.ts <path to functions/<name>/index.ts>, with env TS_FUNCTION_PORT.
// It replaces Deno.serve so the function (which calls Deno.serve at top level, as on Supabase) listens on
// 127.0.0.1:<TS_FUNCTION_PORT>, provides EdgeRuntime.waitUntil, and exits when the runner goes away.

const entry = Deno.args[0];
const port = Number(Deno.env.get("TS_FUNCTION_PORT"));
if (!entry || !Number.isInteger(port) || port <= 0) {
  console.error("usage: TS_FUNCTION_PORT=<port> deno run ... serve-function.ts <function entrypoint>");
  Deno.exit(2);
}

type Handler = Deno.ServeHandler;
type Options = Record<string, unknown> & { handler?: Handler };

const originalServe = Deno.serve.bind(Deno) as (options: unknown, handler?: Handler) => Deno.HttpServer;
let served = false;

function serve(first: Handler | Options, second?: Handler | Options): Deno.HttpServer {
  let handler: Handler | undefined;
  let options: Options = {};
  if (typeof first === "function") {
    handler = first;
    if (second && typeof second === "object") options = second;
  } else {
    options = first ?? {};
    handler = typeof second === "function" ? second : options.handler;
  }
  if (typeof handler !== "function") throw new TypeError("Deno.serve: a handler is required");
  if (served) throw new Error("Deno.serve was called twice; an edge function serves exactly once");
  served = true;
  // The function's own port/hostname/path/onListen do not apply: the runner decides where it listens.
  const { port: _port, hostname: _hostname, path: _path, onListen: _onListen, handler: _h, ...rest } =
    options;
  return originalServe({ ...rest, port, hostname: "127.0.0.1", onListen: () => {} }, handler);
}
Object.defineProperty(Deno, "serve", { value: serve, configurable: true, writable: true });

// Supabase's edge runtime offers EdgeRuntime.waitUntil for background work after the response.
const g = globalThis as unknown as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } };
g.EdgeRuntime ??= {
  waitUntil(p: Promise<unknown>): void {
    p.catch((err) => console.error("EdgeRuntime.waitUntil task failed:", err));
  },
};

// The runner holds our stdin open; when it goes away (even killed with SIGKILL) stdin ends: exit then.
if (Deno.env.get("TS_EXIT_ON_STDIN_EOF") === "1") {
  (async () => {
    const buf = new Uint8Array(256);
    try {
      while ((await Deno.stdin.read(buf)) !== null) {
        // nothing is ever sent; we only wait for end-of-file
      }
    } catch {
      // a closed or broken pipe means the same thing
    }
    Deno.exit(0);
  })();
}

const mod = await import(new URL(entry, `file://${Deno.cwd()}/`).href);

// `export default { fetch }` is the other entrypoint shape Supabase accepts.
if (!served && mod?.default && typeof mod.default.fetch === "function") {
  serve((req, info) => mod.default.fetch(req, info));
}
if (!served) {
  console.error(`${entry} neither called Deno.serve nor exported default { fetch }`);
  Deno.exit(3);
}
