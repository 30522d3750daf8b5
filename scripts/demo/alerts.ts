// scripts/demo/alerts.ts — the demo's alerting: a local server speaking the Telegram Bot API stands in for Telegram, a
// channel points at it (bot token in Vault), and after detection the demo shows the messages that arrived: one per
// incident (grouped, escaped, linked) and the resolved notices, plus what the outbox did with every event.
import { randomBytes } from "node:crypto";
import type postgres from "postgres";
import {
  startTelegramServer,
  type TelegramMessage,
  type TelegramServer,
} from "../../tests/fakes/telegram-server.ts";
import type { Runner } from "../local/runner.ts";

const CHAT_ID = -1001987654321;

export interface DemoAlerts {
  /** Environment for the runner's functions (TELEGRAM_API_URL of the stand-in). */
  env: Record<string, string>;
  messages: TelegramMessage[];
  /** Stores the bot token in Vault, creates the channel and the demo's `alerts` config (before detection runs). */
  configure(sql: postgres.Sql, runnerUrl: string): Promise<void>;
  /** Sends whatever is due (CRITICAL alerts already left through pg_net), waits until the outbox is drained. */
  deliver(sql: postgres.Sql, runner: Runner): Promise<OutboxSummary>;
  /** Prints the messages as a Telegram user reads them, and the outbox summary. */
  print(summary: OutboxSummary): void;
  stop(): Promise<void>;
}

export interface OutboxSummary {
  rows: number;
  byStatus: Record<string, number>;
  reasons: { reason: string; n: number }[];
}

export async function startDemoAlerts(): Promise<DemoAlerts> {
  const token = `6${randomBytes(4).toString("hex")}:AAD${randomBytes(12).toString("hex")}`;
  const tg: TelegramServer = await startTelegramServer({ token, chats: [CHAT_ID] });
  return {
    env: { TELEGRAM_API_URL: tg.apiUrl },
    messages: tg.messages,
    async configure(sql, runnerUrl) {
      await sql`select vault.create_secret(${token}, 'demo-telegram-bot')`;
      await sql`insert into anomaly.notification_channels (name, kind, telegram_chat_id, secret_name, min_severity,
                                                           description)
                values ('demo-telegram', 'telegram', ${String(CHAT_ID)}, 'demo-telegram-bot', 'HIGH',
                        'the demo''s Telegram group, served by a local Bot API stand-in')`;
      // The demo detects 100 back-dated minutes in one cycle, so an incident's anomalies already arrive together:
      // no grouping delay. Links point at the dashboard (ui/, Vite) and a local Grafana.
      await sql`insert into public.anomaly_detection_config (key, value) values ('alerts', ${
        sql.json({
          group_wait_seconds: 0,
          dashboard_url: "http://localhost:5173",
          grafana_url: "http://localhost:3000",
        })
      }) on conflict (key) do update set value = excluded.value`;
      void runnerUrl;
    },
    async deliver(sql, runner) {
      for (let i = 0; i < 20; i++) {
        const res = await fetch(runner.functionUrl("alert-dispatch"), {
          method: "POST",
          headers: { authorization: `Bearer ${runner.serviceRoleKey}`, "content-type": "application/json" },
          body: JSON.stringify({ reason: "manual" }),
        });
        if (!res.ok) throw new Error(`alert-dispatch answered ${res.status}: ${await res.text()}`);
        const [{ left }] = await sql`select count(*)::int as left from anomaly.alert_outbox
                                     where status in ('pending', 'sending') and due_at <= now()`;
        if (left === 0) break;
      }
      const rows = await sql<{ status: string; n: number }[]>`
        select status, count(*)::int as n from anomaly.alert_outbox group by 1 order by 1`;
      const reasons = await sql<{ reason: string; n: number }[]>`
        select regexp_replace(reason, ':.*$', '') as reason, count(*)::int as n from anomaly.alert_outbox
        where status = 'suppressed' group by 1 order by 2 desc`;
      return {
        rows: rows.reduce((s, r) => s + r.n, 0),
        byStatus: Object.fromEntries(rows.map((r) => [r.status, r.n])),
        reasons,
      };
    },
    print(summary) {
      console.log(`Alerts (Telegram chat ${CHAT_ID}, via the Bot API stand-in at ${tg.apiUrl}):`);
      for (const m of tg.messages) {
        console.log(
          `  ── message ${m.message_id} (${m.text.length} characters, parse_mode ${m.parse_mode}) ──`,
        );
        for (const line of m.text.split("\n")) console.log(`  │ ${line}`);
      }
      const status = Object.entries(summary.byStatus).map(([s, n]) => `${n} ${s}`).join(", ");
      const why = summary.reasons.map((r) => `${r.n} ${r.reason}`).join("; ");
      console.log(
        `  outbox: ${summary.rows} events -> ${status}${why ? ` (suppressed: ${why})` : ""}; ` +
          `${tg.messages.length} Telegram messages`,
      );
    },
    stop: () => tg.stop(),
  };
}
