// tests/fakes/tempo-server.ts — a local HTTP server that speaks the part of Grafana Tempo's API tempo-ingest uses,
// in Tempo's documented shapes (shared/reference/integration-facts.md §1): it receives OTLP/HTTP pushes on
// /v1/traces like Tempo's distributor (so the OpenTelemetry SDK and the simulator feed it), and answers
// /api/search (spanSets, hex ids without leading zeros, `limit` truncation, 400s), /api/v2/traces/<id> (gogo-jsonpb
// JSON with base64 ids and enum names, or protobuf TraceByIDResponse; 404; PARTIAL), /api/metrics/query_range
// (rate / quantile_over_time by labels, jsonpb zero omission, exemplars), /api/echo and /ready, with tenancy,
// auth and injectable faults (status codes with Retry-After, delays, malformed bodies, dropped connections).
// Tests, the demo (`--source tempo`) and the Tempo benchmark import it.

import { Buffer } from "node:buffer";
import http from "node:http";
import type net from "node:net";
import { gunzipSync } from "node:zlib";
import {
  decodeProtobufRequest,
  encodeProtobufRequest,
  type OtlpAnyValue,
  type OtlpExportRequest,
  type OtlpKeyValue,
  type OtlpSpan,
  parseJsonRequest,
} from "../../functions/_shared/otlp/codec.ts";
import { encodeTraceProtobuf } from "../../functions/_shared/tempo/trace.ts";

export type Endpoint = "search" | "trace" | "query_range" | "echo" | "push" | "any";

/** A fault applied to the next `times` matching requests. */
export interface Fault {
  endpoint: Endpoint;
  /** Only for this trace (endpoint "trace"). */
  traceId?: string;
  /** Answer with this status and a plain-text body (Tempo's error bodies are text). */
  status?: number;
  retryAfter?: string;
  body?: string;
  /** Wait this long before answering (a slow Tempo; longer than the client's timeout = a timeout). */
  delayMs?: number;
  /** Answer 200 with a body that is not what the endpoint documents. */
  malformed?: boolean;
  /** Close the connection without an answer. */
  drop?: boolean;
  /** Remove the trace before answering (it vanished between search and fetch). */
  vanish?: boolean;
  times: number;
}

export interface TempoServerOptions {
  port?: number;
  /** Require this X-Scope-OrgID (multitenancy_enabled); missing gives 401 "no org id". */
  tenant?: string;
  /** Require this exact Authorization header (a reverse proxy in front of Tempo). */
  authorization?: string;
  /** Serve protobuf when asked (default true); false answers JSON whatever Accept says. */
  protobuf?: boolean;
  /** Traces with more spans than this are returned PARTIAL (Tempo's max_bytes_per_trace, counted in spans). */
  maxSpansPerTrace?: number;
}

interface StoredSpan {
  resource: { attributes: OtlpKeyValue[] };
  scope: { name: string; version: string };
  span: OtlpSpan;
}

interface StoredTrace {
  id: string;
  spans: StoredSpan[];
  startNs: bigint;
  endNs: bigint;
  /** When set, search matches this instant instead of span times (Tempo clamps skewed spans to ingestion time). */
  searchAtNs?: bigint;
}

export interface RequestRecord {
  endpoint: Endpoint | "other";
  path: string;
  query: Record<string, string>;
  accept: string | null;
  tenant: string | null;
  authorized: boolean;
  status: number;
  /** Traces a search answered with. */
  hits?: number;
}

export class TempoServer {
  readonly traces = new Map<string, StoredTrace>();
  readonly faults: Fault[] = [];
  readonly requests: RequestRecord[] = [];
  url = "";
  #server: http.Server;
  #sockets = new Set<net.Socket>();
  #opts: TempoServerOptions;
  /** Encoded trace-by-id bodies, so the benchmark measures tempo-ingest rather than this server's encoder. */
  #bodies = new Map<string, Uint8Array | string>();

