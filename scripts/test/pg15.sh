#!/usr/bin/env bash
# scripts/test/pg15.sh — start (or reuse) the PostgreSQL 15 test cluster with real pg_cron, pgTAP and
# plpgsql_check. Installs the Debian packages it needs (we are root on the CI machine), runs the
# server as the unprivileged `postgres` user (initdb refuses root) and prints the connection URL.
#
#   scripts/test/pg15.sh start   # idempotent: installs, initialises, starts; prints the URL
#   scripts/test/pg15.sh reset   # throw the cluster away and start a new one
#   scripts/test/pg15.sh stop
#   scripts/test/pg15.sh url
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
DIR=${TS_PG15_DIR:-/tmp/trace-sentinel-pg15}
PORT=${TS_PG15_PORT:-54329}
DATA="$DIR/data"
URL="postgresql://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
PACKAGES=(postgresql-15 postgresql-15-cron postgresql-15-pgtap postgresql-15-plpgsql-check libtap-parser-sourcehandler-pgtap-perl)

ensure_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "pg15: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

as_postgres() { runuser -u postgres -- "$@"; }

start() {
  ensure_packages
  install -d -o postgres -g postgres "$DIR"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
CONF
  fi
  if ! as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w start >/dev/null
  fi
  echo "$URL"
}

case "${1:-start}" in
  start) start ;;
  stop) as_postgres "$PGBIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true ;;
  reset)
    # A fresh cluster every test run: migrations are applied from scratch, as on a new project.
    [ -d "$DATA" ] && { as_postgres "$PGBIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true; }
    rm -rf "$DIR"
    start
    ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|reset|stop|url" >&2; exit 2 ;;
esac
