// functions/_shared/alerts/classify.ts — what a receiver's answer means for the outbox row.
// Telegram (Bot API): ok -> delivered; 429 -> retry after parameters.retry_after; 5xx, timeouts, network errors ->
// retry; other 4xx (400 chat not found, 403 bot blocked, 401 bad token) -> permanent, with Telegram's description.
// Webhooks: 2xx delivered; 408 and 429 retried (Retry-After honoured); other 4xx permanent; 5xx/timeouts retried.
import type { Outcome } from "./types.ts";

/** A transport failure: the request timed out or never got an HTTP answer. */
export interface TransportFailure {
  timedOut: boolean;
  message: string;
}

export interface TelegramReply {
  ok?: boolean;
  error_code?: number;
  description?: string;
  parameters?: { retry_after?: number; migrate_to_chat_id?: number };
}

/** Classifies a Telegram Bot API answer (status + parsed JSON body) or a transport failure. */
export function classifyTelegram(status: number | null, body: unknown, failure?: TransportFailure): Outcome {
  if (failure || status === null) {
    return {
      kind: "retry",
      error: failure?.timedOut ? `timeout: ${failure.message}` : `network: ${failure?.message}`,
    };
  }
  const reply = (typeof body === "object" && body !== null ? body : {}) as TelegramReply;
  if (status >= 200 && status < 300 && reply.ok !== false) return { kind: "delivered", statusCode: status };
  const code = reply.error_code ?? status;
  const description = reply.description ?? `HTTP ${status}`;
  if (code === 429 || status === 429) {
    const seconds = reply.parameters?.retry_after;
    return {
      kind: "retry",
      statusCode: status,
      error: description,
      retryAfterMs: typeof seconds === "number" && seconds >= 0 ? seconds * 1000 : undefined,
    };
  }
  if (status >= 500 || status === 408) return { kind: "retry", statusCode: status, error: description };
  if (reply.parameters?.migrate_to_chat_id !== undefined) {
    return {
      kind: "permanent",
      statusCode: status,
      error: `${description} (the group became supergroup ${reply.parameters.migrate_to_chat_id}: ` +
        `set telegram_chat_id to it)`,
    };
  }
  return { kind: "permanent", statusCode: status, error: description };
}

/** Classifies a webhook receiver's answer; `retryAfterMs` comes from its Retry-After header. */
export function classifyWebhook(
  status: number | null,
  bodyText: string,
  retryAfterMs?: number,
  failure?: TransportFailure,
): Outcome {
  if (failure || status === null) {
    return {
      kind: "retry",
      error: failure?.timedOut ? `timeout: ${failure.message}` : `network: ${failure?.message}`,
    };
  }
  const snippet = bodyText.slice(0, 300);
  if (status >= 200 && status < 300) return { kind: "delivered", statusCode: status };
  if (status === 408 || status === 429 || status >= 500) {
    return { kind: "retry", statusCode: status, error: `HTTP ${status}: ${snippet}`, retryAfterMs };
  }
  return { kind: "permanent", statusCode: status, error: `HTTP ${status}: ${snippet}` };
}
