// functions/_shared/tempo/client.ts — the HTTP client tempo-ingest uses to talk to a Tempo query-frontend:
// /api/search, /api/v2/traces/<id> (protobuf first, JSON fallback), /api/metrics/query_range, /api/echo.
// Every call carries X-Scope-OrgID and the source's credentials, has a timeout, and is retried with backoff on
// 429/5xx/timeouts/dropped connections (Retry-After honoured); answers are size-capped and zod-validated.
// Runs on Deno (the edge function) and Node (tests, demo) alike: only fetch and web streams.

import { OtlpDecodeError } from "../otlp/codec.ts";
import { queryRangeParams, type QueryRangeResponse, QueryRangeResponseSchema } from "./metrics.ts";
import { backoffMs, isRetryableStatus, parseRetryAfter } from "./retry.ts";
import { parseSearchResponse, searchParams, type SearchResult } from "./search.ts";
import { decodeTraceJson, decodeTraceProtobuf, type TempoTrace } from "./trace.ts";

export interface TempoClientOptions {
  baseUrl: string;
  tenant?: string | null;
  /** Authorization header value, e.g. "Bearer …" or "Basic …" (never logged). */
  authorization?: string | null;
  timeoutMs: number;
  maxRetries: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  random?: () => number;
  /** Largest search / metrics answer read, in bytes (default 64 MiB). */
  maxAnswerBytes?: number;
  /** No retry is started after this instant (epoch ms): the run's time budget bounds the retries too. */
  deadlineMs?: number;
}

/** An answer Tempo gave that is not a success (after retries when retryable), or no answer at all. */
export class TempoHttpError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "TempoHttpError";
  }
}

/** A success answer whose body is not what Tempo documents (bad JSON, wrong shape). */
export class TempoProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TempoProtocolError";
  }
}

export type TraceFetch =
  | { kind: "ok"; trace: TempoTrace; bytes: number; format: "protobuf" | "json" }
  | { kind: "vanished" }
  | { kind: "too_large"; bytes: number }
  | { kind: "malformed"; detail: string };

class TooLarge extends Error {
  constructor(readonly bytes: number) {
    super(`body over the limit (${bytes} bytes read)`);
  }
}

const PROTOBUF = "application/protobuf";

export class TempoClient {
  /** Retries made so far (for the run's counters). */
  retries = 0;
  #o: Required<Omit<TempoClientOptions, "tenant" | "authorization" | "deadlineMs">> & TempoClientOptions;
  #protobufWorks = true;

