#!/usr/bin/env bash
# scripts/test/prepare-db.sh URL — make a database look like a Supabase project's: the compat bootstrap
# (only what Supabase would already have), then our migrations through the real CLI (`supabase db push`).
set -euo pipefail
URL=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
psql -q -X -v ON_ERROR_STOP=1 "$URL" -c "set client_min_messages = warning" -f "$ROOT/scripts/local/compat.sql" >/dev/null
"$ROOT/node_modules/.bin/supabase" db push --db-url "$URL" --yes --include-all >/dev/null
