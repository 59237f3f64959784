import pg from 'pg';
import type { Query } from './postgres-sql.js';

/**
 * The only place the Postgres source hands SQL to the driver.
 *
 * Invariant: every statement goes over the extended query protocol (Parse/Bind/Execute), where Postgres accepts
 * exactly one statement per text and refuses more with SQLSTATE 42601. node-postgres picks the simple protocol, which
 * runs any number of `;`-separated statements, for a query without parameters (an empty `values` array included)
 * unless `queryMode: 'extended'` is set. The statement stays unnamed: named statements are cached per connection.
 */
type ExtendedQuery = pg.QueryArrayConfig & { queryMode: 'extended' };

/** How long past its statement timeout a statement's answer may take before the connection is taken for dead. */
export const ANSWER_GRACE_MS = 30_000;

/**
 * Startup options that make the server's text forms exact and the same on every connection: UTC offsets (`+00`), ISO
 * dates, shortest exact floats. The replication connection needs them as much as the reading one: the key values in
 * its change messages are text in its own session's forms, and a key must be spelled as the rows read by key spell
 * it (filter ledgers and change jobs compare keys by their text).
 */
export const TEXT_FORM_OPTIONS = '-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=1';

/**
 * The connection string and startup options of a connection that must start with `options`. node-postgres lets an
 * `options` parameter of the URL (`?options=-c search_path=app`, a pooler's `endpoint=…`) replace the configured one
 * entirely; such a URL gets `options` appended to its own instead, so both hold and pushsync's settings come last,
 * where the server lets them win.
 */
export function withStartupOptions(url: string, options: string): { connectionString: string; options?: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { connectionString: url, options };
  }
  const own = parsed.searchParams.get('options');
  if (own === null || own.trim() === '') return { connectionString: url, options };
  parsed.searchParams.set('options', `${own} ${options}`);
  return { connectionString: parsed.toString() };
}

/** TCP keepalive probes start after this long without traffic: a connection to a host that is gone ends. */
const KEEPALIVE_DELAY_MS = 10_000;

/**
 * Client settings against a connection that stops answering without a reset (a network partition, a host that
 * died): TCP keepalive, a connect timeout, and the server-side statement timeout (`statementTimeoutMs`, 0: none).
 * The client-side bound on one query is `answerBound`, passed with each query: node-postgres' pool-wide
 * `query_timeout` would give every query a callback, and a query with a callback keeps all its rows in memory and
 * reports its error to that callback only, so a streamed read (queryEach) would collect every row and never fail.
 */
export function connectionSafety(statementTimeoutMs: number): pg.ClientConfig {
  return {
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    connectionTimeoutMillis: 10_000,
    ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
  };
}

/**
 * How long a query may wait for its answer, in ms (0: forever). A server that answers ends a statement at
 * `statementTimeoutMs` itself, so a query still unanswered `graceMs` later can only be waiting on a dead
 * connection: no legitimate statement is cut. It then fails ('Query read timeout': a retryable
 * SOURCE_UNAVAILABLE) and its connection is closed, never reused.
 */
export function answerBound(statementTimeoutMs: number, graceMs = ANSWER_GRACE_MS): number {
  return statementTimeoutMs > 0 ? statementTimeoutMs + graceMs : 0;
}

const UNANSWERED = 'Query read timeout';

/** The query was given up on: no answer within its bound (node-postgres' query_timeout, or eachRow's own). */
export function unanswered(err: unknown): boolean {
  return err instanceof Error && err.message === UNANSWERED;
}

/** `timeoutMs`: see answerBound; 0: none. */
function extended(q: Query, timeoutMs: number): ExtendedQuery & { query_timeout?: number } {
  return { text: q.text, values: q.values, rowMode: 'array', queryMode: 'extended', ...(timeoutMs > 0 ? { query_timeout: timeoutMs } : {}) };
}

export async function queryRows(db: pg.Pool | pg.ClientBase, q: Query, timeoutMs = 0): Promise<string[][]> {
  const result = await db.query(extended(q, timeoutMs));
  return result.rows as string[][];
}

/**
 * As `queryRows`, handing each row to `each` as the server sends it (nothing is collected); resolves to the row count.
 * A throw from `each` stops the rows reaching it and rejects once the statement has ended, the connection intact.
 */
export async function queryEach(pool: pg.Pool, q: Query, each: (row: string[]) => void, timeoutMs = 0): Promise<number> {
  return eachOnPooled(pool, rowsQuery(q), each, timeoutMs);
}

/** `eachRow` on a connection of the pool, released when the statement has ended (closed when it failed). */
async function eachOnPooled<R>(
  pool: pg.Pool,
  make: (onRow: (row: R) => void) => pg.Query,
  each: (row: R) => void,
  timeoutMs: number,
): Promise<number> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    return await eachRow(client, make, each, timeoutMs);
  } catch (err) {
    // As pool.query does, a connection whose statement failed is closed; one whose rows' handler threw is fine.
    if (!(err instanceof RowHandlerError)) broken = err instanceof Error ? err : new Error(String(err));
    throw err instanceof RowHandlerError ? err.thrown : err;
  } finally {
    client.release(broken);
  }
}

class RowHandlerError extends Error {
  constructor(readonly thrown: unknown) {
    super('a row handler threw');
  }
}

