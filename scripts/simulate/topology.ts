// scripts/simulate/topology.ts — the simulated shop (frontend, checkout, payments, inventory, users) and the
// pure trace generator: given a seeded Rng, an entry route, a start time and the conditions in force
// (versions, latency/error overrides from scenarios), it returns the spans of one trace as plain specs.
// Nothing here touches the OpenTelemetry SDK; otel.ts turns the specs into real SDK spans.

import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_STACKTRACE,
  ATTR_EXCEPTION_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_RPC_METHOD,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from "@opentelemetry/semantic-conventions";
import type { Rng } from "./traffic.ts";

// Incubating semantic-convention keys, copied as the semantic-conventions README recommends instead of
// importing the large `/incubating` entry point.
export const ATTR_DB_SYSTEM = "db.system";
export const ATTR_DB_STATEMENT = "db.statement";
export const ATTR_DB_RESPONSE_STATUS_CODE = "db.response.status_code";
export const ATTR_RPC_SYSTEM = "rpc.system";
export const ATTR_RPC_SERVICE = "rpc.service";
export const ATTR_RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code";
export const ATTR_RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code";
export const ATTR_ENDUSER_ID = "enduser.id";

// ------------------------------------------------------------------------------------------ specs

export type AttrValue = string | number | boolean;

export interface SpanEventSpec {
  name: string;
  timeUs: number;
  attributes: Record<string, AttrValue>;
}

/** One span, ready to hand to the SDK. Times are integer epoch microseconds. */
export interface SpanSpec {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  service: string;
  instance: string;
  version: string;
  name: string;
  /** @opentelemetry/api SpanKind (SERVER = 1, CLIENT = 2); OTLP's number is this + 1. */
  kind: SpanKind;
  /** Instrumentation scope that would have produced the span. */
  scope: string;
  startUs: number;
  endUs: number;
  attributes: Record<string, AttrValue>;
  status: { code: SpanStatusCode; message?: string };
  events: SpanEventSpec[];
}

export interface TraceSpec {
  traceId: string;
  route: string;
  startUs: number;
  /** Root (frontend server span) duration in microseconds. */
  durationUs: number;
  error: boolean;
  spans: SpanSpec[];
}

// ------------------------------------------------------------------------------------------ topology

interface LatencyDist {
  /** Median in milliseconds. */
  median: number;
  /** Shape of the log-normal (sd of ln x). 0.3 is tight, 0.8 heavy-tailed. */
  sigma: number;
}

interface ServiceCall {
  type: "service";
  /** Key of the callee operation: "<service> <operation name>". */
  target: string;
  /** Probability that a failure of the callee fails this operation too. */
  propagate: number;
}

interface DbCall {
  type: "db";
  operation: "SELECT" | "INSERT" | "UPDATE" | "DELETE";
  table: string;
  statement: (rng: Rng) => string;
  latency: LatencyDist;
  errorRate: number;
  propagate: number;
}

interface ExternalCall {
  type: "external";
  method: string;
  host: string;
  path: string;
  latency: LatencyDist;
  errorRate: number;
  propagate: number;
}

type Call = ServiceCall | DbCall | ExternalCall;

export interface OperationDef {
  service: string;
  /** Server span name: "<METHOD> <route>" for HTTP, "<package.Service>/<Method>" for RPC. */
  name: string;
  protocol: "http" | "rpc";
  method?: string;
  route?: string;
  /** Concrete path template for client spans (`{id}` is filled in), HTTP only. */
  path?: string;
  rpcService?: string;
  rpcMethod?: string;
  /** The operation's own processing time (split before and after its calls). */
  self: LatencyDist;
  errorRate: number;
  /** Each step runs after the previous one; the calls inside one step run in parallel. */
  steps: Call[][];
}

export interface ServiceDef {
  name: string;
  version: string;
  instances: number;
  port: number;
  /** Typical process.cpu.utilization at idle and the extra at peak load. */
  cpu: { idle: number; peak: number };
  /** Typical process.memory.usage (bytes) at idle and the extra at peak load. */
  memory: { idle: number; peak: number };
}

