// scripts/replay/csv.ts — the `timestamp,value` series format of `npm run replay -- --series`: parsing (ISO-8601
// or epoch seconds/milliseconds, optional header, extra columns ignored) with errors that name the line, placing
// points on minute buckets, and writing the scored `timestamp,value,score,is_anomaly` file. Pure, no I/O.

export interface SeriesPoint {
  /** 1-based line number in the input (for messages). */
  line: number;
  /** The timestamp exactly as written (echoed in the output). */
  raw: string;
  /** Epoch milliseconds. */
  ms: number;
  value: number;
}

/** A bad input line; `line` is 1-based. */
export class SeriesCsvError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "SeriesCsvError";
  }
}

const NAIVE_ISO = /^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/;
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$/i;
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
/** Epoch numbers at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const EPOCH_MS_FROM = 1e11;

/**
 * Parses a timestamp: ISO-8601 with a zone, ISO-8601 without one (taken as UTC, e.g. "2014-04-01 00:05:00"),
 * or a number of epoch seconds (below 1e11) or milliseconds (1e11 and above). Returns NaN when it is none.
 */
export function parseTimestamp(text: string): number {
  const s = text.trim();
  if (NUMBER.test(s)) {
    const n = Number(s);
    return Math.abs(n) >= EPOCH_MS_FROM ? n : n * 1000;
  }
  if (NAIVE_ISO.test(s)) return Date.parse(`${s.replace(" ", "T")}${s.length === 10 ? "T00:00:00" : ""}Z`);
  if (ISO_WITH_ZONE.test(s)) return Date.parse(s.replace(" ", "T"));
  return NaN;
}

/** Splits one CSV line (RFC 4180 quotes, "" inside quotes); throws on an unterminated quote. */
export function splitCsvLine(text: string, line: number): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new SeriesCsvError(line, "unterminated quoted field");
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      while (i < text.length && text[i] !== ",") i++;
    } else {
      const next = text.indexOf(",", i);
      const end = next < 0 ? text.length : next;
      field = text.slice(i, end);
      i = end;
    }
    out.push(field.trim());
    if (i >= text.length) return out;
    i++; // the comma
  }
}

export interface ParseSeriesOptions {
  /** Allowed value range (inclusive); values outside raise an error naming the line. */
  min?: number;
  max?: number;
  /** What the values are, for messages ("latency in ms"). */
  what?: string;
}

/**
 * Parses a `timestamp,value` CSV. The first line may be a header: if it names a `timestamp` (or `time`, `ts`)
 * and a `value` column those are used, any other columns are ignored; without a header the first two columns are
 * timestamp and value. Blank lines and lines starting with `#` are skipped. Points are returned in time order
 * (stable for equal times). Throws SeriesCsvError naming the line for anything it cannot read.
 */
export function parseSeriesCsv(text: string, opts: ParseSeriesOptions = {}): SeriesPoint[] {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  let tsCol = 0;
  let valueCol = 1;
  let headerSeen = false;
  const points: SeriesPoint[] = [];
  for (let idx = 0; idx < lines.length; idx++) {
    const line = idx + 1;
    const raw = lines[idx].trim();
    if (raw === "" || raw.startsWith("#")) continue;
    const cells = splitCsvLine(raw, line);
    if (!headerSeen && points.length === 0) {
      headerSeen = true;
      const lower = cells.map((c) => c.toLowerCase());
      const looksLikeHeader = cells.length >= 2 && Number.isNaN(parseTimestamp(cells[0])) &&
        !NUMBER.test(cells[1] ?? "");
      if (looksLikeHeader) {
        const t = lower.findIndex((c) => ["timestamp", "time", "ts", "date", "datetime"].includes(c));
        const v = lower.findIndex((c) => c === "value" || c === "val" || c === "y");
        if (t < 0 || v < 0) {
          throw new SeriesCsvError(
            line,
            `header "${raw}" has no timestamp and value columns (expected e.g. "timestamp,value")`,
          );
        }
        tsCol = t;
        valueCol = v;
        continue;
      }
    }
    const need = Math.max(tsCol, valueCol) + 1;
    if (cells.length < need) {
      throw new SeriesCsvError(line, `expected at least ${need} columns (timestamp,value), got "${raw}"`);
    }
    const tsText = cells[tsCol];
    const ms = parseTimestamp(tsText);
    if (!Number.isFinite(ms)) {
      throw new SeriesCsvError(
        line,
        `timestamp "${tsText}" is neither ISO-8601 (2026-11-25T07:00:00Z) nor epoch seconds/milliseconds`,
      );
    }
    const vText = cells[valueCol];
    if (!NUMBER.test(vText)) {
      throw new SeriesCsvError(line, `value "${vText}" is not a number`);
    }
    const value = Number(vText);
    if (!Number.isFinite(value)) throw new SeriesCsvError(line, `value "${vText}" is not a finite number`);
    if ((opts.min !== undefined && value < opts.min) || (opts.max !== undefined && value > opts.max)) {
      throw new SeriesCsvError(
        line,
        `value ${vText} is outside ${opts.min ?? "-inf"}..${opts.max ?? "inf"}${
          opts.what ? ` (${opts.what})` : ""
        }`,
      );
    }
    points.push({ line, raw: tsText, ms, value });
  }
  if (points.length === 0) throw new SeriesCsvError(lines.length, "no data rows (expected timestamp,value)");
  return points.map((p, i) => ({ p, i })).sort((a, b) => a.p.ms - b.p.ms || a.i - b.i).map((x) => x.p);
}

