// functions/_shared/ingest/otlp-handler.ts — the OTLP/HTTP trace receiver as a plain fetch handler.
// Speaks the receiver side of the OTLP/HTTP spec: protobuf or JSON (same type back), gzip, partial
// success, 400/413/415 with a google.rpc.Status body, 429/503 + Retry-After under pressure. Storage,
// key checks and config come in through `IngestStore`, so the handler is unit-testable without a database.

import {
  decodeProtobufRequest,
  encodeExportResponse,
  encodeStatus,
  OtlpDecodeError,
  type OtlpExportRequest,
  type OtlpFormat,
  parseJsonRequest,
} from "../otlp/codec.ts";
import { toStagedSpans } from "../otlp/normalize.ts";
import { type IngestConfig, policyFromConfig, type RedactionPolicy } from "../redact.ts";
import type { StagedSpan } from "../spans.ts";

/** What the handler needs from the outside world. */
export interface IngestStore {
  /** Returns true when the key is a live ingest key. */
  authenticate(key: string): Promise<boolean>;
  /** The effective `ingest` configuration document (anomaly.config('ingest')). */
  loadConfig(): Promise<IngestConfig>;
  /** Stores spans atomically and idempotently; resolves only after the commit. */
  ingest(spans: StagedSpan[]): Promise<{ received: number; inserted: number }>;
}

/** Thrown by a store when the database is unavailable or saturated (maps to 503 + Retry-After). */
export class StoreUnavailableError extends Error {
  constructor(message: string, readonly retryAfterSeconds = 5) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

export interface HandlerOptions {
  /** Requests allowed to be in flight at once; more get 429 + Retry-After (back-pressure, not queueing). */
  maxConcurrent?: number;
  /** How long a key check and the config are cached, in ms. */
  cacheTtlMs?: number;
  now?: () => number;
}

// google.rpc.Code values used in Status bodies.
const RPC_INVALID_ARGUMENT = 3;
const RPC_UNAUTHENTICATED = 16;
const RPC_RESOURCE_EXHAUSTED = 8;
const RPC_UNAVAILABLE = 14;
const RPC_UNIMPLEMENTED = 12;
const RPC_NOT_FOUND = 5;

export function createOtlpHandler(store: IngestStore, options: HandlerOptions = {}) {
  const maxConcurrent = options.maxConcurrent ?? 8;
  const ttl = options.cacheTtlMs ?? 30_000;
  const now = options.now ?? Date.now;
  const keyCache = new Map<string, number>(); // key -> valid until
  let config: { value: IngestConfig; policy: RedactionPolicy; until: number } | null = null;
  let inFlight = 0;

  async function currentConfig() {
    if (!config || config.until < now()) {
      const value = await store.loadConfig();
      config = { value, policy: policyFromConfig(value), until: now() + ttl };
    }
    return config;
  }

  async function isAuthorised(key: string | null): Promise<boolean> {
    if (!key) return false;
    const until = keyCache.get(key);
    if (until !== undefined && until > now()) return true;
    const ok = await store.authenticate(key);
    if (ok) keyCache.set(key, now() + ttl);
    else keyCache.delete(key);
    return ok;
  }

  return async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    // Supabase hands the function "/<name>/<rest>"; accept the bare function path and ".../v1/traces".
    const path = url.pathname.replace(/\/+$/, "");
    if (!/^\/[^/]+(\/v1\/traces)?$/.test(path)) {
      return status(
        404,
        RPC_NOT_FOUND,
        `no route ${url.pathname}; POST OTLP traces to <function>/v1/traces`,
        "json",
      );
    }
    if (req.method !== "POST") {
      return status(405, RPC_UNIMPLEMENTED, `method ${req.method} not allowed; use POST`, "json", {
        Allow: "POST",
      });
    }
    const format = formatOf(req.headers.get("content-type"));
    if (!format) {
      return status(
        415,
        RPC_INVALID_ARGUMENT,
        `unsupported content type "${req.headers.get("content-type") ?? ""}"; ` +
          `use application/x-protobuf or application/json`,
        "json",
      );
    }
    if (inFlight >= maxConcurrent) {
      await req.body?.cancel();
      return status(429, RPC_RESOURCE_EXHAUSTED, "too many concurrent exports; retry later", format, {
        "Retry-After": "1",
      });
    }
    inFlight++;
    try {
      return await ingestRequest(req, format);
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        return status(503, RPC_UNAVAILABLE, `storage unavailable: ${err.message}`, format, {
          "Retry-After": String(err.retryAfterSeconds),
        });
      }
      console.error("otlp-ingest: unexpected error", err);
      return status(500, 13, "internal error", format);
    } finally {
      inFlight--;
    }
  };

  async function ingestRequest(req: Request, format: OtlpFormat): Promise<Response> {
    const key = req.headers.get("x-ingest-key") ??
      req.headers.get("authorization")?.replace(/^Bearer\s+/i, "") ?? null;
    if (!(await isAuthorised(key))) {
      await req.body?.cancel();
      return status(401, RPC_UNAUTHENTICATED, "missing or invalid ingest key (header x-ingest-key)", format);
    }
    const { value: cfg, policy } = await currentConfig();

    const declared = Number(req.headers.get("content-length") ?? "0");
    if (declared > cfg.max_body_bytes) {
      await req.body?.cancel();
      return tooLarge(cfg.max_body_bytes, format);
    }
    let body: Uint8Array;
    try {
      body = await readBody(req, cfg.max_body_bytes);
    } catch (err) {
      if (err instanceof BodyTooLargeError) return tooLarge(cfg.max_body_bytes, format);
      return status(400, RPC_INVALID_ARGUMENT, `unreadable body: ${(err as Error).message}`, format);
    }

    let request: OtlpExportRequest;
    try {
      request = format === "protobuf"
        ? decodeProtobufRequest(body)
        : parseJsonRequest(new TextDecoder("utf-8", { fatal: true }).decode(body));
    } catch (err) {
      if (err instanceof OtlpDecodeError || err instanceof TypeError) {
        return status(400, RPC_INVALID_ARGUMENT, `malformed OTLP ${format} body: ${err.message}`, format);
      }
      throw err;
    }

    const { spans, rejected, errors } = toStagedSpans(request, {
      maxAttributeValueLength: cfg.max_attribute_value_length,
      redaction: policy,
    });
    if (spans.length + rejected > cfg.max_spans_per_request) {
      return status(
        413,
        RPC_RESOURCE_EXHAUSTED,
        `${spans.length + rejected} spans in one request; the limit is ${cfg.max_spans_per_request}`,
        format,
      );
    }
    if (spans.length > 0) await store.ingest(spans);

    const partial = rejected > 0 ? { rejectedSpans: rejected, errorMessage: errors.join("; ") } : null;
    const payload = encodeExportResponse(partial, format);
    return new Response(payload as BodyInit, {
      status: 200,
      headers: { "Content-Type": contentTypeOf(format) },
    });
  }
}