const MiB = 1024 * 1024;

export const SERVICES: readonly ServiceDef[] = [
  {
    name: "frontend",
    version: "2.14.3",
    instances: 2,
    port: 8080,
    cpu: { idle: 0.08, peak: 0.35 },
    memory: { idle: 180 * MiB, peak: 120 * MiB },
  },
  {
    name: "checkout",
    version: "1.8.0",
    instances: 2,
    port: 50051,
    cpu: { idle: 0.05, peak: 0.3 },
    memory: { idle: 95 * MiB, peak: 60 * MiB },
  },
  {
    name: "payments",
    version: "1.4.2",
    instances: 1,
    port: 8080,
    cpu: { idle: 0.04, peak: 0.22 },
    memory: { idle: 140 * MiB, peak: 40 * MiB },
  },
  {
    name: "inventory",
    version: "3.1.0",
    instances: 2,
    port: 8080,
    cpu: { idle: 0.06, peak: 0.4 },
    memory: { idle: 220 * MiB, peak: 90 * MiB },
  },
  {
    name: "users",
    version: "1.12.4",
    instances: 1,
    port: 8080,
    cpu: { idle: 0.05, peak: 0.28 },
    memory: { idle: 160 * MiB, peak: 50 * MiB },
  },
];

export const SERVICE_NAMES: readonly string[] = SERVICES.map((s) => s.name);

export function serviceDef(name: string): ServiceDef {
  const s = SERVICES.find((x) => x.name === name);
  if (!s) throw new Error(`unknown service "${name}"`);
  return s;
}

const emails = [
  "ada",
  "grace",
  "linus",
  "margaret",
  "ken",
  "barbara",
  "dennis",
  "radia",
  "edsger",
  "frances",
];
const email = (rng: Rng) => `${rng.pick(emails)}.${rng.int(1, 999)}@example.com`;
const sku = (rng: Rng) => `SKU-${rng.int(10000, 99999)}`;

