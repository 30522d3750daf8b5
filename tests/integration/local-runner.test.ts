// tests/integration/local-runner.test.ts — the local stack against real components: a fresh database on the
// PG15 test cluster prepared by prepareDatabase (compat + `supabase db push`), Deno-served functions behind the
// runner, the net/cron stand-ins and the realtime SSE relay; plus a short check of the embedded Postgres 17 path.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/local/function-host.ts";
import { REPO_ROOT, startDatabase } from "../../scripts/local/database.ts";
import { prepareDatabase } from "../../scripts/local/migrate.ts";
import { runCronJobNow, type Runner, startRunner } from "../../scripts/local/runner.ts";
import { CLUSTER_URL, databaseUrl, dropDatabase, recreateDatabase, waitFor } from "./helpers.ts";

const FIXTURES = path.join(REPO_ROOT, "tests/fixtures/functions");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("local runner on a fresh database (PG15 cluster, cron stand-in)", () => {
  const dbName = `ts_runner_${randomBytes(4).toString("hex")}`;
  const dbUrl = databaseUrl(CLUSTER_URL, dbName);
  const sql = postgres(dbUrl, { max: 2, onnotice: () => {} });
  const logs: string[] = [];
  let runner: Runner;

  beforeAll(async () => {
    await recreateDatabase(CLUSTER_URL, dbName);
    await prepareDatabase(dbUrl);
    runner = await startRunner({
      dbUrl,
      port: 0,
      functionsDir: FIXTURES,
      env: { TS_ECHO_EXTRA: "from-opts" },
      log: (line) => logs.push(line),
    });
  }, 180_000);

  afterAll(async () => {
    await runner?.stop();
    await sql.end({ timeout: 5 });
    await dropDatabase(CLUSTER_URL, dbName);
  }, 60_000);

  it("prepared the database with the stand-ins and pushed the migrations", async () => {
    const [row] = await sql`
      select exists (select 1 from pg_extension where extname = 'pg_cron') as pg_cron,
             to_regclass('cron.job') is not null as cron_job,
             to_regclass('net.http_request_queue') is not null as net_queue,
             (select count(*)::int from supabase_migrations.schema_migrations) as migrations`;
    expect(row.pg_cron).toBe(false);
    expect(row.cron_job).toBe(true);
    expect(row.net_queue).toBe(true);
    expect(row.migrations).toBe(
      fs.readdirSync(path.join(REPO_ROOT, "supabase/migrations")).filter((f) => f.endsWith(".sql")).length,
    );
    // A second run is a no-op (compat is guarded, the CLI skips applied migrations).
    await prepareDatabase(dbUrl);
  }, 60_000);

  it("serves the function with the /functions/v1 prefix stripped, as Supabase does", async () => {
    const res = await fetch(`${runner.url}/functions/v1/echo/a/b?x=1`, {
      headers: { authorization: "Bearer t" },
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.path).toBe("/echo/a/b");
    expect(body.search).toBe("?x=1");
    expect(body.method).toBe("GET");
    expect(body.headers.authorization).toBe("Bearer t");
    expect(body.env).toEqual({
      SUPABASE_URL: runner.url,
      SUPABASE_DB_URL: dbUrl,
      SUPABASE_SERVICE_ROLE_KEY: runner.serviceRoleKey,
      EXTRA: "from-opts",
    });
    expect(body.edgeRuntime).toBe("object");

    const bare = await (await fetch(`${runner.url}/functions/v1/echo`)).json();
    expect(bare.path).toBe("/echo");
    expect((await fetch(`${runner.url}/functions/v1/nope`)).status).toBe(404);
    expect((await fetch(`${runner.url}/functions/v1/_shared`)).status).toBe(404);
  });

  it("streams request and response bodies", async () => {
    // Request: chunks written over time through a chunked upload, echoed back byte for byte.
    const port = new URL(runner.url).port;
    const chunks = ["alpha-", "beta-", "x".repeat(200_000), "-omega"];
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port, method: "POST", path: "/functions/v1/echo/duplex" },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => text += c);
          res.on("end", () => resolve(text));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      (async () => {
        for (const chunk of chunks) {
          req.write(chunk);
          await new Promise((r) => setTimeout(r, 50));
        }
        req.end();
      })();
    });
    expect(echoed).toBe(chunks.join(""));

    // Response: the first chunk arrives well before the function has produced the last one.
    const started = Date.now();
    const res = await fetch(`${runner.url}/functions/v1/echo/stream`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      rest += new TextDecoder().decode(r.value);
    }
    const totalAt = Date.now() - started;
    expect(new TextDecoder().decode(first.value)).toBe("chunk 0\n");
    expect(rest).toBe("chunk 1\nchunk 2\n");
    expect(totalAt - firstAt).toBeGreaterThanOrEqual(450);
  });

  it("delivers net.http_post to the function and records the response like pg_net", async () => {
    const [vault] = await sql`
      select (select decrypted_secret from vault.decrypted_secrets where name = 'project_url') as url,
             (select decrypted_secret from vault.decrypted_secrets where name = 'service_role_key') as key`;
    expect(vault).toEqual({ url: runner.url, key: runner.serviceRoleKey });

    const [{ id }] = await sql`
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url') || '/functions/v1/echo/hook',
        headers := jsonb_build_object('Content-Type', 'application/json', 'Authorization',
          'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = 'service_role_key')),
        body := '{"hello": "net"}'::jsonb,
        timeout_milliseconds := 5000) as id`;
    const [timeoutReq] = await sql`
      select net.http_post(url := ${runner.url} || '/functions/v1/echo/sleep?ms=2000', timeout_milliseconds := 300) as id`;

    const response = await waitFor("the pg_net response", async () => {
      const [row] = await sql`select * from net._http_response where id = ${id}`;
      return row;
    });
    expect(response.status_code).toBe(200);
    expect(response.content_type).toBe("application/json");
    expect(response.timed_out).toBe(false);
    expect(response.error_msg).toBeNull();
    expect(response.headers["content-type"]).toBe("application/json");
    const echoed = JSON.parse(response.content);
    expect(echoed.path).toBe("/echo/hook");
    expect(echoed.method).toBe("POST");
    expect(JSON.parse(echoed.body)).toEqual({ hello: "net" });
    expect(echoed.headers.authorization).toBe(`Bearer ${runner.serviceRoleKey}`);

    const timedOut = await waitFor("the timed-out response", async () => {
      const [row] = await sql`select * from net._http_response where id = ${timeoutReq.id}`;
      return row;
    });
    expect(timedOut.timed_out).toBe(true);
    expect(timedOut.status_code).toBeNull();
    expect(timedOut.error_msg).toMatch(/Timeout of 300 ms/);
    const [{ queued }] = await sql`select count(*)::int as queued from net.http_request_queue`;
    expect(queued).toBe(0);
  });

  it("runs cron stand-in jobs on demand and on the clock, recording job_run_details", async () => {
    await sql`create table if not exists public.cron_probe (tag text, at timestamptz default clock_timestamp())`;
    await sql`select cron.schedule('ts-test-minutely', '* * * * *', $$insert into public.cron_probe (tag) values ('minutely')$$)`;
    await sql`select cron.schedule('ts-test-failing', '0 0 1 1 *', 'select 1/0')`;

    const ok = await runner.runCronJobNow("ts-test-minutely");
    expect(ok.status).toBe("succeeded");
    expect(ok.return_message).toBe("INSERT 0 1");
    const failed = await runner.runCronJobNow("ts-test-failing");
    expect(failed.status).toBe("failed");
    expect(failed.return_message).toMatch(/division by zero/);
    // The standalone helper (no runner needed) records the same way.
    expect((await runCronJobNow(dbUrl, "ts-test-minutely")).status).toBe("succeeded");
    const details = await sql`
      select d.status, d.return_message, d.start_time, d.end_time, d.job_pid
      from cron.job_run_details d join cron.job j using (jobid)
      where j.jobname = 'ts-test-minutely' order by d.runid`;
    expect(details.map((d) => d.status)).toEqual(["succeeded", "succeeded"]);
    expect(details[0].end_time.getTime()).toBeGreaterThanOrEqual(details[0].start_time.getTime());
    expect(details[0].job_pid).toBeGreaterThan(0);

    // The clock: a pg_cron 1.5+ interval schedule runs every second.
    await sql`select cron.schedule('ts-test-seconds', '1 seconds', $$insert into public.cron_probe (tag) values ('seconds')$$)`;
    const runs = await waitFor("two clock runs", async () => {
      const rows = await sql`
        select d.status from cron.job_run_details d join cron.job j using (jobid)
        where j.jobname = 'ts-test-seconds' and d.status = 'succeeded'`;
      return rows.length >= 2 ? rows.length : undefined;
    }, 6000);
    expect(runs).toBeGreaterThanOrEqual(2);
    await sql`select cron.unschedule('ts-test-seconds')`;
    await sql`select cron.unschedule('ts-test-minutely')`;
    await sql`select cron.unschedule('ts-test-failing')`;
    const [{ seconds }] =
      await sql`select count(*)::int as seconds from public.cron_probe where tag = 'seconds'`;
    expect(seconds).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it("relays realtime.send() to SSE subscribers of the topic only", async () => {
    const controller = new AbortController();
    const res = await fetch(`${runner.url}/realtime/v1/sse?topic=ts-test`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const nextEvent = async (): Promise<{ event: string; data: unknown }> => {
      for (;;) {
        const frames = buffer.split("\n\n");
        for (let i = 0; i < frames.length - 1; i++) {
          const lines = frames[i].split("\n");
          const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
          const data = lines.find((l) => l.startsWith("data: "))?.slice(6);
          if (event && data) {
            buffer = frames.slice(i + 1).join("\n\n");
            return { event, data: JSON.parse(data) };
          }
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("SSE stream ended");
        buffer += decoder.decode(value, { stream: true });
      }
    };
    await waitFor(
      "the subscription",
      () => runner.health().workers.realtime.clients === 1 || undefined,
    );

    await sql`select realtime.send('{"n": 0}'::jsonb, 'ignored', 'other-topic', false)`;
    await sql`select realtime.send('{"n": 1}'::jsonb, 'anomaly_detected', 'ts-test', false)`;
    const got = await nextEvent();
    expect(got.event).toBe("anomaly_detected");
    expect(got.data).toMatchObject({ topic: "ts-test", event: "anomaly_detected", payload: { n: 1 } });
    controller.abort();
    await waitFor(
      "the client to go",
      () => runner.health().workers.realtime.clients === 0 || undefined,
    );
  });

  it("reports health and leaves no Deno process behind on stop()", async () => {
    const res = await fetch(`${runner.url}/health`);
    expect(res.status).toBe(200);
    const health = await res.json();
    expect(health.functions.map((f: { name: string }) => f.name)).toEqual(["echo"]);
    expect(health.workers.net.state).toBe("running");
    expect(health.workers.cron.state).toBe("running");
    expect(health.workers.realtime.state).toBe("running");

    const pids = runner.functions().map((f) => f.pid!);
    expect(pids.every(alive)).toBe(true);
    await runner.stop();
    expect(pids.filter(alive)).toEqual([]);
    const ps = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
    expect(ps.split("\n").filter((l) => l.includes("serve-function.ts") && l.includes(FIXTURES))).toEqual([]);
    await expect(fetch(`${runner.url}/health`)).rejects.toThrow();
  }, 20_000);
});

describe("embedded Postgres 17 (startDatabase without DATABASE_URL)", () => {
  it("initialises, starts, reuses its data dir and survives a stale pid file", async () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), "ts-embedded-"));
    fs.chmodSync(parent, 0o755); // the server runs as `postgres` when we are root
    const dataDir = path.join(parent, "pg17");
    const port = await freePort();
    try {
      const first = await startDatabase({ databaseUrl: null, dataDir, port });
      expect(first.embedded).toBe(true);
      const sql = postgres(first.url, { max: 1 });
      const [{ version }] = await sql`select current_setting('server_version_num') as version`;
      expect(Number(version)).toBeGreaterThanOrEqual(170000);
      await sql`create table kept (v int)`;
      await sql.end();
      await first.stop();

      // A crash leaves postmaster.pid behind; its pid is gone.
      fs.writeFileSync(path.join(dataDir, "postmaster.pid"), "999999\n");
      const second = await startDatabase({ databaseUrl: null, dataDir, port });
      const again = postgres(second.url, { max: 1 });
      expect((await again`select to_regclass('public.kept') is not null as kept`)[0].kept).toBe(true);
      await again.end();
      const pid = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      await second.stop();
      expect(alive(pid)).toBe(false);

      const external = await startDatabase({ databaseUrl: "postgresql://x@127.0.0.1:1/y" });
      expect(external).toMatchObject({ url: "postgresql://x@127.0.0.1:1/y", embedded: false });
      await external.stop();
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  }, 60_000);
});
