// tests/unit/replay-otlp-files.test.ts — the trace files `--traces` reads: OTLP/JSON, JSON lines, Tempo v1
// (`batches`, `instrumentationLibrarySpans`) and v2 (`trace`) with base64 ids and enum names all decode to the same
// request; bad files name the file and line; time shifting; and replay's output (JSON line fields, score mapping).

import { describe, expect, it } from "vitest";
import {
  latestEndNs,
  normalizeId,
  parseTraceFile,
  shiftRequest,
  TraceFileError,
} from "../../scripts/replay/otlp-files.ts";
import { JSON_FIELDS, jsonLine, type ReplayAnomaly, unitScore } from "../../scripts/replay/output.ts";

const TRACE = "5b8efff798038103d269b633813fc60c";
const SPAN = "eee19b7ec3c1b174";
const PARENT = "eee19b7ec3c1b173";
const b64 = (hex: string) => Buffer.from(hex, "hex").toString("base64");

const resource = { attributes: [{ key: "service.name", value: { stringValue: "checkout" } }] };
const otlpSpan = {
  traceId: TRACE,
  spanId: SPAN,
  parentSpanId: PARENT,
  name: "POST /checkout",
  kind: 2,
  startTimeUnixNano: "1795589536123456789",
  endTimeUnixNano: "1795589536223456789",
  attributes: [{ key: "http.response.status_code", value: { intValue: "503" } }],
  status: { code: 2, message: "boom" },
};
const tempoSpan = {
  ...otlpSpan,
  traceId: b64(TRACE),
  spanId: b64(SPAN),
  parentSpanId: b64(PARENT),
  kind: "SPAN_KIND_SERVER",
  status: { code: "STATUS_CODE_ERROR", message: "boom" },
};

const otlp = { resourceSpans: [{ resource, scopeSpans: [{ scope: { name: "s" }, spans: [otlpSpan] }] }] };
const tempoV1 = {
  batches: [{
    resource,
    instrumentationLibrarySpans: [{ instrumentationLibrary: { name: "s" }, spans: [tempoSpan] }],
  }],
};
const tempoV2 = {
  trace: { resourceSpans: [{ resource, scopeSpans: [{ scope: { name: "s" }, spans: [tempoSpan] }] }] },
  metrics: { inspectedBytes: "1234" },
  status: "PARTIAL",
};

describe("normalizeId", () => {
  it("keeps hex (lower-cased) and turns base64 into hex", () => {
    expect(normalizeId(TRACE.toUpperCase(), 16)).toBe(TRACE);
    expect(normalizeId(b64(TRACE), 16)).toBe(TRACE);
    expect(normalizeId(b64(SPAN), 8)).toBe(SPAN);
    expect(normalizeId("", 8)).toBe("");
    expect(normalizeId(undefined, 8)).toBe("");
    expect(normalizeId("not an id!", 8)).toBe("not an id!"); // left for validation to reject
  });
});

describe("parseTraceFile", () => {
  it("decodes OTLP/JSON, Tempo v1 and Tempo v2 to the same request", () => {
    const a = parseTraceFile("a.json", JSON.stringify(otlp));
    const b = parseTraceFile("b.json", JSON.stringify(tempoV1));
    const c = parseTraceFile("c.json", JSON.stringify(tempoV2));
    expect(a.shapes).toEqual(["otlp"]);
    expect(b.shapes).toEqual(["tempo-v1"]);
    expect(c.shapes).toEqual(["tempo-v2"]);
    expect(b.requests).toEqual(a.requests);
    expect(c.requests).toEqual(a.requests);
    const s = a.requests[0].resourceSpans[0].scopeSpans[0].spans[0];
    expect(s).toMatchObject({
      traceId: TRACE,
      spanId: SPAN,
      parentSpanId: PARENT,
      kind: 2,
      status: { code: 2 },
    });
  });

  it("reads JSON lines (the Collector's file exporter) and arrays of documents", () => {
    const lines = `${JSON.stringify(otlp)}\n\n${JSON.stringify(tempoV2)}\n`;
    expect(parseTraceFile("l.json", lines).requests).toHaveLength(2);
    expect(parseTraceFile("arr.json", JSON.stringify([otlp, tempoV1])).shapes).toEqual(["otlp", "tempo-v1"]);
  });

  it("names the file and the line of what it cannot read", () => {
    const fails = (name: string, text: string, pattern: RegExp) => {
      let err: unknown;
      try {
        parseTraceFile(name, text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TraceFileError);
      expect((err as Error).message).toMatch(pattern);
    };
    fails("e.json", "  ", /^e\.json: the file is empty/);
    fails("x.json", `${JSON.stringify(otlp)}\n{oops\n`, /^x\.json: line 2 is not JSON/);
    fails("y.json", JSON.stringify({ data: [] }), /^y\.json: not a trace document/);
    const badKind = { resourceSpans: [{ scopeSpans: [{ spans: [{ ...otlpSpan, kind: "SIDEWAYS" }] }] }] };
    fails(
      "z.json",
      JSON.stringify(badKind),
      /^z\.json: resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.kind/,
    );
  });
});

describe("shiftRequest / latestEndNs", () => {
  it("moves span and event times by whole nanoseconds and finds the latest end", () => {
    const req = parseTraceFile("a.json", JSON.stringify(otlp)).requests[0];
    req.resourceSpans[0].scopeSpans[0].spans[0].events = [{
      timeUnixNano: "1795589536200000000",
      name: "e",
      attributes: [],
    }];
    const moved = shiftRequest(req, 60_000_000_000n);
    const s = moved.resourceSpans[0].scopeSpans[0].spans[0];
    expect(s.startTimeUnixNano).toBe("1795589596123456789");
    expect(s.endTimeUnixNano).toBe("1795589596223456789");
    expect(s.events[0].timeUnixNano).toBe("1795589596200000000");
    expect(req.resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano).toBe("1795589536123456789");
    expect(latestEndNs([req, moved])).toBe(1795589596223456789n);
    expect(latestEndNs([])).toBeNull();
  });
});

describe("output", () => {
  it("prints exactly the issue's fields, in order", () => {
    const a: ReplayAnomaly & { extra?: string } = {
      type: "LATENCY",
      subtype: "latency_p95",
      service: "inventory",
      operation: null,
      severity: "HIGH",
      score: 7.5,
      first_seen: "2026-11-20T10:00:00Z",
      detected_at: "2026-11-20T10:02:00Z",
      detector: "latency_zscore",
      explanation: { observed: 40 },
      extra: "not printed",
    };
    const line = jsonLine(a);
    expect(Object.keys(JSON.parse(line))).toEqual([...JSON_FIELDS]);
    expect(JSON.parse(line).operation).toBeNull();
  });

  it("maps scores onto [0, 1] with the threshold at 0.5", () => {
    expect(unitScore(0, 3)).toBe(0);
    expect(unitScore(-4, 3)).toBe(0);
    expect(unitScore(Number.NaN, 3)).toBe(0);
    expect(unitScore(3, 3)).toBeCloseTo(0.5, 12);
    expect(unitScore(6, 3)).toBeCloseTo(0.75, 12);
    expect(unitScore(1e6, 3)).toBeLessThanOrEqual(1);
    expect(unitScore(2, 0)).toBeCloseTo(unitScore(2, 3), 12); // a bad threshold falls back to 3
  });
});
