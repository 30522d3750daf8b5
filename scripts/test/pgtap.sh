#!/usr/bin/env bash
# scripts/test/pgtap.sh [URL] — run the pgTAP suite (supabase/tests/database) with pg_prove.
# URL defaults to the PG15 test cluster's `postgres` database, where the real pg_cron extension lives.
# The database must already be migrated (scripts/test/prepare-db.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
URL=${1:-$("$ROOT/scripts/test/pg15.sh" url)}
URL=${URL%%\?*} # pg_prove hands -d to psql as a plain name: no query string
psql -q -X -v ON_ERROR_STOP=1 "$URL" -c "set client_min_messages = warning" -f "$ROOT/scripts/test/pgtap-helpers.sql" >/dev/null
# Pause the scheduled jobs while tests run: a cron-driven rollup holding its advisory lock would make a
# test's own rollup call return early. Registration (what the tests check) is untouched.
psql -q -X "$URL" -c "update cron.job set active = false where jobname like 'trace-sentinel:%'" >/dev/null
trap 'psql -q -X "$URL" -c "update cron.job set active = true where jobname like '"'"'trace-sentinel:%'"'"'" >/dev/null' EXIT
PGOPTIONS='-c search_path=public,extensions,tests' pg_prove --ext .sql -r -d "$URL" "$ROOT/supabase/tests/database"