  constructor(opts: TempoServerOptions = {}) {
    this.#opts = opts;
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        if (!res.headersSent) text(res, 500, `internal error: ${(err as Error).message}`);
        else res.destroy();
      });
    });
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
  }

  static async start(opts: TempoServerOptions = {}): Promise<TempoServer> {
    const server = new TempoServer(opts);
    await new Promise<void>((resolve, reject) => {
      server.#server.once("error", reject);
      server.#server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
    });
    server.url = `http://127.0.0.1:${(server.#server.address() as net.AddressInfo).port}`;
    return server;
  }

  set options(o: Partial<TempoServerOptions>) {
    Object.assign(this.#opts, o);
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
  }

  /** Stores the spans of a request (as the distributor would), grouped by trace. */
  add(req: OtlpExportRequest, opts: { searchAtMs?: number } = {}): number {
    let n = 0;
    for (const rs of req.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const span of ss.spans) {
          const id = span.traceId;
          let t = this.traces.get(id);
          const start = BigInt(span.startTimeUnixNano);
          const end = BigInt(span.endTimeUnixNano);
          if (!t) this.traces.set(id, t = { id, spans: [], startNs: start, endNs: end });
          if (start < t.startNs) t.startNs = start;
          if (end > t.endNs) t.endNs = end;
          if (opts.searchAtMs !== undefined) t.searchAtNs = BigInt(opts.searchAtMs) * 1_000_000n;
          t.spans.push({ resource: rs.resource, scope: ss.scope, span });
          this.#bodies.delete(`${id}/pb`);
          this.#bodies.delete(`${id}/json`);
          n++;
        }
      }
    }
    return n;
  }

  /** Encodes every trace's protobuf answer now (benchmarks: time the client, not this server's encoder). */
  prepareBodies(): void {
    for (const id of this.traces.keys()) {
      if (!this.#bodies.has(`${id}/pb`)) {
        this.#bodies.set(`${id}/pb`, encodeTraceProtobuf(encodeProtobufRequest(this.traceRequest(id).req)));
      }
    }
  }

  spanCount(): number {
    let n = 0;
    for (const t of this.traces.values()) n += t.spans.length;
    return n;
  }

  clear(): void {
    this.traces.clear();
    this.#bodies.clear();
    this.faults.length = 0;
    this.requests.length = 0;
  }

  /** The trace as an OTLP request: one resourceSpans per distinct resource, one scopeSpans per scope. */
  traceRequest(id: string, maxSpans = Infinity): { req: OtlpExportRequest; partial: boolean } {
    const t = this.traces.get(id)!;
    const kept = t.spans.slice(0, maxSpans);
    const byResource = new Map<string, Map<string, StoredSpan[]>>();
    const resources = new Map<string, StoredSpan["resource"]>();
    const scopes = new Map<string, StoredSpan["scope"]>();
    for (const s of kept) {
      const rk = JSON.stringify(s.resource);
      const sk = JSON.stringify(s.scope);
      resources.set(rk, s.resource);
      scopes.set(sk, s.scope);
      let m = byResource.get(rk);
      if (!m) byResource.set(rk, m = new Map());
      let list = m.get(sk);
      if (!list) m.set(sk, list = []);
      list.push(s);
    }
    return {
      req: {
        resourceSpans: [...byResource].map(([rk, m]) => ({
          resource: resources.get(rk)!,
          scopeSpans: [...m].map(([sk, list]) => ({
            scope: scopes.get(sk)!,
            spans: list.map((s) => s.span),
          })),
        })),
      },
      partial: kept.length < t.spans.length,
    };
  }

  // ------------------------------------------------------------ HTTP
  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://tempo.local");
    const path = url.pathname;
    const endpoint: Endpoint | "other" = path === "/api/search"
      ? "search"
      : path.startsWith("/api/v2/traces/")
      ? "trace"
      : path === "/api/metrics/query_range"
      ? "query_range"
      : path === "/api/echo"
      ? "echo"
      : path === "/v1/traces"
      ? "push"
      : "other";
    const record: RequestRecord = {
      endpoint,
      path,
      query: Object.fromEntries(url.searchParams),
      accept: req.headers.accept ?? null,
      tenant: (req.headers["x-scope-orgid"] as string | undefined) ?? null,
      authorized: !this.#opts.authorization || req.headers.authorization === this.#opts.authorization,
      status: 0,
    };
    if (endpoint !== "push") this.requests.push(record);
    const send = (status: number, body: string | Uint8Array, type = "text/plain; charset=utf-8") => {
      record.status = status;
      res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
      res.end(body);
    };

    if (endpoint === "push") return await this.#push(req, send);
    if (path === "/ready") return send(200, "ready");
    if (this.#opts.tenant && record.tenant !== this.#opts.tenant) return send(401, "no org id");
    if (!record.authorized) return send(401, "Unauthorized");

    const traceId = endpoint === "trace" ? path.slice("/api/v2/traces/".length).toLowerCase() : undefined;
    const fault = this.faults.find((f) =>
      f.times > 0 && (f.endpoint === "any" || f.endpoint === endpoint) &&
      (f.traceId === undefined || f.traceId === traceId)
    );
    if (fault) {
      fault.times--;
      if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (fault.drop) {
        record.status = -1;
        req.socket.destroy();
        return;
      }
      if (fault.vanish && traceId) this.traces.delete(traceId);
      if (fault.status) {
        record.status = fault.status;
        res.writeHead(fault.status, {
          "Content-Type": "text/plain; charset=utf-8",
          ...(fault.retryAfter ? { "Retry-After": fault.retryAfter } : {}),
        });
        res.end(fault.body ?? (fault.status === 429 ? "job queue full" : "internal error"));
        return;
      }
      if (fault.malformed) {
        return endpoint === "trace" && this.#wantsProtobuf(req)
          ? send(200, new Uint8Array([0x0a, 0xff, 0xff, 0x01, 0x02]), "application/protobuf")
          : send(200, '{"traces": [{"traceID": 12', "application/json");
      }
    }

    switch (endpoint) {
      case "echo":
        return send(200, "echo");
      case "search":
        return this.#search(url, send);
      case "trace":
        return this.#trace(traceId!, req, send);
      case "query_range":
        return this.#queryRange(url, send);
      default:
        return send(404, "404 page not found");
    }
  }

  #wantsProtobuf(req: http.IncomingMessage): boolean {
    return (this.#opts.protobuf ?? true) && /application\/protobuf/.test(req.headers.accept ?? "");
  }

  async #push(req: http.IncomingMessage, send: (s: number, b: string | Uint8Array, t?: string) => void) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body = Buffer.concat(chunks);
    if ((req.headers["content-encoding"] ?? "") === "gzip") body = gunzipSync(body);
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim();
    try {
      const parsed = type === "application/json"
        ? parseJsonRequest(body.toString("utf8"))
        : decodeProtobufRequest(body);
      this.add(parsed);
    } catch (e) {
      return send(400, (e as Error).message);
    }
    return type === "application/json"
      ? send(200, "{}", "application/json")
      : send(200, new Uint8Array(0), "application/x-protobuf");
  }

  #search(url: URL, send: (s: number, b: string | Uint8Array, t?: string) => void) {
    const record = this.requests[this.requests.length - 1];
    const q = url.searchParams.get("q") ?? "{}";
    const limit = Number(url.searchParams.get("limit") ?? "20");
    const spss = Number(url.searchParams.get("spss") ?? "3");
    if (!Number.isInteger(limit) || limit < 0) {
      return send(400, `invalid limit: ${url.searchParams.get("limit")}`);
    }
    if (limit > 262144) return send(400, `limit ${limit} exceeds max limit 262144`);
    if (spss > 100) return send(400, `spans per span set exceeds 100. received: ${spss}`);
    const filter = parseFilter(q);
    if (!filter) return send(400, `invalid TraceQL query: parse error at line 1, col 1: ${q}`);
    const start = url.searchParams.has("start")
      ? BigInt(url.searchParams.get("start")!) * 1_000_000_000n
      : null;
    const end = url.searchParams.has("end") ? BigInt(url.searchParams.get("end")!) * 1_000_000_000n : null;
    // Tempo returns the first hits its parallel jobs find, not the oldest: sort by id to be neither time-ordered
    // nor random (reproducible tests).
    const hits: StoredTrace[] = [];
    for (const t of [...this.traces.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      const from = t.searchAtNs ?? t.startNs;
      const to = t.searchAtNs ?? t.endNs;
      if (start !== null && to < start) continue;
      if (end !== null && from > end) continue;
      const matched = t.spans.filter((s) => filter(s));
      if (matched.length === 0) continue;
      hits.push(t);
      if (hits.length >= (limit || 20)) break;
    }
    if (record) record.hits = hits.length;
    const traces = hits.map((t) => {
      const root = t.spans.find((s) => !s.span.parentSpanId) ?? null;
      const matched = t.spans.filter((s) => filter(s));
      const durationMs = Number((t.endNs - t.startNs) / 1_000_000n);
      return omitEmpty({
        traceID: t.id.replace(/^0+/, ""), // left_pad_trace_ids defaults to false
        rootServiceName: root ? serviceOf(root) : "<root span not yet received>",
        rootTraceName: root?.span.name,
        startTimeUnixNano: String(t.startNs),
        durationMs: durationMs || undefined,
        spanSets: [{
          spans: matched.slice(0, spss).map((s) =>
            omitEmpty({
              spanID: s.span.spanId,
              name: s.span.name,
              startTimeUnixNano: s.span.startTimeUnixNano,
              durationNanos: String(BigInt(s.span.endTimeUnixNano) - BigInt(s.span.startTimeUnixNano)),
            })
          ),
          matched: matched.length,
        }],
      });
    });
    send(
      200,
      JSON.stringify({
        traces,
        metrics: { inspectedTraces: this.traces.size, inspectedBytes: "1024", totalBlocks: 1 },
      }),
      "application/json",
    );
  }

  #trace(
    id: string,
    req: http.IncomingMessage,
    send: (s: number, b: string | Uint8Array, t?: string) => void,
  ) {
    if (!this.traces.has(id)) return send(404, "trace not found");
    const pb = this.#wantsProtobuf(req);
    const cacheKey = `${id}/${pb ? "pb" : "json"}`;
    let body = this.#opts.maxSpansPerTrace === undefined ? this.#bodies.get(cacheKey) : undefined;
    if (body === undefined) {
      const { req: otlp, partial } = this.traceRequest(id, this.#opts.maxSpansPerTrace ?? Infinity);
      const message = partial
        ? `trace exceeds max size (max bytes: ${this.#opts.maxSpansPerTrace} spans)`
        : "";
      if (pb) body = encodeTraceProtobuf(encodeProtobufRequest(otlp), partial, message);
      else {
        const doc: Record<string, unknown> = { trace: tempoJson(otlp), metrics: { inspectedBytes: "1024" } };
        if (partial) Object.assign(doc, { status: "PARTIAL", message });
        body = JSON.stringify(doc);
      }
      if (this.#opts.maxSpansPerTrace === undefined) this.#bodies.set(cacheKey, body);
    }
    send(200, body, pb ? "application/protobuf" : "application/json");
  }

  #queryRange(url: URL, send: (s: number, b: string | Uint8Array, t?: string) => void) {
    const q = url.searchParams.get("q") ?? "";
    const m =
      /^\s*(\{.*\})\s*\|\s*(rate|count_over_time|quantile_over_time)\(([^)]*)\)\s*(?:by\s*\(([^)]*)\))?\s*$/
        .exec(q);
    const filter = m ? parseFilter(m[1]) : null;
    if (!m || !filter) return send(400, `invalid TraceQL query: ${q}`);
    const fn = m[2];
    const args = m[3].split(",").map((a) => a.trim()).filter(Boolean);
    const by = (m[4] ?? "").split(",").map((a) => a.trim()).filter(Boolean);
    const stepSec = Number(/^(\d+)s$/.exec(url.searchParams.get("step") ?? "60s")?.[1] ?? "NaN");
    if (!(stepSec > 0)) return send(400, "invalid step");
    const startNs = BigInt(url.searchParams.get("start") ?? "0") * 1_000_000_000n;
    const endNs = BigInt(url.searchParams.get("end") ?? "0") * 1_000_000_000n;
    if (endNs <= startNs) return send(400, "invalid start/end: end must be after start");
    if (endNs - startNs > 86_400n * 1_000_000_000n) return send(400, "range exceeds max_duration 24h0m0s");
    const stepNs = BigInt(stepSec) * 1_000_000_000n;
    const alignedStart = startNs - (startNs % stepNs);

    // group -> interval -> durations (seconds) and the slowest span's trace
    const groups = new Map<
      string,
      {
        labels: Array<[string, string]>;
        buckets: Map<number, { d: number[]; slow: [number, string, number] }>;
      }
    >();
    for (const t of this.traces.values()) {
      for (const s of t.spans) {
        if (!filter(s)) continue;
        const st = BigInt(s.span.startTimeUnixNano);
        if (st < alignedStart || st > endNs) continue;
        const interval = Number((st - alignedStart) / stepNs);
        const labels = by.map((b): [string, string] => [b, attrOf(s, b)]);
        const key = JSON.stringify(labels);
        let g = groups.get(key);
        if (!g) groups.set(key, g = { labels, buckets: new Map() });
        let b = g.buckets.get(interval);
        const dur = Number(BigInt(s.span.endTimeUnixNano) - st) / 1e9;
        if (!b) g.buckets.set(interval, b = { d: [], slow: [-1, "", 0] });
        b.d.push(dur);
        if (dur > b.slow[0]) b.slow = [dur, s.span.traceId, Number(st / 1_000_000n)];
      }
    }
    const series: unknown[] = [];
    const tsOf = (i: number) => String((alignedStart + BigInt(i) * stepNs) / 1_000_000n);
    const labelJson = (labels: Array<[string, string]>) =>
      labels.map(([k, v]) => ({ key: k, value: v === "" ? {} : { stringValue: v } }));
    for (const g of groups.values()) {
      const intervals = [...g.buckets.keys()].sort((a, b) => a - b);
      if (fn === "quantile_over_time") {
        for (const p of args.slice(1).map(Number)) {
          series.push({
            labels: [...labelJson(g.labels), { key: "p", value: { doubleValue: p } }],
            samples: intervals.map((i) =>
              omitEmpty({ timestampMs: tsOf(i), value: quantile(g.buckets.get(i)!.d, p) || undefined })
            ),
            exemplars: intervals.map((i) => {
              const [v, traceId, ms] = g.buckets.get(i)!.slow;
              return {
                labels: [{ key: "trace:id", value: { stringValue: traceId } }],
                value: v,
                timestampMs: String(ms),
              };
            }),
          });
        }
      } else {
        const mult = fn === "rate" ? 1 / stepSec : 1;
        series.push({
          labels: g.labels.length ? labelJson(g.labels) : [{ key: "__name__", value: { stringValue: fn } }],
          samples: intervals.map((i) =>
            omitEmpty({ timestampMs: tsOf(i), value: g.buckets.get(i)!.d.length * mult || undefined })
          ),
        });
      }
    }
    send(
      200,
      JSON.stringify({ series, metrics: { inspectedBytes: "2048", totalJobs: 1, completedJobs: 1 } }),
      "application/json",
    );
  }
}

