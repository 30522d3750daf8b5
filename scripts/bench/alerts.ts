// scripts/bench/alerts.ts — `npm run bench:alerts`: how fast alerts leave, through the real path (outbox trigger,
// pg_net stand-in, the Deno-served alert-dispatch function, local Bot-API and webhook receivers):
//   1. critical path: CRITICAL anomaly inserted -> trigger -> net.http_post -> function -> Telegram receiver
//   2. sweep path: HIGH anomaly inserted -> grouping delay (alerts.group_wait_seconds) -> the every-minute
//      `alert-dispatch` job -> function -> receiver, with the default schedule and config
//   3. burst: 10,000 anomalies on unrelated services in one transaction, a Telegram channel with the default rate
//      limit (20 messages a minute) and a webhook channel without a tight one: enqueue rate (trigger cost), rows
//      suppressed by the limit, and how fast the function drains the rest.
// Runs on the embedded Postgres 17 (TS_EMBEDDED_PG_PORT) unless DATABASE_URL is set; results in .data/bench-alerts.json.
//
//   npm run bench:alerts [-- --critical 30 --sweep 20 --burst 10000]
//   npm run bench:alerts -- --quick        (10 critical, sweep every 10 s with no grouping delay, burst 2,000)
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startTelegramServer } from "../../tests/fakes/telegram-server.ts";
import { startWebhookReceiver } from "../../tests/fakes/webhook-receiver.ts";
import { REPO_ROOT, startDatabase } from "../local/database.ts";
import { recreateDatabase } from "../local/databases.ts";
import { prepareDatabase } from "../local/migrate.ts";
import { type Runner, startRunner } from "../local/runner.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    critical: { type: "string" },
    sweep: { type: "string" },
    burst: { type: "string" },
  },
});
const QUICK = args.quick;
const N_CRITICAL = Number(args.critical ?? (QUICK ? 10 : 30));
const N_SWEEP = Number(args.sweep ?? (QUICK ? 6 : 20));
const N_BURST = Number(args.burst ?? (QUICK ? 2000 : 10_000));
const t0 = Date.now();
const say = (line: string) =>
  console.log(`[bench:alerts ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`);

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (pos - lo);
}
const ms = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);