/** The statement that hands its rows to `onRow`: a `pg.Query` of `q`'s text and values, or a CopyOutQuery. */
function rowsQuery(q: Query): (onRow: (row: string[]) => void) => pg.Query {
  return (onRow) => {
    const query = new pg.Query(extended(q, 0));
    query.on('row', onRow);
    return query;
  };
}

function eachRow<R>(client: pg.ClientBase, make: (onRow: (row: R) => void) => pg.Query, each: (row: R) => void, timeoutMs: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let count = 0;
    let thrown: RowHandlerError | undefined;
    // Its own bound, not query_timeout (see connectionSafety); the caller closes the connection it gives up on.
    const timer = timeoutMs > 0 ? setTimeout(() => reject(new Error(UNANSWERED)), timeoutMs) : undefined;
    const query = make((row) => {
      if (thrown) return;
      count += 1;
      try {
        each(row);
      } catch (err) {
        thrown = new RowHandlerError(err);
      }
    });
    query.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    query.on('end', () => {
      clearTimeout(timer);
      if (thrown) reject(thrown);
      else resolve(count);
    });
    void client.query(query);
  });
}

/**
 * A `COPY … TO STDOUT` statement over the extended protocol, like every other statement (one statement per text),
 * its rows handed to `each` as the server sends them: one Buffer per row, COPY's text format with its newline, valid
 * only during the call. node-postgres hands a query the CopyData messages of its statement, and ignores them in
 * its own Query; here they are the rows.
 */
class CopyOutQuery extends pg.Query {
  constructor(
    text: string,
    private readonly onRow: (line: Buffer) => void,
  ) {
    super({ text, values: [], rowMode: 'array', queryMode: 'extended' } as ExtendedQuery);
  }

  /** Called by node-postgres for each CopyData message (not in its typings). */
  handleCopyData(message: { chunk: Buffer }): void {
    this.onRow(message.chunk);
  }
}

/** As `queryEach` for a `COPY … TO STDOUT` statement (see CopyOutQuery); resolves to the row count. */
export async function copyEach(pool: pg.Pool, text: string, each: (line: Buffer) => void, timeoutMs = 0): Promise<number> {
  return eachOnPooled(pool, (onRow) => new CopyOutQuery(text, onRow), each, timeoutMs);
}

/** As `queryRows`, with rows as objects keyed by column name (catalog and administration queries). */
export async function queryObjects(db: pg.Pool | pg.ClientBase, q: Query, timeoutMs = 0): Promise<Array<Record<string, unknown>>> {
  const { rowMode: _, ...config } = extended(q, timeoutMs);
  const result = await db.query(config);
  return result.rows as Array<Record<string, unknown>>;
}

/** A result column as the server describes it. */
export interface ResultField {
  name: string;
  typeOid: number;
  typeModifier: number;
}

const BEGIN_READ_ONLY: Query = { text: 'BEGIN TRANSACTION READ ONLY', values: [] };
const ROLLBACK: Query = { text: 'ROLLBACK', values: [] };

/**
 * Runs a statement that carries configured SQL in a read-only transaction of its own that is then rolled back. A
 * read-only session default alone can be switched off by the statement (`set_config(…, false)`) for every later
 * statement on the connection; a rollback undoes such a change along with the transaction. Two extra round trips.
 */
export async function queryRowsIsolated(pool: pg.Pool, q: Query, timeoutMs = 0): Promise<string[][]> {
  return (await isolated(pool, q, timeoutMs)).rows as string[][];
}

/** The result columns of a statement carrying configured SQL (run like `queryRowsIsolated`; add `LIMIT 0`). */
export async function queryFieldsIsolated(pool: pg.Pool, q: Query, timeoutMs = 0): Promise<ResultField[]> {
  return (await isolated(pool, q, timeoutMs)).fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID, typeModifier: f.dataTypeModifier }));
}

/** As `queryRowsIsolated`, handing each row to `each` as `queryEach` does. */
export async function queryEachIsolated(pool: pg.Pool, q: Query, each: (row: string[]) => void, timeoutMs = 0): Promise<number> {
  return inReadOnly(pool, timeoutMs, async (client) => {
    try {
      return await eachRow(client, rowsQuery(q), each, timeoutMs);
    } catch (err) {
      throw err instanceof RowHandlerError ? err.thrown : err;
    }
  });
}

async function isolated(pool: pg.Pool, q: Query, timeoutMs: number): Promise<pg.QueryArrayResult> {
  return inReadOnly(pool, timeoutMs, (client) => client.query(extended(q, timeoutMs)));
}

async function inReadOnly<T>(pool: pg.Pool, timeoutMs: number, run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let reusable = false;
  try {
    await queryRows(client, BEGIN_READ_ONLY, timeoutMs);
    let result: T;
    try {
      result = await run(client);
    } catch (err) {
      // A statement left unanswered (connectionSafety): a ROLLBACK would wait behind it as long again.
      if (!unanswered(err)) {
        await queryRows(client, ROLLBACK, timeoutMs);
        reusable = true;
      }
      throw err;
    }
    await queryRows(client, ROLLBACK, timeoutMs);
    reusable = true;
    return result;
  } finally {
    // A connection whose transaction could not be ended is closed, never handed to the next statement.
    client.release(!reusable);
  }
}
