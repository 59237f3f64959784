import { createRequire } from 'node:module';
import type * as mysql from 'mysql2/promise';
import type { PoolConnection as CoreConnection } from 'mysql2';
import { AppError } from '../core/errors.js';
import { flavorOf, sessionCheckSql, sessionProblem, sessionSql, VERSION_SQL, type Flavor } from './mysql-sql.js';

/** A row as the text protocol carries it: each value's bytes, or null for SQL NULL. */
export type RawRow = Array<Buffer | null>;

/**
 * The only place the MySQL source hands SQL to the driver.
 *
 * Invariants: one statement per query (the text protocol without the multi-statements capability: the server refuses
 * a second statement with a syntax error before running the first); no value is interpolated by the driver (no
 * `values` are ever passed, see `literal` in mysql-sql.ts); every session has the settings of `sessionSql`, applied
 * before its first statement and checked, read only included; values arrive as raw bytes.
 */
export interface MysqlPoolOptions {
  url: string;
  poolSize: number;
  statementTimeoutMs: number;
  /** How long past `statementTimeoutMs` a statement's answer is waited for. @defaultValue 30000 ms */
  answerGraceMs?: number;
  /** How long a locking read waits for a row's lock (see `sessionSql`). @defaultValue LOCK_WAIT_MS */
  lockWaitMs?: number;
}

/** The driver gave up waiting for a statement's answer (its `timeout`); the connection is closed, never reused. */
function unanswered(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === 'PROTOCOL_SEQUENCE_TIMEOUT';
}

/** Connection settings from a mysql:// or mariadb:// URL: user, password, host, port, database, `?ssl=true`. */
export function connectionOptions(url: string): mysql.PoolOptions {
  const u = new URL(url);
  const ssl = u.searchParams.get('ssl');
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    ...(u.pathname.length > 1 ? { database: decodeURIComponent(u.pathname.slice(1)) } : {}),
    ...(ssl === 'true' || ssl === 'required' ? { ssl: { rejectUnauthorized: true } } : {}),
  };
}

const raw: mysql.TypeCast = (field) => field.buffer();

/** The driver, loaded with the first MySQL pool: a process without a MySQL source never loads its 90 modules. */
function driver(): typeof mysql {
  return createRequire(import.meta.url)('mysql2/promise') as typeof mysql;
}

export class MysqlPool {
  private readonly pool: mysql.Pool;
  private readonly ready = new WeakSet<object>();
  private flavorSeen: Flavor | undefined;
  /**
   * How long a statement may wait for its answer (ms; 0: forever). The server ends a statement at its statement
   * timeout itself, so one unanswered `answerGraceMs` later is waiting on a connection that stopped answering without
   * a reset (a partition, a host that died): it fails (PROTOCOL_SEQUENCE_TIMEOUT, a retryable SOURCE_UNAVAILABLE)
   * and its connection is closed. Keepalive (`enableKeepAlive`) ends such a connection while it is idle.
   */
  private readonly timeout: { timeout?: number };

  constructor(private readonly options: MysqlPoolOptions) {
    this.timeout = options.statementTimeoutMs > 0 ? { timeout: options.statementTimeoutMs + (options.answerGraceMs ?? 30_000) } : {};
    this.pool = driver().createPool({
      ...connectionOptions(options.url),
      connectionLimit: options.poolSize,
      waitForConnections: true,
      connectTimeout: 10_000,
      idleTimeout: 30_000,
      enableKeepAlive: true,
      charset: 'UTF8MB4_GENERAL_CI',
      multipleStatements: false,
      // Settings for any value the driver would convert; `raw` hands every value over as bytes anyway.
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      decimalNumbers: false,
      rowsAsArray: true,
      typeCast: raw,
    });
    // An idle connection that fails emits here; without a listener the process would crash.
    this.pool.pool.on('connection', (c: CoreConnection) => void c.on('error', () => {}));
  }

  /** MariaDB or MySQL, as the first session found out. */
  async flavor(): Promise<Flavor> {
    if (this.flavorSeen === undefined) await this.withConnection(async () => undefined);
    return this.flavorSeen!;
  }

  /** Applies the session settings on a connection's first use, and checks the server holds them. */
  private async session(conn: mysql.PoolConnection): Promise<void> {
    if (this.ready.has(conn.connection)) return;
    const [version] = (await conn.query({ sql: VERSION_SQL, rowsAsArray: true, typeCast: raw, ...this.timeout })) as unknown as [RawRow[]];
    const flavor = flavorOf(version[0]![0]!.toString('utf8'));
    for (const sql of sessionSql(flavor, this.options.statementTimeoutMs, this.options.lockWaitMs)) await conn.query({ sql, ...this.timeout });
    const [settings] = (await conn.query({ sql: sessionCheckSql(flavor), rowsAsArray: true, typeCast: raw, ...this.timeout })) as unknown as [
      RawRow[],
    ];
    const problem = sessionProblem(settings[0]?.map((v) => (v === null ? null : v.toString('utf8'))));
    if (problem) throw new AppError('SOURCE_UNAVAILABLE', `the server did not keep pushsync's session settings (${problem})`);
    this.flavorSeen = flavor;
    this.ready.add(conn.connection);
  }

