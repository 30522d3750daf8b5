// scripts/replay/traces.ts — `npm run replay -- --traces DIR`: reads every *.json trace file of a directory (OTLP/JSON
// or Tempo JSON), normalises and redacts the spans exactly as otlp-ingest does, and replays them in event time into a
// fresh database: the spans that ended during each minute are ingested, then rollup + detection run as the live
// schedule would, so each anomaly carries the event time at which it would have fired.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { OtlpExportRequest } from "../../functions/_shared/otlp/codec.ts";
import { toStagedSpans } from "../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_INGEST_CONFIG, DEFAULT_REDACTION_POLICY } from "../../functions/_shared/redact.ts";
import type { StagedSpan } from "../../functions/_shared/spans.ts";
import { type EngineCaps, EventTimeDriver, readAnomalies, type Sql } from "./engine.ts";
import type { ReplayAnomaly } from "./output.ts";
import { latestEndNs, parseTraceFile, shiftRequest, type TraceDocShape } from "./otlp-files.ts";

export interface LoadedTraces {
  files: number;
  shapes: Partial<Record<TraceDocShape, number>>;
  spans: StagedSpan[];
  rejected: number;
  errors: string[];
  /** Milliseconds every time was moved by (--shift-to-now), else 0. */
  shiftedMs: number;
}

/** Reads and normalises every *.json file of `dir` (sorted by name). Throws TraceFileError for a bad file. */
export async function loadTraceDir(
  dir: string,
  opts: { shiftToNow?: boolean; now?: number } = {},
): Promise<LoadedTraces> {
  const names = (await readdir(dir)).filter((n) => n.toLowerCase().endsWith(".json")).sort();
  if (names.length === 0) throw new Error(`${dir} holds no *.json trace files`);
  const requests: OtlpExportRequest[] = [];
  const shapes: Partial<Record<TraceDocShape, number>> = {};
  for (const name of names) {
    const parsed = parseTraceFile(name, await readFile(join(dir, name), "utf8"));
    requests.push(...parsed.requests);
    for (const s of parsed.shapes) shapes[s] = (shapes[s] ?? 0) + 1;
  }
  const now = opts.now ?? Date.now();
  let shiftedMs = 0;
  let reqs = requests;
  if (opts.shiftToNow) {
    const end = latestEndNs(requests);
    if (end !== null) {
      // Whole minutes, so every span keeps its place within its minute bucket.
      shiftedMs = Math.floor((now - Number(end / 1_000_000n)) / 60_000) * 60_000;
      const delta = BigInt(shiftedMs) * 1_000_000n;
      reqs = requests.map((r) => shiftRequest(r, delta));
    }
  }
  const spans: StagedSpan[] = [];
  const errors: string[] = [];
  let rejected = 0;
  for (const r of reqs) {
    const res = toStagedSpans(r, {
      maxAttributeValueLength: DEFAULT_INGEST_CONFIG.max_attribute_value_length,
      redaction: DEFAULT_REDACTION_POLICY,
      now,
    });
    for (const s of res.spans) spans.push(s);
    rejected += res.rejected;
    for (const e of res.errors) if (errors.length < 10 && !errors.includes(e)) errors.push(e);
  }
  return { files: names.length, shapes, spans, rejected, errors, shiftedMs };
}

/** Spans grouped by the UTC minute in which they ended (when an exporter would have sent them), in time order. */
export function byArrivalMinute(spans: StagedSpan[]): Array<{ minuteMs: number; spans: StagedSpan[] }> {
  const bins = new Map<number, StagedSpan[]>();
  for (const s of spans) {
    const m = Math.floor(Date.parse(s.end_time) / 60_000) * 60_000;
    let bin = bins.get(m);
    if (!bin) bins.set(m, bin = []);
    bin.push(s);
  }
  return [...bins.entries()].sort((a, b) => a[0] - b[0]).map(([minuteMs, spans]) => ({ minuteMs, spans }));
}

export interface TraceReplayResult {
  spans: number;
  minutes: number;
  cycles: number;
  startMs: number;
  endMs: number;
  anomalies: ReplayAnomaly[];
  wallSeconds: number;
}

/** Max spans per anomaly.ingest_spans call (bounds one JSON parameter, as otlp-ingest does). */
const INGEST_CHUNK = 5000;

/**
 * Replays spans on a prepared, empty database: for every minute with arrivals, ingest what ended in it, then
 * run a live cycle at the end of that minute (minutes with no arrivals change nothing live either: the watermark
 * only moves with new spans). At the end the event time moves on past the last minute so it is scored too.
 */
export async function replayTraces(
  sql: Sql,
  caps: EngineCaps,
  spans: StagedSpan[],
  opts: { log?: (m: string) => void; flush?: boolean } = {},
): Promise<TraceReplayResult> {
  const started = performance.now();
  const log = opts.log ?? (() => {});
  const driver = new EventTimeDriver(sql, caps);
  const minutes = byArrivalMinute(spans);
  if (minutes.length === 0) throw new Error("no spans to replay");
  let done = 0;
  for (const { minuteMs, spans: batch } of minutes) {
    batch.sort((a, b) => (a.start_time < b.start_time ? -1 : a.start_time > b.start_time ? 1 : 0));
    for (let i = 0; i < batch.length; i += INGEST_CHUNK) {
      const part = batch.slice(i, i + INGEST_CHUNK);
      await driver.ingest(JSON.stringify(part), part.length);
    }
    await driver.cycle(minuteMs + 60_000);
    if (++done % 120 === 0) log(`replayed ${done} of ${minutes.length} minutes`);
  }
  const endMs = minutes[minutes.length - 1].minuteMs + 60_000;
  if (opts.flush !== false) await driver.flush(endMs);
  const anomalies = await readAnomalies(sql, caps, driver.observed);
  return {
    spans: spans.length,
    minutes: minutes.length,
    cycles: driver.cycles,
    startMs: minutes[0].minuteMs,
    endMs,
    anomalies: anomalies.map(({ id: _id, detectedMs: _d, firstSeenMs: _f, observedMs: _o, ...a }) => a),
    wallSeconds: (performance.now() - started) / 1000,
  };
}
