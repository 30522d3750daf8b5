// functions/_shared/tempo/puller.ts — one run of one Tempo source, with I/O behind two interfaces (TempoApi for
// Tempo, TempoStore for the database) so it is unit-testable. Traces mode: search the window left to right,
// bisect a range whose answer reaches the search limit (or the trace budget), fetch each trace, normalise and
// redact it with the OTLP ingest code, and commit its spans together with the cursor at the range's end. Metrics
// mode: three TraceQL metrics queries become operation_minutes rows committed with the cursor.
// The cursor only moves to the end of a range whose every trace was staged or skipped with a reason.

import { toStagedSpans } from "../otlp/normalize.ts";
import { type IngestConfig, policyFromConfig } from "../redact.ts";
import type { StagedSpan } from "../spans.ts";
import { type TempoClient, TempoHttpError, type TraceFetch } from "./client.ts";
import { metricsQueries, type MinuteRow, minuteRows } from "./metrics.ts";
import { MAX_RESULT_LIMIT } from "./search.ts";
import { bisect, isoOfSeconds, type Range, runWindow, type TempoSource } from "./source.ts";

export type SkipReason = "vanished" | "too_large" | "malformed" | "partial" | "gave_up";
export interface Skip {
  trace_id: string;
  reason: SkipReason;
  detail: string;
}

export interface Counters {
  searches: number;
  splits: number;
  retries: number;
  traces_found: number;
  traces_fetched: number;
  traces_skipped: number;
  spans_received: number;
  spans_staged: number;
  spans_rejected: number;
}
const zero = (): Counters => ({
  searches: 0,
  splits: 0,
  retries: 0,
  traces_found: 0,
  traces_fetched: 0,
  traces_skipped: 0,
  spans_received: 0,
  spans_staged: 0,
  spans_rejected: 0,
});

export interface TempoStore {
  /** Commits spans + skips + counters and moves the cursor (null: keep it) in one transaction; returns new rows. */
  commitSpans(
    spans: StagedSpan[],
    cursor: string | null,
    counters: Counters,
    skips: Skip[],
    fetchedIds: string[],
  ): Promise<number>;
  /** Records that a trace failed after every retry in this run; true when it is to be given up (gave_up). */
  noteFailure(traceId: string, detail: string): Promise<boolean>;
  /** Metrics mode: upserts minute rows and moves the cursor in one transaction; returns rows written. */
  storeMinutes(rows: MinuteRow[], cursor: string, counters: Partial<Counters>): Promise<number>;
}

export type TempoApi = Pick<TempoClient, "search" | "trace" | "queryRange" | "retries">;

export interface RunOptions {
  source: TempoSource;
  api: TempoApi;
  store: TempoStore;
  ingest: IngestConfig;
  now?: () => number;
  log?: (line: string) => void;
}

export type RunStatus = "ok" | "incomplete" | "failed";

export interface RunOutcome {
  status: RunStatus;
  error: string | null;
  window: { start: string; end: string } | null;
  cursor: string | null;
  counters: Counters;
  seriesMinutes: number;
  details: Record<string, unknown>;
}

/** Spans held in memory before an intermediate commit (cursor unchanged) inside a large range. */
export const COMMIT_SPANS = 20_000;

/** Runs one source once (the lease is the caller's). Never throws for Tempo trouble: it reports it. */
export async function runSource(opts: RunOptions): Promise<RunOutcome> {
  return opts.source.mode === "metrics" ? await runMetrics(opts) : await runTraces(opts);
}

