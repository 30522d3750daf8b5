// scripts/local/databases.ts — throwaway databases on a server: the demo, the embedded pgTAP run and the
// integration tests each get a fresh database, so runs never see each other's data.
import postgres from "postgres";

/** The URL of database `name` on the same server as `url`. */
export function databaseUrl(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Drops (if present) and creates database `name` on the server of `url`, empty or as a copy of `template`
 * (much faster than migrating again); returns its URL.
 */
export async function recreateDatabase(url: string, name: string, template?: string): Promise<string> {
  for (const n of template ? [name, template] : [name]) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(n)) throw new Error(`invalid database name "${n}"`);
  }
  const admin = postgres(databaseUrl(url, "postgres"), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name}${template ? ` template ${template}` : ""}`);
  } finally {
    await admin.end();
  }
  return databaseUrl(url, name);
}

/** Drops database `name` on the server of `url` (no error if it is gone). */
export async function dropDatabase(url: string, name: string): Promise<void> {
  const admin = postgres(databaseUrl(url, "postgres"), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}
