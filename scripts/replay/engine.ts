// scripts/replay/engine.ts — the database side shared by `npm run replay` and `npm run bench:quality`: a throwaway
// database (on the embedded Postgres 17, DATABASE_URL's server or --database-url's server; never the given database
// itself), what the installed detection engine offers (detector_hits, detected_event_at, registry), and an
// event-time driver that ingests minute by minute and runs rollup + detection after each minute as live would.

import { randomBytes } from "node:crypto";
import process from "node:process";
import postgres from "postgres";
import { startDatabase } from "../local/database.ts";
import { dropDatabase, recreateDatabase } from "../local/databases.ts";
import { prepareDatabase } from "../local/migrate.ts";
import { isoSeconds, type ReplayAnomaly } from "./output.ts";

export type Sql = postgres.Sql;

// ------------------------------------------------------------------------------------------ databases

export interface ServerHandle {
  /** URL of a database on the server (its `postgres` database or the one given). */
  url: string;
  embedded: boolean;
  stop(): Promise<void>;
}

/**
 * The server replay works on: `databaseUrl` (a URL given with --database-url), else DATABASE_URL, else the embedded
 * Postgres 17. Only its server is used: replay always works in a database of its own on it.
 */
export async function openServer(
  databaseUrl?: string | null,
  log?: (m: string) => void,
): Promise<ServerHandle> {
  const given = databaseUrl ?? process.env.DATABASE_URL;
  if (given) return { url: given, embedded: false, stop: () => Promise.resolve() };
  const h = await startDatabase({ databaseUrl: null, log });
  return { url: h.url, embedded: true, stop: () => h.stop() };
}

/** A database name that no other run uses: `<prefix>_<pid>_<random>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(3).toString("hex")}`;
}

/** Creates database `name` (dropping an old one) with compat + migrations, and switches its schedules off. */
export async function createPreparedDatabase(serverUrl: string, name: string): Promise<string> {
  const url = await recreateDatabase(serverUrl, name);
  await prepareDatabase(url);
  await quiesce(url);
  return url;
}

export { dropDatabase };

/**
 * Replay drives rollup and detection itself, in event time: the schedules (rollup-detect, retention — which would
 * drop back-dated partitions as expired) are switched off in the throwaway database.
 */
async function quiesce(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`update anomaly.jobs set enabled = false where enabled`;
  } finally {
    await sql.end();
  }
}

export function connect(url: string): Sql {
  return postgres(url, { max: 2, onnotice: () => {}, idle_timeout: 30 });
}

// ------------------------------------------------------------------------------------------ capabilities

export interface HitsTable {
  /** Column names in anomaly.detector_hits. */
  bucket: string;
  score: string;
  detector: string;
  /** A boolean column telling a hit from a merely scored bucket, when the table has one. */
  fired: string | null;
  service: string | null;
}

export interface RegistryTable {
  table: string;
  name: string;
  enabled: string | null;
  /** Column naming the detector's config key (its `threshold` field maps scores to 0..1). */
  configKey: string | null;
  /** Column marking detectors kept for comparison only (their hits open no anomalies). */
  legacy: string | null;
}

/** What the installed engine offers; replay uses the richer path when present and says which one it used. */
export interface EngineCaps {
  /** supabase_migrations versions applied, in order. */
  migrations: string[];
  /** public.trace_anomalies.detected_event_at exists (the engine records when live detection would fire). */
  detectedEventAt: boolean;
  /** public.trace_anomalies.incident_id exists (anomalies of one incident share it). */
  incidents: boolean;
  /** anomaly.detector_hits (per-detector, per-bucket hits) and its columns, or null. */
  hits: HitsTable | null;
  /** The detector registry table, or null. */
  registry: RegistryTable | null;
  /** anomaly.config('rollup') ->> 'allowed_lateness_seconds'. */
  latenessSeconds: number;
}

const pick = (cols: string[], names: string[]) => names.find((n) => cols.includes(n)) ?? null;

export async function engineCaps(sql: Sql): Promise<EngineCaps> {
  const columns = async (schema: string, table: string): Promise<string[]> =>
    (await sql<{ c: string }[]>`
      select column_name as c from information_schema.columns
      where table_schema = ${schema} and table_name = ${table} order by ordinal_position`).map((r) => r.c);
  const migrations = await sql<{ v: string }[]>`
      select version as v from supabase_migrations.schema_migrations order by version`
    .then((rows) => rows.map((r) => r.v))
    .catch(() => [] as string[]);
  const anomalyCols = await columns("public", "trace_anomalies");
  const hitCols = await columns("anomaly", "detector_hits");
  let hits: HitsTable | null = null;
  if (hitCols.length > 0) {
    const bucket = pick(hitCols, ["bucket", "minute", "bucket_start", "ts"]);
    const score = pick(hitCols, ["score", "z", "value"]);
    const detector = pick(hitCols, ["detector", "detector_name", "name"]);
    if (bucket && score && detector) {
      hits = {
        bucket,
        score,
        detector,
        fired: pick(hitCols, ["fired", "is_hit", "hit", "is_anomaly", "anomalous", "triggered"]),
        service: pick(hitCols, ["service", "service_name"]),
      };
    }
  }
  let registry: RegistryTable | null = null;
  for (const t of ["detectors", "detector_registry"]) {
    const cols = await columns("anomaly", t);
    const name = pick(cols, ["name", "detector"]);
    if (name) {
      registry = {
        table: t,
        name,
        enabled: pick(cols, ["enabled", "is_enabled", "active"]),
        configKey: pick(cols, ["config_key"]),
        legacy: pick(cols, ["legacy", "is_legacy"]),
      };
      break;
    }
  }
  const [{ lateness }] = await sql<{ lateness: number | null }[]>`
    select (anomaly.config('rollup') ->> 'allowed_lateness_seconds')::int as lateness`;
  return {
    migrations,
    detectedEventAt: anomalyCols.includes("detected_event_at"),
    incidents: anomalyCols.includes("incident_id"),
    hits,
    registry,
    latenessSeconds: lateness ?? 60,
  };
}

