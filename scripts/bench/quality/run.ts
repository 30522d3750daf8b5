// scripts/bench/quality/run.ts — one corpus run of the quality benchmark: the simulator (OpenTelemetry SDK) feeds an
// exporter that encodes each batch as OTLP protobuf and normalises it exactly as otlp-ingest does, then streams the
// spans into a fresh database minute by minute in event time with rollup + detection after each minute (the
// replay driver), so detection timing is what it would have been live. Returns what was detected, scored as incidents.

import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { decodeProtobufRequest } from "../../../functions/_shared/otlp/codec.ts";
import { toStagedSpans } from "../../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_INGEST_CONFIG, DEFAULT_REDACTION_POLICY } from "../../../functions/_shared/redact.ts";
import {
  connect,
  dropDatabase,
  type EngineCaps,
  EventTimeDriver,
  q,
  readAnomalies,
  registeredDetectors,
  type Sql,
} from "../../replay/engine.ts";
import { recreateDatabase } from "../../local/databases.ts";
import { simulate } from "../../simulate/index.ts";
import type { RunPlan } from "./corpus.ts";
import {
  explanationDetectors,
  FAMILY_TYPE,
  hitEpisodes,
  type Incident,
  type RunOutcome,
  type ScoredAnomaly,
} from "./score.ts";

type ExportCallback = Parameters<SpanExporter["export"]>[1];

/**
 * A SpanExporter that ingests in event time. Spans are binned by the minute they ended in (when an exporter sends
 * them). The simulator emits traces in start order and none lasts a minute, so once a span starting in minute S has
 * arrived every span ending before minute S - 1 has too: those minutes are closed — ingested, then one live cycle
 * runs at the end of each. Exports are serialised; the simulator waits for each, which keeps memory bounded.
 */
export class EventTimeExporter implements SpanExporter {
  private readonly bins = new Map<number, string[]>();
  private chain: Promise<void> = Promise.resolve();
  private maxStartMinute = -Infinity;
  private closedThrough = -Infinity;
  failure: unknown = null;
  spans = 0;
  rejected = 0;
  /** Wall seconds spent in the database (ingest + cycles) and in encoding/normalising. */
  dbSeconds = 0;
  encodeSeconds = 0;

  /** Minutes ending before `liveFromMs` are only ingested and rolled up (history); detection runs from there on. */
  constructor(private readonly driver: EventTimeDriver, private readonly liveFromMs = -Infinity) {}

  export(spans: ReadableSpan[], done: ExportCallback): void {
    this.chain = this.chain.then(async () => {
      if (this.failure) throw this.failure;
      const t = performance.now();
      const body = ProtobufTraceSerializer.serializeRequest(spans);
      if (!body) throw new Error("the OTLP serializer produced no body");
      const staged = toStagedSpans(decodeProtobufRequest(body), {
        maxAttributeValueLength: DEFAULT_INGEST_CONFIG.max_attribute_value_length,
        redaction: DEFAULT_REDACTION_POLICY,
        now: Date.parse("2100-01-01T00:00:00Z"),
      });
      this.rejected += staged.rejected;
      for (const s of staged.spans) {
        const end = Math.floor(Date.parse(s.end_time) / 60_000) * 60_000;
        const start = Math.floor(Date.parse(s.start_time) / 60_000) * 60_000;
        if (start > this.maxStartMinute) this.maxStartMinute = start;
        let bin = this.bins.get(end);
        if (!bin) this.bins.set(end, bin = []);
        bin.push(JSON.stringify(s));
      }
      this.spans += staged.spans.length;
      this.encodeSeconds += (performance.now() - t) / 1000;
      await this.closeThrough(this.maxStartMinute - 2 * 60_000);
    }).then(
      () => done({ code: 0 }),
      (err) => {
        this.failure ??= err;
        done({ code: 1, error: err instanceof Error ? err : new Error(String(err)) });
      },
    );
  }