// ============================================================== TraceQL subset
type Filter = (s: StoredSpan) => boolean;

/** `{}`, `{ status = error }`, `{ resource.service.name = "x" }` and `&&` of those (optionally parenthesised). */
function parseFilter(q: string): Filter | null {
  const m = /^\s*\{(.*)\}\s*$/.exec(q);
  if (!m) return null;
  const body = m[1].replace(/[()]/g, " ").trim();
  if (body === "") return () => true;
  const terms: Filter[] = [];
  for (const part of body.split("&&")) {
    const t = part.trim();
    let mm: RegExpExecArray | null;
    if ((mm = /^(?:span:)?status\s*=\s*(error|ok|unset)$/.exec(t))) {
      const code = { unset: 0, ok: 1, error: 2 }[mm[1] as "error"];
      terms.push((s) => s.span.status.code === code);
    } else if ((mm = /^(resource|span)?\.?([\w.]+)\s*=\s*"([^"]*)"$/.exec(t))) {
      const [, scope, key, value] = mm;
      terms.push((s) => attrOf(s, `${scope ?? ""}${scope ? "." : ""}${key}`) === value);
    } else {
      return null;
    }
  }
  return (s) => terms.every((f) => f(s));
}

function attrOf(s: StoredSpan, name: string): string {
  if (name === "name" || name === "span:name") return s.span.name;
  const find = (list: OtlpKeyValue[], key: string) => {
    const kv = list.find((a) => a.key === key);
    return kv ? anyText(kv.value) : "";
  };
  if (name.startsWith("resource.")) return find(s.resource.attributes, name.slice(9));
  if (name.startsWith("span.")) return find(s.span.attributes, name.slice(5));
  return find(s.span.attributes, name) || find(s.resource.attributes, name);
}