/** Every server operation, keyed "<service> <name>". The frontend's operations are the entry routes. */
export const OPERATIONS: Readonly<Record<string, OperationDef>> = Object.fromEntries(
  ([
    {
      service: "frontend",
      name: "GET /",
      protocol: "http",
      method: "GET",
      route: "/",
      path: "/",
      self: { median: 6, sigma: 0.45 },
      errorRate: 0.002,
      steps: [[
        { type: "service", target: "users GET /users/session", propagate: 0.2 },
        { type: "service", target: "inventory GET /products", propagate: 0.9 },
      ]],
    },
    {
      service: "frontend",
      name: "GET /product/:id",
      protocol: "http",
      method: "GET",
      route: "/product/:id",
      path: "/product/{id}",
      self: { median: 5, sigma: 0.45 },
      errorRate: 0.002,
      steps: [[
        { type: "service", target: "users GET /users/session", propagate: 0.2 },
        { type: "service", target: "inventory GET /products/{id}", propagate: 0.9 },
      ]],
    },
    {
      service: "frontend",
      name: "POST /checkout",
      protocol: "http",
      method: "POST",
      route: "/checkout",
      path: "/checkout",
      self: { median: 9, sigma: 0.5 },
      errorRate: 0.0015,
      steps: [
        [{ type: "service", target: "users GET /users/session", propagate: 0.9 }],
        [{ type: "service", target: "checkout shop.CheckoutService/PlaceOrder", propagate: 1 }],
      ],
    },
    {
      service: "checkout",
      name: "shop.CheckoutService/PlaceOrder",
      protocol: "rpc",
      rpcService: "shop.CheckoutService",
      rpcMethod: "PlaceOrder",
      self: { median: 4, sigma: 0.4 },
      errorRate: 0.0015,
      steps: [
        [{ type: "service", target: "users GET /users/{id}", propagate: 0.5 }],
        [{ type: "service", target: "inventory POST /inventory/reserve", propagate: 0.95 }],
        [{ type: "service", target: "payments POST /payments/charge", propagate: 0.95 }],
        [{
          type: "db",
          operation: "INSERT",
          table: "orders",
          statement: (rng) =>
            `INSERT INTO orders (user_id, total_cents, status) VALUES (${rng.int(1, 50000)}, ${
              rng.int(500, 40000)
            }, 'placed') RETURNING id`,
          latency: { median: 3, sigma: 0.5 },
          errorRate: 0.001,
          propagate: 1,
        }],
      ],
    },
    {
      service: "payments",
      name: "POST /payments/charge",
      protocol: "http",
      method: "POST",
      route: "/payments/charge",
      path: "/payments/charge",
      self: { median: 4, sigma: 0.4 },
      errorRate: 0.002,
      steps: [
        [{
          type: "db",
          operation: "SELECT",
          table: "payment_methods",
          statement: (rng) =>
            `SELECT id, brand, last4 FROM payment_methods WHERE user_id = ${
              rng.int(1, 50000)
            } AND is_default = true`,
          latency: { median: 1.5, sigma: 0.5 },
          errorRate: 0.0005,
          propagate: 1,
        }],
        [{
          type: "external",
          method: "POST",
          host: "api.cardgateway.example",
          path: "/v2/charges",
          latency: { median: 140, sigma: 0.35 },
          errorRate: 0.0015,
          propagate: 0.9,
        }],
        [{
          type: "db",
          operation: "INSERT",
          table: "payments",
          statement: (rng) =>
            `INSERT INTO payments (order_ref, amount_cents, card_last4) VALUES ('ord_${rng.hex(8)}', ${
              rng.int(500, 40000)
            }, '${rng.int(1000, 9999)}')`,
          latency: { median: 2.5, sigma: 0.5 },
          errorRate: 0.0005,
          propagate: 1,
        }],
      ],
    },
    {
      service: "inventory",
      name: "GET /products",
      protocol: "http",
      method: "GET",
      route: "/products",
      path: "/products",
      self: { median: 3, sigma: 0.4 },
      errorRate: 0.001,
      steps: [[{
        type: "db",
        operation: "SELECT",
        table: "products",
        statement: (rng) =>
          `SELECT id, name, price_cents FROM products WHERE category = '${
            rng.pick(["books", "garden", "kitchen", "toys"])
          }' ORDER BY rank LIMIT 24`,
        latency: { median: 6, sigma: 0.6 },
        errorRate: 0.0005,
        propagate: 1,
      }]],
    },
    {
      service: "inventory",
      name: "GET /products/{id}",
      protocol: "http",
      method: "GET",
      route: "/products/{id}",
      path: "/products/{id}",
      self: { median: 2, sigma: 0.4 },
      errorRate: 0.001,
      steps: [[{
        type: "db",
        operation: "SELECT",
        table: "products",
        statement: (rng) => `SELECT * FROM products WHERE sku = '${sku(rng)}'`,
        latency: { median: 1.8, sigma: 0.5 },
        errorRate: 0.0005,
        propagate: 1,
      }]],
    },
    {
      service: "inventory",
      name: "POST /inventory/reserve",
      protocol: "http",
      method: "POST",
      route: "/inventory/reserve",
      path: "/inventory/reserve",
      self: { median: 3, sigma: 0.4 },
      errorRate: 0.001,
      steps: [[{
        type: "db",
        operation: "UPDATE",
        table: "stock",
        statement: (rng) =>
          `UPDATE stock SET reserved = reserved + ${rng.int(1, 3)} WHERE sku = '${
            sku(rng)
          }' AND available > 0`,
        latency: { median: 4, sigma: 0.6 },
        errorRate: 0.0008,
        propagate: 1,
      }]],
    },
    {
      service: "users",
      name: "GET /users/session",
      protocol: "http",
      method: "GET",
      route: "/users/session",
      path: "/users/session",
      self: { median: 1.5, sigma: 0.4 },
      errorRate: 0.001,
      steps: [[{
        type: "db",
        operation: "SELECT",
        table: "sessions",
        statement: (rng) => `SELECT user_id, expires_at FROM sessions WHERE token = '${rng.hex(32)}'`,
        latency: { median: 1.2, sigma: 0.5 },
        errorRate: 0.0005,
        propagate: 1,
      }]],
    },
    {
      service: "users",
      name: "GET /users/{id}",
      protocol: "http",
      method: "GET",
      route: "/users/{id}",
      path: "/users/{id}",
      self: { median: 2, sigma: 0.4 },
      errorRate: 0.001,
      steps: [[{
        type: "db",
        operation: "SELECT",
        table: "users",
        statement: (rng) => `SELECT * FROM users WHERE email = '${email(rng)}'`,
        latency: { median: 2, sigma: 0.5 },
        errorRate: 0.0005,
        propagate: 1,
      }]],
    },
  ] satisfies OperationDef[]).map((op) => [`${op.service} ${op.name}`, op]),
);

