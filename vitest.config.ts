// vitest.config.ts — unit tests (tests/unit, pure) and integration tests (tests/integration: a real Postgres,
// Deno-served functions, the OpenTelemetry SDK). Files run one at a time: the CI machine has 2 cores and
// the integration suites each start a database and Deno processes.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 240_000,
    reporters: ["default"],
  },
});
