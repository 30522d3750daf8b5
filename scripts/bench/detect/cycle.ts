// scripts/bench/detect/cycle.ts — timing detection cycles for `npm run bench:detect`: one `select * from
// anomaly.detect()` per new minute, its transaction's per-function times (pg_stat_xact_user_functions with
// track_functions = all, so every registered detector's share is measured inside the real cycle), the run's row in
// anomaly.detection_runs, and one extra cycle under auto_explain (ANALYZE, nested statements, JSON plans) that
// names the statements and plan nodes the time goes to.
import postgres from "postgres";
import type { Sql } from "./state.ts";

export interface FunctionTime {
  calls: number;
  totalMs: number;
  selfMs: number;
}

export interface CycleSample {
  bucket: Date;
  /** Wall time of `select * from anomaly.detect()` plus its commit, as the client sees it. */
  seconds: number;
  /** finished_at - started_at of the cycle's anomaly.detection_runs row. */
  runMs: number;
  rowsRead: number;
  hits: number;
  opened: number;
  updated: number;
  resolved: number;
  errors: { detector: string; message: string }[];
  /** schema.function -> time inside this cycle (empty without track_functions). */
  functions: Map<string, FunctionTime>;
}

/** True when this session may set track_functions (superuser); then cycles report per-function time. */
export async function canTrackFunctions(sql: Sql): Promise<boolean> {
  try {
    await sql.begin(async (tx) => {
      await tx`set local track_functions = 'all'`;
    });
    return true;
  } catch {
    return false;
  }
}

async function pendingFunctionTimes(c: postgres.ReservedSql): Promise<Map<string, FunctionTime>> {
  const rows = await c<{ fn: string; calls: number; total: number; self: number }[]>`
    select schemaname || '.' || funcname as fn, calls::int, total_time as total, self_time as self
    from pg_stat_xact_user_functions`;
  return new Map(rows.map((x) => [x.fn, { calls: x.calls, totalMs: x.total, selfMs: x.self }]));
}

/** One detection cycle over `bucket` (its rollups must exist): advance the watermark, detect, commit. */
export async function runCycle(sql: Sql, bucket: Date, trackFunctions: boolean): Promise<CycleSample> {
  const through = new Date(bucket.getTime() + 60_000);
  // What anomaly.rollup() leaves once the minute is complete: the watermark one minute past its end.
  await sql`update anomaly.rollup_state set max_event_time = ${through}, watermark = ${through}, last_run_at = now()`;
  const c = await sql.reserve();
  let seconds: number;
  const functions = new Map<string, FunctionTime>();
  try {
    await c`begin`;
    // Since PG 15 the "xact" view holds everything not yet flushed to the shared statistics (a backend flushes at
    // most once a second, when idle), so a quick previous cycle may still be in it: keep the difference.
    let before = new Map<string, FunctionTime>();
    if (trackFunctions) {
      await c`set local track_functions = 'all'`;
      before = await pendingFunctionTimes(c);
    }
    const t0 = performance.now();
    const [r] = await c<{ scored_through: Date | null }[]>`select * from anomaly.detect()`;
    const detectMs = performance.now() - t0;
    if (!r?.scored_through || r.scored_through.getTime() !== bucket.getTime()) {
      throw new Error(
        `anomaly.detect() scored through ${r?.scored_through?.toISOString()}, expected ${bucket.toISOString()}`,
      );
    }
    if (trackFunctions) {
      for (const [fn, t] of await pendingFunctionTimes(c)) {
        const b = before.get(fn) ?? { calls: 0, totalMs: 0, selfMs: 0 };
        const calls = t.calls - b.calls;
        if (calls > 0) {
          functions.set(fn, { calls, totalMs: t.totalMs - b.totalMs, selfMs: t.selfMs - b.selfMs });
        }
      }
    }
    const t1 = performance.now();
    await c`commit`;
    seconds = (detectMs + (performance.now() - t1)) / 1000;
  } catch (err) {
    await c`rollback`.catch(() => {});
    throw err;
  } finally {
    c.release();
  }
  const [run] = await sql<
    {
      ms: number;
      rows_read: number;
      hits: number;
      opened: number;
      updated: number;
      resolved: number;
      errors: { detector: string; message: string }[];
    }[]
  >`
    select extract(epoch from finished_at - started_at)::float8 * 1000 as ms, rows_read::int, hits,
           anomalies_opened as opened, anomalies_updated as updated, anomalies_resolved as resolved, errors
    from anomaly.detection_runs order by id desc limit 1`;
  return {
    bucket,
    seconds,
    runMs: run.ms,
    rowsRead: run.rows_read,
    hits: run.hits,
    opened: run.opened,
    updated: run.updated,
    resolved: run.resolved,
    errors: run.errors ?? [],
    functions,
  };
}