function serviceOf(s: StoredSpan): string {
  return attrOf(s, "resource.service.name");
}

function anyText(v: OtlpAnyValue): string {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return v.intValue;
  if (v.doubleValue !== undefined) return String(v.doubleValue);
  if (v.boolValue !== undefined) return String(v.boolValue);
  return "";
}

/** Nearest-rank quantile of durations. */
function quantile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

// ============================================================== Tempo's JSON (gogo jsonpb)
const KINDS = [
  "SPAN_KIND_UNSPECIFIED",
  "SPAN_KIND_INTERNAL",
  "SPAN_KIND_SERVER",
  "SPAN_KIND_CLIENT",
  "SPAN_KIND_PRODUCER",
  "SPAN_KIND_CONSUMER",
];
const CODES = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/** The trace as Tempo's v2 JSON writes it: base64 ids, enum names, int64 as strings, zero values left out. */
export function tempoJson(req: OtlpExportRequest): unknown {
  return {
    resourceSpans: req.resourceSpans.map((rs) => ({
      resource: omitEmpty({ attributes: rs.resource.attributes.map(kvJson) }),
      scopeSpans: rs.scopeSpans.map((ss) => ({
        scope: omitEmpty({ name: ss.scope.name || undefined, version: ss.scope.version || undefined }),
        spans: ss.spans.map((s) =>
          omitEmpty({
            traceId: b64(s.traceId),
            spanId: b64(s.spanId),
            parentSpanId: s.parentSpanId ? b64(s.parentSpanId) : undefined,
            name: s.name || undefined,
            kind: s.kind ? KINDS[s.kind] ?? s.kind : undefined,
            startTimeUnixNano: s.startTimeUnixNano === "0" ? undefined : s.startTimeUnixNano,
            endTimeUnixNano: s.endTimeUnixNano === "0" ? undefined : s.endTimeUnixNano,
            attributes: s.attributes.map(kvJson),
            events: s.events.map((e) =>
              omitEmpty({
                timeUnixNano: e.timeUnixNano,
                name: e.name || undefined,
                attributes: e.attributes.map(kvJson),
              })
            ),
            status: omitEmpty({
              code: s.status.code ? CODES[s.status.code] ?? s.status.code : undefined,
              message: s.status.message || undefined,
            }),
          })
        ),
      })),
    })),
  };
}

function kvJson(kv: OtlpKeyValue): unknown {
  return { key: kv.key, value: anyJson(kv.value) };
}

function anyJson(v: OtlpAnyValue): unknown {
  // a oneof that is set is always written, even when it holds a zero value
  if (v.stringValue !== undefined) return { stringValue: v.stringValue };
  if (v.intValue !== undefined) return { intValue: v.intValue };
  if (v.boolValue !== undefined) return { boolValue: v.boolValue };
  if (v.doubleValue !== undefined) {
    return { doubleValue: Number.isFinite(v.doubleValue) ? v.doubleValue : String(v.doubleValue) };
  }
  if (v.bytesValue !== undefined) return { bytesValue: v.bytesValue };
  if (v.arrayValue) return { arrayValue: { values: v.arrayValue.values.map(anyJson) } };
  if (v.kvlistValue) return { kvlistValue: { values: v.kvlistValue.values.map(kvJson) } };
  return {};
}

function b64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

/** Drops undefined values and empty arrays/objects, as jsonpb leaves out zero values. */
function omitEmpty<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0) continue;
    out[k] = v;
  }
  return out as Partial<T>;
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
  res.end(body);
}
