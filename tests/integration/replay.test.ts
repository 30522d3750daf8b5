// tests/integration/replay.test.ts — `npm run replay` end to end on the PG15 test cluster (each run makes and drops
// its own database there via --database-url): a series with a step is flagged at the step and not before, scoring
// never looks ahead (a prefix scores the same, and 5-minute steps equal 1-minute steps), and simulator traces written
// as OTLP/JSON and Tempo v1/v2 files replay into a latency anomaly with the event time it would have fired at.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { JsonTraceSerializer } from "@opentelemetry/otlp-transformer";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JSON_FIELDS } from "../../scripts/replay/output.ts";
import { simulate, type TruthIncident } from "../../scripts/simulate/index.ts";
import { CLUSTER_URL } from "./helpers.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const TSX = join(ROOT, "node_modules/.bin/tsx");

function replay(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(TSX, ["scripts/replay/main.ts", "--database-url", CLUSTER_URL, "--quiet", ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", fail);
    child.on("close", (code) => done({ code: code ?? -1, stdout, stderr }));
  });
}

/** timestamp,value,score,is_anomaly rows of a scored file. */
function scored(path: string): Array<{ ts: string; value: number; score: number; anomaly: boolean }> {
  const [header, ...rows] = readFileSync(path, "utf8").trim().split("\n");
  expect(header).toBe("timestamp,value,score,is_anomaly");
  return rows.map((r) => {
    const [ts, value, score, anomaly] = r.split(",");
    return { ts, value: Number(value), score: Number(score), anomaly: anomaly === "1" };
  });
}

