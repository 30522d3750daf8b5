// functions/_shared/tempo/pull.ts — one tempo-ingest invocation: for each enabled source, take its lease, build
// the client with its tenant and credential, run it (puller.ts), close the run and report. Sources are pulled
// one after another within the invocation's time; a leased (busy) source is reported and left alone.

import type { Sql } from "../db.ts";
import { authorizationHeader, TempoClient } from "./client.ts";
import { runSource } from "./puller.ts";
import { beginRun, enabledSources, loadIngestConfig, resolveSecret } from "./store.ts";

export interface PullOptions {
  /** Only this source (default: every enabled one). */
  source?: string;
  env: (name: string) => string | undefined;
  now?: () => number;
  fetch?: typeof fetch;
  log?: (line: string) => void;
}

export interface SourceReport {
  source: string;
  run_id: number | null;
  status: "ok" | "incomplete" | "failed" | "busy";
  mode?: string;
  window?: { start: string; end: string } | null;
  cursor?: string | null;
  traces_found?: number;
  traces_fetched?: number;
  traces_skipped?: number;
  spans_staged?: number;
  series_minutes?: number;
  error?: string | null;
}

export async function pullAll(sql: Sql, opts: PullOptions): Promise<SourceReport[]> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const names = await enabledSources(sql, opts.source);
  if (names.length === 0) return [];
  const ingest = await loadIngestConfig(sql);
  const reports: SourceReport[] = [];
  for (const name of names) {
    const owner = crypto.randomUUID();
    const leased = await beginRun(sql, name, owner);
    if (!leased) {
      reports.push({ source: name, run_id: null, status: "busy" });
      continue;
    }
    const src = leased.source;
    let report: SourceReport;
    try {
      const secret = await resolveSecret(sql, src, opts.env);
      const api = new TempoClient({
        baseUrl: src.base_url,
        tenant: src.tenant,
        authorization: authorizationHeader(src.auth_kind, secret),
        timeoutMs: src.request_timeout_ms,
        maxRetries: src.max_retries,
        fetch: opts.fetch,
        now: opts.now,
        deadlineMs: (opts.now ?? Date.now)() + src.max_seconds_per_run * 1000,
      });
      const out = await runSource({ source: src, api, store: leased.store, ingest, now: opts.now, log });
      await leased.finish(
        out.status,
        out.error,
        { ...out.details, counters: out.counters },
        out.window?.end ?? null,
      );
      report = {
        source: name,
        run_id: leased.runId,
        status: out.status,
        mode: src.mode,
        window: out.window,
        cursor: out.cursor,
        traces_found: out.counters.traces_found,
        traces_fetched: out.counters.traces_fetched,
        traces_skipped: out.counters.traces_skipped,
        spans_staged: out.counters.spans_staged,
        series_minutes: out.seriesMinutes,
        error: out.error,
      };
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      await leased.finish("failed", error, {}, null).catch(() => {});
      report = { source: name, run_id: leased.runId, status: "failed", mode: src.mode, error };
    }
    log(`tempo-ingest ${JSON.stringify(report)}`);
    reports.push(report);
  }
  return reports;
}
