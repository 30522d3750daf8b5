// scripts/bench/ingest.ts — `npm run bench:ingest`: spans/s through the otlp-ingest edge function into Postgres
// (protobuf and JSON bodies, as the OpenTelemetry SDK encodes them) against a raw COPY of the same spans into
// the same table, printed as a ratio from one run. Runs on the embedded Postgres 17 unless DATABASE_URL is set.
//
//   npm run bench:ingest [-- --spans 200000 --batch 2000 --concurrency 4]
import process from "node:process";
import { parseArgs } from "node:util";
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import postgres from "postgres";
import { decodeProtobufRequest } from "../../functions/_shared/otlp/codec.ts";
import { toStagedSpans } from "../../functions/_shared/otlp/normalize.ts";
import { DEFAULT_INGEST_CONFIG, policyFromConfig } from "../../functions/_shared/redact.ts";
import type { StagedSpan } from "../../functions/_shared/spans.ts";
import { startDatabase } from "../local/database.ts";
import { recreateDatabase } from "../local/databases.ts";
import { ensureIngestKey, prepareDatabase } from "../local/migrate.ts";
import { startRunner } from "../local/runner.ts";
import { simulate } from "../simulate/index.ts";

const { values: args } = parseArgs({
  options: {
    spans: { type: "string", default: "200000" },
    batch: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "4" },
  },
});
const TARGET_SPANS = Number(args.spans);
const BATCH = Number(args.batch);
const CONCURRENCY = Number(args.concurrency);

/** Collects the SDK's finished spans so the same spans can be encoded both ways and sent repeatedly. */
class CollectingExporter implements SpanExporter {
  spans: ReadableSpan[] = [];
  export(spans: ReadableSpan[], done: (r: { code: number }) => void) {
    this.spans.push(...spans);
    done({ code: 0 });
  }
  shutdown() {
    return Promise.resolve();
  }
  forceFlush() {
    return Promise.resolve();
  }
}

