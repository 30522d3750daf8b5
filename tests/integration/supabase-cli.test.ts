// tests/integration/supabase-cli.test.ts — the real Supabase CLI accepts the project layout: config.toml points
// every function at functions/<name>/index.ts and the deploy bundler walks its imports into functions/_shared.
// The deploy is aimed at a fake project with a fake token and no network: the CLI lists the assets it would
// upload before the (expected) transport/auth failure, which is what we assert on.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CLI = path.join(ROOT, "node_modules/.bin/supabase");
const run = promisify(execFile);

const functionNames = fs.readdirSync(path.join(ROOT, "functions"), { withFileTypes: true })
  .filter((d) => d.isDirectory() && !d.name.startsWith("_"))
  .map((d) => d.name);

describe("supabase CLI and the project layout", () => {
  it("config.toml registers every function folder with its entrypoint", () => {
    const config = fs.readFileSync(path.join(ROOT, "supabase/config.toml"), "utf8");
    for (const name of functionNames) {
      expect(config).toContain(`[functions.${name}]`);
      expect(config).toContain(`entrypoint = "../functions/${name}/index.ts"`);
    }
  });

  it("`functions deploy --use-api` finds every function and bundles its shared imports", async () => {
    const result = await run(CLI, [
      "functions",
      "deploy",
      "--use-api",
      "--project-ref",
      "abcdefghijklmnopqrst",
      "--debug",
    ], {
      cwd: ROOT,
      env: {
        ...process.env,
        SUPABASE_ACCESS_TOKEN: "sbp_" + "0".repeat(40),
        HTTPS_PROXY: "http://127.0.0.1:9", // never reach the real API, even where a network exists
      },
      timeout: 60_000,
    }).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout?: string; stderr?: string }) => (e.stdout ?? "") + (e.stderr ?? ""),
    );
    for (const name of functionNames) {
      expect(result).toContain(`Uploading asset (${name}): functions/${name}/index.ts`);
      expect(result).toMatch(new RegExp(`Uploading asset \\(${name}\\): functions/_shared/`));
    }
  });
});
