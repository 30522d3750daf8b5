// tests/integration/alert-dispatch.test.ts — alerting end to end through the real alert-dispatch edge function
// (Deno-served by the local runner), the real outbox SQL on a fresh database of the PG15 test cluster, and local
// receivers that speak the Telegram Bot API and verify webhook signatures: the CRITICAL path through net.http_post,
// the sweep job, a receiver down then up, 429 retry_after, a permanent 403, a slow receiver past the timeout, the
// database taken away between send and ack, and three dispatchers racing on one outbox. Everything exactly once.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createDispatcher } from "../../functions/_shared/alerts/dispatcher.ts";
import { postgresAlertStore } from "../../functions/_shared/alerts/postgres-store.ts";
import { isTransientDbError } from "../../functions/_shared/db.ts";
import { prepareDatabase } from "../../scripts/local/migrate.ts";
import { type Runner, startRunner } from "../../scripts/local/runner.ts";
import { TcpProxy } from "../fakes/tcp-proxy.ts";
import { startTelegramServer, type TelegramServer } from "../fakes/telegram-server.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../fakes/webhook-receiver.ts";
import { CLUSTER_URL, databaseUrl, dropDatabase, recreateDatabase, waitFor } from "./helpers.ts";

const TOKEN = `7${randomBytes(4).toString("hex")}:AAH${randomBytes(12).toString("hex")}`;
const HMAC = randomBytes(16).toString("hex");
const CHAT = -1001234567890;
const BLOCKED_CHAT = -1009999;

interface GenericBody {
  id: string;
  status: string;
  anomalies: { id: string; service: string }[];
}

