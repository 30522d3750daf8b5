// scripts/local/cron-worker.ts — the local stand-in for pg_cron's scheduler, used where the extension is absent.
// Every second it evaluates the active compat `cron.job` rows in UTC (5-field cron via cron-parser, and
// pg_cron 1.5+'s 'N seconds'), runs due commands in a connection of their own (one run per job at a time,
// an overlapping run queued) and records cron.job_run_details (starting -> running -> succeeded/failed).
import { CronExpressionParser } from "cron-parser";
import postgres from "postgres";
import type { WorkerState } from "./net-worker.ts";

export interface CronJobRow {
  jobid: string;
  jobname: string | null;
  schedule: string;
  command: string;
  database: string;
  username: string;
}

export interface CronRunResult {
  jobid: string;
  jobname: string | null;
  runid: string;
  status: "succeeded" | "failed";
  return_message: string;
  start_time: Date;
  end_time: Date;
}

export type Schedule = { kind: "interval"; seconds: number } | { kind: "cron"; expression: string };

export interface CronWorker {
  readonly state: WorkerState;
  readonly reason?: string;
  readonly stats: { runs: number; failures: number; running: number };
  /** Runs job `jobname` now (after its current run, if any) and returns the recorded outcome. */
  runNow(jobname: string): Promise<CronRunResult>;
  stop(): Promise<void>;
}

const MACROS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

/** Parses a pg_cron schedule; throws `invalid schedule: ...` like pg_cron for anything else. */
export function parseSchedule(schedule: string): Schedule {
  const text = schedule.trim();
  const interval = /^(\d+)\s+seconds?$/i.exec(text);
  if (interval) {
    const seconds = Number(interval[1]);
    if (seconds < 1 || seconds > 59) throw new Error(`invalid schedule: ${schedule}`);
    return { kind: "interval", seconds };
  }
  const expanded = MACROS[text.toLowerCase()] ?? text;
  const fields = expanded.split(/\s+/);
  if (fields.length !== 5) throw new Error(`invalid schedule: ${schedule}`);
  fields[2] = fields[2].replace(/\$/g, "L"); // pg_cron 1.6: `$` is the last day of the month
  const expression = fields.join(" ");
  try {
    CronExpressionParser.parse(expression, { tz: "UTC" });
  } catch {
    throw new Error(`invalid schedule: ${schedule}`);
  }
  return { kind: "cron", expression };
}

/** The first occurrence of a 5-field cron expression strictly after `afterMs`, in UTC. */
export function nextOccurrence(expression: string, afterMs: number): number {
  return CronExpressionParser.parse(expression, { currentDate: new Date(afterMs), tz: "UTC" }).next()
    .getTime();
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** pg_cron's return_message: "<n> row(s)" for a query, the command tag otherwise. */
function describeResult(result: unknown): string {
  const results = Array.isArray(result) && result.length > 0 && Array.isArray(result[result.length - 1]) &&
      "command" in (result[result.length - 1] as object)
    ? result as { command: string; count: number | null }[]
    : [result as { command: string; count: number | null }];
  const last = results[results.length - 1];
  if (!last?.command) return "";
  if (last.command === "SELECT") return `${last.count ?? 0} ${last.count === 1 ? "row" : "rows"}`;
  if (last.command === "INSERT") return `INSERT 0 ${last.count ?? 0}`;
  return last.count === null || last.count === undefined ? last.command : `${last.command} ${last.count}`;
}

/** Runs one job like pg_cron does and records it in cron.job_run_details (`control` writes the record). */
export async function executeCronJob(
  control: postgres.Sql,
  dbUrl: string,
  job: CronJobRow,
): Promise<CronRunResult> {
  const [run] = await control<{ runid: string }[]>`
    insert into cron.job_run_details (jobid, database, username, command, status, start_time)
    values (${job.jobid}, ${job.database}, ${job.username}, ${job.command}, 'starting', now())
    returning runid::text`;
  let status: CronRunResult["status"] = "succeeded";
  let message: string;
  const conn = postgres(dbUrl, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "pg_cron (trace-sentinel local runner)" },
  });
  try {
    const [me] = await conn<
      { pid: number; user: string }[]
    >`select pg_backend_pid() as pid, current_user as user`;
    await control`update cron.job_run_details set status = 'running', job_pid = ${me.pid} where runid = ${run.runid}`;
    if (job.username && job.username !== me.user) await conn.unsafe(`set role ${quoteIdent(job.username)}`);
    message = describeResult(await conn.unsafe(job.command).simple());
  } catch (err) {
    status = "failed";
    message = `ERROR:  ${(err as Error).message}`;
  } finally {
    await conn.end({ timeout: 1 });
  }
  const [row] = await control<{ start_time: Date; end_time: Date }[]>`
    update cron.job_run_details set status = ${status}, return_message = ${message}, end_time = now()
    where runid = ${run.runid}
    returning start_time, end_time`;
  return {
    jobid: job.jobid,
    jobname: job.jobname,
    runid: run.runid,
    status,
    return_message: message,
    start_time: row.start_time,
    end_time: row.end_time,
  };
}