export interface RegisteredDetector {
  name: string;
  enabled: boolean;
  legacy: boolean;
  configKey: string;
  /** Extra registry columns (family, signals, …) as text, for reports. */
  family: string | null;
}

/** Registered detectors when the engine has a registry; otherwise []. */
export async function registeredDetectors(sql: Sql, caps: EngineCaps): Promise<RegisteredDetector[]> {
  const r = caps.registry;
  if (!r) return [];
  const cols = (await sql<{ c: string }[]>`
    select column_name as c from information_schema.columns
    where table_schema = 'anomaly' and table_name = ${r.table}`).map((x) => x.c);
  const rows = await sql.unsafe(
    `select ${q(r.name)}::text as name,
            ${r.enabled ? `${q(r.enabled)}::boolean` : "true"} as enabled,
            ${r.legacy ? `${q(r.legacy)}::boolean` : "false"} as legacy,
            ${r.configKey ? `${q(r.configKey)}::text` : `'detect.' || ${q(r.name)}`} as config_key,
            ${cols.includes("family") ? "family::text" : "null::text"} as family
     from anomaly.${q(r.table)} order by 1`,
  );
  return rows.map((x) => ({
    name: String(x.name),
    enabled: x.enabled !== false,
    legacy: x.legacy === true,
    configKey: String(x.config_key),
    family: x.family ?? null,
  }));
}

/**
 * The firing threshold of each detector: field `threshold` of its config key (the registry's config_key, else
 * `detect.<name>`), default 3 (the z-like scale's usual alarm line).
 */
