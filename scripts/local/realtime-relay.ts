// scripts/local/realtime-relay.ts — relays Realtime broadcasts from the database to browsers, locally.
// compat.sql's realtime.send() stores the message in realtime.messages and notifies 'realtime_broadcast'
// with {"id": <uuid>}; this relay reads the row and fans it out as Server-Sent Events to clients of
// GET /realtime/v1/sse?topic=<topic> (event = the message's event, data = {topic, event, payload}).
import type http from "node:http";
import type postgres from "postgres";
import type { WorkerState } from "./net-worker.ts";

export interface RealtimeRelay {
  readonly state: WorkerState;
  readonly reason?: string;
  readonly stats: { clients: number; relayed: number };
  /** Serves one SSE subscription; `topics` come from the `topic` query parameters. */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse, topics: string[]): void;
  stop(): Promise<void>;
}

interface Message {
  id: string;
  topic: string;
  event: string | null;
  payload: unknown;
}

const KEEP_ALIVE_MS = 15_000;

/** Starts relaying when the database has realtime.messages (the compat stand-in or Supabase's own). */
export async function startRealtimeRelay(
  sql: postgres.Sql,
  log: (line: string) => void,
): Promise<RealtimeRelay> {
  const clients = new Map<http.ServerResponse, Set<string>>();
  const stats = { clients: 0, relayed: 0 };
  let state: WorkerState = "running";
  let reason: string | undefined;

  const [probe] = await sql<
    { messages: boolean }[]
  >`select to_regclass('realtime.messages') is not null as messages`;
  let unlisten: () => Promise<void> = () => Promise.resolve();
  if (!probe.messages) {
    state = "disabled";
    reason = "no realtime.messages table";
  } else {
    // Notifications are handled one after another so clients see messages in commit order.
    let chain: Promise<void> = Promise.resolve();
    const listener = await sql.listen("realtime_broadcast", (payload) => {
      chain = chain.then(() => relay(payload)).catch((err) =>
        log(`realtime: could not relay ${payload}: ${(err as Error).message}`)
      );
    });
    unlisten = () => listener.unlisten();
  }

  async function relay(notification: string): Promise<void> {
    const id = (JSON.parse(notification) as { id?: string }).id;
    if (!id) return;
    const [message] = await sql<Message[]>`
      select id::text, topic, event, payload from realtime.messages where id = ${id}`;
    if (!message) return;
    const event = (message.event ?? "message").replace(/[\r\n]/g, " ");
    const data = JSON.stringify({ topic: message.topic, event: message.event, payload: message.payload });
    const frame = `id: ${message.id}\nevent: ${event}\ndata: ${data}\n\n`;
    for (const [res, topics] of clients) {
      if (topics.has(message.topic)) res.write(frame);
    }
    stats.relayed++;
  }

  function subscribe(req: http.IncomingMessage, res: http.ServerResponse, topics: string[]): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
      "access-control-allow-origin": "*",
    });
    res.write(`retry: 2000\n: subscribed to ${topics.join(", ").replace(/[\r\n]/g, " ")}\n\n`);
    clients.set(res, new Set(topics));
    stats.clients = clients.size;
    const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), KEEP_ALIVE_MS);
    const done = () => {
      clearInterval(keepAlive);
      clients.delete(res);
      stats.clients = clients.size;
    };
    // Not req's "close": since Node 16 it fires once the (empty) request body is read.
    res.on("close", done);
    req.socket.setKeepAlive(true);
  }

  return {
    get state() {
      return state;
    },
    get reason() {
      return reason;
    },
    stats,
    subscribe,
    async stop() {
      if (state === "stopped") return;
      state = "stopped";
      await unlisten().catch(() => {});
      for (const res of [...clients.keys()]) res.end();
    },
  };
}
