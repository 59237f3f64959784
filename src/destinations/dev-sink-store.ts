import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { AppError, toAppError } from '../core/errors.js';
import { parseQualifiedName, quoteIdent } from '../core/identifiers.js';
import { objectMembers } from '../core/json-scan.js';

/**
 * The dev sink's storage: one DuckDB table per target, columns grown from the keys of the rows it receives.
 *
 * Invariant: no value goes through `JSON.parse` on its way in. Rows arrive as raw JSON texts and DuckDB's own JSON
 * reader parses each value by the column's declared type, so 20-digit integers and long decimal strings are stored
 * exactly. Values that must be kept as text (JSON columns, numbers in VARCHAR columns) are handed over as a JSON
 * string holding their raw text, because DuckDB's reader would otherwise re-serialise them (`1.10` → `1.1`).
 */

/** The types this store creates. A table made by someone else may hold other types; they are left alone. */
export type ColumnType = 'VARCHAR' | 'BIGINT' | 'HUGEINT' | 'DOUBLE' | 'BOOLEAN' | 'JSON';

/** Columns the store adds to every row; a row key with one of these names is dropped. */
export const RECEIVED_AT = '_received_at';
export const REQUEST_ID = '_request_id';
const RESERVED = new Set([RECEIVED_AT, REQUEST_ID]);

export interface Target {
  schema: string;
  table: string;
  /** `"schema"."table"` for SQL. */
  sql: string;
  /** DuckDB compares identifiers case-insensitively, so this is the key of a table's cached shape. */
  key: string;
}

/** Parses `schema.table` (quotes allowed); anything else is CONFIG_INVALID. */
export function parseTarget(name: string): Target {
  const parts = parseQualifiedName(name);
  if (parts.length !== 2) throw new AppError('CONFIG_INVALID', `table ${name} must be "schema.table"`);
  const schema = parts[0]!.text;
  const table = parts[1]!.text;
  return { schema, table, sql: `${quoteIdent(schema)}.${quoteIdent(table)}`, key: `${schema.toLowerCase()}.${table.toLowerCase()}` };
}

export interface RowRejection {
  /** Index of the row in the `rows` given to `append`. */
  index: number;
  code: 'NOT_AN_OBJECT' | 'EMPTY_KEY' | 'KEY_CASE_COLLISION';
  message: string;
}

export interface AppendOptions {
  requestId?: string;
  /** @defaultValue now */
  receivedAt?: Date;
}

export interface AppendResult {
  stored: number;
  rejected: RowRejection[];
  /** Schema changes a client may want to know about (a widened column, a dropped reserved key). */
  warnings: string[];
  /** Increases by one with every committed append. */
  snapshotId: number;
}

/** `nonfinite` is the string `"NaN"`, `"Infinity"` or `"-Infinity"`: how pushsync sends a float8 that JSON cannot hold. */
type ValueKind = 'null' | 'string' | 'nonfinite' | 'int64' | 'int128' | 'float' | 'boolean' | 'nested';

interface Column {
  name: string;
  /** A ColumnType, or the name of a type this store did not create. */
  type: string;
  /** Whether the column holds a non-null value; undefined until asked (columns loaded from an existing file). */
  hasValues: boolean | undefined;
}

interface TableState {
  exists: boolean;
  /** By lower-cased name. */
  columns: Map<string, Column>;
}