describe("alert-dispatch through the local runner (PG15 cluster)", () => {
  const dbName = `ts_alerts_${randomBytes(4).toString("hex")}`;
  const dbUrl = databaseUrl(CLUSTER_URL, dbName);
  const sql = postgres(dbUrl, { max: 4, onnotice: () => {} });
  const logs: string[] = [];
  let runner: Runner;
  let tg: TelegramServer;
  let hook: WebhookReceiver;
  let proxy: TcpProxy;
  let serial = 0;

  /** Opens an anomaly on a fresh service (its own incident) and returns its id. */
  async function openAnomaly(
    severity: string,
    service = `svc-${++serial}-${randomBytes(2).toString("hex")}`,
  ) {
    const [row] = await sql<{ id: string }[]>`
      insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, operation, detector,
                                          first_seen, last_seen, observed_value, expected_value, series_signal)
      values ('LATENCY', 'p95', ${severity}, ${
      "LATENCY|p95|" + service
    }, ${service}, 'GET /x', 'latency_zscore',
              now() - interval '3 minutes', now(), 120, 20, 'latency_p95')
      returning id::text`;
    return row.id;
  }

  async function onlyChannel(name: string): Promise<void> {
    await sql`update anomaly.notification_channels set enabled = (name = ${name})`;
  }

  function dispatch(body: Record<string, unknown> = { reason: "manual" }): Promise<Response> {
    return fetch(runner.functionUrl("alert-dispatch"), {
      method: "POST",
      headers: { authorization: `Bearer ${runner.serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  async function outbox(anomalyId: string) {
    return await sql<
      { status: string; attempts: number; last_error: string | null; last_status_code: number | null }[]
    >`
      select status, attempts, last_error, last_status_code from anomaly.alert_outbox
      where anomaly_id = ${anomalyId}::uuid order by id`;
  }

  beforeAll(async () => {
    await recreateDatabase(CLUSTER_URL, dbName);
    await prepareDatabase(dbUrl);
    tg = await startTelegramServer({ token: TOKEN, chats: [CHAT, BLOCKED_CHAT], blocked: [BLOCKED_CHAT] });
    hook = await startWebhookReceiver(HMAC);
    const cluster = new URL(CLUSTER_URL);
    proxy = await new TcpProxy(cluster.hostname, Number(cluster.port || 5432)).start();
    await sql`select vault.create_secret(${TOKEN}, 'tg-bot')`;
    await sql`select vault.create_secret(${HMAC}, 'hook-hmac')`;
    await sql`
      insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, max_per_minute)
      values ('ops', 'telegram', ${String(CHAT)}, 'tg-bot', 'HIGH', 1000),
             ('blocked', 'telegram', ${String(BLOCKED_CHAT)}, 'tg-bot', 'HIGH', 1000)`;
    await sql`
      insert into anomaly.notification_channels (name, kind, webhook_url, secret_name, min_severity, max_per_minute)
      values ('hook', 'webhook', ${hook.url + "/hooks/trace-sentinel"}, 'hook-hmac', 'HIGH', 10000)`;
    await sql`
      insert into public.anomaly_detection_config (key, value) values ('alerts', ${
      sql.json({
        group_wait_seconds: 0,
        dedup_window_minutes: 0,
        backoff_base_seconds: 0.2,
        backoff_max_seconds: 1,
        send_timeout_ms: 1000,
        max_attempts: 50,
        lease_seconds: 60,
        dashboard_url: "https://sentinel.example.com",
        grafana_url: "https://grafana.example.com",
      })
    })`;
    // Tests call the function themselves; the sweep schedule is exercised on purpose in one test.
    await sql`update anomaly.jobs set enabled = false where name = 'alert-dispatch'`;
    runner = await startRunner({
      dbUrl,
      port: 0,
      // The function reaches the database through the proxy, so a test can take the database away from it alone.
      env: { TELEGRAM_API_URL: tg.apiUrl, SUPABASE_DB_URL: proxy.urlFor(dbUrl) },
      log: (line) => logs.push(line),
    });
  }, 240_000);

  afterAll(async () => {
    await runner?.stop();
    await Promise.allSettled([tg?.stop(), hook?.stop(), proxy?.cut()]);
    await sql.end({ timeout: 5 });
    await dropDatabase(CLUSTER_URL, dbName);
  }, 60_000);

  beforeEach(() => {
    tg.faults.length = 0;
    hook.faults.length = 0;
  });

  it("refuses callers without the service key and bad bodies, with nothing claimed", async () => {
    const anon = await fetch(runner.functionUrl("alert-dispatch"), { method: "POST", body: "{}" });
    expect(anon.status).toBe(401);
    const bad = await dispatch({ reason: "because" });
    expect(bad.status).toBe(400);
    expect((await bad.json()).message).toContain("reason");
    expect((await fetch(runner.functionUrl("alert-dispatch"))).status).toBe(405);
  });

  it("sends a CRITICAL alert within seconds through trigger -> net.http_post -> function (no call from the test)", async () => {
    await onlyChannel("ops");
    const before = tg.messages.length;
    const started = Date.now();
    const id = await openAnomaly("CRITICAL", "checkout");
    const message = await waitFor(
      "the Telegram message",
      () => tg.messages.slice(before).find((m) => m.text.includes("checkout")),
      20_000,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(message.chat_id).toBe(CHAT);
    expect(message.parse_mode).toBe("HTML");
    expect(message.text).toContain("CRITICAL LATENCY p95 · checkout GET /x");
    expect(message.text).toContain("p95 120 ms vs 20.0 ms expected");
    expect(message.html).toContain(`<a href="https://sentinel.example.com/anomalies/${id}">dashboard</a>`);
    await waitFor("delivered", async () => (await outbox(id))[0]?.status === "delivered" || undefined);
    const [history] = await sql`select outcome, status_code, attempt from anomaly.alert_deliveries
                                where ${
      Number((await sql`select id from anomaly.alert_outbox where anomaly_id = ${id}::uuid`)[0].id)
    } = any (outbox_ids)`;
    expect(history).toMatchObject({ outcome: "delivered", status_code: 200, attempt: 1 });
    expect(logs.join("\n")).not.toContain(TOKEN);
  });

  it("sends a HIGH alert on the every-minute sweep job (pg_cron stand-in -> net.http_post)", async () => {
    await onlyChannel("ops");
    const before = tg.messages.length;
    const id = await openAnomaly("HIGH", "search");
    await new Promise((r) => setTimeout(r, 300));
    expect(tg.messages.length).toBe(before); // not CRITICAL: it waits for the sweep
    await sql`update anomaly.jobs set enabled = true where name = 'alert-dispatch'`;
    try {
      await runner.runCronJobNow("trace-sentinel:alert-dispatch");
      await runner.drainNetQueue();
    } finally {
      await sql`update anomaly.jobs set enabled = false where name = 'alert-dispatch'`;
    }
    await waitFor("delivered", async () => (await outbox(id))[0]?.status === "delivered" || undefined);
    expect(tg.messages.slice(before).filter((m) => m.text.includes("search"))).toHaveLength(1);
  });

  it("delivers everything exactly once when the receiver is down and comes back", async () => {
    await onlyChannel("hook");
    await hook.stop();
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await openAnomaly(i % 2 ? "CRITICAL" : "HIGH"));
    for (let i = 0; i < 3; i++) {
      await dispatch();
      await new Promise((r) => setTimeout(r, 400));
    }
    const failing =
      await sql`select count(*)::int as n, min(attempts) as min_attempts from anomaly.alert_outbox
                              where anomaly_id = any (${ids}::uuid[]) and status = 'pending' and last_error like 'network:%'`;
    expect(failing[0].n).toBe(6);
    expect(failing[0].min_attempts).toBeGreaterThanOrEqual(1);
    await hook.start();
    await waitFor(
      "all delivered",
      async () => {
        await dispatch();
        const [r] = await sql`select count(*)::int as n from anomaly.alert_outbox
                            where anomaly_id = any (${ids}::uuid[]) and status = 'delivered'`;
        return r.n === 6 || undefined;
      },
      20_000,
      300,
    );
    const got = hook.received.flatMap((w) => (w.body as GenericBody).anomalies.map((a) => a.id)).filter((x) =>
      ids.includes(x)
    );
    expect(got.sort()).toEqual([...ids].sort());
    expect(hook.duplicates).toBe(0);
    expect(hook.received.every((w) => w.signatureValid)).toBe(true);
  });

  it("honours Telegram's 429 retry_after before trying again", async () => {
    await onlyChannel("ops");
    tg.rateLimitNext(2);
    const before = tg.messages.length;
    const id = await openAnomaly("CRITICAL", "cart");
    await waitFor(
      "the 429 recorded",
      async () => (await outbox(id))[0]?.last_status_code === 429 || undefined,
      15_000,
    );
    const [row] =
      await sql`select due_at - now() as wait from anomaly.alert_outbox where anomaly_id = ${id}::uuid`;
    expect(row.wait).toBeDefined();
    await dispatch(); // too early: nothing is due
    expect(tg.messages.length).toBe(before);
    await waitFor(
      "delivered after the pause",
      async () => {
        await dispatch();
        return (await outbox(id))[0]?.status === "delivered" || undefined;
      },
      15_000,
      250,
    );
    const history =
      await sql`select d.outcome, d.status_code, d.error, d.created_at from anomaly.alert_deliveries d
                              join anomaly.alert_outbox o on o.id = any (d.outbox_ids) where o.anomaly_id = ${id}::uuid
                              order by d.id`;
    expect(history.map((h) => [h.outcome, h.status_code])).toEqual([["retry", 429], ["delivered", 200]]);
    expect(history[0].error).toBe("Too Many Requests: retry after 2");
    expect(history[1].created_at.getTime() - history[0].created_at.getTime()).toBeGreaterThanOrEqual(2000);
    expect(tg.messages.slice(before).filter((m) => m.text.includes("cart"))).toHaveLength(1);
  });

  it("stops at once on 403 (bot blocked), keeps the reason, and re-drives by hand", async () => {
    await onlyChannel("blocked");
    const id = await openAnomaly("CRITICAL", "inventory");
    await waitFor("dead", async () => (await outbox(id))[0]?.status === "dead" || undefined, 15_000);
    expect((await outbox(id))[0]).toMatchObject({
      attempts: 1,
      last_status_code: 403,
      last_error: "Forbidden: bot was blocked by the user",
    });
    tg.opts.blocked = [];
    const [{ n }] = await sql`select anomaly.redrive_alerts(p_channel => 'blocked') as n`;
    expect(n).toBeGreaterThanOrEqual(1);
    await dispatch();
    expect((await outbox(id))[0].status).toBe("delivered");
    expect(tg.messages.filter((m) => m.chat_id === BLOCKED_CHAT && m.text.includes("inventory")))
      .toHaveLength(1);
  });

  it("gives up on a receiver slower than send_timeout_ms and delivers on the retry", async () => {
    await onlyChannel("hook");
    hook.faults.push({ kind: "delay", ms: 2500 });
    const seen = hook.received.length;
    const id = await openAnomaly("HIGH");
    await dispatch();
    const [first] = await outbox(id);
    expect(first.status).toBe("pending");
    expect(first.last_error).toMatch(/^timeout: no answer within 1000 ms/);
    await waitFor(
      "delivered",
      async () => {
        await dispatch();
        return (await outbox(id))[0]?.status === "delivered" || undefined;
      },
      10_000,
      250,
    );
    await new Promise((r) => setTimeout(r, 2000)); // the slow request's handler has long given up on the dead socket
    const mine = hook.received.slice(seen).filter((w) =>
      (w.body as GenericBody).anomalies.some((a) => a.id === id)
    );
    expect(mine).toHaveLength(1);
    expect(hook.duplicates).toBe(0);
  });

  it("retries the ack, not the send, when the database goes away between send and ack", async () => {
    await onlyChannel("hook");
    const id = await openAnomaly("HIGH");
    hook.faults.push({ kind: "delay", ms: 600 });
    const hitsBefore = hook.hits;
    const call = dispatch();
    await waitFor("the send to start", () => (hook.hits > hitsBefore ? true : undefined), 10_000, 10);
    await proxy.cut(); // the function's connections drop while its request is in flight
    await new Promise((r) => setTimeout(r, 2500)); // the receiver has answered 204; the ack cannot reach the database
    expect((await outbox(id))[0].status).toBe("sending");
    await proxy.start();
    const res = await call;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ delivered: 1, pendingAcks: 0 });
    expect((await outbox(id))[0]).toMatchObject({ status: "delivered", attempts: 1 });
    await dispatch();
    const mine = hook.received.filter((w) => (w.body as GenericBody).anomalies.some((a) => a.id === id));
    expect(mine).toHaveLength(1);
    const [{ n }] =
      await sql`select count(*)::int as n from anomaly.alert_deliveries d join anomaly.alert_outbox o
                              on o.id = any (d.outbox_ids) where o.anomaly_id = ${id}::uuid`;
    expect(n).toBe(1);
  });

  it("three dispatchers racing on one outbox send every row exactly once", async () => {
    await onlyChannel("hook");
    const values = Array.from({ length: 300 }, (_, i) => `race-${i}`);
    // 300 anomalies on 300 unrelated services: 300 groups, inserted in one statement (no CRITICAL kick)
    await sql`
      insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, detector, first_seen, last_seen)
      select 'ERROR_RATE', 'rate', 'HIGH', 'ERROR_RATE|rate|' || s, s, 'error_cusum', now() - interval '2 minutes', now()
      from unnest(${values}::text[]) s`;
    const ids =
      (await sql<{ id: string }[]>`select id::text from public.trace_anomalies where service like 'race-%'`)
        .map((r) => r.id);
    expect(ids).toHaveLength(300);
    const seen = hook.received.length;
    const pools = [
      postgres(dbUrl, { max: 2, onnotice: () => {} }),
      postgres(dbUrl, { max: 2, onnotice: () => {} }),
    ];
    try {
      const local = pools.map((p, i) =>
        createDispatcher({
          store: postgresAlertStore(p),
          name: `node-${i}`,
          isTransient: isTransientDbError,
          log: () => {},
        })
      );
      await Promise.all([
        local[0].run({ limit: 7 }),
        local[1].run({ limit: 5 }),
        dispatch({ reason: "manual", limit: 6 }).then((r) => r.json()),
      ]);
    } finally {
      await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
    }
    const [done] = await sql`select count(*) filter (where status = 'delivered')::int as delivered,
                                    count(distinct claimed_by)::int as dispatchers
                             from anomaly.alert_outbox where anomaly_id = any (${ids}::uuid[])`;
    expect(done.delivered).toBe(300);
    expect(done.dispatchers).toBe(3);
    const got = hook.received.slice(seen).flatMap((w) => (w.body as GenericBody).anomalies.map((a) => a.id));
    expect(got).toHaveLength(300);
    expect(new Set(got).size).toBe(300);
    expect(hook.duplicates).toBe(0);
  }, 120_000);
});
