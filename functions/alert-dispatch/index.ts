// functions/alert-dispatch/index.ts — sends due alerts from anomaly.alert_outbox to Telegram and webhooks.
// Called every minute by the `alert-dispatch` job and at once by the outbox trigger for CRITICAL alerts (both through
// net.http_post with the service key), or by hand: POST /functions/v1/alert-dispatch {"reason": "manual"}.
// Deploy with verify_jwt = false: the function itself requires the service-role key as bearer (or apikey).
import { z } from "zod";
import { connect, isTransientDbError } from "../_shared/db.ts";
import { createDispatcher } from "../_shared/alerts/dispatcher.ts";
import { postgresAlertStore } from "../_shared/alerts/postgres-store.ts";

const env = z.object({
  SUPABASE_DB_URL: z.string().min(1, "SUPABASE_DB_URL is required (Supabase sets it for every function)"),
  SUPABASE_SERVICE_ROLE_KEY: z.string().optional(),
  SUPABASE_SECRET_KEYS: z.string().optional(),
  TELEGRAM_API_URL: z.string().url().default("https://api.telegram.org"),
  ALERT_DISPATCH_BUDGET_MS: z.coerce.number().int().min(1000).max(300_000).default(25_000),
  ALERT_DISPATCH_DB_POOL: z.coerce.number().int().min(1).max(16).default(2),
}).parse(Deno.env.toObject());

const Body = z.object({
  reason: z.enum(["sweep", "critical", "manual"]).default("manual"),
  limit: z.number().int().min(1).max(1000).optional(),
  budget_ms: z.number().int().min(100).max(300_000).optional(),
}).strict();

const keys = new Set<string>([env.SUPABASE_SERVICE_ROLE_KEY ?? ""].filter(Boolean));
if (env.SUPABASE_SECRET_KEYS) {
  for (
    const v of Object.values(z.record(z.string(), z.string()).parse(JSON.parse(env.SUPABASE_SECRET_KEYS)))
  ) {
    keys.add(v);
  }
}
if (keys.size === 0) throw new Error("SUPABASE_SERVICE_ROLE_KEY or SUPABASE_SECRET_KEYS is required");

const sql = connect(env.SUPABASE_DB_URL, env.ALERT_DISPATCH_DB_POOL);
const dispatcher = createDispatcher({
  store: postgresAlertStore(sql),
  telegramApiUrl: env.TELEGRAM_API_URL,
  isTransient: isTransientDbError,
  log: (line) => console.error(line),
});
// One run at a time per instance; a call arriving meanwhile waits for it and then runs (it may find new rows).
let running: Promise<unknown> = Promise.resolve();

function authorised(req: Request): boolean {
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.get("authorization") ?? "")?.[1];
  const given = bearer ?? req.headers.get("apikey") ?? "";
  let ok = false;
  for (const key of keys) ok = constantTimeEqual(given, key) || ok;
  return ok;
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

Deno.serve(async (req) => {
  if (req.method !== "POST") return json(405, { code: "METHOD_NOT_ALLOWED", message: "POST only" });
  if (!authorised(req)) {
    return json(401, { code: "UNAUTHORIZED", message: "the service-role key is required" });
  }
  const text = await req.text();
  let raw: unknown = {};
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return json(400, { code: "BAD_REQUEST", message: "body must be JSON" });
  }
  const parsed = Body.safeParse(raw);
  if (!parsed.success) {
    return json(400, {
      code: "BAD_REQUEST",
      message: parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "),
    });
  }
  const run = running.then(() =>
    dispatcher.run({
      budgetMs: parsed.data.budget_ms ?? env.ALERT_DISPATCH_BUDGET_MS,
      limit: parsed.data.limit,
    })
  );
  running = run.catch(() => {});
  try {
    const summary = await run;
    if (dispatcher.pendingAcks() > 0) {
      // The database is away: keep retrying the acks after answering, as long as the runtime lets us.
      const edge = (globalThis as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } }).EdgeRuntime;
      edge?.waitUntil(dispatcher.flushAcks(120_000));
    }
    return json(200, { reason: parsed.data.reason, ...summary });
  } catch (err) {
    if (isTransientDbError(err)) {
      return new Response(JSON.stringify({ code: "UNAVAILABLE", message: "database unavailable" }), {
        status: 503,
        headers: { "content-type": "application/json", "retry-after": "5" },
      });
    }
    console.error(`alert-dispatch: ${(err as Error).message}`);
    return json(500, { code: "INTERNAL", message: (err as Error).message });
  }
});