async function runTraces(opts: RunOptions): Promise<RunOutcome> {
  const { source: src, api, store } = opts;
  const now = opts.now ?? Date.now;
  const started = now();
  const deadline = started + src.max_seconds_per_run * 1000;
  const window = runWindow(src, started);
  const outcome: RunOutcome = {
    status: "ok",
    error: null,
    window: window && { start: isoOfSeconds(window.start), end: isoOfSeconds(window.end) },
    cursor: src.cursor,
    counters: zero(),
    seriesMinutes: 0,
    details: {},
  };
  if (!window) return outcome;

  const normalizeOpts = {
    maxAttributeValueLength: opts.ingest.max_attribute_value_length,
    redaction: policyFromConfig(opts.ingest),
  };
  const seen = new Set<string>();
  const truncatedSeconds: number[] = [];
  let budget = src.max_traces_per_run;
  let fetchedThisRun = 0;
  let retriesReported = api.retries;

  // Work not yet committed.
  let spans: StagedSpan[] = [];
  let skips: Skip[] = [];
  let fetchedIds: string[] = [];
  let counters = zero();
  const commit = async (cursor: string | null) => {
    // Swap the buffers out before awaiting: fetch workers keep appending to fresh ones meanwhile.
    const batch = { spans, skips, fetchedIds, counters };
    spans = [];
    skips = [];
    fetchedIds = [];
    counters = zero();
    batch.counters.retries += api.retries - retriesReported;
    retriesReported = api.retries;
    batch.counters.spans_staged = await store.commitSpans(
      batch.spans,
      cursor,
      batch.counters,
      batch.skips,
      batch.fetchedIds,
    );
    for (const k of Object.keys(batch.counters) as (keyof Counters)[]) {
      outcome.counters[k] += batch.counters[k];
    }
    if (cursor) outcome.cursor = cursor;
  };

  // Ranges still to search, leftmost on top: the cursor can follow each finished range.
  const stack: Array<Range & { boost?: boolean }> = [window];
  try {
    while (stack.length > 0) {
      if (now() >= deadline) {
        outcome.status = "incomplete";
        break;
      }
      const range = stack.pop()!;
      const limit = range.boost ? Math.min(MAX_RESULT_LIMIT, src.search_limit * 16) : src.search_limit;
      const found = await api.search(src.traceql, range.start, range.end, limit);
      counters.searches++;
      const fresh = found.traceIds.filter((id) => !seen.has(id));
      const truncated = found.returned >= limit;

      if (truncated) {
        const halves = bisect(range);
        if (halves) {
          stack.push(halves[1], halves[0]);
          counters.splits++;
          continue;
        }
        if (!range.boost && limit < MAX_RESULT_LIMIT) {
          stack.push({ ...range, boost: true }); // one second holds more than `limit` traces: ask for more, once
          continue;
        }
        truncatedSeconds.push(range.start); // Tempo cannot list more for one second (README "Limits")
      }
      if (fresh.length > budget) {
        if (fetchedThisRun > 0) {
          stack.push(range); // the next run has a full budget for it
          outcome.status = "incomplete";
          break;
        }
        const halves = bisect(range);
        if (halves) {
          stack.push(halves[1], halves[0]);
          counters.splits++;
          continue;
        }
      }

      counters.traces_found += fresh.length;
      const done = await fetchAll(fresh);
      budget -= done.count;
      fetchedThisRun += done.count;
      if (done.stop) {
        await commit(null); // keep what was fetched; the range is searched again next run
        if (done.stop.kind === "deadline") outcome.status = "incomplete";
        else {
          outcome.status = "failed";
          outcome.error = done.stop.error;
        }
        break;
      }
      await commit(isoOfSeconds(range.end));
      if (budget <= 0 && stack.length > 0) {
        outcome.status = "incomplete";
        break;
      }
    }
    if (outcome.status === "ok" && (spans.length > 0 || skips.length > 0)) await commit(null);
    if (outcome.status === "ok" && window.end < Math.floor(started / 1000 - src.lag_seconds)) {
      outcome.status = "incomplete"; // max_window_seconds capped this run
    }
  } catch (e) {
    outcome.status = "failed";
    outcome.error = errorText(e);
    // Staged spans of the unfinished range are still worth keeping (idempotent), without moving the cursor.
    if (spans.length > 0 || skips.length > 0) {
      try {
        await commit(null);
      } catch (e2) {
        outcome.error += `; and committing the fetched spans failed: ${errorText(e2)}`;
      }
    }
  }
  if (truncatedSeconds.length > 0) outcome.details.truncated_seconds = truncatedSeconds.slice(0, 20);
  return outcome;

  /** Fetches `ids` with fetch_concurrency workers; stops early at the deadline or on an unrecoverable error. */
  async function fetchAll(
    ids: string[],
  ): Promise<{ count: number; stop?: { kind: "deadline" | "error"; error: string } }> {
    let next = 0;
    let count = 0;
    let stop: { kind: "deadline" | "error"; error: string } | undefined;
    const worker = async () => {
      while (!stop && next < ids.length) {
        if (now() >= deadline) {
          stop ??= { kind: "deadline", error: "time budget spent" };
          return;
        }
        const id = ids[next++];
        let got: TraceFetch;
        try {
          got = await api.trace(id, src.max_trace_bytes);
        } catch (e) {
          const message = errorText(e);
          if (e instanceof TempoHttpError && e.retryable) {
            if (await store.noteFailure(id, message)) {
              skips.push({ trace_id: id, reason: "gave_up", detail: message });
              counters.traces_skipped++;
              seen.add(id);
              count++;
              continue;
            }
          }
          stop ??= { kind: "error", error: `trace ${id}: ${message}` };
          return;
        }
        seen.add(id);
        count++;
        if (got.kind !== "ok") {
          skips.push({
            trace_id: id,
            reason: got.kind,
            detail: got.kind === "too_large"
              ? `${got.bytes} bytes > max_trace_bytes ${src.max_trace_bytes}`
              : got.kind === "malformed"
              ? got.detail
              : "404 between search and fetch",
          });
          counters.traces_skipped++;
          continue;
        }
        const res = toStagedSpans(got.trace.request, normalizeOpts);
        if (res.spans.length === 0 && res.rejected === 0) {
          skips.push({ trace_id: id, reason: "vanished", detail: "Tempo returned the trace without spans" });
          counters.traces_skipped++;
          continue;
        }
        counters.traces_fetched++;
        counters.spans_received += res.spans.length + res.rejected;
        counters.spans_rejected += res.rejected;
        fetchedIds.push(id);
        for (const s of res.spans) spans.push(s);
        if (got.trace.partial) {
          skips.push({
            trace_id: id,
            reason: "partial",
            detail: `staged ${res.spans.length} spans of a partial trace: ${got.trace.message}`.slice(0, 500),
          });
        }
        if (spans.length >= COMMIT_SPANS) await commit(null);
      }
    };
    await Promise.all(Array.from({ length: Math.min(src.fetch_concurrency, ids.length) }, worker));
    return { count, stop };
  }
}

