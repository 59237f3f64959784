import mysql from 'mysql2/promise';
import { uniqueName } from './services.js';

/**
 * The MariaDB the MySQL source tests use: 127.0.0.1:3306 with the user scripts/mariadb-test-user.sh creates (root
 * logs in over the unix socket only).
 */
export const MYSQL_URL = process.env.PUSHSYNC_TEST_MYSQL_URL ?? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3306';

/** The URL of one database on the test server. */
export function mysqlUrl(database: string, base = MYSQL_URL): string {
  return `${base.replace(/\/[^/@]*$/, '').replace(/\/$/, '')}/${database}`;
}

export interface MysqlDatabase {
  database: string;
  url: string;
  /** A connection as the test user with the database selected, for setting up and checking data. */
  client: mysql.Connection;
  drop: () => Promise<void>;
}

/**
 * A database owned by one test file, dropped afterwards. The client's session is in UTC and reads values as text,
 * so tests compare with what the server prints.
 */
export async function createMysqlDatabase(base = MYSQL_URL, database = uniqueName('t')): Promise<MysqlDatabase> {
  const u = new URL(base);
  const client = await mysql.createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    charset: 'UTF8MB4_GENERAL_CI',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    multipleStatements: true,
  });
  await client.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  await client.query(`USE \`${database}\``);
  await client.query(`SET time_zone = '+00:00'`);
  return {
    database,
    url: mysqlUrl(database, base),
    client,
    drop: async () => {
      await client.query(`DROP DATABASE IF EXISTS \`${database}\``);
      await client.end();
    },
  };
}

/** Rows as arrays of text (NULL as null), for comparing with text forms the server computes. */
export async function textRows(client: mysql.Connection, sql: string): Promise<Array<Array<string | null>>> {
  const [rows] = await client.query({ sql, rowsAsArray: true, typeCast: (field) => field.string('utf8') });
  return rows as Array<Array<string | null>>;
}

const BYTES = new Set([
  'binary',
  'varbinary',
  'tinyblob',
  'blob',
  'mediumblob',
  'longblob',
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
]);

/**
 * The form a received value must have, computed by the server from the column (not by the source's encoder): the
 * column's own text (CAST … AS CHAR), base64 for bytes, binary digits for BIT, the float's exact double for FLOAT.
 */
export function serverForm(name: string, dataType: string, columnType: string): string {
  const c = `t.\`${name}\``;
  if (BYTES.has(dataType)) return `REPLACE(TO_BASE64(${c}), '\\n', '')`;
  if (dataType === 'bit') return `LPAD(BIN(${c}), ${/\((\d+)\)/.exec(columnType)![1]}, '0')`;
  if (dataType === 'float') return `CAST(CAST(${c} AS DOUBLE) AS CHAR)`;
  return `CAST(${c} AS CHAR)`;
}

/** Whether a received JSON value is the server's text form of the column, by the rules of docs/encoding.md. */
export function matchesServerForm(dataType: string, received: unknown, server: string | null): boolean {
  if (server === null) return received === null;
  switch (dataType) {
    case 'tinyint':
    case 'smallint':
    case 'mediumint':
    case 'int':
    case 'year':
      return received === Number(server);
    case 'float':
      return typeof received === 'number' && Math.fround(received) === Number(server);
    case 'double':
      return typeof received === 'number' && received === Number(server);
    case 'datetime':
      return received === server.replace(' ', 'T');
    case 'timestamp':
      return received === `${server.replace(' ', 'T')}+00:00`;
    case 'set':
      return JSON.stringify(received) === JSON.stringify(server === '' ? [] : server.split(','));
    default:
      return received === server;
  }
}

/** The MariaDB with the binary log on (scripts/mariadb-binlog.sh starts it on port 3307), for binlog capture tests. */
export const MYSQL_BINLOG_URL = process.env.PUSHSYNC_TEST_MYSQL_BINLOG_URL ?? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3307';

/**
 * A second MariaDB with the binary log on (port 3308, started by .ci/run with scripts/mariadb-binlog.sh), for a source
 * moved to another server, whose binlog positions are not those of the first.
 */
export const SECOND_MYSQL_BINLOG_URL = process.env.PUSHSYNC_TEST_SECOND_MYSQL_BINLOG_URL ?? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3308';