const token = `8${randomBytes(4).toString("hex")}:AAB${randomBytes(12).toString("hex")}`;
const hmac = randomBytes(16).toString("hex");
const server = await startDatabase({ log: say });
const tg = await startTelegramServer({ token });
const hook = await startWebhookReceiver(hmac);
let runner: Runner | undefined;
let exitCode = 0;
try {
  const url = server.embedded ? await recreateDatabase(server.url, "ts_bench_alerts") : server.url;
  await prepareDatabase(url);
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  await sql`update anomaly.jobs set enabled = false where name = 'rollup-detect'`;
  await sql`select vault.create_secret(${token}, 'bench-bot'), vault.create_secret(${hmac}, 'bench-hook')`;
  await sql`insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity, max_per_minute)
            values ('bench-telegram', 'telegram', '-1001000', 'bench-bot', 'HIGH', 1000)`;
  if (QUICK) {
    await sql`insert into public.anomaly_detection_config (key, value) values ('alerts', '{"group_wait_seconds": 0}')`;
    await sql`update anomaly.jobs set schedule = '10 seconds' where name = 'alert-dispatch'`;
  }
  runner = await startRunner({ dbUrl: url, port: 0, env: { TELEGRAM_API_URL: tg.apiUrl }, log: () => {} });
  say(`runner at ${runner.url}; Telegram Bot API stand-in at ${tg.apiUrl}; webhook receiver at ${hook.url}`);

  const arrival = async (service: string, timeoutMs: number): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = tg.messages.find((x) => x.text.includes(`· ${service} `));
      if (m) return m.received_at;
      if (Date.now() > deadline) throw new Error(`no message for ${service} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const insert = (service: string, severity: string) =>
    sql`insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, operation, detector,
                                            first_seen, last_seen, observed_value, expected_value, series_signal)
        values ('LATENCY', 'p95', ${severity}, ${
      "LATENCY|p95|" + service
    }, ${service}, 'GET /bench', 'latency_zscore',
                now() - interval '2 minutes', now(), 80, 20, 'latency_p95')`;

  // 1. critical path
  const critical: number[] = [];
  for (let i = 0; i < N_CRITICAL; i++) {
    const service = `crit-${i}`;
    const start = Date.now();
    await insert(service, "CRITICAL");
    critical.push((await arrival(service, 30_000)) - start);
  }
  say(
    `critical path: median ${ms(quantile(critical, 0.5))}, p95 ${
      ms(quantile(critical, 0.95))
    } (n=${critical.length})`,
  );

  // 2. sweep path: anomalies inserted at spread-out moments, delivered by the scheduled job
  const [{ schedule }] = await sql`select schedule from anomaly.jobs where name = 'alert-dispatch'`;
  const [{ group_wait }] =
    await sql`select (anomaly.config('alerts') ->> 'group_wait_seconds')::int as group_wait`;
  say(`sweep path: ${N_SWEEP} HIGH anomalies, schedule '${schedule}', group_wait_seconds ${group_wait}`);
  const spacingMs = QUICK ? 1700 : 6000;
  const starts: [string, number][] = [];
  for (let i = 0; i < N_SWEEP; i++) {
    const service = `sweep-${i}`;
    starts.push([service, Date.now()]);
    await insert(service, "HIGH");
    await new Promise((r) => setTimeout(r, spacingMs));
  }
  const sweep: number[] = [];
  for (const [service, start] of starts) sweep.push((await arrival(service, 180_000)) - start);
  say(`sweep path: median ${ms(quantile(sweep, 0.5))}, p95 ${ms(quantile(sweep, 0.95))} (n=${sweep.length})`);

  // 3. burst with rate limits
  await sql`update anomaly.jobs set enabled = false where name = 'alert-dispatch'`;
  await sql`update anomaly.notification_channels set max_per_minute = 20 where name = 'bench-telegram'`;
  await sql`insert into anomaly.notification_channels (name, kind, webhook_url, secret_name, min_severity, max_per_minute)
            values ('bench-webhook', 'webhook', ${hook.url + "/bench"}, 'bench-hook', 'HIGH', 10000)`;
  await sql`insert into public.anomaly_detection_config (key, value) values ('alerts', '{"group_wait_seconds": 0}')
            on conflict (key) do update set value = excluded.value`;
  const services = Array.from({ length: N_BURST }, (_, i) => `burst-${i}`);
  const enqueueStart = Date.now();
  await sql`insert into public.trace_anomalies (anomaly_type, subtype, severity, fingerprint, service, detector,
                                                first_seen, last_seen)
            select 'ERROR_RATE', 'rate', 'HIGH', 'ERROR_RATE|rate|' || s, s, 'error_cusum', now() - interval '2 minutes', now()
            from unnest(${services}::text[]) s`;
  const enqueueMs = Date.now() - enqueueStart;
  const [counts] = await sql`
    select count(*)::int as rows,
           count(*) filter (where o.status = 'pending')::int as pending,
           count(*) filter (where o.status = 'suppressed' and o.reason like 'rate limited%')::int as rate_limited
    from anomaly.alert_outbox o join public.trace_anomalies a on a.id = o.anomaly_id where a.service like 'burst-%'`;
  say(
    `burst: ${N_BURST} anomalies inserted in ${ms(enqueueMs)} (${
      Math.round(N_BURST / (enqueueMs / 1000))
    }/s with ` +
      `the trigger): ${counts.rows} outbox rows, ${counts.pending} pending, ${counts.rate_limited} rate limited`,
  );
  const hookBefore = hook.received.length;
  const tgBefore = tg.messages.length;
  const drainStart = Date.now();
  for (;;) {
    const res = await fetch(runner.functionUrl("alert-dispatch"), {
      method: "POST",
      headers: { authorization: `Bearer ${runner.serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "manual", budget_ms: 60_000 }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`alert-dispatch answered ${res.status}: ${JSON.stringify(body)}`);
    const [{ left }] =
      await sql`select count(*)::int as left from anomaly.alert_outbox where status in ('pending', 'sending')`;
    if (left === 0) break;
  }
  const drainMs = Date.now() - drainStart;
  const sent = hook.received.length - hookBefore + tg.messages.length - tgBefore;
  say(
    `burst: drained ${sent} messages (${hook.received.length - hookBefore} webhook, ${
      tg.messages.length - tgBefore
    } ` +
      `Telegram) in ${ms(drainMs)} = ${Math.round(sent / (drainMs / 1000))} messages/s`,
  );

  const result = {
    machine: `${os.cpus().length} CPU ${os.cpus()[0]?.model ?? ""}, ${
      server.embedded ? "embedded Postgres 17" : "DATABASE_URL"
    }`,
    critical_ms: { median: quantile(critical, 0.5), p95: quantile(critical, 0.95), n: critical.length },
    sweep_ms: {
      median: quantile(sweep, 0.5),
      p95: quantile(sweep, 0.95),
      n: sweep.length,
      schedule,
      group_wait_seconds: group_wait,
    },
    burst: {
      anomalies: N_BURST,
      enqueue_ms: enqueueMs,
      enqueue_per_s: N_BURST / (enqueueMs / 1000),
      outbox_rows: counts.rows,
      pending: counts.pending,
      rate_limited: counts.rate_limited,
      drain_ms: drainMs,
      messages: sent,
      messages_per_s: sent / (drainMs / 1000),
    },
  };
  fs.mkdirSync(path.join(REPO_ROOT, ".data"), { recursive: true });
  fs.writeFileSync(path.join(REPO_ROOT, ".data/bench-alerts.json"), JSON.stringify(result, null, 2));
  console.log("");
  console.log("| path | figure |");
  console.log("|---|---|");
  console.log(
    `| CRITICAL: insert -> Telegram (trigger, pg_net, function) | median ${
      ms(result.critical_ms.median)
    }, p95 ${ms(result.critical_ms.p95)} |`,
  );
  console.log(
    `| sweep ('${schedule}', group wait ${group_wait} s): insert -> Telegram | median ${
      ms(result.sweep_ms.median)
    }, p95 ${ms(result.sweep_ms.p95)} |`,
  );
  console.log(
    `| burst of ${N_BURST}: insert with the trigger | ${
      Math.round(result.burst.enqueue_per_s)
    } anomalies/s (${result.burst.outbox_rows} outbox rows, ${result.burst.rate_limited} rate limited) |`,
  );
  console.log(
    `| burst: outbox drained by alert-dispatch | ${
      Math.round(result.burst.messages_per_s)
    } messages/s (${sent} messages) |`,
  );
  await sql.end();
} catch (err) {
  console.error(err);
  exitCode = 1;
} finally {
  await runner?.stop();
  await Promise.allSettled([tg.stop(), hook.stop()]);
  await server.stop();
}
process.exit(exitCode);
