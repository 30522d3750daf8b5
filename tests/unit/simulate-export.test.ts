// tests/unit/simulate-export.test.ts — end to end over loopback only: simulate() (and the CLI) send through the
// real OpenTelemetry OTLP exporters to a tiny node:http receiver; bodies are decoded (protobufjs with the repo's
// .proto files, or JSON) and checked: ids and parents, resources per minute, the version change, headers,
// partial success and failures.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import protobuf from "protobufjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GroundTruth, simulate } from "../../scripts/simulate/index.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const PROTO_DIR = join(ROOT, "functions/_shared/otlp/proto");
const START = "2026-01-14T12:00:00Z";
const START_MS = Date.parse(START);

const protoRoot = new protobuf.Root();
protoRoot.resolvePath = (_origin: string, target: string) => join(PROTO_DIR, target);
protoRoot.loadSync("opentelemetry/proto/collector/trace/v1/trace_service.proto");
const ExportRequest = protoRoot.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
);
const ExportResponse = protoRoot.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
);

interface KV {
  key: string;
  value: Record<string, unknown>;
}
interface Decoded {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  start: bigint;
  end: bigint;
  attrs: Record<string, unknown>;
  resource: Record<string, unknown>;
  status: number;
}
interface Request {
  path: string;
  contentType: string;
  key: string | undefined;
  spans: Decoded[];
}

const b64hex = (s: string) => Buffer.from(s, "base64").toString("hex");
function attrs(list: KV[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) {
    const v = value.stringValue ?? value.intValue ?? value.doubleValue ?? value.boolValue;
    out[key] = value.intValue !== undefined ? Number(value.intValue) : v;
  }
  return out;
}

type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: KV[];
  status?: { code?: number };
};
type OtlpBody = {
  resourceSpans: Array<{ resource: { attributes: KV[] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
};

function decode(contentType: string, body: Buffer): Decoded[] {
  const json = contentType === "application/json";
  const req: OtlpBody = json
    ? JSON.parse(body.toString("utf8"))
    : ExportRequest.toObject(ExportRequest.decode(body), {
      longs: String,
      enums: Number,
      bytes: String,
    }) as OtlpBody;
  const id = (s: string | undefined) => (s ? (json ? s : b64hex(s)) : "");
  const out: Decoded[] = [];
  for (const rs of req.resourceSpans) {
    const resource = attrs(rs.resource.attributes);
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        out.push({
          traceId: id(s.traceId),
          spanId: id(s.spanId),
          parentSpanId: id(s.parentSpanId),
          name: s.name,
          kind: s.kind,
          start: BigInt(s.startTimeUnixNano),
          end: BigInt(s.endTimeUnixNano),
          attrs: attrs(s.attributes),
          resource,
          status: s.status?.code ?? 0,
        });
      }
    }
  }
  return out;
}

type Responder = (req: IncomingMessage, res: ServerResponse, n: number) => void;
const ok: Responder = (req, res) => {
  const ct = req.headers["content-type"] ?? "";
  res.writeHead(200, { "content-type": ct });
  res.end(ct === "application/json" ? "{}" : "");
};

