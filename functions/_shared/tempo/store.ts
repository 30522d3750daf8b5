// functions/_shared/tempo/store.ts — the database side of a Tempo pull, over the SQL of
// supabase/migrations/*_tempo_runs.sql and *_tempo_metrics.sql: lease a source, commit pulled spans with the
// same anomaly.ingest_spans() the OTLP receiver uses (chunked exactly like it) plus the cursor in one
// transaction, record failures, store metrics minutes, finish the run, and resolve the source's credential.

import type { Sql } from "../db.ts";
import { CHUNK_SPANS, storableJson } from "../ingest/postgres-store.ts";
import type { IngestConfig } from "../redact.ts";
import type { Counters, RunStatus, TempoStore } from "./puller.ts";
import { type TempoSource, TempoSourceSchema } from "./source.ts";

export interface LeasedRun {
  runId: number;
  source: TempoSource;
  store: TempoStore;
  finish(
    status: RunStatus,
    error: string | null,
    details: Record<string, unknown>,
    windowEnd: string | null,
  ): Promise<void>;
}

/** Enabled sources, by name (or just `only` when given and enabled). */
export async function enabledSources(sql: Sql, only?: string): Promise<string[]> {
  const rows = only
    ? await sql<{ name: string }[]>`select name from anomaly.tempo_sources where enabled and name = ${only}`
    : await sql<{ name: string }[]>`select name from anomaly.tempo_sources where enabled order by name`;
  return rows.map((r) => r.name);
}

export async function loadIngestConfig(sql: Sql): Promise<IngestConfig> {
  const [row] = await sql`select anomaly.config('ingest') as cfg`;
  return row.cfg as IngestConfig;
}

/** Takes the lease of `name` for `owner` and opens a run; null when another live run holds it (or it is disabled). */
export async function beginRun(sql: Sql, name: string, owner: string): Promise<LeasedRun | null> {
  const [row] = await sql<{ run_id: string; source: unknown }[]>`
    select run_id, source from anomaly.tempo_begin_run(${name}, ${owner}::uuid)`;
  if (!row) return null;
  const runId = Number(row.run_id);
  const source = TempoSourceSchema.parse(row.source);

  const store: TempoStore = {
    commitSpans: (spans, cursor, counters, skips, fetchedIds) =>
      sql.begin(async (tx) => {
        let inserted = 0;
        for (let i = 0; i < spans.length; i += CHUNK_SPANS) {
          const [r] = await tx.unsafe(
            "select (r).inserted from anomaly.ingest_spans($1::text::json) as r",
            [storableJson(spans.slice(i, i + CHUNK_SPANS))],
          );
          inserted += Number(r.inserted);
        }
        const all: Counters & { recovered?: string[] } = {
          ...counters,
          spans_staged: inserted,
          recovered: fetchedIds,
        };
        await tx.unsafe(
          "select anomaly.tempo_checkpoint($1, $2::uuid, $3::timestamptz, $4::text::jsonb, $5::text::jsonb)",
          [runId, owner, cursor, JSON.stringify(all), JSON.stringify(skips)],
        );
        return inserted;
      }),
    noteFailure: async (traceId, detail) => {
      const [r] = await sql`select anomaly.tempo_note_failure(${runId}, ${traceId}, ${detail}) as gave_up`;
      return r.gave_up === true;
    },
    storeMinutes: async (rows, cursor, counters) => {
      const [r] = await sql.unsafe(
        "select anomaly.tempo_store_minutes($1, $2::uuid, $3::text::json, $4::timestamptz, $5::text::jsonb) as n",
        [runId, owner, JSON.stringify(rows), cursor, JSON.stringify(counters)],
      );
      return Number(r.n);
    },
  };
  return {
    runId,
    source,
    store,
    finish: async (status, error, details, windowEnd) => {
      await sql.unsafe(
        "select anomaly.tempo_finish_run($1, $2::uuid, $3, $4, $5::text::jsonb, $6::timestamptz)",
        [runId, owner, status, error, JSON.stringify(details), windowEnd],
      );
    },
  };
}

/**
 * The credential of a source: a Vault secret (by name) or a TEMPO_* environment variable. Throws a message naming
 * where it looked (never the value).
 */
export async function resolveSecret(
  sql: Sql,
  source: TempoSource,
  env: (name: string) => string | undefined,
): Promise<string | null> {
  if (source.auth_kind === "none") return null;
  if (source.auth_env_var) {
    const v = env(source.auth_env_var);
    if (!v) throw new Error(`environment variable ${source.auth_env_var} is not set for tempo-ingest`);
    return v;
  }
  const [row] = await sql<{ secret: string }[]>`
    select decrypted_secret as secret from vault.decrypted_secrets where name = ${source.auth_vault_secret}`;
  if (!row?.secret) throw new Error(`Vault secret "${source.auth_vault_secret}" does not exist`);
  return row.secret;
}