export type Spacing = "minutes" | "rows";

/** One minute bucket of the replayed series and the input points that fall into it. */
export interface MinutePoint {
  /** Epoch ms of the minute bucket (multiple of 60 000). */
  bucketMs: number;
  /** The aggregated value the detectors see for this minute. */
  value: number;
  /** Indexes into the (time-ordered) points array. */
  points: number[];
}

export type Aggregate = "mean" | "sum";

/**
 * Places time-ordered points on minute buckets. `minutes`: each point goes to the UTC minute of its timestamp and
 * points sharing a minute are aggregated (mean, or sum for counts). `rows`: the i-th point becomes minute i after
 * the first point's minute (for series sampled every 5 minutes or hourly, whose detectors would otherwise see one
 * point per hour). `auto` picks `rows` when the median gap between points is longer than a minute.
 */
export function toMinutes(
  points: SeriesPoint[],
  spacing: Spacing | "auto",
  aggregate: Aggregate,
): { spacing: Spacing; minutes: MinutePoint[] } {
  const chosen = spacing === "auto" ? autoSpacing(points) : spacing;
  const minutes: MinutePoint[] = [];
  if (chosen === "rows") {
    const base = Math.floor(points[0].ms / 60_000) * 60_000;
    points.forEach((p, i) => minutes.push({ bucketMs: base + i * 60_000, value: p.value, points: [i] }));
    return { spacing: chosen, minutes };
  }
  for (let i = 0; i < points.length; i++) {
    const bucketMs = Math.floor(points[i].ms / 60_000) * 60_000;
    const last = minutes[minutes.length - 1];
    if (last && last.bucketMs === bucketMs) last.points.push(i);
    else minutes.push({ bucketMs, value: 0, points: [i] });
  }
  for (const m of minutes) {
    const sum = m.points.reduce((s, i) => s + points[i].value, 0);
    m.value = aggregate === "sum" ? sum : sum / m.points.length;
  }
  return { spacing: chosen, minutes };
}

function autoSpacing(points: SeriesPoint[]): Spacing {
  if (points.length < 3) return "minutes";
  const gaps: number[] = [];
  for (let i = 1; i < points.length; i++) gaps.push(points[i].ms - points[i - 1].ms);
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)] > 60_000 ? "rows" : "minutes";
}

export interface ScoredPoint {
  raw: string;
  value: number;
  /** 0..1 */
  score: number;
  isAnomaly: boolean;
}

/** The scored CSV: header `timestamp,value,score,is_anomaly`, the input timestamp text echoed, score to 4 places. */
export function writeScoredCsv(rows: ScoredPoint[]): string {
  const out = ["timestamp,value,score,is_anomaly"];
  for (const r of rows) {
    out.push(`${csvField(r.raw)},${r.value},${r.score.toFixed(4)},${r.isAnomaly ? 1 : 0}`);
  }
  return out.join("\n") + "\n";
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