const log = (line: string) => console.error(`[bench:ingest] ${line}`);
const server = await startDatabase();
let runner: Awaited<ReturnType<typeof startRunner>> | undefined;
try {
  const url = server.embedded ? await recreateDatabase(server.url, "ts_bench_ingest") : server.url;
  await prepareDatabase(url);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  await sql`update anomaly.jobs set enabled = false`; // nothing else competes for the database during the run
  const key = await ensureIngestKey(url, "bench");
  runner = await startRunner({ dbUrl: url, port: 0, log: () => {} });

  // 1. Realistic spans from the simulator (all through the SDK), enough minutes to reach the target.
  const collector = new CollectingExporter();
  // A fixed weekday afternoon (near the diurnal peak) keeps the input the same whatever the time of day.
  const minutes = Math.ceil(TARGET_SPANS / (300 * 6));
  await simulate({
    exporter: collector,
    start: "2026-11-23T13:00:00Z",
    minutes,
    rate: 300,
    seed: 3,
    truthPath: null,
    batchSize: BATCH,
  });
  if (collector.spans.length < TARGET_SPANS) {
    throw new Error(
      `the simulator produced ${collector.spans.length} spans, fewer than --spans ${TARGET_SPANS}`,
    );
  }
  const spans = collector.spans.slice(0, TARGET_SPANS);
  const batches: ReadableSpan[][] = [];
  for (let i = 0; i < spans.length; i += BATCH) batches.push(spans.slice(i, i + BATCH));
  log(`${spans.length} spans from the simulator in ${batches.length} batches of ${BATCH}`);

  const protoBodies = batches.map((b) => ProtobufTraceSerializer.serializeRequest(b)!);
  const jsonBodies = batches.map((b) => JsonTraceSerializer.serializeRequest(b)!);

  const endpoint = `${runner.functionUrl("otlp-ingest")}/v1/traces`;
  const send = async (bodies: Uint8Array[], contentType: string): Promise<number> => {
    await sql`truncate anomaly.spans, anomaly.rollup_dirty, anomaly.open_traces`;
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++];
        const res = await fetch(endpoint, {
          method: "POST",
          body,
          headers: { "content-type": contentType, "x-ingest-key": key },
        });
        if (res.status !== 200) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
        await res.arrayBuffer();
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const [{ n }] = await sql`select count(*)::int as n from anomaly.spans`;
    if (n !== spans.length) throw new Error(`stored ${n} spans, expected ${spans.length}`);
    return spans.length / seconds;
  };

  // Warm-up (Deno JIT, connection pool, partitions), then the measured runs.
  await send(protoBodies.slice(0, 4), "application/x-protobuf").catch(() => 0);
  const protoRate = await send(protoBodies, "application/x-protobuf");
  log(`otlp-ingest protobuf: ${Math.round(protoRate)} spans/s`);
  const jsonRate = await send(jsonBodies, "application/json");
  log(`otlp-ingest JSON: ${Math.round(jsonRate)} spans/s`);

  // 2. The same spans, normalised exactly as the function does, written with a raw COPY.
  const policy = policyFromConfig(DEFAULT_INGEST_CONFIG);
  const staged: StagedSpan[] = protoBodies.flatMap((b) =>
    toStagedSpans(decodeProtobufRequest(b), {
      maxAttributeValueLength: DEFAULT_INGEST_CONFIG.max_attribute_value_length,
      redaction: policy,
    }).spans
  );
  const columns = [
    "start_time",
    "trace_id",
    "span_id",
    "parent_span_id",
    "end_time",
    "duration_ns",
    "service_name",
    "service_version",
    "service_instance",
    "name",
    "kind",
    "status_code",
    "status_message",
    "http_status_code",
    "http_route",
    "http_method",
    "scope_name",
    "resource_attributes",
    "attributes",
    "events",
  ] as const;
  const csv = (v: unknown) => {
    if (v === null || v === undefined) return "";
    const s = typeof v === "object" ? JSON.stringify(v) : String(v);
    return `"${s.replaceAll('"', '""')}"`;
  };
  const lines = staged.map((s) => columns.map((c) => csv(s[c])).join(",") + "\n");
  await sql`truncate anomaly.spans`;
  const copyStarted = performance.now();
  const writable = await sql`copy anomaly.spans (${
    sql(columns as unknown as string[])
  }) from stdin with (format csv)`
    .writable();
  for (let i = 0; i < lines.length; i += 1000) {
    if (!writable.write(lines.slice(i, i + 1000).join(""))) {
      await new Promise((r) => writable.once("drain", r));
    }
  }
  await new Promise<void>((resolve, reject) =>
    writable.end((err?: Error | null) => (err ? reject(err) : resolve()))
  );
  const copyRate = staged.length / ((performance.now() - copyStarted) / 1000);
  const [{ n: copied }] = await sql`select count(*)::int as n from anomaly.spans`;
  if (copied !== staged.length) throw new Error(`COPY stored ${copied}, expected ${staged.length}`);
  log(`raw COPY: ${Math.round(copyRate)} spans/s`);
  await sql.end();

  console.log("");
  console.log(
    `ingest benchmark: ${spans.length} spans, batches of ${BATCH}, ${CONCURRENCY} concurrent requests, ` +
      `${server.embedded ? "embedded Postgres 17" : "DATABASE_URL"}, ${process.platform}/${process.arch}`,
  );
  console.log("path                          spans/s   vs raw COPY");
  console.log(
    `otlp-ingest (protobuf)   ${String(Math.round(protoRate)).padStart(12)}   ${
      (protoRate / copyRate).toFixed(2)
    }x`,
  );
  console.log(
    `otlp-ingest (JSON)       ${String(Math.round(jsonRate)).padStart(12)}   ${
      (jsonRate / copyRate).toFixed(2)
    }x`,
  );
  console.log(`raw COPY (same rows)     ${String(Math.round(copyRate)).padStart(12)}   1.00x`);
} finally {
  await runner?.stop();
  await server.stop();
}
