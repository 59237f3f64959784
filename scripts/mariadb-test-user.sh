#!/usr/bin/env bash
# Ensures the local MariaDB on 127.0.0.1:3306 runs and has the TCP user the MySQL source tests log in with. Root logs
# in over the unix socket only, so the tests need a user of their own. Idempotent: starts the server only when it does
# not answer, creates the user only when missing.
set -euo pipefail
user="${PUSHSYNC_MYSQL_TEST_USER:-pushsync_test}"
password="${PUSHSYNC_MYSQL_TEST_PASSWORD:-pushsync_test}"

if ! mariadb-admin ping --silent >/dev/null 2>&1; then
  echo "mariadb: starting"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  (cd / && nohup mysqld_safe >/dev/null 2>&1 &)
  for _ in $(seq 1 60); do mariadb-admin ping --silent >/dev/null 2>&1 && break; sleep 1; done
fi
mariadb-admin ping --silent >/dev/null
# The tests create and drop databases of their own and users without some privileges, hence ALL and GRANT OPTION.
mariadb <<SQL
CREATE USER IF NOT EXISTS '${user}'@'127.0.0.1' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON *.* TO '${user}'@'127.0.0.1' WITH GRANT OPTION;
SQL
echo "mariadb: test user ${user}@127.0.0.1 ready"
