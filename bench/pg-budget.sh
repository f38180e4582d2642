#!/usr/bin/env bash
# What one login costs PostgreSQL, counted (issue 14): statements by text, round trips,
# transactions, rows written per table and WAL bytes per login (POST /v1/wechat/login +
# GET /v1/me, as `bench` drives them), the projection runners and the NATS relay included.
#
#   cargo build --release -p api -p bench
#   bench/pg-budget.sh                         # 2,000 logins after 500 of warm-up, 32 users
#   bench/pg-budget.sh --logins 5000 --concurrency 8
#
# Arguments go to `bench --only pg-budget` (see `target/release/bench --help`).
# Environment: BENCH_BIN (default target/release/bench), PG_BINDIR (default
# `pg_config --bindir`), NATS=0 to leave the relay off (default: a private nats-server with
# JetStream when `nats-server` is on PATH).
#
# It makes a PRIVATE PostgreSQL cluster (initdb in a temp directory, a free port,
# shared_preload_libraries = pg_stat_statements) and, if available, a private nats-server;
# it never touches another server, and removes both on exit, whatever happens.
# The cluster is the shared server's settings where they matter for counts (fsync and
# synchronous_commit on, full_page_writes on), with autovacuum off and checkpoints far apart so
# the window holds only the workload's own WAL: the WAL figure is the floor, without the
# full-page images a checkpoint inside the window would add (`WAL full-page images` says how
# many there were). Not part of `cargo test` or `.ci/run`.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_BIN=${BENCH_BIN:-target/release/bench}
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
[ -x "$BENCH_BIN" ] || { echo "build first: cargo build --release -p api -p bench" >&2; exit 1; }

# initdb and postgres refuse to run as root: run them as `postgres` then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d /tmp/pg-budget.XXXXXX)
PGDATA="$WORK/data"
NATS_PID=
cleanup() {
  # Stop only what this script started: the private cluster by its data directory, the
  # private nats-server by its pid.
  if [ -f "$PGDATA/postmaster.pid" ]; then
    as_owner "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "$NATS_PID" ]; then kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
[ "$(id -u)" = 0 ] && chown postgres "$WORK"

PORT=$(free_port)
as_owner "$PG_BINDIR/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log"
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 10000
pg_stat_statements.track = all
pg_stat_statements.track_utility = on
track_io_timing = off
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 20GB
EOF
as_owner "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
echo "pg-budget: private PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

ARGS=()
if [ "${NATS:-1}" != 0 ] && command -v nats-server >/dev/null; then
  NATS_PORT=$(free_port)
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  ARGS+=(--nats-url "nats://127.0.0.1:$NATS_PORT")
  echo "pg-budget: private nats-server (JetStream) on 127.0.0.1:$NATS_PORT" >&2
fi

"$BENCH_BIN" --only pg-budget --postgres-url "postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable" \
  ${ARGS[@]+"${ARGS[@]}"} "$@"