  constructor(opts: TempoClientOptions) {
    this.#o = {
      ...opts,
      fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
      sleep: opts.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
      now: opts.now ?? Date.now,
      random: opts.random ?? Math.random,
      maxAnswerBytes: opts.maxAnswerBytes ?? 64 * 1024 * 1024,
      baseUrl: opts.baseUrl.replace(/\/+$/, ""),
    };
  }

  /** GET /api/echo: true when the query-frontend answers "echo". */
  async echo(): Promise<boolean> {
    const res = await this.#request("/api/echo", null, "text/plain");
    const text = await res.text();
    return res.ok && text.trim() === "echo";
  }

  /** TraceQL search over [startSec, endSec] (unix seconds). */
  async search(q: string, startSec: number, endSec: number, limit: number): Promise<SearchResult> {
    const res = await this.#ok(`/api/search`, searchParams(q, startSec, endSec, limit), "application/json");
    const body = await this.#json(res, "search");
    try {
      return parseSearchResponse(body);
    } catch (e) {
      throw new TempoProtocolError(`search answer is not a Tempo SearchResponse: ${firstIssue(e)}`);
    }
  }

  /** TraceQL metrics range query with a one-minute step. */
  async queryRange(q: string, startSec: number, endSec: number): Promise<QueryRangeResponse> {
    const res = await this.#ok(
      `/api/metrics/query_range`,
      queryRangeParams(q, startSec, endSec),
      "application/json",
    );
    const body = await this.#json(res, "query_range");
    const parsed = QueryRangeResponseSchema.safeParse(body);
    if (!parsed.success) {
      throw new TempoProtocolError(
        `query_range answer is not a QueryRangeResponse: ${firstIssue(parsed.error)}`,
      );
    }
    return parsed.data;
  }

  /**
   * GET /api/v2/traces/<id>, protobuf first (no base64/enum-name quirks, smaller), JSON when the server answers
   * JSON or its protobuf cannot be decoded. 404 → vanished; over maxBytes → too_large; undecodable → malformed.
   * Throws TempoHttpError for other failures (after retries when retryable).
   */
  async trace(traceId: string, maxBytes: number): Promise<TraceFetch> {
    const path = `/api/v2/traces/${traceId}`;
    const attempt = async (accept: string): Promise<TraceFetch | "retry-json"> => {
      const res = await this.#request(path, null, accept);
      if (res.status === 404) {
        await res.body?.cancel();
        return { kind: "vanished" };
      }
      if (!res.ok) throw await this.#httpError(res, path);
      let bytes: Uint8Array;
      try {
        bytes = await readCapped(res, maxBytes);
      } catch (e) {
        if (e instanceof TooLarge) return { kind: "too_large", bytes: e.bytes };
        throw new TempoHttpError(`${path}: body could not be read: ${(e as Error).message}`, null, true);
      }
      const type = (res.headers.get("content-type") ?? "").toLowerCase();
      try {
        if (type.includes("protobuf")) {
          return { kind: "ok", trace: decodeTraceProtobuf(bytes), bytes: bytes.length, format: "protobuf" };
        }
        const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
        return { kind: "ok", trace: decodeTraceJson(text), bytes: bytes.length, format: "json" };
      } catch (e) {
        if (!(e instanceof OtlpDecodeError || e instanceof TypeError)) throw e;
        if (type.includes("protobuf")) return "retry-json";
        return { kind: "malformed", detail: `${type || "no content-type"}: ${e.message}`.slice(0, 500) };
      }
    };
    if (this.#protobufWorks) {
      const first = await attempt(`${PROTOBUF}, application/json;q=0.5`);
      if (first !== "retry-json") return first;
      this.#protobufWorks = false; // this server's protobuf is not what we expect: JSON for the rest of the run
    }
    const second = await attempt("application/json");
    return second === "retry-json" ? { kind: "malformed", detail: "undecodable protobuf and JSON" } : second;
  }

  // ------------------------------------------------------------ plumbing
  async #ok(path: string, params: URLSearchParams | null, accept: string): Promise<Response> {
    const res = await this.#request(path, params, accept);
    if (!res.ok) throw await this.#httpError(res, path);
    return res;
  }

  async #json(res: Response, what: string): Promise<unknown> {
    let bytes: Uint8Array;
    try {
      bytes = await readCapped(res, this.#o.maxAnswerBytes);
    } catch (e) {
      throw new TempoProtocolError(`${what} answer could not be read: ${(e as Error).message}`);
    }
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new TempoProtocolError(`${what} answer is not JSON: ${(e as Error).message}`);
    }
  }

  async #httpError(res: Response, path: string): Promise<TempoHttpError> {
    let body = "";
    try {
      body = (await res.text()).slice(0, 300).replace(/\s+/g, " ").trim(); // Tempo's error bodies are plain text
    } catch {
      // ignore
    }
    return new TempoHttpError(
      `${path}: HTTP ${res.status}${body ? ` ${body}` : ""}`,
      res.status,
      isRetryableStatus(res.status),
    );
  }

  /** One logical request: retried on 429/5xx/timeouts/network errors; returns the last answer otherwise. */
  async #request(path: string, params: URLSearchParams | null, accept: string): Promise<Response> {
    const url = `${this.#o.baseUrl}${path}${params ? `?${params}` : ""}`;
    const headers: Record<string, string> = { Accept: accept, "User-Agent": "trace-sentinel-tempo-ingest" };
    if (this.#o.tenant) headers["X-Scope-OrgID"] = this.#o.tenant;
    if (this.#o.authorization) headers["Authorization"] = this.#o.authorization;
    for (let attempt = 0;; attempt++) {
      let res: Response | null = null;
      let failure: string;
      try {
        res = await this.#o.fetch(url, { headers, signal: AbortSignal.timeout(this.#o.timeoutMs) });
        if (!isRetryableStatus(res.status)) return res;
        failure = `HTTP ${res.status}`;
      } catch (e) {
        const err = e as Error;
        failure = err.name === "TimeoutError" || err.name === "AbortError"
          ? `timed out after ${this.#o.timeoutMs} ms`
          : `${err.name}: ${err.message}`;
      }
      const wait = parseRetryAfter(res?.headers.get("retry-after"), this.#o.now()) ??
        backoffMs(attempt + 1, this.#o.random);
      const outOfTime = this.#o.deadlineMs !== undefined && this.#o.now() + wait >= this.#o.deadlineMs;
      if (attempt >= this.#o.maxRetries || outOfTime) {
        if (res) return res; // the caller turns it into a TempoHttpError with the body
        const why = outOfTime && attempt < this.#o.maxRetries ? "; the run's time budget is spent" : "";
        throw new TempoHttpError(`${path}: ${failure} (after ${attempt + 1} attempts${why})`, null, true);
      }
      await res?.body?.cancel().catch(() => {});
      this.retries++;
      await this.#o.sleep(wait);
    }
  }
}

/** Reads a body, refusing more than `limit` bytes (Content-Length first, then while streaming). */
async function readCapped(res: Response, limit: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel().catch(() => {});
    throw new TooLarge(declared);
  }
  if (!res.body) return new Uint8Array();
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new TooLarge(size);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

function firstIssue(e: unknown): string {
  const issues = (e as { issues?: { path: PropertyKey[]; message: string }[] })?.issues;
  if (issues?.length) return `${issues[0].path.join(".") || "body"}: ${issues[0].message}`;
  return (e as Error)?.message ?? String(e);
}

/** The Authorization header for a source's auth kind and secret. */
export function authorizationHeader(kind: "none" | "basic" | "bearer", secret: string | null): string | null {
  if (kind === "none") return null;
  if (!secret) throw new Error(`auth_kind ${kind} needs a secret`);
  if (kind === "bearer") return `Bearer ${secret}`;
  const bytes = new TextEncoder().encode(secret);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}
