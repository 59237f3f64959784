import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '../core/errors.js';
import type { DevSinkStore } from './dev-sink-store.js';

/**
 * Looking at what the dev sink stored while it runs (DuckDB lets only the process holding the file open it):
 * read-only SQL and a Parquet export, served by the sink itself on `POST /query` and `POST /export`, to loopback
 * clients with the sink's API key. Used by `pushsync dev-sink query` and `pushsync dev-sink export`.
 *
 * Read-only is checked on DuckDB's own parse tree, strictly: exactly one SELECT (DuckDB serialises nothing else),
 * reading only tables and views of the sink's database (or the query's own CTEs): no table functions (read_csv,
 * read_parquet, glob, query …), no file names in FROM (DuckDB's replacement scans), no other catalogs, and none
 * of the scalar functions that reach outside the database.
 */
export const QUERY_PATH = '/query';
export const EXPORT_PATH = '/export';

/** Largest SQL text accepted. */
const MAX_SQL_BYTES = 64 * 1024;
/** Rows a query answers with at most; the answer says when it stopped there. */
export const MAX_QUERY_ROWS = 10_000;

const OUTSIDE_FUNCTIONS = new Set([
  'getenv',
  'current_setting',
  'read_text',
  'read_blob',
  'query',
  'query_table',
  'sql_auto_complete',
  'nextval',
  'setval',
]);

const refused = (why: string): AppError =>
  new AppError('DEST_REJECTED', `query refused: ${why}`, { details: { status: 400, reason: 'QUERY_REFUSED' } });

type Node = Record<string, unknown>;
const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Reference {
  catalog: string;
  schema: string;
  table: string;
}

/** Walks a serialised statement: the tables it reads, the CTE names it defines; throws on what is not allowed. */
function walk(v: unknown, refs: Reference[], ctes: Set<string>): void {
  if (Array.isArray(v)) {
    for (const x of v) walk(x, refs, ctes);
    return;
  }
  if (!isNode(v)) return;
  if (v.type === 'TABLE_FUNCTION') {
    const fn = isNode(v.function) ? String(v.function.function_name) : '?';
    throw refused(`table function ${fn} reads outside the sink's tables`);
  }
  if (v.type === 'BASE_TABLE') {
    refs.push({ catalog: String(v.catalog_name ?? ''), schema: String(v.schema_name ?? ''), table: String(v.table_name ?? '') });
  }
  if (v.class === 'FUNCTION' && OUTSIDE_FUNCTIONS.has(String(v.function_name).toLowerCase())) {
    throw refused(`function ${String(v.function_name)} reads outside the database`);
  }
  if (isNode(v.cte_map) && Array.isArray(v.cte_map.map)) {
    for (const e of v.cte_map.map) if (isNode(e) && typeof e.key === 'string') ctes.add(e.key.toLowerCase());
  }
  for (const child of Object.values(v)) walk(child, refs, ctes);
}

/** Throws QUERY_REFUSED unless `sql` is one read-only SELECT over the sink's own tables and views. */
export async function checkReadOnly(store: DevSinkStore, sql: string): Promise<void> {
  if (sql.trim() === '') throw refused('empty SQL');
  const [row] = await store.query(`SELECT json_serialize_sql(${sqlString(sql)}) AS tree`);
  const tree = JSON.parse(String(row?.tree)) as { error?: boolean; error_message?: string; statements?: unknown[] };
  if (tree.error) {
    const why = tree.error_message ?? 'unreadable';
    throw refused(why.includes('Only SELECT') ? 'only a single SELECT is allowed (no writes, ATTACH, COPY, INSTALL, PRAGMA or SET)' : why);
  }
  if (!Array.isArray(tree.statements) || tree.statements.length !== 1) throw refused('exactly one statement is allowed');
  const refs: Reference[] = [];
  const ctes = new Set<string>();
  walk(tree.statements, refs, ctes);
  const known = new Set(
    (
      await store.query(
        `SELECT schema_name, table_name AS name FROM duckdb_tables() WHERE database_name = current_database() AND NOT internal
         UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal`,
      )
    ).map((r) => `${String(r.schema_name).toLowerCase()}.${String(r.name).toLowerCase()}`),
  );
  const [db] = await store.query('SELECT current_database() AS name');
  for (const r of refs) {
    if (r.catalog !== '' && r.catalog.toLowerCase() !== String(db?.name).toLowerCase()) throw refused(`catalog ${r.catalog} is not the sink's`);
    const table = r.table.toLowerCase();
    if (r.schema === '' && ctes.has(table)) continue;
    if (!known.has(`${(r.schema || 'main').toLowerCase()}.${table}`)) {
      throw refused(`${r.schema ? `${r.schema}.` : ''}${r.table} is not a table or view of the sink (files and other sources cannot be read)`);
    }
  }
}

