#!/usr/bin/env bash
# Ensures a second MariaDB with the binary log on (log_bin, binlog_format=ROW, binlog_row_image=FULL, a server_id)
# runs on 127.0.0.1:${PUSHSYNC_BINLOG_PORT:-3307} for the binlog change-data-capture tests, with its own datadir and
# socket, and has the tests' TCP user. Idempotent: reuses the datadir when present, starts the server when stopped.
# Another port starts another such server (PUSHSYNC_BINLOG_PORT, PUSHSYNC_BINLOG_DIR), its server_id its port.
set -euo pipefail
port="${PUSHSYNC_BINLOG_PORT:-3307}"
dir="${PUSHSYNC_BINLOG_DIR:-/var/lib/mysql-pushsync-binlog}"
run="/run/mysqld-pushsync-binlog"
if [ "$port" != 3307 ]; then run="/run/mysqld-pushsync-binlog-$port"; fi
user="${PUSHSYNC_MYSQL_TEST_USER:-pushsync_test}"
password="${PUSHSYNC_MYSQL_TEST_PASSWORD:-pushsync_test}"
cnf="$dir/my.cnf"
client=(mariadb --no-defaults --socket="$run/mysqld.sock" -uroot)

if mariadb-admin --no-defaults --socket="$run/mysqld.sock" -uroot ping --silent >/dev/null 2>&1; then
  echo "binlog mariadb: already running on port $port"
else
  mkdir -p "$run" "$dir/binlog" && chown mysql:mysql "$run" "$dir" "$dir/binlog"
  cat >"$cnf" <<CONF
[mariadbd]
user = mysql
datadir = $dir/data
socket = $run/mysqld.sock
pid-file = $run/mysqld.pid
port = $port
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
log-error = $dir/server.err
server_id = $port
log_bin = $dir/binlog/binlog
binlog_format = ROW
binlog_row_image = FULL
binlog_expire_logs_seconds = 86400
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
CONF
  if [ ! -d "$dir/data/mysql" ]; then
    echo "binlog mariadb: mariadb-install-db in $dir/data"
    mariadb-install-db --defaults-file="$cnf" --auth-root-authentication-method=socket >/dev/null
  fi
  echo "binlog mariadb: starting on port $port"
  # Detached from this script's output: a caller reading it to the end must not wait for the server.
  (cd / && setsid nohup mysqld_safe --defaults-file="$cnf" </dev/null >/dev/null 2>&1 &) </dev/null >/dev/null 2>&1
  for _ in $(seq 1 60); do
    mariadb-admin --no-defaults --socket="$run/mysqld.sock" -uroot ping --silent >/dev/null 2>&1 && break
    sleep 1
  done
fi
"${client[@]}" <<SQL
CREATE USER IF NOT EXISTS '${user}'@'127.0.0.1' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON *.* TO '${user}'@'127.0.0.1' WITH GRANT OPTION;
SQL
"${client[@]}" -N -e "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id"
echo "binlog mariadb: ready on port $port"