// ------------------------------------------------------------------------------------------ profiled cycle

export interface PlanNode {
  label: string;
  selfMs: number;
  loops: number;
  rows: number;
}

export interface Statement {
  /** Where the statement runs: the anomaly function whose source holds it, or its opening words. */
  where: string;
  excerpt: string;
  ms: number;
  count: number;
  nodes: PlanNode[];
}

export interface Profile {
  /** Wall time of the profiled cycle (auto_explain's instrumentation included). */
  seconds: number;
  statements: Statement[];
}

interface ExplainNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Function Name"?: string;
  "CTE Name"?: string;
  "Subplan Name"?: string;
  "Join Type"?: string;
  "Actual Total Time"?: number;
  "Actual Loops"?: number;
  "Actual Rows"?: number;
  Plans?: ExplainNode[];
}

/** A statement that only calls another anomaly function, whose own statements are reported (no double count). */
const WRAPPER =
  /^(?:select\s+(?:\*\s+)?(?:into\s+\S+\s+)?(?:from\s+)?|perform\s+|[a-z_]+\s*:=\s*)anomaly\.[a-z_]+\([^()]*\)$/i;

const squash = (text: string) => text.replace(/--[^\n]*\n/g, " ").replace(/\s+/g, " ").trim();

function nodeLabel(n: ExplainNode): string {
  const parts = [
    n["Join Type"] && n["Node Type"].includes("Join")
      ? `${n["Join Type"]} ${n["Node Type"]}`
      : n["Node Type"],
  ];
  if (n["Index Name"]) parts.push(`using ${n["Index Name"]}`);
  if (n["Relation Name"]) parts.push(`on ${n["Relation Name"]}`);
  if (n["Function Name"]) parts.push(`of ${n["Function Name"]}()`);
  if (n["CTE Name"]) parts.push(`of CTE ${n["CTE Name"]}`);
  return parts.join(" ");
}

/**
 * Exclusive time per plan node: its total time over all loops minus its children's. A CTE Scan's time includes
 * running the CTE's own plan (listed separately as a subplan), so that part is taken off the scan.
 */
function flatten(node: ExplainNode, out: PlanNode[], ctes = cteTimes(node)): number {
  const loops = node["Actual Loops"] ?? 1;
  const total = (node["Actual Total Time"] ?? 0) * loops;
  let children = 0;
  for (const child of node.Plans ?? []) children += flatten(child, out, ctes);
  const cte = node["Node Type"] === "CTE Scan" && node["CTE Name"] ? node["CTE Name"] : undefined;
  if (cte && (ctes.get(cte) ?? 0) > 0) {
    const taken = Math.min(ctes.get(cte)!, total - children);
    ctes.set(cte, ctes.get(cte)! - taken);
    children += taken;
  }
  out.push({
    label: nodeLabel(node),
    selfMs: Math.max(0, total - children),
    loops,
    rows: Math.round((node["Actual Rows"] ?? 0) * loops),
  });
  return total;
}