const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const sqlIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;

export interface QueryAnswer {
  columns: string[];
  rows: Record<string, unknown>[];
  /** True when the result had more than MAX_QUERY_ROWS rows and the answer stops there. */
  truncated: boolean;
}

/** Runs one read-only SELECT (checkReadOnly first). Values come back JSON-safe (BIGINT, DECIMAL, times as text). */
export async function readOnlyQuery(store: DevSinkStore, sql: string): Promise<QueryAnswer> {
  // What is checked is exactly what runs: the statement inside the row limit.
  const wrapped = `SELECT * FROM (\n${sql.trim().replace(/;\s*$/, '')}\n) AS q LIMIT ${MAX_QUERY_ROWS + 1}`;
  await checkReadOnly(store, sql);
  await checkReadOnly(store, wrapped);
  let rows: Record<string, unknown>[];
  try {
    rows = await store.query(wrapped);
  } catch (err) {
    throw new AppError('DEST_REJECTED', `query failed: ${(err as Error).message}`, { details: { status: 400, reason: 'QUERY_FAILED' } });
  }
  const truncated = rows.length > MAX_QUERY_ROWS;
  const kept = truncated ? rows.slice(0, MAX_QUERY_ROWS) : rows;
  return { columns: Object.keys(kept[0] ?? {}), rows: kept, truncated };
}

/** Writes every stored table to `<dir>/<schema>.<table>.parquet`; returns the files with their row counts. */
export async function exportParquet(store: DevSinkStore, dir: string): Promise<Array<{ table: string; file: string; rows: number }>> {
  if (!isAbsolute(dir)) throw refused(`export directory ${dir} must be an absolute path`);
  await mkdir(dir, { recursive: true });
  const out: Array<{ table: string; file: string; rows: number }> = [];
  for (const table of await store.tables()) {
    const [schema, name] = table.split('.', 2) as [string, string];
    const file = join(resolve(dir), `${table}.parquet`);
    await store.query(`COPY (SELECT * FROM ${sqlIdent(schema)}.${sqlIdent(name)}) TO ${sqlString(file)} (FORMAT parquet)`);
    const [count] = await store.query(`SELECT count(*)::BIGINT AS n FROM ${sqlIdent(schema)}.${sqlIdent(name)}`);
    out.push({ table, file, rows: Number(count?.n ?? 0) });
  }
  return out;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

function readSmallBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_SQL_BYTES) chunks.push(c);
    });
    req.on('end', () =>
      size > MAX_SQL_BYTES ? reject(refused(`body over ${MAX_SQL_BYTES} bytes`)) : resolvePromise(Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/**
 * Serves `POST /query` (body: the SQL) and `POST /export` (body: `{"parquet": "<absolute dir>"}`) when the path is
 * one of them; returns false otherwise. Only loopback clients, only with the sink's API key (`authorized`).
 */
export async function serveInspection(req: IncomingMessage, res: ServerResponse, store: DevSinkStore, authorize: () => void): Promise<boolean> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== QUERY_PATH && path !== EXPORT_PATH) return false;
  if (!LOOPBACK.has(req.socket.remoteAddress ?? '')) {
    send(res, 403, { success: false, errors: [{ code: 'LOOPBACK_ONLY', message: `${path} answers only on this machine (loopback)` }] });
    return true;
  }
  if (req.method !== 'POST') {
    send(res, 405, { success: false, errors: [{ code: 'METHOD_NOT_ALLOWED', message: 'use POST' }] });
    return true;
  }
  authorize();
  const body = await readSmallBody(req);
  if (path === QUERY_PATH) {
    send(res, 200, { success: true, ...(await readOnlyQuery(store, body)) });
  } else {
    let dir: unknown;
    try {
      dir = (JSON.parse(body) as { parquet?: unknown }).parquet;
    } catch {
      dir = undefined;
    }
    if (typeof dir !== 'string') throw refused('send {"parquet": "<absolute directory>"}');
    send(res, 200, { success: true, files: await exportParquet(store, dir) });
  }
  return true;
}
