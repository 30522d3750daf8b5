// functions/_shared/alerts/dispatcher.ts — the alert-dispatch loop: claim due groups, send each (Telegram or
// webhook), acknowledge the outcome. The database and the network come in through `AlertStore` and `fetch`, so the
// loop runs the same in the edge function and in tests. An acknowledgement that fails because the database is away
// is kept in memory and retried with backoff (never re-sent): the next run flushes it before claiming anything.
import { backoffMs, honourRetryAfterMs, parseRetryAfter } from "./backoff.ts";
import { classifyTelegram, classifyWebhook, type TransportFailure } from "./classify.ts";
import { formatTelegram } from "./format.ts";
import { alertmanagerPayload, genericPayload } from "./payloads.ts";
import { redactSecrets } from "./redact.ts";
import { SIGNATURE_HEADER, signWebhook } from "./sign.ts";
import type { AlertClaim, Outcome } from "./types.ts";

export interface AckRecord {
  claimId: string;
  outcome: Outcome["kind"];
  statusCode?: number;
  error?: string;
  durationMs: number;
  retryInMs?: number;
  partsSent: number;
}

export interface AlertStore {
  claim(dispatcher: string, limit?: number): Promise<AlertClaim[]>;
  ack(record: AckRecord, dispatcher: string): Promise<string>;
  secret(channelId: string): Promise<string>;
}

export interface DispatcherOptions {
  store: AlertStore;
  /** Telegram Bot API base URL (default https://api.telegram.org). */
  telegramApiUrl?: string;
  fetch?: typeof fetch;
  /** Dispatcher name stored with claims and deliveries. */
  name?: string;
  /** True when an error means the database is away (retry the ack), not that the ack is wrong. */
  isTransient?: (err: unknown) => boolean;
  log?: (line: string) => void;
  now?: () => number;
  random?: () => number;
  /** Ack retry: first delay, cap, and how long to keep trying in the background (ms). */
  ackRetry?: { baseMs: number; maxMs: number; giveUpMs: number };
}

export interface RunSummary {
  claimed: number;
  delivered: number;
  retried: number;
  dead: number;
  deferred: number;
  stale: number;
  pendingAcks: number;
  messages: number;
}

export interface Dispatcher {
  /** Claims and sends until nothing is due or `budgetMs` is spent; resolves when every ack is stored (or pending). */
  run(opts?: { budgetMs?: number; limit?: number }): Promise<RunSummary>;
  /** Acks not yet stored because the database was away. */
  pendingAcks(): number;
  /** Retries the pending acks now; resolves when all are stored or `waitMs` passed. */
  flushAcks(waitMs?: number): Promise<void>;
}

