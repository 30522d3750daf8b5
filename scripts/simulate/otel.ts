// scripts/simulate/otel.ts — the OpenTelemetry SDK side of the simulator: turns trace specs into real SDK
// spans (explicit ids and back-dated HrTime timestamps), one BasicTracerProvider per (service instance,
// version, minute) so resource attributes can change every minute, all sharing one BatchSpanProcessor
// whose OTLP exporter (protobuf or JSON) is wrapped to count exported, failed and rejected spans.

import {
  type Attributes,
  type Context,
  diag,
  type DiagLogger,
  DiagLogLevel,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, type Resource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  type IdGenerator,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { type AttrValue, SCOPE_VERSIONS, type TraceSpec } from "./topology.ts";
import { usToHrTime } from "./time.ts";

export type Protocol = "proto" | "json";
type ExportCallback = Parameters<SpanExporter["export"]>[1];
type ExportResult = Parameters<ExportCallback>[0];
const EXPORT_SUCCESS = 0; // ExportResultCode.SUCCESS in @opentelemetry/core

/** The official OTLP/HTTP trace exporter for a protocol, pointed at `<endpoint>/v1/traces`. */
export function createOtlpExporter(options: {
  protocol: Protocol;
  endpoint: string;
  headers: Record<string, string>;
  timeoutMillis: number;
  concurrencyLimit: number;
}): SpanExporter {
  const config = {
    url: tracesUrl(options.endpoint),
    headers: options.headers,
    timeoutMillis: options.timeoutMillis,
    concurrencyLimit: options.concurrencyLimit,
  };
  return options.protocol === "json" ? new OtlpJsonExporter(config) : new OtlpProtoExporter(config);
}

/** `<base>/v1/traces` (a base that already ends in /v1/traces is kept). */
export function tracesUrl(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, "");
  return base.endsWith("/v1/traces") ? base : `${base}/v1/traces`;
}

export interface ExportCounters {
  /** Export calls (one HTTP request each, after the exporter's own retries). */
  requests: number;
  failedRequests: number;
  exportedSpans: number;
  failedSpans: number;
  /** Spans the receiver refused in a partial-success response (counted in exportedSpans too). */
  rejectedSpans: number;
  /** Distinct error messages (first 10). */
  errors: string[];
}

/** Wraps a SpanExporter and counts what happens to every batch. */
export class CountingExporter implements SpanExporter {
  readonly counters: ExportCounters = {
    requests: 0,
    failedRequests: 0,
    exportedSpans: 0,
    failedSpans: 0,
    rejectedSpans: 0,
    errors: [],
  };
  private listeners: Array<() => void> = [];

  constructor(private readonly inner: SpanExporter) {}

  export(spans: ReadableSpan[], resultCallback: ExportCallback): void {
    this.counters.requests++;
    this.inner.export(spans, (result: ExportResult) => {
      if (result.code === EXPORT_SUCCESS) {
        this.counters.exportedSpans += spans.length;
      } else {
        this.counters.failedRequests++;
        this.counters.failedSpans += spans.length;
        this.noteError(result.error?.message ?? "export failed");
      }
      resultCallback(result);
      for (const l of this.listeners.splice(0)) l();
    });
  }

  noteError(message: string): void {
    let text = message;
    if (text.startsWith("{")) {
      try {
        text = String((JSON.parse(text) as { message?: unknown }).message ?? text);
      } catch {
        // keep the raw text
      }
    }
    text = text.split("\n")[0].slice(0, 300);
    if (this.counters.errors.length < 10 && !this.counters.errors.includes(text)) {
      this.counters.errors.push(text);
    }
  }