interface RowValue {
  /** Lower-cased key: the column it goes to. */
  column: string;
  /** The key as the row spells it; names a new column. */
  name: string;
  raw: string;
  kind: ValueKind;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT128_MIN = -(2n ** 127n);
const INT128_MAX = 2n ** 127n - 1n;
const INTEGER = /^-?\d+$/;
const NONFINITE = new Set(['"NaN"', '"Infinity"', '"-Infinity"']);

/** The JSON kind of a raw value text, from its first character; integers are sized from their digits. */
function kindOf(raw: string): ValueKind {
  switch (raw.charCodeAt(0)) {
    case 0x22:
      return NONFINITE.has(raw) ? 'nonfinite' : 'string';
    case 0x7b:
    case 0x5b:
      return 'nested';
    case 0x74:
    case 0x66:
      return 'boolean';
    case 0x6e:
      return 'null';
  }
  if (!INTEGER.test(raw)) return 'float';
  if (raw.length <= 18) return 'int64';
  const n = BigInt(raw);
  if (n >= INT64_MIN && n <= INT64_MAX) return 'int64';
  // An integer wider than HUGEINT can only be approximated; DOUBLE at least keeps its magnitude.
  return n >= INT128_MIN && n <= INT128_MAX ? 'int128' : 'float';
}

const FIRST_TYPE: Record<Exclude<ValueKind, 'null'>, ColumnType> = {
  string: 'VARCHAR',
  nonfinite: 'VARCHAR',
  int64: 'BIGINT',
  int128: 'HUGEINT',
  float: 'DOUBLE',
  boolean: 'BOOLEAN',
  nested: 'JSON',
};

/**
 * The narrowest type that holds both what the column holds and a value of `kind`. Integer columns widen to
 * HUGEINT or DOUBLE (a float8 source column whose first value happened to be whole); any other mix falls back to
 * VARCHAR, which holds every value's raw text. A float column keeps its type through NaN and ±Infinity.
 */
function widen(type: string, kind: ValueKind): string {
  if (kind === 'null' || type === 'VARCHAR' || type === 'JSON') return type;
  const numeric = kind === 'int64' || kind === 'int128' || kind === 'float' || kind === 'nonfinite';
  switch (type) {
    case 'BIGINT':
      return kind === 'int64' ? type : kind === 'int128' ? 'HUGEINT' : kind === 'float' || kind === 'nonfinite' ? 'DOUBLE' : 'VARCHAR';
    case 'HUGEINT':
      return kind === 'int64' || kind === 'int128' ? type : kind === 'float' || kind === 'nonfinite' ? 'DOUBLE' : 'VARCHAR';
    case 'DOUBLE':
      return numeric ? type : 'VARCHAR';
    case 'BOOLEAN':
      return kind === 'boolean' ? type : 'VARCHAR';
    default:
      // A type this store did not create: DuckDB casts the value's text at insert, or the append fails.
      return type;
  }
}

const NATIVE = new Set(['BIGINT', 'HUGEINT', 'DOUBLE', 'BOOLEAN']);

/** The value as it goes into the NDJSON file that DuckDB reads with `readType(type)`. */
function encodeValue(type: string, v: RowValue): string {
  if (v.kind === 'null' || NATIVE.has(type)) return v.raw;
  if ((v.kind === 'string' || v.kind === 'nonfinite') && type !== 'JSON') return v.raw;
  return JSON.stringify(v.raw);
}

/** What read_json is told a column holds: text for every column whose value must stay as written. */
function readType(type: string): string {
  return NATIVE.has(type) ? type : 'VARCHAR';
}

const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export class DevSinkStore {
  private readonly tablesByKey = new Map<string, TableState>();
  private tail: Promise<unknown> = Promise.resolve();
  private snapshot = 0;
  private closed = false;

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly scratchDir: string,
  ) {}