class Receiver {
  requests: Request[] = [];
  respond: Responder = ok;
  private server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const contentType = req.headers["content-type"] ?? "";
      const body = Buffer.concat(chunks);
      this.requests.push({
        path: req.url ?? "",
        contentType,
        key: req.headers["x-ingest-key"] as string | undefined,
        spans: decode(contentType, body),
      });
      this.respond(req, res, this.requests.length);
    });
  });
  async start(): Promise<string> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/functions/v1/otlp-ingest`;
  }
  reset(respond: Responder = ok) {
    this.requests = [];
    this.respond = respond;
  }
  spans(): Decoded[] {
    return this.requests.flatMap((r) => r.spans);
  }
  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

const receiver = new Receiver();
let endpoint = "";
const dir = mkdtempSync(join(tmpdir(), "simulate-export-"));
beforeAll(async () => {
  endpoint = await receiver.start();
});
afterAll(() => receiver.close());

const run = (protocol: "proto" | "json", extra: Parameters<typeof simulate>[0] = {}) =>
  simulate({
    endpoint,
    protocol,
    key: "k-test",
    start: START,
    minutes: 4,
    rate: 120,
    seed: 3,
    scenarios: ["latency_regression@2m:service=payments"],
    truthPath: join(dir, `${protocol}.json`),
    batchSize: 500,
    ...extra,
  });

describe("simulate() over OTLP/HTTP", () => {
  const seen: Record<string, Set<string>> = {};

  for (const protocol of ["proto", "json"] as const) {
    it(`delivers every span with the ${protocol} exporter, well formed`, async () => {
      receiver.reset();
      const result = await run(protocol);
      expect(result.ok).toBe(true);
      expect(result.status).toBe("complete");
      expect(result.exportedSpans).toBe(result.spans);
      expect(result.failedSpans).toBe(0);
      expect(result.spans).toBeGreaterThan(1000);

      const contentType = protocol === "json" ? "application/json" : "application/x-protobuf";
      expect(receiver.requests.length).toBe(result.exportRequests);
      for (const r of receiver.requests) {
        expect(r.path).toBe("/functions/v1/otlp-ingest/v1/traces");
        expect(r.contentType).toBe(contentType);
        expect(r.key).toBe("k-test");
        expect(r.spans.length).toBeLessThanOrEqual(500);
      }

      const spans = receiver.spans();
      expect(spans).toHaveLength(result.spans);
      const ids = new Set(spans.map((s) => s.spanId));
      expect(ids.size).toBe(spans.length);
      const roots = spans.filter((s) => s.parentSpanId === "");
      expect(roots).toHaveLength(result.traces);
      for (const s of spans) {
        expect(s.traceId).toMatch(/^[0-9a-f]{32}$/);
        if (s.parentSpanId !== "") expect(ids.has(s.parentSpanId)).toBe(true);
        expect(s.end).toBeGreaterThanOrEqual(s.start);
        const ms = Number(s.start / 1_000_000n);
        expect(ms).toBeGreaterThanOrEqual(START_MS);
        expect(ms).toBeLessThan(START_MS + 5 * 60_000);
      }
      // Server spans in one service are children of client spans in another.
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const payments = spans.filter((s) => s.resource["service.name"] === "payments" && s.kind === 2);
      for (const s of payments) {
        const parent = byId.get(s.parentSpanId)!;
        expect(parent.kind).toBe(3);
        expect(parent.resource["service.name"]).toBe("checkout");
      }
      // The deploy at 2m: payments' service.version changes on the resource, and its spans get slower.
      const at2m = BigInt(START_MS + 2 * 60_000) * 1_000_000n;
      const before = payments.filter((s) => s.start < at2m);
      const after = payments.filter((s) => s.start >= at2m);
      expect(new Set(before.map((s) => s.resource["service.version"]))).toEqual(new Set(["1.4.2"]));
      expect(new Set(after.map((s) => s.resource["service.version"]))).toEqual(new Set(["1.4.3"]));
      const med = (xs: Decoded[]) =>
        xs.map((s) => Number(s.end - s.start)).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      expect(med(after) / med(before)).toBeGreaterThan(1.8);
      // Resource figures vary per minute for the same instance.
      const cpuByMinute = new Map<number, unknown>();
      const frontend = spans.filter((s) => s.resource["service.name"] === "frontend");
      const instance = frontend[0].resource["service.instance.id"];
      for (const s of frontend.filter((x) => x.resource["service.instance.id"] === instance)) {
        const minute = Math.floor((Number(s.start / 1_000_000n) - START_MS) / 60_000);
        const cpu = s.resource["process.cpu.utilization"];
        expect(typeof cpu).toBe("number");
        expect(s.resource["process.memory.usage"]).toBeGreaterThan(0);
        if (!cpuByMinute.has(minute)) cpuByMinute.set(minute, cpu);
      }
      expect(new Set(cpuByMinute.values()).size).toBeGreaterThan(1);
      // HTTP semantics on the wire.
      const root = spans.find((s) => s.parentSpanId === "" && s.name === "POST /checkout")!;
      expect(root.attrs).toMatchObject({ "http.request.method": "POST", "http.route": "/checkout" });

      const truth = JSON.parse(readFileSync(join(dir, `${protocol}.json`), "utf8")) as GroundTruth;
      expect(truth.run).toMatchObject({
        status: "complete",
        protocol,
        seed: 3,
        start: "2026-01-14T12:00:00.000Z",
        minutes: 4,
        traces: result.traces,
        spans: result.spans,
        exported_spans: result.spans,
        failed_spans: 0,
      });
      expect(truth.incidents.map((i) => [i.scenario, i.anomaly_type, i.service, i.start])).toEqual([
        ["latency_regression", "DEPLOY_REGRESSION", "payments", "2026-01-14T12:02:00.000Z"],
      ]);
      seen[protocol] = new Set(spans.map((s) => `${s.traceId}/${s.spanId}/${s.name}/${s.start}/${s.end}`));
    });
  }

  it("sends the same spans with either protocol for the same seed and start", () => {
    expect(seen.proto.size).toBeGreaterThan(0);
    expect(seen.json).toEqual(seen.proto);
  });

  it("counts spans rejected in a partial-success response", async () => {
    receiver.reset((req, res) => {
      const ct = req.headers["content-type"] ?? "";
      res.writeHead(200, { "content-type": ct });
      if (ct === "application/json") {
        res.end(JSON.stringify({ partialSuccess: { rejectedSpans: "3", errorMessage: "3 spans too old" } }));
      } else {
        const msg = ExportResponse.create({
          partialSuccess: { rejectedSpans: 3, errorMessage: "3 spans too old" },
        });
        res.end(Buffer.from(ExportResponse.encode(msg).finish()));
      }
    });
    for (const protocol of ["proto", "json"] as const) {
      const r = await run(protocol, { minutes: 1, truthPath: null, scenarios: [] });
      expect(r.rejectedSpans).toBe(3 * r.exportRequests);
      expect(r.ok).toBe(false);
      expect(r.errors.join(" ")).toContain("3 spans too old");
    }
  });

  it("reports failed exports and gives up early when nothing gets through", async () => {
    receiver.reset((_req, res) => {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: 16, message: "bad ingest key" }));
    });
    const r = await run("json", { minutes: 30, truthPath: join(dir, "failed.json"), scenarios: [] });
    expect(r.ok).toBe(false);
    expect(r.status).toBe("failed");
    expect(r.exportedSpans).toBe(0);
    expect(r.failedSpans).toBe(r.spans);
    expect(r.truth.run.minutes_generated).toBeLessThan(30);
    expect(r.errors.some((e) => e.includes("gave up"))).toBe(true);
  });

  it("paces live mode by the clock: spans are sent once they have ended", async () => {
    receiver.reset();
    const t0 = Date.now();
    const fast = () => t0 + (Date.now() - t0) * 240; // 4 simulated minutes per real second
    const r = await simulate({
      endpoint,
      protocol: "json",
      live: true,
      minutes: 2,
      rate: 60,
      seed: 4,
      truthPath: null,
      now: fast,
    });
    expect(r.ok).toBe(true);
    expect(r.truth.run.mode).toBe("live");
    const liveStart = Date.parse(r.truth.run.start);
    expect(liveStart).toBeGreaterThanOrEqual(t0);
    expect(Date.parse(r.truth.run.end) - liveStart).toBe(2 * 60_000);
    for (const s of receiver.spans()) {
      const ms = Number(s.start / 1_000_000n);
      expect(ms).toBeGreaterThanOrEqual(liveStart);
      expect(ms).toBeLessThan(liveStart + 2 * 60_000);
    }
    expect(receiver.spans()).toHaveLength(r.spans);
  });
});

describe("npm run simulate (CLI)", () => {
  const cli = async (args: string[]) => {
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/simulate/main.ts", ...args], {
      cwd: ROOT,
      env: { ...process.env, TS_INGEST_KEY: "k-env" },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const [code] = await once(child, "exit");
    return { code: code as number, out };
  };

  it("exits 0 after exporting everything and 1 when exports fail; 2 on bad arguments", async () => {
    receiver.reset();
    const good = await cli([
      "--endpoint",
      endpoint,
      "--start",
      "-10m",
      "--minutes",
      "3",
      "--no-truth",
      "--quiet",
    ]);
    expect(good.out).toContain("simulate: complete");
    expect(good.code).toBe(0);
    expect(receiver.requests.length).toBeGreaterThan(0);
    expect(receiver.requests[0].key).toBe("k-env");

    receiver.reset((_req, res) => {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad data");
    });
    const bad = await cli([
      "--endpoint",
      endpoint,
      "--protocol",
      "json",
      "--minutes",
      "2",
      "--no-truth",
      "--quiet",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/failed \d+ \(\d+ requests\)/);

    const usage = await cli(["--scenario", "nope@5m"]);
    expect(usage.code).toBe(2);
    expect(usage.out).toContain('unknown scenario "nope"');
  }, 60_000);
});
