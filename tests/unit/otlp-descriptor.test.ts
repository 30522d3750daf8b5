// tests/unit/otlp-descriptor.test.ts — functions/_shared/otlp/descriptor.generated.ts must be exactly
// what scripts/gen-otlp-descriptor.ts produces from the vendored .proto files (drift guard), and it must
// describe the messages the codec looks up, including google.rpc.Status for error bodies.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import descriptor from "../../functions/_shared/otlp/descriptor.generated.ts";
import { generateDescriptorSource, OUTPUT } from "../../scripts/gen-otlp-descriptor.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const TSX = path.join(REPO, "node_modules/tsx/dist/cli.mjs");

function generator(...args: string[]) {
  return spawnSync(process.execPath, [TSX, "scripts/gen-otlp-descriptor.ts", ...args], {
    cwd: REPO,
    encoding: "utf8",
  });
}

describe("OTLP descriptor", () => {
  it("is up to date with the vendored protos (run `npm run gen:otlp` if this fails)", () => {
    expect(readFileSync(OUTPUT, "utf8")).toBe(generateDescriptorSource());
  });

  it("`gen-otlp-descriptor.ts --check` exits 0 on the committed file", () => {
    const out = execFileSync(process.execPath, [TSX, "scripts/gen-otlp-descriptor.ts", "--check"], {
      cwd: REPO,
      encoding: "utf8",
    });
    expect(out).toContain("is up to date");
  });

  it("`--check` exits 1 on a stale file, and a plain run rewrites it", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "otlp-descriptor-"));
    const file = path.join(dir, "descriptor.generated.ts");
    try {
      writeFileSync(file, "export default {};\n");
      const stale = generator("--check", "--out", file);
      expect(stale.status).toBe(1);
      expect(stale.stderr).toContain("stale or missing: run `npm run gen:otlp`");
      expect(generator("--out", file).status).toBe(0);
      expect(readFileSync(file, "utf8")).toBe(generateDescriptorSource());
      expect(generator("--check", "--out", file).status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("starts with the generated-file header", () => {
    expect(readFileSync(OUTPUT, "utf8").split("\n")[0]).toMatch(/generated, do not edit/);
  });

  it("describes the OTLP trace messages and google.rpc.Status", () => {
    const root = protobuf.Root.fromJSON(descriptor as unknown as protobuf.INamespace);
    const req = root.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");
    expect(req.fields.resourceSpans.id).toBe(1);
    const span = root.lookupType("opentelemetry.proto.trace.v1.Span");
    expect(span.fields.startTimeUnixNano.type).toBe("fixed64");
    expect(span.fields.traceId.type).toBe("bytes");
    const status = root.lookupType("google.rpc.Status");
    expect(Object.fromEntries(Object.values(status.fields).map((f) => [f.name, [f.id, f.type, f.repeated]])))
      .toEqual({
        code: [1, "int32", false],
        message: [2, "string", false],
        details: [3, "google.protobuf.Any", true],
      });
    const any = root.lookupType("google.protobuf.Any");
    expect(Object.values(any.fields).map((f) => [f.name, f.id, f.type])).toEqual([
      ["typeUrl", 1, "string"],
      ["value", 2, "bytes"],
    ]);
  });
});