  /** Resolves at the next batch completion (or after `ms`). */
  settled(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.listeners.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** An exporter that accepts everything and sends nothing (--dry-run). */
export class DiscardingExporter implements SpanExporter {
  export(_spans: ReadableSpan[], resultCallback: ExportCallback): void {
    resultCallback({ code: EXPORT_SUCCESS });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Hands out the ids the trace specs already carry, so SDK spans keep the generator's (seeded) ids. */
class ScriptedIdGenerator implements IdGenerator {
  traceId = "";
  spanId = "";
  generateTraceId(): string {
    return this.traceId;
  }
  generateSpanId(): string {
    return this.spanId;
  }
}

/**
 * Captures the exporter's partial-success warnings (the OTLP exporter only reports them through `diag`) and
 * forwards errors to stderr. Installed while a simulation runs; returns the uninstaller.
 */
export function captureExporterDiagnostics(counting: CountingExporter, verbose: boolean): () => void {
  const logger: DiagLogger = {
    error: (message: string, ...args: unknown[]) => {
      counting.noteError(message);
      if (verbose) console.error("[otel]", message, ...args);
    },
    warn: (message: string, ...args: unknown[]) => {
      if (message.includes("Partial Success")) {
        try {
          const partial = JSON.parse(String(args[0] ?? "{}")) as {
            rejectedSpans?: string | number;
            errorMessage?: string;
          };
          const rejected = Number(partial.rejectedSpans ?? 0);
          if (rejected > 0) counting.counters.rejectedSpans += rejected;
          if (partial.errorMessage) counting.noteError(`partial success: ${partial.errorMessage}`);
        } catch {
          counting.noteError(`partial success: ${String(args[0])}`);
        }
        return;
      }
      if (/Dropped \d+ spans/.test(message)) counting.noteError(message); // queue overflow: spans lost
      if (verbose) console.error("[otel]", message, ...args);
    },
    info: (message: string, ...args: unknown[]) => {
      if (verbose) console.error("[otel]", message, ...args);
    },
    debug: () => {},
    verbose: () => {},
  };
  diag.setLogger(logger, { logLevel: DiagLogLevel.INFO, suppressOverrideMessage: true });
  return () => diag.disable();
}

export interface EmitterOptions {
  exporter: SpanExporter;
  maxExportBatchSize: number;
  maxQueueSize: number;
  scheduledDelayMillis: number;
  exportTimeoutMillis: number;
  /** Resource attributes of (service, instance, version) in minute `minute` of the run. */
  resourceAttributes: (
    service: string,
    instance: string,
    version: string,
    minute: number,
  ) => Record<string, AttrValue>;
}

interface ProviderEntry {
  minute: number;
  provider: BasicTracerProvider;
  tracers: Map<string, Tracer>;
}

/** Feeds trace specs through the OpenTelemetry SDK. */
export class OtelEmitter {
  readonly counting: CountingExporter;
  readonly processor: BatchSpanProcessor;
  private readonly ids = new ScriptedIdGenerator();
  private readonly sampler = new AlwaysOnSampler();
  private readonly base: Resource = defaultResource();
  private readonly providers = new Map<string, ProviderEntry>();
  private readonly resourceAttributes: EmitterOptions["resourceAttributes"];
  /** Spans ended (handed to the processor). */
  spansEnded = 0;
  tracesEmitted = 0;
  providersCreated = 0;

  constructor(options: EmitterOptions) {
    this.counting = new CountingExporter(options.exporter);
    this.processor = new BatchSpanProcessor(this.counting, {
      maxExportBatchSize: options.maxExportBatchSize,
      maxQueueSize: options.maxQueueSize,
      scheduledDelayMillis: options.scheduledDelayMillis,
      exportTimeoutMillis: options.exportTimeoutMillis,
    });
    this.resourceAttributes = options.resourceAttributes;
  }

  private tracer(service: string, instance: string, version: string, minute: number, scope: string): Tracer {
    const key = `${minute}|${instance}|${version}`;
    let entry = this.providers.get(key);
    if (!entry) {
      const resource = this.base.merge(
        resourceFromAttributes(this.resourceAttributes(service, instance, version, minute)),
      );
      entry = {
        minute,
        provider: new BasicTracerProvider({
          resource,
          spanProcessors: [this.processor],
          idGenerator: this.ids,
          sampler: this.sampler,
        }),
        tracers: new Map(),
      };
      this.providers.set(key, entry);
      this.providersCreated++;
    }
    let tracer = entry.tracers.get(scope);
    if (!tracer) {
      tracer = entry.provider.getTracer(scope, SCOPE_VERSIONS[scope]);
      entry.tracers.set(scope, tracer);
    }
    return tracer;
  }

  /** Emits every span of a trace; resources are those of minute `minute` of the run. */
  emitTrace(spec: TraceSpec, minute: number): void {
    const serviceOf = new Map<string, string>();
    for (const s of spec.spans) serviceOf.set(s.spanId, s.service);
    for (const s of spec.spans) {
      const tracer = this.tracer(s.service, s.instance, s.version, minute, s.scope);
      let parent: Context = ROOT_CONTEXT;
      if (s.parentSpanId !== null) {
        parent = trace.setSpanContext(ROOT_CONTEXT, {
          traceId: s.traceId,
          spanId: s.parentSpanId,
          traceFlags: TraceFlags.SAMPLED,
          isRemote: serviceOf.get(s.parentSpanId) !== s.service,
        });
      }
      this.ids.traceId = s.traceId;
      this.ids.spanId = s.spanId;
      const span: Span = tracer.startSpan(
        s.name,
        { kind: s.kind, attributes: s.attributes as Attributes, startTime: usToHrTime(s.startUs) },
        parent,
      );
      for (const ev of s.events) span.addEvent(ev.name, ev.attributes as Attributes, usToHrTime(ev.timeUs));
      if (s.status.code !== SpanStatusCode.UNSET) span.setStatus(s.status);
      span.end(usToHrTime(s.endUs));
      this.spansEnded++;
    }
    this.tracesEmitted++;
  }

  /** Forgets providers of minutes before `minute` (their spans keep their Resource objects). */
  retireBefore(minute: number): void {
    for (const [key, entry] of this.providers) if (entry.minute < minute) this.providers.delete(key);
  }

  /** Spans ended but not yet exported or failed. */
  pending(): number {
    const c = this.counting.counters;
    return this.spansEnded - c.exportedSpans - c.failedSpans;
  }

  /** Backpressure: when `highWater` spans are waiting, export them (concurrently, one request per batch). */
  async relieve(highWater: number): Promise<void> {
    if (this.pending() < highWater) return;
    await this.flush();
  }

  /** Exports everything queued and waits for in-flight requests (up to `timeoutMs`). */
  async flush(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    try {
      await this.processor.forceFlush();
    } catch {
      // Failures are counted by CountingExporter.
    }
    while (this.pending() > 0 && Date.now() < deadline) {
      await this.counting.settled(Math.min(500, Math.max(1, deadline - Date.now())));
      if (this.pending() > 0) {
        try {
          await this.processor.forceFlush();
        } catch {
          // counted
        }
      }
    }
  }

  async shutdown(): Promise<void> {
    await this.flush();
    this.providers.clear();
    try {
      await this.processor.shutdown();
    } catch {
      // counted
    }
  }
}
