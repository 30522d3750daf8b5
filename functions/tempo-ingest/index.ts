// functions/tempo-ingest/index.ts — pulls traces (or TraceQL metrics) from Grafana Tempo into Trace Sentinel.
// Called every minute by the pg_cron job `trace-sentinel:tempo-ingest` (net.http_post with the service key from
// Vault as bearer token); POST {"source": "<name>"} pulls one source, {} every enabled one. Answers 200 with one
// report per source once the runs are committed. Deploy with verify_jwt = false: the bearer is compared here with
// SUPABASE_SERVICE_ROLE_KEY (or one of SUPABASE_SECRET_KEYS), so only the project's own jobs can start a pull.

import { z } from "zod";
import { connect } from "../_shared/db.ts";
import { pullAll } from "../_shared/tempo/pull.ts";

const env = z.object({
  SUPABASE_DB_URL: z.string().min(1, "SUPABASE_DB_URL is required (Supabase sets it for every function)"),
  SUPABASE_SERVICE_ROLE_KEY: z.string().min(1).optional(),
  SUPABASE_SECRET_KEYS: z.string().optional(),
  TEMPO_INGEST_DB_POOL: z.coerce.number().int().min(1).max(16).default(2),
}).parse(Deno.env.toObject());

const keys = serviceKeys();
if (keys.length === 0) {
  throw new Error("tempo-ingest needs SUPABASE_SERVICE_ROLE_KEY or SUPABASE_SECRET_KEYS");
}

const Body = z.object({ source: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).optional() }).strict();

const sql = connect(env.SUPABASE_DB_URL, env.TEMPO_INGEST_DB_POOL);

Deno.serve(async (req) => {
  if (req.method !== "POST") {
    return json(405, { error: `method ${req.method} not allowed; POST {"source"?: name}` }, {
      Allow: "POST",
    });
  }
  const bearer = req.headers.get("authorization")?.replace(/^Bearer\s+/i, "") ?? "";
  if (!keys.some((k) => timingSafeEqual(k, bearer))) {
    await req.body?.cancel();
    return json(401, { error: "tempo-ingest needs the service role key as Authorization: Bearer" });
  }
  let body: z.infer<typeof Body>;
  try {
    const text = await req.text();
    const parsed = Body.safeParse(text.trim() === "" ? {} : JSON.parse(text));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return json(400, { error: `${issue.path.join(".") || "body"}: ${issue.message}` });
    }
    body = parsed.data;
  } catch (e) {
    return json(400, { error: `body is not JSON: ${(e as Error).message}` });
  }
  try {
    const reports = await pullAll(sql, { source: body.source, env: (name) => Deno.env.get(name) });
    return json(200, { sources: reports });
  } catch (e) {
    console.error("tempo-ingest: unexpected error", e);
    return json(500, { error: (e as Error).message });
  }
});

function serviceKeys(): string[] {
  const out: string[] = [];
  if (env.SUPABASE_SERVICE_ROLE_KEY) out.push(env.SUPABASE_SERVICE_ROLE_KEY);
  if (env.SUPABASE_SECRET_KEYS) {
    try {
      for (const v of Object.values(JSON.parse(env.SUPABASE_SECRET_KEYS) as Record<string, unknown>)) {
        if (typeof v === "string" && v) out.push(v);
      }
    } catch {
      // not JSON: ignore, the legacy key still works
    }
  }
  return out;
}

/** Compares in time independent of where the strings differ. */
function timingSafeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}
