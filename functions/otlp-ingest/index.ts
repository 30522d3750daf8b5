// functions/otlp-ingest/index.ts — OTLP/HTTP trace receiver edge function.
// POST <project>/functions/v1/otlp-ingest/v1/traces with header x-ingest-key; point an OpenTelemetry
// Collector `otlphttp` exporter (endpoint: <project>/functions/v1/otlp-ingest) or an SDK exporter at it.
// Deploy with verify_jwt = false: collectors send the ingest key, not a Supabase JWT.

import { z } from "zod";
import { connect } from "../_shared/db.ts";
import { createOtlpHandler } from "../_shared/ingest/otlp-handler.ts";
import { postgresIngestStore } from "../_shared/ingest/postgres-store.ts";

const env = z.object({
  SUPABASE_DB_URL: z.string().min(1, "SUPABASE_DB_URL is required (Supabase sets it for every function)"),
  OTLP_INGEST_MAX_CONCURRENT: z.coerce.number().int().min(1).max(256).default(8),
  OTLP_INGEST_DB_POOL: z.coerce.number().int().min(1).max(64).default(4),
}).parse(Deno.env.toObject());

const sql = connect(env.SUPABASE_DB_URL, env.OTLP_INGEST_DB_POOL);
const handler = createOtlpHandler(postgresIngestStore(sql), {
  maxConcurrent: env.OTLP_INGEST_MAX_CONCURRENT,
});

Deno.serve(handler);