  /** Ingests and cycles every binned minute up to and including `minuteMs`, in order. */
  private async closeThrough(minuteMs: number): Promise<void> {
    const due = [...this.bins.keys()].filter((m) => m <= minuteMs).sort((a, b) => a - b);
    for (const m of due) {
      if (m <= this.closedThrough) {
        throw new Error(`spans arrived for minute ${new Date(m).toISOString()} after it closed`);
      }
      const lines = this.bins.get(m)!;
      this.bins.delete(m);
      const t = performance.now();
      for (let i = 0; i < lines.length; i += 5000) {
        const part = lines.slice(i, i + 5000);
        await this.driver.ingest(`[${part.join(",")}]`, part.length);
      }
      // Bulk history is still rolled up minute by minute: one rollup over hours of spans costs far more.
      if (m + 60_000 > this.liveFromMs) await this.driver.cycle(m + 60_000);
      else await this.driver.rollup();
      this.dbSeconds += (performance.now() - t) / 1000;
      this.closedThrough = m;
    }
  }

  /**
   * After the simulation: closes every remaining minute and moves the event time on past the last one — but not past
   * `endMs`, the end of the simulated time: the minute after it holds only the ends of the last traces, and scoring
   * it read as every service's traffic collapsing at once (a false throughput drop in every run, seeds 23 and 37).
   */
  async finish(endMs = Infinity): Promise<number> {
    await this.chain;
    if (this.failure) throw this.failure;
    const last = Math.max(...this.bins.keys(), this.closedThrough);
    await this.closeThrough(Infinity);
    const t = performance.now();
    const through = Math.min(last + 60_000, endMs);
    await this.driver.flush(through);
    this.dbSeconds += (performance.now() - t) / 1000;
    return through;
  }

  shutdown(): Promise<void> {
    return this.chain;
  }

  forceFlush(): Promise<void> {
    return this.chain;
  }
}

export interface RunResult extends RunOutcome {
  plan: RunPlan;
  spans: number;
  cycles: number;
  wallSeconds: number;
  dbSeconds: number;
  encodeSeconds: number;
  /** Database seconds by step: anomaly.ingest_spans, anomaly.rollup(), anomaly.detect(). */
  stepSeconds: { ingest: number; rollup: number; detect: number };
  /** Mean milliseconds of a live cycle (rollup + detect) per tenth of the live cycles, in order. */
  cycleMsByTenth: number[];
  /** Detector hits per detector (from anomaly.detector_hits, when the engine logs them). */
  hitsByDetector: Record<string, number>;
  /** Errors detection runs recorded (a failing detector is skipped by the engine). */
  detectorErrors: string[];
}

/** Runs one plan in database `name` cloned from `template` on `serverUrl`. */
export async function executeRun(
  serverUrl: string,
  template: string,
  name: string,
  plan: RunPlan,
  caps: EngineCaps,
  opts: { keep?: boolean; log?: (m: string) => void } = {},
): Promise<RunResult> {
  const started = performance.now();
  const url = await recreateDatabase(serverUrl, name, template);
  const sql = connect(url);
  try {
    const driver = new EventTimeDriver(sql, caps);
    const runStart = Date.parse(plan.start);
    const exporter = new EventTimeExporter(driver, runStart + plan.liveFrom * 60_000);
    const sim = await simulate({
      exporter,
      start: plan.start,
      minutes: plan.minutes,
      rate: plan.rate,
      seed: plan.seed,
      scenarios: plan.scenarios,
      truthPath: null,
      batchSize: 2000,
      concurrency: 1,
      exportTimeoutMs: 600_000,
      failFastAfter: 1,
    });
    if (exporter.failure) throw exporter.failure;
    if (!sim.ok) throw new Error(`simulation of ${plan.id} failed: ${sim.errors.join("; ")}`);
    await exporter.finish(runStart + plan.minutes * 60_000);

    const countFrom = runStart + plan.countFrom * 60_000;
    const rows = await readAnomalies(sql, caps, driver.observed);
    const anomalies: ScoredAnomaly[] = rows.filter((r) => r.firstSeenMs >= countFrom).map((r) => ({
      id: r.id,
      type: r.type,
      service: r.service,
      operation: r.operation,
      firstSeenMs: r.firstSeenMs,
      detectedMs: r.detectedMs,
      observedMs: r.observedMs,
      incidentId: r.incidentId ?? undefined,
      detectors: explanationDetectors(r.explanation, r.detector),
      reported: true,
    }));
    const { episodes, hitsByDetector } = await silentDetectorEpisodes(sql, caps);
    anomalies.push(...episodes.filter((e) => e.firstSeenMs >= countFrom));
    const detectorErrors = await sql.unsafe(
      `select distinct e ->> 'detector' || ': ' || (e ->> 'message') as m
       from anomaly.detection_runs r, jsonb_array_elements(r.errors) e order by 1 limit 20`,
    ).then((r) => r.map((x) => String(x.m))).catch(() => [] as string[]);

    const incidents: Incident[] = sim.truth.incidents.map((i) => ({
      id: i.id,
      scenario: i.scenario,
      anomaly_type: i.anomaly_type,
      service: i.service,
      operation: i.operation,
      start: i.start,
      end: i.end,
      affected: i.affected,
    }));
    return {
      id: plan.id,
      kind: plan.kind,
      scenario: plan.kind === "clean" ? null : plan.scenario,
      days: plan.kind === "clean" ? (plan.minutes - plan.countFrom) / 1440 : 0,
      incidents,
      anomalies,
      plan,
      spans: exporter.spans,
      cycles: driver.cycles,
      wallSeconds: (performance.now() - started) / 1000,
      dbSeconds: exporter.dbSeconds,
      encodeSeconds: exporter.encodeSeconds,
      stepSeconds: { ...driver.seconds },
      cycleMsByTenth: tenths(driver.cycleMs),
      hitsByDetector,
      detectorErrors,
    };
  } finally {
    await sql.end({ timeout: 5 });
    if (!opts.keep) await dropDatabase(serverUrl, name).catch(() => {});
  }
}

