// tests/unit/alerts-dispatcher.test.ts — the dispatch loop against an in-memory store and the Telegram stand-in:
// a failed acknowledgement is retried (never re-sent), a 429 pauses the chat and defers its other groups without
// using their attempts, and permanent errors are stored with the reason and without the bot token.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type AckRecord,
  type AlertStore,
  createDispatcher,
} from "../../functions/_shared/alerts/dispatcher.ts";
import { formatTelegram } from "../../functions/_shared/alerts/format.ts";
import type { AlertClaim } from "../../functions/_shared/alerts/types.ts";
import { startTelegramServer, type TelegramServer } from "../fakes/telegram-server.ts";
import { anomaly, claim } from "./alerts-fixtures.ts";

const TOKEN = "123456:TEST-token_abc";

function memoryStore(queue: AlertClaim[]) {
  const acks: AckRecord[] = [];
  let failAcks = 0;
  const store: AlertStore & { acks: AckRecord[]; failNextAcks(n: number): void } = {
    acks,
    failNextAcks(n: number) {
      failAcks = n;
    },
    claim: () => Promise.resolve(queue.splice(0, queue.length)),
    ack(record) {
      if (failAcks > 0) {
        failAcks--;
        return Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
      }
      acks.push(record);
      return Promise.resolve(
        record.outcome === "delivered" ? "delivered" : record.outcome === "permanent" ? "dead" : "pending",
      );
    },
    secret: () => Promise.resolve(TOKEN),
  };
  return store;
}

describe("dispatcher", () => {
  let tg: TelegramServer;
  beforeEach(async () => {
    tg = await startTelegramServer({ token: TOKEN, chats: [-1001234, -1005555], blocked: [-1005555] });
  });
  afterEach(() => tg.stop());

  it("retries a failed ack instead of sending again", async () => {
    const store = memoryStore([claim()]);
    store.failNextAcks(3);
    const d = createDispatcher({
      store,
      telegramApiUrl: tg.apiUrl,
      ackRetry: { baseMs: 5, maxMs: 20, giveUpMs: 5000 },
      log: () => {},
    });
    const summary = await d.run({ budgetMs: 5000 });
    expect(tg.messages).toHaveLength(1);
    expect(store.acks).toHaveLength(1);
    expect(store.acks[0]).toMatchObject({ outcome: "delivered", partsSent: 1 });
    expect(summary).toMatchObject({ claimed: 1, delivered: 1, pendingAcks: 0 });
  });

  it("answers within its budget while the database is away and stores the ack later, without sending again", async () => {
    const store = memoryStore([claim()]);
    store.failNextAcks(25);
    const d = createDispatcher({
      store,
      telegramApiUrl: tg.apiUrl,
      ackRetry: { baseMs: 40, maxMs: 40, giveUpMs: 10_000 },
      log: () => {},
    });
    const started = Date.now();
    const summary = await d.run({ budgetMs: 300 });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(summary).toMatchObject({ claimed: 1, delivered: 0, pendingAcks: 1 });
    expect(store.acks).toHaveLength(0);
    await d.flushAcks(5000);
    expect(d.pendingAcks()).toBe(0);
    expect(store.acks.map((a) => a.outcome)).toEqual(["delivered"]);
    expect(tg.messages).toHaveLength(1);
  });

  it("pauses a chat on 429 and defers its next group without spending an attempt", async () => {
    const second = claim({ claim_id: "99999999-2222-4222-8222-222222222222" }, [
      anomaly({ service: "payments" }),
    ]);
    const store = memoryStore([claim(), second]);
    tg.rateLimitNext(7);
    const d = createDispatcher({ store, telegramApiUrl: tg.apiUrl, log: () => {}, random: () => 0 });
    const summary = await d.run({ budgetMs: 5000 });
    expect(tg.messages).toHaveLength(0);
    expect(tg.hits).toBe(1);
    expect(store.acks.map((a) => [a.outcome, a.statusCode, a.retryInMs && Math.round(a.retryInMs / 1000)]))
      .toEqual([
        ["retry", 429, 7],
        ["deferred", undefined, 7],
      ]);
    expect(summary).toMatchObject({ retried: 1, deferred: 1 });
  });

  it("stores Telegram's reason for a permanent failure, never the token", async () => {
    const blocked = claim();
    blocked.channel = { ...blocked.channel, telegram_chat_id: "-1005555" };
    const store = memoryStore([blocked]);
    await createDispatcher({ store, telegramApiUrl: tg.apiUrl, log: () => {} }).run();
    expect(store.acks[0]).toMatchObject({
      outcome: "permanent",
      statusCode: 403,
      error: "Forbidden: bot was blocked by the user",
    });

    const down = memoryStore([claim()]);
    await tg.stop();
    await createDispatcher({ store: down, telegramApiUrl: tg.apiUrl, log: () => {} }).run();
    expect(down.acks[0].outcome).toBe("retry");
    expect(down.acks[0].error).not.toContain(TOKEN);
  });

  it("resumes a multi-part message after the parts already sent", async () => {
    const many = Array.from({ length: 12 }, (_, i) => anomaly({ operation: `op-${i}-${"w".repeat(280)}` }));
    const c = claim({ config: { ...claim().config, max_anomalies_per_message: 12 } }, many);
    const store = memoryStore([c]);
    tg.faults.push({ kind: "delay", ms: 0 }, { kind: "status", status: 502, body: "Bad Gateway" });
    await createDispatcher({ store, telegramApiUrl: tg.apiUrl, log: () => {} }).run();
    expect(store.acks[0]).toMatchObject({ outcome: "retry", partsSent: 1 });
    const sentFirst = tg.messages.length;
    expect(sentFirst).toBe(1);
    const retry = memoryStore([{ ...c, parts_sent: 1, claim_id: "77777777-2222-4222-8222-222222222222" }]);
    await createDispatcher({ store: retry, telegramApiUrl: tg.apiUrl, log: () => {} }).run();
    expect(retry.acks[0].outcome).toBe("delivered");
    const parts = formatTelegram(c).length;
    expect(parts).toBeGreaterThan(1);
    expect(tg.messages.length).toBe(parts); // every part exactly once: the retry resumed at part 2
    expect(tg.messages[0].text).toContain("Incident: 12 related anomalies");
    expect(tg.messages.filter((m) => m.text.includes("Incident: 12"))).toHaveLength(1);
  });
});
