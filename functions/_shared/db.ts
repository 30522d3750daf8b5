// functions/_shared/db.ts — one postgres.js pool per function instance, and how database errors map to
// "try again later". Edge functions connect with SUPABASE_DB_URL (set by Supabase and by the local runner).

import postgres from "postgres";

export type Sql = postgres.Sql;

/** Opens the pool. `max` stays small: an edge function instance serves few requests at once. */
export function connect(url: string, max = 4): Sql {
  return postgres(url, {
    max,
    idle_timeout: 20,
    connect_timeout: 10,
    prepare: false, // safe behind Supabase's transaction pooler (Supavisor) as well as direct connections
    onnotice: () => {},
    connection: { application_name: "trace-sentinel" },
  });
}

// SQLSTATE classes that mean "the database is busy or away", not "your data is wrong":
// 08 connection exception, 53 insufficient resources, 57P0x operator intervention / shutdown, 40001/40P01 retryable.
const TRANSIENT = /^(08|53|57P0|40001|40P01)/;

/** True when an error from postgres.js (or the network below it) is worth retrying later. */
export function isTransientDbError(err: unknown): boolean {
  const e = err as { code?: string; errno?: string; name?: string };
  if (typeof e?.code === "string" && TRANSIENT.test(e.code)) return true;
  const code = String(e?.code ?? e?.errno ?? "");
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|CONNECT_TIMEOUT|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED/
    .test(code);
}
