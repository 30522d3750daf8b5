// functions/_shared/ingest/postgres-store.ts — IngestStore backed by the database functions of
// supabase/migrations/*_spans.sql. One transaction per request: spans are acknowledged only after the
// commit, and anomaly.ingest_spans skips spans already stored, so a retried export stores nothing twice.

import { isTransientDbError, type Sql } from "../db.ts";
import type { IngestConfig } from "../redact.ts";
import { type IngestStore, StoreUnavailableError } from "./otlp-handler.ts";

/** Spans per ingest_spans() call inside the request's transaction (bounds the size of one JSON parameter). */
export const CHUNK_SPANS = 5000;

export function postgresIngestStore(sql: Sql): IngestStore {
  const guard = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      if (isTransientDbError(err)) throw new StoreUnavailableError((err as Error).message);
      throw err;
    }
  };
  return {
    authenticate: (key) =>
      guard(async () => {
        // Cheap pre-check so random keys never reach the database as writes.
        if (!/^tsk_[0-9a-f]{64}$/.test(key)) return false;
        const rows = await sql`select anomaly.authenticate_ingest_key(${key}) as id`;
        return rows[0]?.id != null;
      }),
    loadConfig: () =>
      guard(async () => {
        const rows = await sql`select anomaly.config('ingest') as cfg`;
        return rows[0].cfg as IngestConfig;
      }),
    ingest: (spans) =>
      guard(() =>
        sql.begin(async (tx) => {
          let received = 0;
          let inserted = 0;
          for (let i = 0; i < spans.length; i += CHUNK_SPANS) {
            const chunk = storableJson(spans.slice(i, i + CHUNK_SPANS));
            const [r] = await tx.unsafe(
              "select (r).received, (r).inserted from anomaly.ingest_spans($1::text::json) as r",
              [chunk],
            );
            received += Number(r.received);
            inserted += Number(r.inserted);
          }
          return { received, inserted };
        })
      ),
  };
}

// U+0000 (legal in OTLP strings) and unpaired surrogates (an OTLP/JSON "\ud800" escape yields one) leave
// JSON.stringify as the escapes \u0000 and \udXXX, which Postgres text and jsonb refuse: the whole request
// then failed with a 500 and its good spans were lost (clients must not retry a 500).
const UNSTORABLE_HINT = /\\(?:u0000|ud[89a-f])/;
// Every escape of JSON.stringify's output as one token, so an escaped backslash ("\\") is never misread.
const JSON_ESCAPE = /\\(u[0-9a-f]{4}|[^u])/g;

/** JSON text of the spans with each U+0000 and unpaired surrogate replaced by U+FFFD, so Postgres can store it. */
export function storableJson(spans: unknown[]): string {
  const text = JSON.stringify(spans);
  if (!UNSTORABLE_HINT.test(text)) return text;
  return text.replace(
    JSON_ESCAPE,
    (escape, body: string) => (body === "u0000" || /^ud[89a-f]/.test(body) ? "\\ufffd" : escape),
  );
}