/** Entry routes (frontend server operations) and their share of traffic. */
export const ROUTE_MIX: ReadonlyArray<readonly [string, number]> = [
  ["GET /", 0.5],
  ["GET /product/:id", 0.38],
  ["POST /checkout", 0.12],
];

export const ENTRY_SERVICE = "frontend";

/** Server operation names of a service. */
export function operationsOf(service: string): string[] {
  return Object.values(OPERATIONS).filter((o) => o.service === service).map((o) => o.name);
}

/**
 * Operations whose latency/errors depend on (service, operation) through the call graph: the operation(s)
 * themselves and every caller up to the entry routes. `operation` null means every operation of the service.
 */
export function upstreamOf(
  service: string,
  operation: string | null,
): Array<{ service: string; operation: string }> {
  const start = Object.values(OPERATIONS).filter((o) =>
    o.service === service && (operation === null || o.name === operation)
  );
  const seen = new Set<string>();
  const queue = start.map((o) => `${o.service} ${o.name}`);
  while (queue.length > 0) {
    const key = queue.shift()!;
    if (seen.has(key)) continue;
    seen.add(key);
    for (const [callerKey, op] of Object.entries(OPERATIONS)) {
      if (op.steps.some((step) => step.some((c) => c.type === "service" && c.target === key))) {
        queue.push(callerKey);
      }
    }
  }
  return [...seen].map((key) => ({ service: OPERATIONS[key].service, operation: OPERATIONS[key].name }));
}

/** Operations reached from the given entry routes (null = all routes): what a traffic change touches. */
export function downstreamOf(routes: string[] | null): Array<{ service: string; operation: string }> {
  const seen = new Set<string>();
  const queue = ROUTE_MIX.map(([r]) => r).filter((r) => routes === null || routes.includes(r)).map((r) =>
    `${ENTRY_SERVICE} ${r}`
  );
  while (queue.length > 0) {
    const key = queue.shift()!;
    if (seen.has(key)) continue;
    seen.add(key);
    for (const step of OPERATIONS[key].steps) {
      for (const c of step) if (c.type === "service") queue.push(c.target);
    }
  }
  return [...seen].map((key) => ({ service: OPERATIONS[key].service, operation: OPERATIONS[key].name }));
}

// ------------------------------------------------------------------------------------------ generator

/** What the scenarios say at the moment a trace starts. */
export interface Conditions {
  /** Version and instance ids serving `service` now. */
  deployment(service: string): { version: string; instances: readonly string[] };
  /** Multiplier on the server-span duration of an operation (1 = normal). */
  latencyFactor(service: string, operation: string): number;
  /** Failure probability of an operation's own work (`base` is the topology's baseline). */
  errorRate(service: string, operation: string, base: number): number;
  /** Probability that callers still call `service` (1 = normal; <1 while a traffic_drop hides it). */
  callProbability(service: string): number;
}

export const NORMAL_CONDITIONS: Conditions = {
  deployment: (service) => {
    const s = serviceDef(service);
    return {
      version: s.version,
      instances: Array.from({ length: s.instances }, (_, i) => `${s.name}-${i}`),
    };
  },
  latencyFactor: () => 1,
  errorRate: (_s, _o, base) => base,
  callProbability: () => 1,
};

const HTTP_SCOPE = "@opentelemetry/instrumentation-http";
const GRPC_SCOPE = "@opentelemetry/instrumentation-grpc";
const PG_SCOPE = "@opentelemetry/instrumentation-pg";
const UNDICI_SCOPE = "@opentelemetry/instrumentation-undici";

