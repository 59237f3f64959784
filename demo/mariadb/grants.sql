-- Run once by the MariaDB image's entrypoint (compose profile mariadb), after it created the pushsync user with
-- rights on pushsync_demo: PROCESS for the late-commit read boundary (INFORMATION_SCHEMA.INNODB_TRX), and what binlog
-- change data capture needs, should the demo be switched to mode: cdc.
GRANT PROCESS, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'pushsync'@'%';
