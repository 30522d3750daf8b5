// scripts/simulate/time.ts — durations ("90s", "45m", "1h30m"), run start parsing ("-6h", ISO) and
// conversions between epoch microseconds, ISO strings and OpenTelemetry HrTime. Pure.

export const MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/**
 * Parses a duration such as `500ms`, `90s`, `45m`, `2h`, `1h30m`, `1.5d` into milliseconds.
 * A bare `0` is accepted; any other number needs a unit. Returns null when the text is not a duration.
 */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (s === "0") return 0;
  if (s.length === 0) return null;
  let total = 0;
  DURATION_PART.lastIndex = 0;
  let consumed = 0;
  for (;;) {
    const m = DURATION_PART.exec(s);
    if (!m) break;
    const value = Number(m[1]);
    const unit = m[2];
    total += unit === "ms" ? value : value * MS[unit as keyof typeof MS];
    consumed = DURATION_PART.lastIndex;
  }
  if (consumed !== s.length) return null;
  return Math.round(total);
}

/** Formats milliseconds compactly: 5400000 -> "1h30m", 90000 -> "1m30s", 250 -> "250ms". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0";
  if (ms < 1000) return `${ms}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join("");
}

/** Floors an epoch-ms time to the start of its UTC minute. */
export function floorMinute(epochMs: number): number {
  return Math.floor(epochMs / MS.m) * MS.m;
}

/**
 * Parses `--start`: an ISO-8601 time, `now`, or a negative duration relative to `nowMs` (e.g. `-6h`, `-2d`).
 * Returns epoch ms (not yet floored) or throws with a message that says what is accepted.
 */
export function parseStart(text: string, nowMs: number): number {
  const s = text.trim();
  if (s === "now") return nowMs;
  if (s.startsWith("-")) {
    const d = parseDuration(s.slice(1));
    if (d === null) {
      throw new Error(`--start "${text}": "${s.slice(1)}" is not a duration (use e.g. -90m, -6h, -2d)`);
    }
    return nowMs - d;
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    const t = Date.parse(s);
    if (!Number.isNaN(t)) return t;
  }
  throw new Error(
    `--start "${text}" is neither an ISO-8601 time (2026-01-31T00:00:00Z) nor a relative time (-6h)`,
  );
}

/** ISO string of an epoch-ms time. */
export function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

/** OpenTelemetry HrTime [seconds, nanoseconds] of an epoch-microsecond integer (exact, no float rounding). */
export function usToHrTime(epochUs: number): [number, number] {
  const seconds = Math.floor(epochUs / 1_000_000);
  return [seconds, (epochUs - seconds * 1_000_000) * 1000];
}