async function findJob(sql: postgres.Sql, jobname: string): Promise<CronJobRow> {
  const [job] = await sql<CronJobRow[]>`
    select jobid::text, jobname, schedule, command, database, username from cron.job
    where jobname = ${jobname}
    order by (username = current_user) desc, jobid
    limit 1`;
  if (!job) throw new Error(`could not find valid entry for job '${jobname}'`);
  return job;
}

/** Runs cron job `jobname` once in the database at `dbUrl`, outside any worker (for tests and scripts). */
export async function runCronJobNow(dbUrl: string, jobname: string): Promise<CronRunResult> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    return await executeCronJob(sql, dbUrl, await findJob(sql, jobname));
  } finally {
    await sql.end({ timeout: 5 });
  }
}

interface JobState {
  schedule: string;
  parsed?: Schedule;
  invalid?: string;
  lastCheck: number;
  lastStart: number;
  queued: number; // runs started or waiting (pg_cron keeps at most one waiting behind a running one)
  tail: Promise<unknown>;
}

/** Starts the scheduler when cron.job is the compat stand-in (no pg_cron extension in this database). */
export async function startCronWorker(
  sql: postgres.Sql,
  dbUrl: string,
  log: (line: string) => void,
): Promise<CronWorker> {
  const [probe] = await sql<{ pg_cron: boolean; table: boolean }[]>`
    select exists (select 1 from pg_extension where extname = 'pg_cron') as pg_cron,
           to_regclass('cron.job') is not null as table`;
  const stats = { runs: 0, failures: 0, running: 0 };
  if (probe.pg_cron || !probe.table) {
    const reason = probe.pg_cron ? "pg_cron extension present" : "no cron.job table";
    return {
      state: "disabled",
      reason,
      stats,
      runNow: (jobname) => runCronJobNow(dbUrl, jobname),
      stop: () => Promise.resolve(),
    };
  }

  let state: WorkerState = "running";
  const jobs = new Map<string, JobState>();
  const runs = new Set<Promise<unknown>>();
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  function jobState(job: CronJobRow, now: number): JobState {
    let st = jobs.get(job.jobid);
    if (!st || st.schedule !== job.schedule) {
      st = {
        schedule: job.schedule,
        lastCheck: now,
        lastStart: 0,
        queued: st?.queued ?? 0,
        tail: st?.tail ?? Promise.resolve(),
      };
      try {
        st.parsed = parseSchedule(job.schedule);
      } catch (err) {
        st.invalid = (err as Error).message;
        log(`cron: job ${job.jobname ?? job.jobid}: ${st.invalid}; it will not run`);
      }
      jobs.set(job.jobid, st);
    }
    return st;
  }

  function enqueue(job: CronJobRow, st: JobState): Promise<CronRunResult> {
    st.queued++;
    const run = st.tail.then(async () => {
      stats.running++;
      try {
        const result = await executeCronJob(sql, dbUrl, job);
        stats.runs++;
        if (result.status === "failed") {
          stats.failures++;
          log(`cron: job ${job.jobname ?? job.jobid} failed: ${result.return_message}`);
        }
        return result;
      } finally {
        stats.running--;
        st.queued--;
      }
    });
    const settled = run.catch(() => {});
    st.tail = settled;
    runs.add(settled);
    void settled.then(() => runs.delete(settled));
    return run;
  }

  async function tick(): Promise<void> {
    const now = Date.now();
    const rows = await sql<CronJobRow[]>`
      select jobid::text, jobname, schedule, command, database, username from cron.job
      where active and database = current_database()`;
    const seen = new Set<string>();
    for (const job of rows) {
      seen.add(job.jobid);
      const st = jobState(job, now);
      if (!st.parsed) continue;
      const due = st.parsed.kind === "interval"
        ? now - st.lastStart >= st.parsed.seconds * 1000 - 200
        : nextOccurrence(st.parsed.expression, st.lastCheck) <= now;
      st.lastCheck = now;
      if (due && st.queued < 2) {
        if (st.parsed.kind === "interval") st.lastStart = now;
        enqueue(job, st).catch((err) =>
          log(`cron: job ${job.jobname ?? job.jobid}: ${(err as Error).message}`)
        );
      }
    }
    for (const [jobid, st] of jobs) if (!seen.has(jobid) && st.queued === 0) jobs.delete(jobid);
  }

  function schedule(): void {
    if (state !== "running") return;
    // Wake just after each second boundary, so minute jobs start at :00 as with pg_cron.
    timer = setTimeout(() => {
      ticking = tick()
        .catch((err) => {
          if (state === "running") log(`cron: scheduler tick failed: ${(err as Error).message}`);
        })
        .finally(() => {
          ticking = undefined;
          schedule();
        });
    }, 1000 - (Date.now() % 1000) + 5);
  }
  schedule();

  return {
    get state() {
      return state;
    },
    stats,
    async runNow(jobname: string) {
      const job = await findJob(sql, jobname);
      return enqueue(job, jobState(job, Date.now()));
    },
    async stop() {
      if (state !== "running") return;
      state = "stopped";
      clearTimeout(timer);
      await ticking;
      await Promise.race([Promise.all(runs), new Promise((resolve) => setTimeout(resolve, 5000))]);
    },
  };
}