function formatOf(contentType: string | null): OtlpFormat | null {
  const base = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (base === "application/x-protobuf" || base === "application/protobuf") return "protobuf";
  if (base === "application/json") return "json";
  return null;
}

function contentTypeOf(format: OtlpFormat): string {
  return format === "protobuf" ? "application/x-protobuf" : "application/json";
}

function status(
  httpStatus: number,
  code: number,
  message: string,
  format: OtlpFormat,
  headers: Record<string, string> = {},
): Response {
  const body = encodeStatus(code, message, format);
  return new Response(body as BodyInit, {
    status: httpStatus,
    headers: { "Content-Type": contentTypeOf(format), ...headers },
  });
}

function tooLarge(limit: number, format: OtlpFormat): Response {
  return status(413, RPC_RESOURCE_EXHAUSTED, `request body exceeds ${limit} bytes`, format);
}

class BodyTooLargeError extends Error {}

/** Reads the body (gunzipping when Content-Encoding says so), refusing more than `limit` bytes after decompression. */
async function readBody(req: Request, limit: number): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array();
  const encoding = (req.headers.get("content-encoding") ?? "identity").toLowerCase();
  let stream: ReadableStream<Uint8Array> = req.body;
  if (encoding === "gzip") {
    stream = stream.pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
  } else if (encoding !== "identity") {
    throw new Error(`unsupported content-encoding "${encoding}"`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new BodyTooLargeError();
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