export const SCOPE_VERSIONS: Readonly<Record<string, string>> = {
  [HTTP_SCOPE]: "0.203.0",
  [GRPC_SCOPE]: "0.203.0",
  [PG_SCOPE]: "0.56.0",
  [UNDICI_SCOPE]: "0.14.0",
};

const USER_AGENTS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
  "Mozilla/5.0 (X11; Linux x86_64; rv:139.0) Gecko/20100101 Firefox/139.0",
];

const SERVER_FAILURES: ReadonlyArray<readonly [number, string, string]> = [
  [500, "TypeError", "Cannot read properties of undefined (reading 'id')"],
  [500, "Error", "internal error while handling request"],
  [503, "ServiceUnavailableError", "worker pool exhausted"],
];
const DB_FAILURES: ReadonlyArray<readonly [string, string]> = [
  ["40P01", "deadlock detected"],
  ["57014", "canceling statement due to statement timeout"],
  ["53300", "remaining connection slots are reserved for non-replication superuser connections"],
  ["55P03", "could not obtain lock on row in relation"],
];
const GATEWAY_FAILURES: ReadonlyArray<readonly [number, string]> = [
  [502, "Bad Gateway from api.cardgateway.example"],
  [504, "card processor timeout"],
  [503, "card processor unavailable"],
];

/** Ids for one trace: deterministic given the Rng. */
function newSpanId(rng: Rng): string {
  return rng.hex(16);
}

interface GenState {
  rng: Rng;
  cond: Conditions;
  traceId: string;
  spans: SpanSpec[];
  /** Instance chosen per service for this trace (one request stays on one pod per service). */
  placement: Map<string, { version: string; instance: string }>;
  clientIp: string;
  userId: string;
}

interface OpResult {
  endUs: number;
  error: boolean;
  httpStatus: number;
  grpcCode: number;
  message?: string;
}

const GRPC_CODE_NAMES: Record<number, string> = { 0: "OK", 2: "UNKNOWN", 13: "INTERNAL", 14: "UNAVAILABLE" };

const ms = (x: number) => Math.max(1, Math.round(x * 1000));

function place(st: GenState, service: string): { version: string; instance: string } {
  let p = st.placement.get(service);
  if (!p) {
    const d = st.cond.deployment(service);
    p = { version: d.version, instance: st.rng.pick(d.instances) };
    st.placement.set(service, p);
  }
  return p;
}

function exceptionEvent(
  timeUs: number,
  type: string,
  message: string,
  frame: string,
): SpanEventSpec {
  return {
    name: "exception",
    timeUs,
    attributes: {
      [ATTR_EXCEPTION_TYPE]: type,
      [ATTR_EXCEPTION_MESSAGE]: message,
      [ATTR_EXCEPTION_STACKTRACE]: `${type}: ${message}\n    at ${frame}`,
    },
  };
}