  /** Opens (or creates) a DuckDB file, or `:memory:`. Only one process may have a file open for writing. */
  static async open(path: string): Promise<DevSinkStore> {
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(path);
    } catch (err) {
      throw new AppError('INTERNAL', `cannot open DuckDB database ${path}: ${(err as Error).message}`, { cause: err });
    }
    const writer = await instance.connect();
    const scratchDir = await mkdtemp(join(tmpdir(), 'pushsync-devsink-'));
    return new DevSinkStore(instance, writer, scratchDir);
  }

  /**
   * Stores rows (raw JSON object texts) in the target table, creating the schema, the table and new columns as
   * needed. Appends run one at a time so that two requests never race on the same table's schema.
   */
  append(target: string, rows: readonly string[], options: AppendOptions = {}): Promise<AppendResult> {
    const run = this.tail.then(() => this.appendNow(parseTarget(target), rows, options));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Runs SQL on its own connection. Values come back JSON-safe: BIGINT, HUGEINT, DECIMAL and times as strings. */
  async query(sql: string): Promise<Record<string, unknown>[]> {
    if (this.closed) throw new AppError('INTERNAL', 'the dev sink store is closed');
    const conn = await this.instance.connect();
    try {
      const reader = await conn.runAndReadAll(sql);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    } finally {
      conn.closeSync();
    }
  }

  /** Every stored table as `schema.table`, sorted. */
  async tables(): Promise<string[]> {
    const rows = await this.query('SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1, 2');
    return rows.map((r) => `${String(r.schema_name)}.${String(r.table_name)}`);
  }

  /** Waits for pending appends, then releases the file so another process (or store) can open it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    this.writer.closeSync();
    this.instance.closeSync();
    await rm(this.scratchDir, { recursive: true, force: true });
  }

  private async appendNow(target: Target, rows: readonly string[], options: AppendOptions): Promise<AppendResult> {
    if (this.closed) throw new AppError('INTERNAL', 'the dev sink store is closed');
    const warnings: string[] = [];
    const { accepted, rejected } = splitRows(rows, warnings);
    if (accepted.length === 0) return { stored: 0, rejected, warnings, snapshotId: this.snapshot };

    const state = await this.tableState(target);
    try {
      await this.writer.run('BEGIN TRANSACTION');
      const batchColumns = await this.evolve(target, state, accepted, warnings);
      await this.insert(target, state, batchColumns, accepted, options);
      await this.writer.run('COMMIT');
    } catch (err) {
      await this.writer.run('ROLLBACK').catch(() => undefined);
      // The cached shape may describe DDL that was just rolled back: read it again next time.
      this.tablesByKey.delete(target.key);
      throw toAppError(err);
    }
    for (const row of accepted) {
      for (const v of row) if (v.kind !== 'null') state.columns.get(v.column)!.hasValues = true;
    }
    this.snapshot += 1;
    return { stored: accepted.length, rejected, warnings, snapshotId: this.snapshot };
  }

  private async tableState(target: Target): Promise<TableState> {
    const cached = this.tablesByKey.get(target.key);
    if (cached) return cached;
    const reader = await this.writer.runAndReadAll(
      `SELECT column_name, data_type FROM information_schema.columns
       WHERE table_catalog = current_database() AND lower(table_schema) = lower($1) AND lower(table_name) = lower($2)
       ORDER BY ordinal_position`,
      [target.schema, target.table],
    );
    const columns = new Map<string, Column>();
    for (const r of reader.getRowObjectsJson()) {
      const name = String(r.column_name);
      if (!RESERVED.has(name.toLowerCase())) columns.set(name.toLowerCase(), { name, type: String(r.data_type), hasValues: undefined });
    }
    const state: TableState = { exists: reader.currentRowCount > 0, columns };
    this.tablesByKey.set(target.key, state);
    return state;
  }

  /**
   * Creates the table or adds and widens columns so that every value of the batch fits. Returns the lower-cased
   * names of the columns the batch uses, in first-seen order.
   */
  private async evolve(target: Target, state: TableState, rows: RowValue[][], warnings: string[]): Promise<string[]> {
    const planned = new Map<string, { name: string; type: string | undefined; seen: boolean }>();
    for (const row of rows) {
      for (const v of row) {
        const existing = state.columns.get(v.column);
        let plan = planned.get(v.column);
        if (!plan) {
          plan = { name: existing?.name ?? v.name, type: existing?.type, seen: false };
          planned.set(v.column, plan);
        }
        if (v.kind === 'null') continue;
        if (!plan.seen) {
          plan.seen = true;
          // A column created from nulls only is VARCHAR by default, not by content: its first real value decides.
          if (existing?.type === 'VARCHAR' && FIRST_TYPE[v.kind] !== 'VARCHAR' && !(await this.hasValues(target, existing))) plan.type = undefined;
        }
        plan.type = plan.type === undefined ? FIRST_TYPE[v.kind] : widen(plan.type, v.kind);
      }
    }

    await this.writer.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
    if (!state.exists) {
      const defs = [...planned.values()].map((p) => `${quoteIdent(p.name)} ${p.type ?? 'VARCHAR'}`);
      defs.push(`${quoteIdent(RECEIVED_AT)} TIMESTAMPTZ`, `${quoteIdent(REQUEST_ID)} VARCHAR`);
      await this.writer.run(`CREATE TABLE ${target.sql} (${defs.join(', ')})`);
      for (const [key, plan] of planned) state.columns.set(key, { name: plan.name, type: plan.type ?? 'VARCHAR', hasValues: false });
      state.exists = true;
      return [...planned.keys()];
    }
    for (const [key, plan] of planned) {
      const existing = state.columns.get(key);
      if (!existing) {
        const type = plan.type ?? 'VARCHAR';
        await this.writer.run(`ALTER TABLE ${target.sql} ADD COLUMN ${quoteIdent(plan.name)} ${type}`);
        state.columns.set(key, { name: plan.name, type, hasValues: false });
      } else if (plan.type !== undefined && plan.type !== existing.type) {
        await this.writer.run(`ALTER TABLE ${target.sql} ALTER COLUMN ${quoteIdent(existing.name)} TYPE ${plan.type}`);
        if (existing.hasValues !== false) {
          warnings.push(`column ${existing.name} of ${target.schema}.${target.table} widened from ${existing.type} to ${plan.type}`);
        }
        existing.type = plan.type;
      }
    }
    return [...planned.keys()];
  }

  private async hasValues(target: Target, column: Column): Promise<boolean> {
    if (column.hasValues !== undefined) return column.hasValues;
    const reader = await this.writer.runAndReadAll(`SELECT count(${quoteIdent(column.name)}) AS n FROM ${target.sql}`);
    column.hasValues = String(reader.getRowObjectsJson()[0]?.n ?? '0') !== '0';
    return column.hasValues;
  }

  private async insert(target: Target, state: TableState, batchColumns: string[], rows: RowValue[][], options: AppendOptions): Promise<void> {
    const position = new Map(batchColumns.map((c, i) => [c, i]));
    const lines = rows.map((row) => {
      const parts = row.map((v) => `"c${position.get(v.column)!}":${encodeValue(state.columns.get(v.column)!.type, v)}`);
      return `{${parts.join(',')}}`;
    });
    const receivedAt = (options.receivedAt ?? new Date()).toISOString();
    const meta = `TIMESTAMPTZ ${literal(receivedAt)}, ${options.requestId === undefined ? 'NULL' : literal(options.requestId)}`;
    const names = batchColumns.map((c) => quoteIdent(state.columns.get(c)!.name));
    names.push(quoteIdent(RECEIVED_AT), quoteIdent(REQUEST_ID));

    if (batchColumns.length === 0) {
      await this.writer.run(`INSERT INTO ${target.sql} (${names.join(', ')}) SELECT ${meta} FROM range(${rows.length})`);
      return;
    }
    const file = join(this.scratchDir, `${randomUUID()}.ndjson`);
    const text = `${lines.join('\n')}\n`;
    const longest = lines.reduce((max, l) => Math.max(max, Buffer.byteLength(l)), 0);
    const columns = batchColumns.map((c, i) => `'c${i}': ${literal(readType(state.columns.get(c)!.type))}`);
    await writeFile(file, text);
    try {
      await this.writer.run(
        `INSERT INTO ${target.sql} (${names.join(', ')})
         SELECT ${batchColumns.map((_, i) => `c${i}`).join(', ')}, ${meta}
         FROM read_json(${literal(file)}, format = 'newline_delimited', columns = {${columns.join(', ')}},
                        maximum_object_size = ${Math.max(longest + 1024, 16 * 1024 * 1024)})`,
      );
    } finally {
      await unlink(file).catch(() => undefined);
    }
  }
}

