// scripts/gen-otlp-descriptor.ts — compiles the vendored OTLP .proto files plus google.rpc.Status into
// functions/_shared/otlp/descriptor.generated.ts (a protobufjs JSON descriptor: no file reads at run time).
// `npm run gen:otlp` writes it; `--check` exits 1 when it is stale; `--out <file>` targets another file.

import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const PROTO_DIR = path.join(REPO, "functions/_shared/otlp/proto");
export const OUTPUT = path.join(REPO, "functions/_shared/otlp/descriptor.generated.ts");
const ENTRY = "opentelemetry/proto/collector/trace/v1/trace_service.proto";

// OTLP/HTTP answers failed protobuf requests with a google.rpc.Status body. The googleapis protos are
// not vendored, so the two small messages are declared here with their upstream field numbers
// (google/protobuf/any.proto and google/rpc/status.proto; one package per parse).
const ANY_PROTO = `
syntax = "proto3";
package google.protobuf;
message Any {
  string type_url = 1;
  bytes value = 2;
}
`;
const RPC_STATUS_PROTO = `
syntax = "proto3";
package google.rpc;
message Status {
  int32 code = 1;
  string message = 2;
  repeated google.protobuf.Any details = 3;
}
`;

/** Builds the descriptor module's source text (deterministic: same protos, same bytes). */
export function generateDescriptorSource(): string {
  const root = new protobuf.Root();
  // Every import in the vendored files is rooted at the proto directory ("opentelemetry/proto/...").
  root.resolvePath = (_origin: string, target: string) => path.join(PROTO_DIR, target);
  root.loadSync(ENTRY, { keepCase: false });
  protobuf.parse(ANY_PROTO, root, { keepCase: false });
  protobuf.parse(RPC_STATUS_PROTO, root, { keepCase: false });
  root.resolveAll();
  const json = JSON.stringify(root.toJSON(), null, 2);
  return [
    "// functions/_shared/otlp/descriptor.generated.ts — generated, do not edit.",
    "// protobufjs JSON descriptor of opentelemetry-proto v1.4.0 (trace collector service) plus",
    "// google.rpc.Status. Regenerate with `npm run gen:otlp`; a unit test fails when this file is stale.",
    "",
    `export default ${json} as const;`,
    "",
  ].join("\n");
}

function main(argv: string[]): number {
  const check = argv.includes("--check");
  const outAt = argv.indexOf("--out");
  const output = outAt >= 0 && argv[outAt + 1] ? path.resolve(argv[outAt + 1]) : OUTPUT;
  const wanted = generateDescriptorSource();
  let current: string | null = null;
  try {
    current = readFileSync(output, "utf8");
  } catch {
    current = null;
  }
  const rel = path.relative(REPO, output);
  if (check) {
    if (current === wanted) {
      console.log(`${rel} is up to date`);
      return 0;
    }
    console.error(`${rel} is stale or missing: run \`npm run gen:otlp\` and commit the result`);
    return 1;
  }
  if (current === wanted) {
    console.log(`${rel} unchanged`);
  } else {
    writeFileSync(output, wanted);
    console.log(`wrote ${rel} (${wanted.length} bytes)`);
  }
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exit(main(process.argv.slice(2)));
}