/** Runs a server operation starting at `startUs`; appends its spans (and its callees') and returns the result. */
function runOperation(st: GenState, key: string, startUs: number, parentSpanId: string | null): OpResult {
  const op = OPERATIONS[key];
  const { rng, cond } = st;
  const svc = serviceDef(op.service);
  const { version, instance } = place(st, op.service);
  const spanId = newSpanId(rng);
  const selfUs = ms(rng.logNormal(op.self.median, op.self.sigma));
  const preUs = Math.round(selfUs * rng.uniform(0.25, 0.6));
  const selfFails = rng.chance(cond.errorRate(op.service, op.name, op.errorRate));
  // A failing operation gets partway through its steps before it gives up.
  const failAtStep = selfFails ? rng.int(0, op.steps.length) : op.steps.length;
  const events: SpanEventSpec[] = [];

  let cursor = startUs + preUs;
  let failure: { status: number; grpc: number; message: string; type: string } | null = null;

  for (let i = 0; i < op.steps.length && failure === null; i++) {
    if (i === failAtStep) break;
    let stepEnd = cursor;
    for (const call of op.steps[i]) {
      const callStart = cursor + rng.int(0, 150);
      const r = runCall(st, op, call, callStart, spanId, version, instance);
      if (r === null) continue;
      stepEnd = Math.max(stepEnd, r.endUs);
      if (r.error && failure === null && rng.chance(call.propagate)) {
        const upstream = call.type === "service"
          ? OPERATIONS[call.target].service
          : call.type === "db"
          ? "postgresql"
          : call.host;
        failure = {
          // A failed dependency surfaces as 500 (502 for the external gateway); gRPC says INTERNAL.
          status: call.type === "external" ? 502 : 500,
          grpc: 13,
          type: call.type === "db" ? "DatabaseError" : "UpstreamError",
          message: `${upstream} failed: ${r.message ?? "error"}`,
        };
      }
    }
    cursor = stepEnd + rng.int(20, 200);
  }

  if (failure === null && selfFails) {
    const [status, type, message] = rng.pick(SERVER_FAILURES);
    failure = { status, grpc: status === 503 ? 14 : 13, type, message };
  }
  let endUs = cursor + (selfUs - preUs) * (failure ? 0.3 : 1);
  // Scenario slowdowns stretch the whole server span (as a slower build of the code would).
  const factor = cond.latencyFactor(op.service, op.name);
  if (factor !== 1) endUs = startUs + (endUs - startUs) * factor;
  endUs = Math.round(endUs);
  if (failure) {
    events.push(exceptionEvent(endUs - 50, failure.type, failure.message, `${op.service}/handler.ts:42`));
  }

  const attributes: Record<string, AttrValue> = {};
  let status: SpanSpec["status"];
  if (op.protocol === "http") {
    const httpStatus = failure ? failure.status : op.method === "POST" ? 201 : 200;
    Object.assign(attributes, {
      [ATTR_HTTP_REQUEST_METHOD]: op.method!,
      [ATTR_HTTP_ROUTE]: op.route!,
      [ATTR_URL_PATH]: fillPath(rng, op.path!),
      [ATTR_URL_SCHEME]: "http",
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: httpStatus,
      [ATTR_SERVER_ADDRESS]: op.service,
      [ATTR_SERVER_PORT]: svc.port,
      [ATTR_NETWORK_PROTOCOL_VERSION]: "1.1",
    });
    if (op.service === ENTRY_SERVICE) {
      attributes[ATTR_CLIENT_ADDRESS] = st.clientIp;
      attributes[ATTR_USER_AGENT_ORIGINAL] = rng.pick(USER_AGENTS);
      attributes[ATTR_ENDUSER_ID] = st.userId;
    }
    if (failure) attributes[ATTR_ERROR_TYPE] = String(httpStatus);
    // HTTP server spans: 5xx is an error, 4xx is not (semantic conventions).
    status = failure ? { code: SpanStatusCode.ERROR, message: `HTTP ${httpStatus}: ${failure.message}` } : {
      code: SpanStatusCode.UNSET,
    };
    st.spans.push({
      traceId: st.traceId,
      spanId,
      parentSpanId,
      service: op.service,
      instance,
      version,
      name: op.name,
      kind: SpanKind.SERVER,
      scope: HTTP_SCOPE,
      startUs,
      endUs,
      attributes,
      status,
      events,
    });
    return { endUs, error: failure !== null, httpStatus, grpcCode: 0, message: failure?.message };
  }
  const grpcCode = failure ? failure.grpc : 0;
  Object.assign(attributes, rpcAttributes(op, grpcCode), {
    [ATTR_SERVER_ADDRESS]: op.service,
    [ATTR_SERVER_PORT]: svc.port,
  });
  if (failure) attributes[ATTR_ERROR_TYPE] = GRPC_CODE_NAMES[grpcCode];
  status = failure
    ? { code: SpanStatusCode.ERROR, message: failure.message }
    : { code: SpanStatusCode.UNSET };
  st.spans.push({
    traceId: st.traceId,
    spanId,
    parentSpanId,
    service: op.service,
    instance,
    version,
    name: op.name,
    kind: SpanKind.SERVER,
    scope: GRPC_SCOPE,
    startUs,
    endUs,
    attributes,
    status,
    events,
  });
  return {
    endUs,
    error: failure !== null,
    httpStatus: failure ? 500 : 200,
    grpcCode,
    message: failure?.message,
  };
}