const dir = mkdtempSync(join(tmpdir(), "ts-replay-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("replay --series", () => {
  // 100 minutes of p95 latency around 40 ms (a small deterministic wobble), then a step to about 100 ms.
  const START = Date.parse("2026-11-20T10:00:00Z");
  const STEP_AT = 80;
  const lines = Array.from({ length: 100 }, (_, i) => {
    const value = 40 + ((i * 7) % 5) - 2 + (i >= STEP_AT ? 60 : 0);
    return `${new Date(START + i * 60_000).toISOString()},${value}`;
  });
  const full = join(dir, "series.csv");
  const prefix = join(dir, "prefix.csv");
  writeFileSync(full, `timestamp,value\n${lines.join("\n")}\n`);
  writeFileSync(prefix, `timestamp,value\n${lines.slice(0, 83).join("\n")}\n`);

  let fullRows: ReturnType<typeof scored>;
  let jsonLines: Array<Record<string, unknown>>;

  beforeAll(async () => {
    const out = join(dir, "series.scored.csv");
    const r = await replay(["--series", full, "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    fullRows = scored(out);
    jsonLines = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  });

  it("flags the step and nothing on the flat part, with scores in [0, 1]", () => {
    expect(fullRows).toHaveLength(100);
    expect(fullRows.slice(0, STEP_AT).filter((r) => r.anomaly)).toEqual([]);
    expect(fullRows[STEP_AT].anomaly).toBe(true);
    expect(fullRows[STEP_AT].score).toBeGreaterThanOrEqual(0.5);
    for (const r of fullRows) {
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.score).toBeLessThanOrEqual(1);
    }
    expect(fullRows[0].ts).toBe(new Date(START).toISOString());
  });

  it("prints one JSON object per anomaly with exactly the issue's fields", () => {
    expect(jsonLines.length).toBeGreaterThan(0);
    for (const a of jsonLines) expect(Object.keys(a)).toEqual([...JSON_FIELDS]);
    const first = jsonLines[0];
    expect(first).toMatchObject({ type: "LATENCY", service: "replay", operation: "series" });
    expect(Date.parse(first.first_seen as string)).toBe(START + STEP_AT * 60_000);
    expect(Date.parse(first.detected_at as string)).toBeGreaterThan(Date.parse(first.first_seen as string));
  });

  it("never looks ahead: a prefix scores the same, and one-minute steps equal the default steps", async () => {
    const prefixOut = join(dir, "prefix.scored.csv");
    const a = await replay(["--series", prefix, "--out", prefixOut]);
    expect(a.code, a.stderr).toBe(0);
    expect(scored(prefixOut)).toEqual(fullRows.slice(0, 83));

    const stepOut = join(dir, "step1.scored.csv");
    const b = await replay(["--series", full, "--out", stepOut, "--step", "1"]);
    expect(b.code, b.stderr).toBe(0);
    expect(scored(stepOut)).toEqual(fullRows);
  });

  it("refuses a bad row with its line number and stores nothing", async () => {
    const bad = join(dir, "bad.csv");
    writeFileSync(bad, "timestamp,value\n2026-11-20T10:00:00Z,1\nyesterday,2\n");
    const r = await replay(["--series", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line 3: timestamp "yesterday"/);
    expect(r.stdout).toBe("");
  });
});

describe("replay --traces", () => {
  let incident: TruthIncident;
  let lines: Array<Record<string, unknown>>;

  beforeAll(async () => {
    // 80 minutes of simulator traffic with a 3x latency regression of inventory at minute 60, exported with the
    // OTLP/JSON encoding; one batch rewritten as Tempo v1 and one as Tempo v2 (base64 ids, enum names).
    const batches: ReadableSpan[][] = [];
    const exporter: SpanExporter = {
      export: (spans, done) => {
        batches.push(spans);
        done({ code: 0 });
      },
      shutdown: () => Promise.resolve(),
      forceFlush: () => Promise.resolve(),
    };
    const sim = await simulate({
      exporter,
      start: "2026-11-18T13:00:00Z",
      minutes: 80,
      rate: 40,
      seed: 5,
      scenarios: ["latency_regression@60m:service=inventory,factor=3"],
      truthPath: null,
    });
    expect(sim.ok).toBe(true);
    incident = sim.truth.incidents[0];
    const traces = join(dir, "traces");
    mkdirSync(traces);
    batches.forEach((b, i) => {
      const text = new TextDecoder().decode(JsonTraceSerializer.serializeRequest(b)!);
      const name = join(traces, `batch-${String(i).padStart(4, "0")}.json`);
      if (i === 1) writeFileSync(name, JSON.stringify({ batches: tempo(JSON.parse(text)).resourceSpans }));
      else if (i === 2) writeFileSync(name, JSON.stringify({ trace: tempo(JSON.parse(text)), metrics: {} }));
      else writeFileSync(name, text);
    });
    const r = await replay(["--traces", traces, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    lines = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  });

  it("finds the regression and says when live detection would have fired (event time)", () => {
    const start = Date.parse(incident.start);
    const hits = lines.filter((a) =>
      (a.type === "LATENCY" || a.type === "DEPLOY_REGRESSION") &&
      incident.affected.some((x) => x.service === a.service) &&
      Date.parse(a.first_seen as string) >= start - 120_000
    );
    expect(hits.length).toBeGreaterThan(0);
    for (const a of lines) {
      expect(Object.keys(a)).toEqual([...JSON_FIELDS]);
      expect(Date.parse(a.detected_at as string)).toBeGreaterThan(Date.parse(a.first_seen as string));
    }
    const firstFire = Math.min(...hits.map((a) => Date.parse(a.detected_at as string)));
    expect(firstFire - start).toBeLessThanOrEqual(5 * 60_000);
  });
});

/** OTLP/JSON (hex ids, enum numbers) to Tempo's trace-by-id JSON (base64 ids, enum names). */
// deno-lint-ignore no-explicit-any
function tempo(req: any): any {
  const b64 = (hex: string) => (hex ? Buffer.from(hex, "hex").toString("base64") : hex);
  const kinds = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"];
  for (const rs of req.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        s.traceId = b64(s.traceId);
        s.spanId = b64(s.spanId);
        if (s.parentSpanId) s.parentSpanId = b64(s.parentSpanId);
        if (typeof s.kind === "number") s.kind = kinds[s.kind] ?? s.kind;
        if (s.status && typeof s.status.code === "number") {
          s.status.code = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"][s.status.code];
        }
      }
    }
  }
  return req;
}
