#!/usr/bin/env bash
# scripts/test/all.sh — `npm test`: every suite, on a fresh PostgreSQL 15 cluster with real pg_cron and pgTAP.
#   1. format and lint (deno fmt/lint/check) and the OTLP descriptor drift check
#   2. a fresh PG15 cluster; migrations applied with the real Supabase CLI (`supabase db push`)
#   3. `supabase db lint` (plpgsql_check) and `supabase db advisors` (no WARN or above)
#   4. pgTAP with pg_prove on PG15 (real pg_cron), then again on the embedded Postgres 17
#   5. vitest: unit, then integration (real Postgres + Deno-served functions + OpenTelemetry SDK)
#   6. the demo, end to end, on the embedded database
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export DENO_TLS_CA_STORE=system DENO_DIR="$ROOT/.deno"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$SECONDS

step "format and lint"
./node_modules/.bin/deno fmt --check
./node_modules/.bin/deno lint
./node_modules/.bin/deno check functions/*/index.ts
npx tsx scripts/gen-otlp-descriptor.ts --check

step "PostgreSQL 15 test cluster (pg_cron, pgTAP, plpgsql_check)"
BASE_URL=$(scripts/test/pg15.sh reset)
scripts/test/prepare-db.sh "$BASE_URL"
echo "migrated $BASE_URL"

step "supabase db lint (plpgsql_check) and db advisors"
./node_modules/.bin/supabase db lint --db-url "$BASE_URL" -s public,anomaly --fail-on error
./node_modules/.bin/supabase db advisors --db-url "$BASE_URL" --type all --level warn --fail-on warn

step "pgTAP on PostgreSQL 15"
scripts/test/pgtap.sh "$BASE_URL"

step "pgTAP on the embedded PostgreSQL 17"
npx tsx scripts/test/pgtap-embedded.ts

step "vitest: unit and integration"
TS_TEST_DATABASE_URL="$BASE_URL" npx vitest run

step "demo on the embedded database"
# Exit code 13 is Node's "unsettled top-level await": the event loop emptied while the demo still awaited the
# embedded server's start, with nothing printed and no assertion reached. It happened once in a fresh-clone run
# after the whole suite (never alone, 4 reruns passed); until its cause is found it gets one retry. Any other
# failure — a missed incident, a missing Telegram message — fails at once.
status=0
npx tsx scripts/demo.ts --smoke || status=$?
if [ "$status" -eq 13 ]; then
  echo "demo: exit 13 (unsettled top-level await before any output); running it once more" >&2
  npx tsx scripts/demo.ts --smoke
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

printf '\nall suites passed in %ss\n' $((SECONDS - started))