/** Splits raw rows into their values, rejecting rows whose keys cannot become DuckDB columns. */
function splitRows(rows: readonly string[], warnings: string[]): { accepted: RowValue[][]; rejected: RowRejection[] } {
  const accepted: RowValue[][] = [];
  const rejected: RowRejection[] = [];
  const dropped = new Set<string>();
  rows.forEach((text, index) => {
    if (text.trimStart().charCodeAt(0) !== 0x7b) {
      rejected.push({ index, code: 'NOT_AN_OBJECT', message: 'row is not a JSON object' });
      return;
    }
    const values = new Map<string, RowValue>();
    for (const m of objectMembers(text)) {
      const name = JSON.parse(m.rawKey) as string;
      const column = name.toLowerCase();
      if (name === '') {
        rejected.push({ index, code: 'EMPTY_KEY', message: 'row has an empty key, which cannot name a column' });
        return;
      }
      if (RESERVED.has(column)) {
        dropped.add(name);
        continue;
      }
      const prior = values.get(column);
      if (prior && prior.name !== name) {
        rejected.push({
          index,
          code: 'KEY_CASE_COLLISION',
          message: `keys ${prior.name} and ${name} differ only in case, which DuckDB column names cannot`,
        });
        return;
      }
      // A repeated key keeps its last value, as JSON.parse does.
      const raw = text.slice(m.valueStart, m.valueEnd);
      values.set(column, { column, name, raw, kind: kindOf(raw) });
    }
    accepted.push([...values.values()]);
  });
  if (dropped.size > 0) warnings.push(`row keys ${[...dropped].join(', ')} are set by the dev sink itself; the values the rows carried were dropped`);
  return { accepted, rejected };
}