function tenths(xs: number[]): number[] {
  const out: number[] = [];
  for (let k = 0; k < 10; k++) {
    const part = xs.slice(Math.floor((k * xs.length) / 10), Math.floor(((k + 1) * xs.length) / 10));
    if (part.length) out.push(Math.round(part.reduce((a, b) => a + b, 0) / part.length));
  }
  return out;
}

/**
 * Episodes of detectors whose hits open no anomalies (the registry's legacy flag: the old mean + k·σ rule is kept
 * for comparison), rebuilt from anomaly.detector_hits; plus hit counts of every detector. Empty without hits.
 */
async function silentDetectorEpisodes(
  sql: Sql,
  caps: EngineCaps,
): Promise<{ episodes: ScoredAnomaly[]; hitsByDetector: Record<string, number> }> {
  const hitsByDetector: Record<string, number> = {};
  if (!caps.hits) return { episodes: [], hitsByDetector };
  const h = caps.hits;
  for (
    const r of await sql.unsafe(
      `select ${q(h.detector)}::text as d, count(*)::int as n from anomaly.detector_hits group by 1`,
    )
  ) {
    hitsByDetector[String(r.d)] = Number(r.n);
  }
  const silent = (await registeredDetectors(sql, caps)).filter((d) => d.legacy);
  if (silent.length === 0) return { episodes: [], hitsByDetector };
  const seriesCols = (await sql<{ c: string }[]>`
    select column_name as c from information_schema.columns where table_schema = 'anomaly' and table_name = 'series'`)
    .map((r) => r.c);
  const hitCols = (await sql<{ c: string }[]>`
    select column_name as c from information_schema.columns
    where table_schema = 'anomaly' and table_name = 'detector_hits'`).map((r) => r.c);
  if (!seriesCols.includes("service") || !hitCols.includes("series_id")) {
    return { episodes: [], hitsByDetector };
  }
  const rows = await sql.unsafe(
    `select h.${q(h.detector)}::text as detector, s.service::text as service,
            nullif(${seriesCols.includes("operation") ? "s.operation" : "''"}, '')::text as operation,
            ${hitCols.includes("subtype") ? "h.subtype::text" : "''"} as subtype,
            (extract(epoch from h.${q(h.bucket)}) * 1000)::float8 as b
     from anomaly.detector_hits h join anomaly.series s on s.id = h.series_id
     where h.${q(h.detector)} = any($1::text[])`,
    [silent.map((d) => d.name)],
  );
  const family = new Map(silent.map((d) => [d.name, d.family ?? ""]));
  const [{ quiet }] = await sql<{ quiet: number | null }[]>`
    select (anomaly.config('detect.lifecycle') ->> 'quiet_minutes')::int as quiet`;
  const episodes = hitEpisodes(
    rows.map((r) => ({
      detector: String(r.detector),
      type: FAMILY_TYPE[family.get(String(r.detector)) ?? ""] ?? "LATENCY",
      service: String(r.service),
      operation: r.operation ?? null,
      subtype: String(r.subtype),
      bucketMs: Number(r.b),
    })),
    quiet ?? 5,
    caps.latenessSeconds * 1000,
  );
  return { episodes, hitsByDetector };
}
