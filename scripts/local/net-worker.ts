// scripts/local/net-worker.ts — the local stand-in for pg_net's background worker.
// Where the `net` schema comes from compat.sql (pg_net absent), it drains net.http_request_queue after
// commit (LISTEN 'net_request' plus a 1 s poll), performs each request with fetch and records the outcome
// in net._http_response the way pg_net does (status, content type, headers, body, timed_out, error_msg).
import { Buffer } from "node:buffer";
import type postgres from "postgres";

export type WorkerState = "running" | "disabled" | "stopped";

export interface NetWorker {
  readonly state: WorkerState;
  readonly reason?: string;
  readonly stats: { delivered: number; failed: number; inFlight: number };
  /** Claims and sends everything queued now; resolves when those requests have been recorded. */
  drain(): Promise<void>;
  stop(): Promise<void>;
}

interface QueueRow {
  id: string;
  method: string;
  url: string;
  headers: Record<string, unknown> | null;
  body: Uint8Array | null;
  timeout_milliseconds: number;
}

const BATCH = 20;
const MAX_IN_FLIGHT = 32;
const POLL_MS = 1000;
const TTL_SWEEP_MS = 60_000;

/** Starts the worker when the database has the compat `net` schema and no pg_net extension. */
export async function startNetWorker(sql: postgres.Sql, log: (line: string) => void): Promise<NetWorker> {
  const [probe] = await sql<{ pg_net: boolean; queue: boolean }[]>`
    select exists (select 1 from pg_extension where extname = 'pg_net') as pg_net,
           to_regclass('net.http_request_queue') is not null as queue`;
  if (probe.pg_net || !probe.queue) {
    const reason = probe.pg_net ? "pg_net extension present" : "no net.http_request_queue";
    return {
      state: "disabled",
      reason,
      stats: { delivered: 0, failed: 0, inFlight: 0 },
      drain: () => Promise.resolve(),
      stop: () => Promise.resolve(),
    };
  }

  let state: WorkerState = "running";
  const stats = { delivered: 0, failed: 0, inFlight: 0 };
  const inFlight = new Set<Promise<void>>();
  let claiming: Promise<Promise<void>[]> | undefined;
  let again = false;

  async function perform(row: QueueRow): Promise<void> {
    const timeoutMs = row.timeout_milliseconds;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(row.headers ?? {})) {
      if (v !== null && v !== undefined) headers[k] = typeof v === "string" ? v : JSON.stringify(v);
    }
    let result: {
      status_code: number | null;
      content_type: string | null;
      headers: Record<string, string> | null;
      content: string | null;
      timed_out: boolean;
      error_msg: string | null;
    };
    const started = Date.now();
    try {
      const res = await fetch(row.url, {
        method: row.method,
        headers,
        body: row.method === "GET" || row.body === null ? undefined : Buffer.from(row.body),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: "follow",
      });
      const content = await res.text();
      result = {
        status_code: res.status,
        content_type: res.headers.get("content-type"),
        headers: Object.fromEntries(res.headers),
        content,
        timed_out: false,
        error_msg: null,
      };
      stats.delivered++;
    } catch (err) {
      const e = err as Error & { cause?: { message?: string; code?: string } };
      const timedOut = e.name === "TimeoutError" || e.name === "AbortError";
      result = {
        status_code: null,
        content_type: null,
        headers: null,
        content: null,
        timed_out: timedOut,
        error_msg: timedOut
          ? `Timeout of ${timeoutMs} ms reached. Total time: ${Date.now() - started} ms`
          : (e.cause?.message ?? e.message),
      };
      stats.failed++;
    }
    await sql`
      insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
      values (${row.id}, ${result.status_code}, ${result.content_type},
              ${result.headers === null ? null : sql.json(result.headers)}, ${result.content},
              ${result.timed_out}, ${result.error_msg})`;
  }

  function launch(row: QueueRow): Promise<void> {
    const p = perform(row)
      .catch((err) =>
        log(`net: could not record the response to request ${row.id}: ${(err as Error).message}`)
      )
      .finally(() => {
        inFlight.delete(p);
        stats.inFlight = inFlight.size;
      });
    inFlight.add(p);
    stats.inFlight = inFlight.size;
    return p;
  }

  // Claims everything queued (in batches) and returns the requests it launched; it does not wait for
  // them, so a slow request never holds up the next claim.
  async function claimAll(): Promise<Promise<void>[]> {
    const launched: Promise<void>[] = [];
    while (state === "running") {
      while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      // Deleting the rows is the claim, as pg_net does: the queue is a hand-off, not a log.
      const rows = await sql<QueueRow[]>`
        with next as (
          select id from net.http_request_queue order by id limit ${BATCH} for update skip locked
        )
        delete from net.http_request_queue q using next where q.id = next.id
        returning q.id, q.method, q.url, q.headers, q.body, q.timeout_milliseconds`;
      for (const row of rows) launched.push(launch(row));
      if (rows.length < BATCH) break;
    }
    return launched;
  }

  function drain(): Promise<void> {
    if (state !== "running") return Promise.resolve();
    if (claiming) {
      again = true;
    } else {
      claiming = (async () => {
        const launched: Promise<void>[] = [];
        try {
          do {
            again = false;
            launched.push(...await claimAll());
          } while (again && state === "running");
        } catch (err) {
          if (state === "running") log(`net: queue drain failed: ${(err as Error).message}`);
        } finally {
          claiming = undefined;
        }
        return launched;
      })();
    }
    return claiming.then((launched) => Promise.all(launched)).then(() => {});
  }

  const listener = await sql.listen("net_request", () => void drain());
  const poll = setInterval(() => void drain(), POLL_MS);
  const sweep = setInterval(() => {
    // pg_net purges responses after pg_net.ttl (6 hours by default).
    sql`delete from net._http_response where created < now() - interval '6 hours'`.catch(() => {});
  }, TTL_SWEEP_MS);
  void drain();

  return {
    get state() {
      return state;
    },
    stats,
    drain,
    async stop() {
      if (state !== "running") return;
      state = "stopped";
      clearInterval(poll);
      clearInterval(sweep);
      await listener.unlisten().catch(() => {});
      await claiming;
      await Promise.race([Promise.all(inFlight), new Promise((resolve) => setTimeout(resolve, 2000))]);
    },
  };
}