export function createDispatcher(opts: DispatcherOptions): Dispatcher {
  const doFetch = opts.fetch ?? fetch;
  const telegramBase = (opts.telegramApiUrl ?? "https://api.telegram.org").replace(/\/+$/, "");
  const name = opts.name ?? `alert-dispatch-${crypto.randomUUID().slice(0, 8)}`;
  const log = opts.log ?? ((line: string) => console.log(line));
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const isTransient = opts.isTransient ?? (() => true);
  const ackRetry = opts.ackRetry ?? { baseMs: 100, maxMs: 2000, giveUpMs: 10 * 60_000 };
  const pending = new Map<
    string,
    { record: AckRecord; since: number; retry?: Promise<string | undefined> }
  >();

  /** Stores one ack, retrying while the database is away; undefined when it gave up (the lease then re-sends). */
  function storeAck(record: AckRecord): Promise<string | undefined> {
    const entry = pending.get(record.claimId) ?? { record, since: now() };
    if (entry.retry) return entry.retry;
    pending.set(record.claimId, entry);
    entry.retry = (async () => {
      for (let attempt = 1;; attempt++) {
        try {
          const result = await opts.store.ack(record, name);
          pending.delete(record.claimId);
          return result;
        } catch (err) {
          if (!isTransient(err)) {
            pending.delete(record.claimId);
            log(`alert-dispatch: ack of claim ${record.claimId} failed: ${(err as Error).message}`);
            return undefined;
          }
          if (now() - entry.since > ackRetry.giveUpMs) {
            pending.delete(record.claimId);
            log(
              `alert-dispatch: gave up acknowledging claim ${record.claimId} after ${ackRetry.giveUpMs} ms`,
            );
            return undefined;
          }
          await sleep(backoffMs(attempt, ackRetry.baseMs, ackRetry.maxMs, random));
        }
      }
    })();
    return entry.retry;
  }

  async function flushAcks(waitMs = 30_000): Promise<void> {
    const all = [...pending.values()].map((p) => p.retry ?? storeAck(p.record));
    if (all.length === 0) return;
    await Promise.race([Promise.all(all), sleep(waitMs)]);
  }

  async function timedFetch(url: string, init: RequestInit, timeoutMs: number, secrets: string[]) {
    const started = now();
    try {
      const res = await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      const text = await res.text();
      return { res, text, ms: now() - started };
    } catch (err) {
      const e = err as Error;
      const timedOut = e.name === "TimeoutError" || e.name === "AbortError";
      const failure: TransportFailure = {
        timedOut,
        message: redactSecrets(timedOut ? `no answer within ${timeoutMs} ms` : e.message, secrets),
      };
      return { failure, ms: now() - started };
    }
  }

  async function sendTelegram(claim: AlertClaim, token: string): Promise<Outcome & { ms: number }> {
    const parts = formatTelegram(claim, new Date(now()).toISOString());
    let ms = 0;
    for (let i = claim.parts_sent; i < parts.length; i++) {
      const body: Record<string, unknown> = {
        chat_id: /^-?\d+$/.test(claim.channel.telegram_chat_id ?? "")
          ? Number(claim.channel.telegram_chat_id)
          : claim.channel.telegram_chat_id,
        text: parts[i],
        parse_mode: "HTML",
        link_preview_options: { is_disabled: true },
      };
      if (claim.channel.telegram_thread_id != null) body.message_thread_id = claim.channel.telegram_thread_id;
      const r = await timedFetch(
        `${telegramBase}/bot${token}/sendMessage`,
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
        claim.config.send_timeout_ms,
        [token],
      );
      ms += r.ms;
      let json: unknown = undefined;
      if (r.text !== undefined) {
        try {
          json = JSON.parse(r.text);
        } catch { /* not JSON: classified by status */ }
      }
      const outcome = classifyTelegram(r.res?.status ?? null, json, r.failure);
      if (outcome.kind !== "delivered") {
        return {
          ...outcome,
          error: outcome.error && redactSecrets(outcome.error, [token]),
          partsSent: i,
          ms,
        };
      }
    }
    return { kind: "delivered", statusCode: 200, partsSent: parts.length, ms };
  }

  async function sendWebhook(claim: AlertClaim, secret: string): Promise<Outcome & { ms: number }> {
    const sentAt = new Date(now()).toISOString();
    const payload = claim.channel.webhook_format === "alertmanager"
      ? alertmanagerPayload(claim, sentAt)
      : genericPayload(claim, sentAt);
    const body = JSON.stringify(payload);
    const ts = Math.floor(now() / 1000);
    const r = await timedFetch(
      claim.channel.webhook_url!,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "trace-sentinel-alerts/1",
          "idempotency-key": claim.idempotency_key,
          "x-trace-sentinel-event": claim.event,
          "x-trace-sentinel-attempt": String(claim.attempt),
          [SIGNATURE_HEADER]: await signWebhook(secret, ts, body),
        },
        body,
      },
      claim.config.send_timeout_ms,
      [secret],
    );
    const outcome = classifyWebhook(
      r.res?.status ?? null,
      r.text ?? "",
      parseRetryAfter(r.res?.headers.get("retry-after"), now()),
      r.failure,
    );
    return { ...outcome, error: outcome.error && redactSecrets(outcome.error, [secret]), ms: r.ms };
  }

  function retryDelay(claim: AlertClaim, outcome: Outcome): number {
    if (outcome.retryAfterMs !== undefined) return honourRetryAfterMs(outcome.retryAfterMs, random);
    return backoffMs(
      claim.attempt,
      claim.config.backoff_base_seconds * 1000,
      claim.config.backoff_max_seconds * 1000,
      random,
    );
  }

  async function run(runOpts: { budgetMs?: number; limit?: number } = {}): Promise<RunSummary> {
    const deadline = now() + (runOpts.budgetMs ?? 25_000);
    const summary: RunSummary = {
      claimed: 0,
      delivered: 0,
      retried: 0,
      dead: 0,
      deferred: 0,
      stale: 0,
      pendingAcks: 0,
      messages: 0,
    };
    // Acks from an earlier run first: their rows must not look claimable-and-unsent to anyone.
    await flushAcks(Math.max(0, deadline - now()));
    if (pending.size > 0) {
      summary.pendingAcks = pending.size;
      return summary;
    }
    const pausedUntil = new Map<string, number>(); // channel id -> when its 429 pause ends
    const secrets = new Map<string, string>();
    let ackLate = false;
    while (now() < deadline && !ackLate) {
      const claims = await opts.store.claim(name, runOpts.limit);
      if (claims.length === 0) break;
      summary.claimed += claims.length;
      const byChannel = new Map<string, AlertClaim[]>();
      for (const c of claims) byChannel.set(c.channel.id, [...(byChannel.get(c.channel.id) ?? []), c]);
      // Channels in parallel, one message at a time per channel (Telegram: about one message a second per chat).
      await Promise.all([...byChannel.values()].map(async (group) => {
        for (const claim of group) {
          let outcome: Outcome & { ms: number };
          const pause = pausedUntil.get(claim.channel.id);
          if (pause !== undefined && pause > now()) {
            outcome = {
              kind: "deferred",
              retryAfterMs: pause - now(),
              error: "channel paused by 429",
              ms: 0,
            };
          } else {
            try {
              if (!secrets.has(claim.channel.id)) {
                secrets.set(claim.channel.id, await opts.store.secret(claim.channel.id));
              }
              const secret = secrets.get(claim.channel.id)!;
              outcome = claim.channel.kind === "telegram"
                ? await sendTelegram(claim, secret)
                : await sendWebhook(claim, secret);
              summary.messages++;
            } catch (err) {
              if (isTransient(err)) throw err; // the database went away before sending: the lease brings it back
              outcome = {
                kind: "permanent",
                error: redactSecrets((err as Error).message, [...secrets.values()]),
                ms: 0,
              };
            }
          }
          if (outcome.kind === "retry" && outcome.retryAfterMs !== undefined && outcome.statusCode === 429) {
            pausedUntil.set(claim.channel.id, now() + outcome.retryAfterMs);
          }
          const record: AckRecord = {
            claimId: claim.claim_id,
            outcome: outcome.kind,
            statusCode: outcome.statusCode,
            error: outcome.error,
            durationMs: Math.round(outcome.ms),
            retryInMs: outcome.kind === "retry" || outcome.kind === "deferred"
              ? (outcome.kind === "deferred" ? outcome.retryAfterMs : retryDelay(claim, outcome))
              : undefined,
            partsSent: outcome.partsSent ?? claim.parts_sent,
          };
          // Wait for the ack while the budget lasts; past it, the ack keeps retrying in the background and this run
          // stops claiming (the database is away anyway). The edge function hands that to EdgeRuntime.waitUntil.
          const result = await Promise.race([
            storeAck(record),
            sleep(Math.max(0, deadline - now())).then(() => "late"),
          ]);
          if (result === "late") {
            ackLate = true;
            return;
          }
          if (result === "delivered") summary.delivered++;
          else if (result === "dead") summary.dead++;
          else if (result === "stale") summary.stale++;
          else if (result === "pending") {
            if (outcome.kind === "deferred") summary.deferred++;
            else summary.retried++;
          }
        }
      }));
    }
    summary.pendingAcks = pending.size;
    return summary;
  }

  return { run, pendingAcks: () => pending.size, flushAcks };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