  /**
   * Runs `fn` on a pooled connection whose session is set up. The connection goes back to the pool unless it failed
   * (a fatal error, a failed session setup, or a transaction `fn` could not end): then it is closed, never reused.
   */
  private async withConnection<T>(fn: (conn: mysql.PoolConnection) => Promise<T>): Promise<T> {
    const conn = await this.pool.getConnection();
    let reusable = false;
    try {
      await this.session(conn);
      reusable = true;
      return await fn(conn);
    } catch (err) {
      if ((err as { fatal?: unknown }).fatal === true || unanswered(err) || err instanceof UnusableConnection) reusable = false;
      throw err instanceof UnusableConnection ? err.cause : err;
    } finally {
      if (reusable) conn.release();
      else conn.destroy();
    }
  }

  /** One statement in a read-only session; values as bytes. */
  run(sql: string): Promise<RawRow[]> {
    return this.withConnection((conn) => rows(conn, sql, this.timeout));
  }

  /**
   * A statement that carries configured SQL, in a read-only transaction of its own that is then rolled back. The
   * session is read only already; the transaction keeps the Postgres source's shape: whatever the statement did to the
   * transaction ends with it.
   */
  runIsolated(sql: string): Promise<RawRow[]> {
    return this.isolated(async (conn) => (await result(conn, sql, this.timeout)).rows);
  }

  /** The result columns of a statement that carries configured SQL, run as `runIsolated` runs it (add `LIMIT 0`). */
  fieldsIsolated(sql: string): Promise<ResultField[]> {
    return this.isolated(async (conn) => (await result(conn, sql, this.timeout)).fields);
  }

  /**
   * A locking read (`LOCK IN SHARE MODE`) in a read-only transaction of its own at READ COMMITTED, then ended: the
   * explicit transaction makes the locks real on every server, READ COMMITTED takes no gap locks for the keys not
   * found, and the locks go with the transaction.
   */
  runLocking(sql: string): Promise<RawRow[]> {
    return this.isolated(async (conn) => (await result(conn, sql, this.timeout)).rows, ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED']);
  }

  private isolated<T>(fn: (conn: mysql.PoolConnection) => Promise<T>, before: readonly string[] = []): Promise<T> {
    return this.withConnection(async (conn) => {
      for (const sql of before) await conn.query({ sql, ...this.timeout });
      await conn.query({ sql: 'START TRANSACTION READ ONLY', ...this.timeout });
      let value: { v: T } | undefined;
      let failure: unknown;
      try {
        value = { v: await fn(conn) };
      } catch (err) {
        failure = err;
      }
      // A statement left unanswered: a ROLLBACK would wait behind it as long again.
      if (unanswered(failure)) throw new UnusableConnection(failure);
      try {
        await conn.query({ sql: 'ROLLBACK', ...this.timeout });
      } catch (err) {
        throw new UnusableConnection(failure ?? err);
      }
      if (value === undefined) throw failure;
      return value.v;
    });
  }

  /**
   * Statements in one transaction of one session, opened by `begin` and then rolled back (it only reads); values as
   * bytes, one result per statement. A transaction that cannot be ended leaves its connection unusable.
   */
  runInTransaction(begin: string, sqls: readonly string[]): Promise<RawRow[][]> {
    return this.withConnection(async (conn) => {
      await conn.query({ sql: begin, ...this.timeout });
      const results: RawRow[][] = [];
      let failure: unknown;
      try {
        for (const sql of sqls) results.push(await rows(conn, sql, this.timeout));
      } catch (err) {
        failure = err;
      }
      // A statement left unanswered: a ROLLBACK would wait behind it as long again.
      if (unanswered(failure)) throw new UnusableConnection(failure);
      try {
        await conn.query({ sql: 'ROLLBACK', ...this.timeout });
      } catch (err) {
        throw new UnusableConnection(failure ?? err);
      }
      if (failure !== undefined) throw failure;
      return results;
    });
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}

/** Marks a failure after which the connection's state is unknown; `cause` is what the caller sees. */
class UnusableConnection extends Error {
  constructor(override readonly cause: unknown) {
    super('connection unusable');
  }
}

/** A result column as the server describes it (the protocol's column definition). */
export interface ResultField {
  name: string;
  /** The protocol's type code (MYSQL_TYPE_*). */
  columnType: number;
  /** Column flags: UNSIGNED 32, ZEROFILL 64, BINARY 128, ENUM 256, SET 2048. */
  flags: number;
  /** Fractional digits (temporal types), scale (DECIMAL). */
  decimals: number;
  /** Display length; the width of BIT(n). */
  length: number;
  /** MariaDB's extended metadata: `json` for a column declared JSON. */
  format: string | null;
}

async function rows(conn: mysql.PoolConnection, sql: string, timeout: { timeout?: number }): Promise<RawRow[]> {
  return (await result(conn, sql, timeout)).rows;
}

async function result(conn: mysql.PoolConnection, sql: string, timeout: { timeout?: number }): Promise<{ rows: RawRow[]; fields: ResultField[] }> {
  const [out, fields] = await conn.query({ sql, rowsAsArray: true, typeCast: raw, ...timeout });
  if (!Array.isArray(out)) return { rows: [], fields: [] };
  return {
    rows: out as unknown as RawRow[],
    fields: (fields ?? []).map((f) => ({
      name: f.name,
      columnType: f.columnType ?? f.type ?? 0,
      flags: typeof f.flags === 'number' ? f.flags : 0,
      decimals: f.decimals,
      length: f.columnLength ?? f.length ?? 0,
      format: f.extendedFormat ?? null,
    })),
  };
}