async function runMetrics(opts: RunOptions): Promise<RunOutcome> {
  const { source: src, api, store } = opts;
  const now = opts.now ?? Date.now;
  const window = runWindow(src, now());
  const outcome: RunOutcome = {
    status: "ok",
    error: null,
    window: window && { start: isoOfSeconds(window.start), end: isoOfSeconds(window.end) },
    cursor: src.cursor,
    counters: zero(),
    seriesMinutes: 0,
    details: {},
  };
  if (!window) return outcome;
  const q = metricsQueries(src.traceql);
  try {
    const before = api.retries;
    // Sequential on purpose: Tempo's query queue answers 429 when it is full.
    const counts = await api.queryRange(q.counts, window.start, window.end);
    const errors = await api.queryRange(q.errors, window.start, window.end);
    const quantiles = await api.queryRange(q.quantiles, window.start, window.end);
    const partial = [counts, errors, quantiles].filter((a) => a.status === "PARTIAL").map((a) =>
      a.message ?? ""
    );
    if (partial.length) outcome.details.partial = partial;
    const { rows, withoutQuantiles } = minuteRows(
      { counts, errors, quantiles },
      window.start * 1000,
      window.end * 1000,
    );
    if (withoutQuantiles) outcome.details.minutes_without_quantiles = withoutQuantiles;
    outcome.counters.searches = 3;
    outcome.counters.retries = api.retries - before;
    outcome.seriesMinutes = await store.storeMinutes(rows, isoOfSeconds(window.end), {
      searches: 3,
      retries: outcome.counters.retries,
    });
    outcome.cursor = isoOfSeconds(window.end);
    if (window.end < Math.floor(now() / 1000 - src.lag_seconds) - 60) outcome.status = "incomplete";
  } catch (e) {
    outcome.status = "failed";
    outcome.error = errorText(e);
  }
  return outcome;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e);
}
