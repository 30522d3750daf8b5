// functions/_shared/tempo/retry.ts — when and how long to wait before asking Tempo again. Pure.
// Tempo answers 429 when its query queue is full and 5xx for internal errors (integration-facts §1.5); both, and
// timeouts or dropped connections, are worth retrying with exponential backoff and jitter, honouring Retry-After.
// Every other 4xx (bad TraceQL, auth, limits) will fail the same way again.

/** Statuses worth another try. 404 is not here: for a trace it means "vanished", for a search a wrong URL. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 499 || (status >= 500 && status <= 599);
}

/** Retry-After as milliseconds: delta-seconds or an HTTP-date; null when absent or unreadable. Capped at `capMs`. */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
  capMs = 60_000,
): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (text === "") return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.min(capMs, Math.round(Number(text) * 1000));
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.min(capMs, Math.max(0, at - nowMs));
}

/**
 * Delay before retry number `attempt` (1-based): base·2^(attempt-1), at most maxMs, with "equal jitter"
 * (half fixed, half random) so that many sources that failed together do not come back together.
 */
export function backoffMs(
  attempt: number,
  random: () => number = Math.random,
  baseMs = 250,
  maxMs = 8_000,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