export async function detectorThresholds(
  sql: Sql,
  caps: EngineCaps,
  names: string[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (names.length === 0) return out;
  const keys = new Map(
    (await registeredDetectors(sql, caps).catch(() => [])).map((d) => [d.name, d.configKey]),
  );
  const configKeys = names.map((n) => keys.get(n) ?? `detect.${n}`);
  const rows = await sql<{ name: string; t: number | null }[]>`
    select x.n as name, (anomaly.config(x.k) ->> 'threshold')::double precision as t
    from unnest(${names}::text[], ${configKeys}::text[]) as x(n, k)`
    .catch(() => [] as { name: string; t: number | null }[]);
  for (const r of rows) out.set(r.name, r.t ?? 3);
  for (const n of names) if (!out.has(n)) out.set(n, 3);
  return out;
}

/** Quotes an identifier that came from information_schema. */
export function q(ident: string): string {
  return `"${ident.replaceAll('"', '""')}"`;
}

/** One-line description of the engine for logs and reports. */
export function describeEngine(caps: EngineCaps): string {
  const last = caps.migrations[caps.migrations.length - 1] ?? "?";
  return `${caps.migrations.length} migrations (last ${last}); ` +
    `detector_hits: ${caps.hits ? "yes" : "no"}; detected_event_at: ${
      caps.detectedEventAt ? "yes" : "no"
    }; ` +
    `registry: ${caps.registry ? `anomaly.${caps.registry.table}` : "no"}`;
}

// ------------------------------------------------------------------------------------------ anomalies

interface AnomalyRow {
  id: string;
  anomaly_type: string;
  subtype: string;
  service: string;
  operation: string | null;
  severity: string;
  score: number;
  detector: string;
  first_seen: Date;
  explanation: Record<string, unknown>;
  detected_event_at?: Date | null;
  incident_id?: string | null;
}

/**
 * Every row of public.trace_anomalies as a ReplayAnomaly. detected_at, the event time at which live detection
 * would have fired, is the engine's detected_event_at when it has the column; else the event-time clock of the
 * replay step at which the row first appeared (`observed`); else first_seen + 1 minute + allowed lateness.
 */
export async function readAnomalies(
  sql: Sql,
  caps: EngineCaps,
  observed: Map<string, number> = new Map(),
): Promise<
  Array<
    ReplayAnomaly & {
      id: string;
      detectedMs: number;
      firstSeenMs: number;
      observedMs: number | null;
      incidentId: string | null;
    }
  >
> {
  const rows = await sql.unsafe<AnomalyRow[]>(
    `select id::text, anomaly_type, subtype, service, operation, severity, score, detector, first_seen, explanation
            ${caps.detectedEventAt ? ", detected_event_at" : ""}${caps.incidents ? ", incident_id::text" : ""}
     from public.trace_anomalies order by first_seen, service, operation, anomaly_type, id`,
  );
  const out = rows.map((r) => {
    const firstSeenMs = new Date(r.first_seen).getTime();
    const detectedMs = r.detected_event_at
      ? new Date(r.detected_event_at).getTime()
      : observed.get(r.id) ?? firstSeenMs + 60_000 + caps.latenessSeconds * 1000;
    return {
      id: r.id,
      type: r.anomaly_type,
      subtype: r.subtype,
      service: r.service,
      operation: r.operation,
      severity: r.severity,
      score: Number(r.score),
      first_seen: isoSeconds(firstSeenMs),
      detected_at: isoSeconds(detectedMs),
      detector: r.detector,
      explanation: r.explanation ?? {},
      detectedMs,
      firstSeenMs,
      observedMs: observed.get(r.id) ?? null,
      incidentId: r.incident_id ?? null,
    };
  });
  return out.sort((a, b) => a.detectedMs - b.detectedMs || a.firstSeenMs - b.firstSeenMs);
}

// ------------------------------------------------------------------------------------------ event-time driver

export interface CycleResult {
  seriesMinutes: number;
  hits: number;
  opened: number;
}

/**
 * Drives ingest → rollup → detect in event time. The caller hands it the spans that arrived during each simulated
 * minute (by span end: a span is exported when it ends) and the clock at the end of that minute; after each minute it
 * runs `anomaly.rollup()` then `anomaly.detect()` — what the live `rollup-detect` schedule runs every minute — and
 * notes the clock at which each anomaly row first appears.
 */
export class EventTimeDriver {
  /** Anomaly id -> event-time clock (ms) of the cycle at which it first appeared. */
  readonly observed = new Map<string, number>();
  spansIngested = 0;
  cycles = 0;
  /** Wall seconds in anomaly.ingest_spans, anomaly.rollup() and anomaly.detect(). */
  readonly seconds = { ingest: 0, rollup: 0, detect: 0 };
  /** Milliseconds of rollup + detect per cycle, in order (to see whether a cycle's cost grows with history). */
  readonly cycleMs: number[] = [];

  constructor(private readonly sql: Sql, readonly caps: EngineCaps) {}

  /** Stores a JSON array of StagedSpan rows (text) with anomaly.ingest_spans. */
  async ingest(spansJson: string, count: number): Promise<void> {
    if (count === 0) return;
    const t = performance.now();
    await this.sql`select anomaly.ingest_spans(${spansJson}::text::json)`;
    this.seconds.ingest += (performance.now() - t) / 1000;
    this.spansIngested += count;
  }

  /** anomaly.rollup() until nothing is left dirty; returns the series-minutes written. */
  async rollup(): Promise<number> {
    let seriesMinutes = 0;
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      const [r] = await this.sql<{ series_minutes: number }[]>`select * from anomaly.rollup()`;
      seriesMinutes += r.series_minutes ?? 0;
      const [{ pending }] = await this.sql<{ pending: boolean }[]>`
        select exists (select 1 from anomaly.rollup_dirty) as pending`;
      if (!pending) break;
    }
    this.seconds.rollup += (performance.now() - t0) / 1000;
    return seriesMinutes;
  }

  /** One live cycle at event time `clockMs`: rollup (until nothing is left dirty), detect, note new anomalies. */
  async cycle(clockMs: number): Promise<CycleResult> {
    const t0 = performance.now();
    const seriesMinutes = await this.rollup();
    const t = performance.now();
    const [{ before }] = await this.sql<{ before: Date }[]>`select clock_timestamp() as before`;
    const [d] = await this.sql<{ hits: number; anomalies_opened: number }[]>`
      select * from anomaly.detect()`;
    this.seconds.detect += (performance.now() - t) / 1000;
    this.cycleMs.push(performance.now() - t0);
    this.cycles++;
    // Rows this cycle opened (created_at is the detect transaction's start): note the event-time clock.
    const fresh = await this.sql<{ id: string }[]>`
      select id::text from public.trace_anomalies where created_at >= ${before}`;
    for (const { id } of fresh) if (!this.observed.has(id)) this.observed.set(id, clockMs);
    return { seriesMinutes, hits: d?.hits ?? 0, opened: fresh.length };
  }

  /**
   * After the last minute: live detection would go on scoring the final minutes as time passes, so move the event
   * time on to `endMs` + allowed lateness (as if traffic had continued) and run one more cycle.
   */
  async flush(endMs: number): Promise<CycleResult> {
    const lateness = this.caps.latenessSeconds * 1000;
    await this.sql`
      update anomaly.rollup_state
         set max_event_time = greatest(max_event_time, ${new Date(endMs + lateness)}::timestamptz)`;
    return await this.cycle(endMs + lateness);
  }
}