function rpcAttributes(op: OperationDef, grpcCode: number): Record<string, AttrValue> {
  return {
    [ATTR_RPC_SYSTEM]: "grpc",
    [ATTR_RPC_SYSTEM_NAME]: "grpc",
    [ATTR_RPC_SERVICE]: op.rpcService!,
    [ATTR_RPC_METHOD]: `${op.rpcService}/${op.rpcMethod}`,
    [ATTR_RPC_GRPC_STATUS_CODE]: grpcCode,
    [ATTR_RPC_RESPONSE_STATUS_CODE]: GRPC_CODE_NAMES[grpcCode] ?? "UNKNOWN",
  };
}

function fillPath(rng: Rng, template: string): string {
  return template.replace("{id}", String(rng.int(1, 5000)));
}

/** A call made by `caller`: a client span in the caller, plus the callee's server subtree for service calls. */
function runCall(
  st: GenState,
  caller: OperationDef,
  call: Call,
  startUs: number,
  parentSpanId: string,
  version: string,
  instance: string,
): OpResult | null {
  const { rng, cond } = st;
  const base = {
    traceId: st.traceId,
    parentSpanId,
    service: caller.service,
    instance,
    version,
    kind: SpanKind.CLIENT,
  };
  if (call.type === "service") {
    const target = OPERATIONS[call.target];
    if (cond.callProbability(target.service) < 1 && !rng.chance(cond.callProbability(target.service))) {
      return null;
    }
    const spanId = newSpanId(rng);
    const netOut = ms(rng.logNormal(0.35, 0.4));
    const r = runOperation(st, call.target, startUs + netOut, spanId);
    const endUs = r.endUs + ms(rng.logNormal(0.3, 0.4));
    const callee = serviceDef(target.service);
    if (target.protocol === "rpc") {
      const attributes: Record<string, AttrValue> = {
        ...rpcAttributes(target, r.grpcCode),
        [ATTR_SERVER_ADDRESS]: target.service,
        [ATTR_SERVER_PORT]: callee.port,
      };
      if (r.error) attributes[ATTR_ERROR_TYPE] = GRPC_CODE_NAMES[r.grpcCode];
      st.spans.push({
        ...base,
        spanId,
        name: target.name,
        scope: GRPC_SCOPE,
        startUs,
        endUs,
        attributes,
        status: r.error ? { code: SpanStatusCode.ERROR, message: r.message } : { code: SpanStatusCode.UNSET },
        events: [],
      });
      return { ...r, endUs };
    }
    const url = `http://${target.service}:${callee.port}${fillPath(rng, target.path!)}`;
    const attributes: Record<string, AttrValue> = {
      [ATTR_HTTP_REQUEST_METHOD]: target.method!,
      [ATTR_URL_FULL]: url,
      [ATTR_SERVER_ADDRESS]: target.service,
      [ATTR_SERVER_PORT]: callee.port,
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: r.httpStatus,
      [ATTR_NETWORK_PROTOCOL_VERSION]: "1.1",
    };
    if (r.error) attributes[ATTR_ERROR_TYPE] = String(r.httpStatus);
    st.spans.push({
      ...base,
      spanId,
      // HTTP client span name: "{method} {url.template}".
      name: `${target.method} ${target.path}`,
      scope: HTTP_SCOPE,
      startUs,
      endUs,
      attributes,
      status: r.error ? { code: SpanStatusCode.ERROR, message: `HTTP ${r.httpStatus}` } : {
        code: SpanStatusCode.UNSET,
      },
      events: [],
    });
    return { ...r, endUs };
  }

  const spanId = newSpanId(rng);
  if (call.type === "db") {
    const fails = rng.chance(call.errorRate);
    const durUs = ms(rng.logNormal(call.latency.median, call.latency.sigma)) * (fails ? 2 : 1);
    const endUs = startUs + durUs;
    const attributes: Record<string, AttrValue> = {
      [ATTR_DB_SYSTEM]: "postgresql",
      [ATTR_DB_SYSTEM_NAME]: "postgresql",
      [ATTR_DB_NAMESPACE]: "shop",
      [ATTR_DB_OPERATION_NAME]: call.operation,
      [ATTR_DB_COLLECTION_NAME]: call.table,
      [ATTR_DB_STATEMENT]: call.statement(rng),
      [ATTR_SERVER_ADDRESS]: `${caller.service}-db.internal`,
      [ATTR_SERVER_PORT]: 5432,
    };
    let message: string | undefined;
    const events: SpanEventSpec[] = [];
    if (fails) {
      const [code, text] = rng.pick(DB_FAILURES);
      message = text;
      attributes[ATTR_DB_RESPONSE_STATUS_CODE] = code;
      attributes[ATTR_ERROR_TYPE] = code;
      events.push(
        exceptionEvent(
          endUs - 20,
          "DatabaseError",
          text,
          "Client._handleErrorMessage (pg/lib/client.js:336)",
        ),
      );
    }
    st.spans.push({
      ...base,
      spanId,
      name: `${call.operation} shop.${call.table}`,
      scope: PG_SCOPE,
      startUs,
      endUs,
      attributes,
      status: fails ? { code: SpanStatusCode.ERROR, message } : { code: SpanStatusCode.UNSET },
      events,
    });
    return { endUs, error: fails, httpStatus: 500, grpcCode: 13, message };
  }

  // External HTTPS dependency: a client span with no server span on our side.
  const fails = rng.chance(call.errorRate);
  const [status, text] = fails ? rng.pick(GATEWAY_FAILURES) : [201, ""];
  const durUs = ms(
    status === 504 ? rng.logNormal(3000, 0.05) : rng.logNormal(call.latency.median, call.latency.sigma),
  );
  const endUs = startUs + durUs;
  const attributes: Record<string, AttrValue> = {
    [ATTR_HTTP_REQUEST_METHOD]: call.method,
    [ATTR_URL_FULL]: `https://${call.host}${call.path}`,
    [ATTR_SERVER_ADDRESS]: call.host,
    [ATTR_SERVER_PORT]: 443,
    [ATTR_HTTP_RESPONSE_STATUS_CODE]: status,
  };
  if (fails) attributes[ATTR_ERROR_TYPE] = String(status);
  st.spans.push({
    ...base,
    spanId,
    name: call.method,
    scope: UNDICI_SCOPE,
    startUs,
    endUs,
    attributes,
    status: fails
      ? { code: SpanStatusCode.ERROR, message: `HTTP ${status}: ${text}` }
      : { code: SpanStatusCode.UNSET },
    events: [],
  });
  return { endUs, error: fails, httpStatus: status, grpcCode: 14, message: text || undefined };
}

/**
 * Generates one trace entering the frontend at `route` at `startUs` (epoch µs). Pure given `rng`.
 * Spans are returned parents-first; every child lies inside its parent's time range.
 */
export function generateTrace(
  rng: Rng,
  route: string,
  startUs: number,
  cond: Conditions = NORMAL_CONDITIONS,
): TraceSpec {
  const key = `${ENTRY_SERVICE} ${route}`;
  if (!OPERATIONS[key]) {
    throw new Error(`unknown route "${route}"; routes are ${ROUTE_MIX.map(([r]) => r).join(", ")}`);
  }
  const st: GenState = {
    rng,
    cond,
    traceId: rng.hex(32),
    spans: [],
    placement: new Map(),
    clientIp: `${rng.pick(["203.0.113", "198.51.100", "192.0.2"])}.${rng.int(1, 254)}`,
    userId: `u_${rng.int(1, 50000)}`,
  };
  const r = runOperation(st, key, startUs, null);
  // runOperation appends children before parents; reverse so parents come first.
  st.spans.reverse();
  return {
    traceId: st.traceId,
    route,
    startUs,
    durationUs: r.endUs - startUs,
    error: r.error,
    spans: st.spans,
  };
}
