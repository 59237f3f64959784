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

export async function queryRows(db: pg.Pool | pg.ClientBase, q: Query): Promise<string[][]> {
  const config: ExtendedQuery = { text: q.text, values: q.values, rowMode: 'array', queryMode: 'extended' };
  const result = await db.query(config);
  return result.rows as string[][];
}

/**
 * As `queryRows`, handing each row to `each` as the server sends it (nothing is collected); resolves to the row count.
 * A throw from `each` stops the rows reaching it and rejects once the statement has ended, the connection intact.
 */
export async function queryEach(pool: pg.Pool, q: Query, each: (row: string[]) => void): Promise<number> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    return await eachRow(client, q, each);
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

function eachRow(client: pg.ClientBase, q: Query, each: (row: string[]) => void): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let count = 0;
    let thrown: RowHandlerError | undefined;
    const config: ExtendedQuery = { text: q.text, values: q.values, rowMode: 'array', queryMode: 'extended' };
    const query = new pg.Query(config);
    query.on('row', (row: string[]) => {
      if (thrown) return;
      count += 1;
      try {
        each(row);
      } catch (err) {
        thrown = new RowHandlerError(err);
      }
    });
    query.on('error', reject);
    query.on('end', () => (thrown ? reject(thrown) : resolve(count)));
    void client.query(query);
  });
}

/** As `queryRows`, with rows as objects keyed by column name (catalog and administration queries). */
export async function queryObjects(db: pg.Pool | pg.ClientBase, q: Query): Promise<Array<Record<string, unknown>>> {
  const config: pg.QueryConfig & { queryMode: 'extended' } = { text: q.text, values: q.values, queryMode: 'extended' };
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
export async function queryRowsIsolated(pool: pg.Pool, q: Query): Promise<string[][]> {
  return (await isolated(pool, q)).rows as string[][];
}

/** The result columns of a statement carrying configured SQL (run like `queryRowsIsolated`; add `LIMIT 0`). */
export async function queryFieldsIsolated(pool: pg.Pool, q: Query): Promise<ResultField[]> {
  return (await isolated(pool, q)).fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID, typeModifier: f.dataTypeModifier }));
}

/** As `queryRowsIsolated`, handing each row to `each` as `queryEach` does. */
export async function queryEachIsolated(pool: pg.Pool, q: Query, each: (row: string[]) => void): Promise<number> {
  return inReadOnly(pool, async (client) => {
    try {
      return await eachRow(client, q, each);
    } catch (err) {
      throw err instanceof RowHandlerError ? err.thrown : err;
    }
  });
}

async function isolated(pool: pg.Pool, q: Query): Promise<pg.QueryArrayResult> {
  return inReadOnly(pool, (client) => {
    const config: ExtendedQuery = { text: q.text, values: q.values, rowMode: 'array', queryMode: 'extended' };
    return client.query(config);
  });
}

async function inReadOnly<T>(pool: pg.Pool, run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let reusable = false;
  try {
    await queryRows(client, BEGIN_READ_ONLY);
    try {
      return await run(client);
    } finally {
      await queryRows(client, ROLLBACK);
      reusable = true;
    }
  } finally {
    // A connection whose transaction could not be ended is closed, never handed to the next statement.
    client.release(!reusable);
  }
}
