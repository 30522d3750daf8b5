// functions/_shared/alerts/backoff.ts — retry delays: exponential backoff with "equal jitter" (half fixed, half
// random), so retries of many groups spread out but never come sooner than half the exponential step.

/**
 * Delay before retry number `attempt` (1 = after the first failure): min(max, base * 2^(attempt-1)), of which the
 * upper half is random. `random` is injectable for tests.
 */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** A receiver's explicit delay (429 retry_after / Retry-After) plus up to 10 % jitter, so paused chats do not stampede. */
export function honourRetryAfterMs(retryAfterMs: number, random: () => number = Math.random): number {
  return Math.round(retryAfterMs + random() * retryAfterMs * 0.1);
}

/** Parses an HTTP Retry-After header (delta seconds or an HTTP date) into ms; undefined when absent or invalid. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
