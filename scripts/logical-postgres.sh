#!/usr/bin/env bash
# Ensures a PostgreSQL cluster with wal_level=logical runs on 127.0.0.1:${PUSHSYNC_LOGICAL_PORT:-5433} for the
# change-data-capture tests. Idempotent: reuses the cluster when present, starts it when stopped.
set -euo pipefail
port="${PUSHSYNC_LOGICAL_PORT:-5433}"
dir="${PUSHSYNC_LOGICAL_DIR:-/var/lib/postgresql/pushsync-logical}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }

if pg_isready -q -h 127.0.0.1 -p "$port"; then
  echo "logical postgres: already running on port $port"
  exit 0
fi
if [ ! -f "$dir/PG_VERSION" ]; then
  echo "logical postgres: initdb in $dir"
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_slot_wal_keep_size = 1GB
unix_socket_directories = '/tmp'
fsync = off
CONF
  echo "host replication all 127.0.0.1/32 trust" >>"$dir/pg_hba.conf"
fi
echo "logical postgres: starting on port $port"
as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE test" >/dev/null
pg_isready -q -h 127.0.0.1 -p "$port" && echo "logical postgres: ready"
