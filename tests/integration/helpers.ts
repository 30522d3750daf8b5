// tests/integration/helpers.ts — what the integration suites share: where the PG15 test cluster is, and polling.
export { databaseUrl, dropDatabase, recreateDatabase } from "../../scripts/local/databases.ts";

/** The PG15 test cluster (real pg_cron + pgTAP); `npm test` sets TS_TEST_DATABASE_URL. */
export const CLUSTER_URL = process.env.TS_TEST_DATABASE_URL ||
  "postgresql://postgres@127.0.0.1:54329/postgres";

/** Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
