// tests/unit/tempo-client.test.ts — the Tempo HTTP client over a scripted fetch (no network): headers it sends,
// which answers it retries and how long it waits (Retry-After, backoff, the run's deadline), and how a trace
// answer becomes ok / vanished / too_large / malformed, including the protobuf-to-JSON fallback.

import { describe, expect, it } from "vitest";
import { encodeProtobufRequest, type OtlpExportRequest } from "../../functions/_shared/otlp/codec.ts";
import { TempoClient, TempoHttpError, TempoProtocolError } from "../../functions/_shared/tempo/client.ts";
import { encodeTraceProtobuf } from "../../functions/_shared/tempo/trace.ts";
import { tempoJson } from "../fakes/tempo-server.ts";

type Answer = Response | Error;

function scripted(answers: Answer[]) {
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const sleeps: number[] = [];
  let now = 1_000_000;
  const fetch = (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), headers: init?.headers as Record<string, string> });
    const a = answers.shift();
    if (!a) return Promise.reject(new Error("no more scripted answers"));
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  };
  const client = (over: Partial<ConstructorParameters<typeof TempoClient>[0]> = {}) =>
    new TempoClient({
      baseUrl: "http://tempo:3200/",
      tenant: "team-a",
      authorization: "Bearer s3cret",
      timeoutMs: 1000,
      maxRetries: 3,
      fetch: fetch as typeof globalThis.fetch,
      sleep: (ms) => {
        sleeps.push(ms);
        now += ms;
        return Promise.resolve();
      },
      now: () => now,
      random: () => 1,
      ...over,
    });
  return { calls, sleeps, client };
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const text = (body: string, status: number, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "text/plain", ...headers } });

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const request: OtlpExportRequest = {
  resourceSpans: [{
    resource: { attributes: [{ key: "service.name", value: { stringValue: "api" } }] },
    scopeSpans: [{
      scope: { name: "", version: "" },
      spans: [{
        traceId: TRACE,
        spanId: "b7ad6b7169203331",
        parentSpanId: "",
        name: "GET /",
        kind: 2,
        startTimeUnixNano: "1764064800000000000",
        endTimeUnixNano: "1764064800001000000",
        attributes: [],
        events: [],
        status: { code: 0, message: "" },
      }],
    }],
  }],
};

describe("TempoClient", () => {
  it("sends tenant, credentials and the window, and retries 429 after Retry-After and 503 after backoff", async () => {
    const { calls, sleeps, client } = scripted([
      text("job queue full", 429, { "retry-after": "2" }),
      text("internal error", 503),
      json({ traces: [{ traceID: "abc" }] }),
    ]);
    const c = client();
    const r = await c.search("{}", 100, 200, 20);
    expect(r.traceIds).toEqual(["0".repeat(29) + "abc"]);
    expect(c.retries).toBe(2);
    expect(sleeps).toEqual([2000, 500]); // Retry-After: 2, then backoff(2) with jitter 1
    expect(calls[0].url).toBe("http://tempo:3200/api/search?q=%7B%7D&start=100&end=200&limit=20&spss=1");
    expect(calls[0].headers).toMatchObject({ "X-Scope-OrgID": "team-a", Authorization: "Bearer s3cret" });
  });

  it("probes /api/echo", async () => {
    const { calls, client } = scripted([text("echo", 200), text("not ready", 200)]);
    expect(await client().echo()).toBe(true);
    expect(calls[0].url).toBe("http://tempo:3200/api/echo");
    expect(await client().echo()).toBe(false);
  });

  it("does not retry a 400 and reports Tempo's text body", async () => {
    const { client } = scripted([text("invalid TraceQL query: parse error at line 1", 400)]);
    await expect(client().search("{", 1, 2, 20)).rejects.toMatchObject({
      name: "TempoHttpError",
      status: 400,
      retryable: false,
      message: "/api/search: HTTP 400 invalid TraceQL query: parse error at line 1",
    });
  });

  it("gives up on network errors after max_retries, and earlier when the run's deadline comes", async () => {
    const down = () => new TypeError("fetch failed");
    const a = scripted([down(), down(), down(), down()]);
    await expect(a.client().search("{}", 1, 2, 20)).rejects.toThrow(/fetch failed \(after 4 attempts\)/);
    const b = scripted([down(), down(), down(), down()]);
    await expect(b.client({ deadlineMs: 1_000_000 + 300 }).search("{}", 1, 2, 20)).rejects.toThrow(
      /after 2 attempts; the run's time budget is spent/,
    );
  });

  it("turns a body that is not JSON into a TempoProtocolError", async () => {
    const { client } = scripted([new Response("<html>proxy error</html>", { status: 200 })]);
    await expect(client().search("{}", 1, 2, 20)).rejects.toBeInstanceOf(TempoProtocolError);
  });

  it("reads protobuf traces, and falls back to JSON for the rest of the run when protobuf is undecodable", async () => {
    const pb = encodeTraceProtobuf(encodeProtobufRequest(request));
    const { calls, client } = scripted([
      new Response(pb, { headers: { "content-type": "application/protobuf" } }),
      new Response(new Uint8Array([0x0a, 0xff, 0xff, 0x01]), {
        headers: { "content-type": "application/protobuf" },
      }),
      json({ trace: tempoJson(request) }),
      json({ trace: tempoJson(request) }),
    ]);
    const c = client();
    const first = await c.trace(TRACE, 1 << 20);
    expect(first).toMatchObject({ kind: "ok", format: "protobuf" });
    expect(calls[0].headers.Accept).toMatch(/^application\/protobuf/);
    expect(await c.trace(TRACE, 1 << 20)).toMatchObject({ kind: "ok", format: "json" });
    expect(calls[2].headers.Accept).toBe("application/json");
    expect(await c.trace(TRACE, 1 << 20)).toMatchObject({ kind: "ok", format: "json" });
    expect(calls[3].headers.Accept).toBe("application/json");
  });

  it("maps 404 to vanished, oversized bodies to too_large and garbage to malformed", async () => {
    const big = JSON.stringify({ trace: tempoJson(request) });
    const { client } = scripted([
      text("trace not found", 404),
      new Response(big, {
        headers: { "content-type": "application/json", "content-length": String(big.length) },
      }),
      new Response(
        new ReadableStream({
          start(ctl) {
            for (let i = 0; i < 4; i++) ctl.enqueue(new TextEncoder().encode("x".repeat(100)));
            ctl.close();
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
      json({ hello: "world" }),
      text("bad gateway", 502),
    ]);
    const c = client({ maxRetries: 0 });
    expect(await c.trace(TRACE, 1 << 20)).toEqual({ kind: "vanished" });
    expect(await c.trace(TRACE, 100)).toEqual({ kind: "too_large", bytes: big.length });
    expect(await c.trace(TRACE, 250)).toMatchObject({ kind: "too_large" }); // no Content-Length: counted while read
    expect(await c.trace(TRACE, 1 << 20)).toMatchObject({
      kind: "malformed",
      detail: expect.stringMatching(/not a Tempo trace/),
    });
    const failed = await c.trace(TRACE, 1 << 20).catch((e) => e);
    expect(failed).toBeInstanceOf(TempoHttpError);
    expect(failed).toMatchObject({
      status: 502,
      retryable: true,
      message: "/api/v2/traces/" + TRACE + ": HTTP 502 bad gateway",
    });
  });
});