function cteTimes(root: ExplainNode): Map<string, number> {
  const times = new Map<string, number>();
  const walk = (n: ExplainNode) => {
    const name = n["Subplan Name"];
    if (name?.startsWith("CTE ")) {
      times.set(name.slice(4), (n["Actual Total Time"] ?? 0) * (n["Actual Loops"] ?? 1));
    }
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(root);
  return times;
}

/**
 * One more cycle over `bucket` with auto_explain on (log_analyze, nested statements, JSON, sent to the client as
 * NOTICEs): every statement inside anomaly.detect() that took at least `minMs`, attributed to the function that
 * holds it, with its costliest plan nodes by exclusive time. Statements that merely call another anomaly function
 * are left out (their callee's statements are listed). Needs a superuser (LOAD); returns null without one.
 */
export async function profileCycle(url: string, bucket: Date, minMs: number): Promise<Profile | null> {
  const notices: string[] = [];
  const sql = postgres(url, { max: 1, onnotice: (n) => notices.push(String(n.message ?? "")) });
  try {
    try {
      await sql`load 'auto_explain'`;
    } catch {
      return null;
    }
    const sources = await sql<{ fn: string; src: string }[]>`
      select n.nspname || '.' || p.proname as fn, p.prosrc as src
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'anomaly' and p.prolang <> (select oid from pg_language where lanname = 'c')`;
    const squashed = sources.map((s) => ({ fn: s.fn, src: squash(s.src) }));
    await sql.unsafe(
      `set auto_explain.log_min_duration = ${Math.round(minMs)}; set auto_explain.log_analyze = on;
       set auto_explain.log_nested_statements = on; set auto_explain.log_format = 'json';
       set auto_explain.log_level = 'notice'; set auto_explain.log_timing = on`,
    ).simple();
    const through = new Date(bucket.getTime() + 60_000);
    await sql`update anomaly.rollup_state set max_event_time = ${through}, watermark = ${through}`;
    notices.length = 0;
    const t0 = performance.now();
    await sql`select * from anomaly.detect()`;
    const seconds = (performance.now() - t0) / 1000;

    const byWhere = new Map<string, Statement>();
    for (const notice of notices) {
      const m = /^duration: ([\d.]+) ms\s+plan:\s*([\s\S]*)$/.exec(notice);
      if (!m) continue;
      let plan: { "Query Text"?: string; Plan?: ExplainNode };
      try {
        plan = JSON.parse(m[2]);
      } catch {
        continue;
      }
      const text = squash(plan["Query Text"] ?? "");
      // the cycle itself, calls of nested functions, and detect()'s hit inserts (a wrapper around a detector,
      // whose own statements follow) would count the same time twice
      if (WRAPPER.test(text) || /from anomaly\.detect_[a-z0-9_]+\(\$3, \$4\)/.test(text)) continue;
      // plpgsql hands the executor its statements without their INTO clause: match on the opening words
      const opening = text.slice(0, 60);
      const home = squashed.filter((s) =>
        s.src.includes(opening)
      ).sort((a, b) => a.src.length - b.src.length)[0];
      const where = home ? home.fn : "(other)";
      const key = `${where}\u0000${text.slice(0, 200)}`;
      const nodes: PlanNode[] = [];
      if (plan.Plan) flatten(plan.Plan, nodes);
      const st = byWhere.get(key) ?? { where, excerpt: text.slice(0, 110), ms: 0, count: 0, nodes: [] };
      st.ms += Number(m[1]);
      st.count += 1;
      st.nodes.push(...nodes);
      byWhere.set(key, st);
    }
    const statements = [...byWhere.values()].map((s) => {
      const merged = new Map<string, PlanNode>();
      for (const n of s.nodes) {
        const m = merged.get(n.label) ?? { label: n.label, selfMs: 0, loops: 0, rows: 0 };
        m.selfMs += n.selfMs;
        m.loops += n.loops;
        m.rows += n.rows;
        merged.set(n.label, m);
      }
      return { ...s, nodes: [...merged.values()].sort((a, b) => b.selfMs - a.selfMs) };
    }).sort((a, b) => b.ms - a.ms);
    return { seconds, statements };
  } finally {
    await sql.end({ timeout: 5 });
  }
}
