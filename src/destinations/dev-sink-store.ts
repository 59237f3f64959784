import { statSync } from 'node:fs';
import { DuckDBInstance, timestampTZValue, type DuckDBAppender, type DuckDBConnection, type DuckDBTimestampTZValue } from '@duckdb/node-api';
import { AppError, toAppError } from '../core/errors.js';
import { quoteIdent } from '../core/identifiers.js';
import { parseTarget, type Target } from './dev-sink-input.js';
import {
  KINDS,
  RECEIVED_AT,
  REQUEST_ID,
  RESERVED,
  isNullAt,
  joinRows,
  splitRows,
  stringAt,
  type Batch,
  type RowRejection,
  type ValueKind,
} from './dev-sink-rows.js';

export { RECEIVED_AT, REQUEST_ID, type RowRejection } from './dev-sink-rows.js';
export { parseTarget, type Target } from './dev-sink-input.js';

/**
 * The dev sink's storage: one DuckDB table per target, columns grown from the keys of the rows it receives.
 *
 * Invariant: no value goes through `JSON.parse` on its way in (only string literals, to unescape them). Rows arrive
 * as raw JSON texts; each value is handed to DuckDB's appender as text and DuckDB casts it to the column's type, so
 * 20-digit integers, long decimal strings and JSON values (whitespace and digits as written: `1.10` stays `1.10`)
 * are stored exactly. Rows go in through one appender per request, a batch append inside the request's transaction.
 */

/** The types this store creates. A table made by someone else may hold other types; they are left alone. */
export type ColumnType = 'VARCHAR' | 'BIGINT' | 'HUGEINT' | 'DOUBLE' | 'BOOLEAN' | 'JSON';

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

interface Column {
  name: string;
  /** A ColumnType, or the name of a type this store did not create. */
  type: string;
  /** Whether the column holds a non-null value; undefined until asked (columns loaded from an existing file). */
  hasValues: boolean | undefined;
}

interface TableState {
  exists: boolean;
  /** By lower-cased name, the store's reserved columns left out. */
  columns: Map<string, Column>;
  /** Lower-cased names of every column in table order, reserved ones included: the order the appender fills. */
  order: string[];
  /** Whether `_received_at` is TIMESTAMPTZ, as in every table this store creates: then it is appended as ISO text. */
  receivedAtIsTz: boolean;
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
export function widen(type: string, kind: ValueKind): string {
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

/**
 * DuckDB checkpoints (moves the write-ahead log into the database file, compressing as it goes) when the log reaches
 * this size. The default of 16 MB checkpoints every few requests and recompresses the table's last row group each
 * time, which cost more than the appends themselves; every commit is in the log (synced) either way.
 */
const CHECKPOINT_BYTES = 256 * 1024 * 1024;

export interface StoreOptions {
  /** The log size (bytes) at which DuckDB checkpoints. @defaultValue 256 MiB */
  checkpointBytes?: number;
}

/**
 * One append's progress, for the appends after it: `appended` settles when its rows are in its transaction (or it
 * failed), `committed` when its COMMIT is done (or it failed); `ddl` says whether it changed a table's shape.
 */
interface Turn {
  appended: Promise<void>;
  committed: Promise<void>;
  ddl: boolean;
}

const DONE: Turn = { appended: Promise.resolve(), committed: Promise.resolve(), ddl: false };

/** Where an append runs: its writer, its turn (and how to say its rows are in), and the turn before it. */
interface Place {
  writer: DuckDBConnection;
  turn: Turn;
  previous: Turn;
  appended: () => void;
}

export class DevSinkStore {
  private readonly tablesByKey = new Map<string, TableState>();
  private last: Turn = DONE;
  private beforeLast: Turn = DONE;
  private turns = 0;
  private snapshot = 0;
  private closed = false;

  /**
   * Two writers, used by turns in alternation: an append fills its transaction on one while the append before it
   * commits on the other (a COMMIT writes and syncs the log, and the appender would otherwise wait for it).
   */
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly writers: readonly [DuckDBConnection, DuckDBConnection],
    private readonly walPath: string | undefined,
    private readonly checkpointBytes: number,
  ) {}

  /** Opens (or creates) a DuckDB file, or `:memory:`. Only one process may have a file open for writing. */
  static async open(path: string, options: StoreOptions = {}): Promise<DevSinkStore> {
    const checkpointBytes = options.checkpointBytes ?? CHECKPOINT_BYTES;
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(path, { checkpoint_threshold: `${checkpointBytes}B` });
    } catch (err) {
      throw new AppError('INTERNAL', `cannot open DuckDB database ${path}: ${(err as Error).message}`, { cause: err });
    }
    const writers = [await instance.connect(), await instance.connect()] as const;
    const walPath = path === ':memory:' || path === '' ? undefined : `${path}.wal`;
    return new DevSinkStore(instance, writers, walPath, checkpointBytes);
  }

  /**
   * Stores rows (raw JSON object texts) in the target table, creating the schema, the table and new columns as
   * needed. Appends run one at a time so that two requests never race on the same table's schema.
   */
  append(target: string, rows: readonly string[], options: AppendOptions = {}): Promise<AppendResult> {
    let batch: Batch;
    try {
      const { text, rowStarts } = joinRows(rows);
      batch = splitRows(text, rowStarts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.appendBatch(Promise.resolve({ target, batch }), options);
  }

  /**
   * Stores a batch split elsewhere (the dev sink splits a request's rows on another thread), in the order of the
   * calls, not of the batches' arrival: a batch's turn is taken now. A batch that fails to arrive fails this append
   * only.
   *
   * Invariant: batches are committed in the order of the calls, each in its own transaction, so a table's rows are
   * in that order too. An append fills its transaction once the append before it has filled its own (and the one
   * before that, on the same writer, has committed), and commits once the append before it has committed. It waits
   * for the previous commit before it starts when either append changes a table's shape (DDL would conflict with
   * the other transaction, and the cached shape must describe committed tables), and while the log is over the
   * checkpoint threshold: DuckDB checkpoints only at a commit with no other transaction open.
   */
  appendBatch(ready: Promise<{ target: string; batch: Batch }>, options: AppendOptions = {}): Promise<AppendResult> {
    // Its failure is seen when its turn comes; until then it must not count as unhandled.
    ready.catch(() => undefined);
    const previous = this.last;
    const sameWriter = this.beforeLast;
    const writer = this.writers[this.turns++ % 2]!;
    let appended!: () => void;
    let committed!: () => void;
    const turn: Turn = {
      appended: new Promise((resolve) => (appended = resolve)),
      committed: new Promise((resolve) => (committed = resolve)),
      ddl: false,
    };
    this.beforeLast = previous;
    this.last = turn;
    return (async () => {
      try {
        await previous.appended;
        await sameWriter.committed;
        if (previous.ddl || this.logOverThreshold()) await previous.committed;
        const { target, batch } = await ready;
        return await this.appendNow(parseTarget(target), batch, options, { writer, turn, previous, appended });
      } finally {
        appended();
        committed();
      }
    })();
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
    await this.last.committed;
    for (const writer of this.writers) writer.closeSync();
    this.instance.closeSync();
  }

  /** Whether DuckDB's log has reached the size at which a commit checkpoints. */
  private logOverThreshold(): boolean {
    if (this.walPath === undefined) return false;
    try {
      return statSync(this.walPath).size >= this.checkpointBytes;
    } catch {
      return false;
    }
  }

  /** Invariant: the result (and so the 2xx answer) exists only once the rows are committed. */
  private async appendNow(target: Target, batch: Batch, options: AppendOptions, place: Place): Promise<AppendResult> {
    if (this.closed) throw new AppError('INTERNAL', 'the dev sink store is closed');
    const { rejected } = batch;
    const warnings: string[] = [];
    if (batch.dropped.length > 0) {
      warnings.push(`row keys ${batch.dropped.join(', ')} are set by the dev sink itself; the values the rows carried were dropped`);
    }
    const { writer, turn, previous } = place;
    if (batch.rows === 0) {
      await previous.committed;
      return { stored: 0, rejected, warnings, snapshotId: this.snapshot };
    }

    let state = await this.tableState(target, writer);
    let seen = kindsSeen(batch, state);
    if (mayChangeShape(batch, state, seen)) {
      turn.ddl = true;
      await previous.committed;
      // The append before may have failed and dropped the cached shape.
      state = await this.tableState(target, writer);
      seen = kindsSeen(batch, state);
    }
    try {
      await writer.run('BEGIN TRANSACTION');
      await this.evolve(target, state, batch, seen, warnings, writer);
      await this.insert(target, state, batch, options, writer);
      // Set before the commit, for the append that fills its transaction meanwhile; a failure drops the cache.
      batch.columns.forEach((c, slot) => {
        if (seen[slot]!.first !== undefined) state.columns.get(c.column)!.hasValues = true;
      });
      place.appended();
      await previous.committed;
      await writer.run('COMMIT');
    } catch (err) {
      await writer.run('ROLLBACK').catch(() => undefined);
      // The cached shape may describe DDL that was just rolled back: read it again next time.
      this.tablesByKey.delete(target.key);
      throw toAppError(err);
    }
    this.snapshot += 1;
    return { stored: batch.rows, rejected, warnings, snapshotId: this.snapshot };
  }

  private async tableState(target: Target, writer: DuckDBConnection): Promise<TableState> {
    const cached = this.tablesByKey.get(target.key);
    if (cached) return cached;
    const reader = await writer.runAndReadAll(
      `SELECT column_name, data_type FROM information_schema.columns
       WHERE table_catalog = current_database() AND lower(table_schema) = lower($1) AND lower(table_name) = lower($2)
       ORDER BY ordinal_position`,
      [target.schema, target.table],
    );
    const columns = new Map<string, Column>();
    const order: string[] = [];
    let receivedAtIsTz = false;
    for (const r of reader.getRowObjectsJson()) {
      const name = String(r.column_name);
      order.push(name.toLowerCase());
      if (name.toLowerCase() === RECEIVED_AT) receivedAtIsTz = String(r.data_type) === 'TIMESTAMP WITH TIME ZONE';
      if (!RESERVED.has(name.toLowerCase())) columns.set(name.toLowerCase(), { name, type: String(r.data_type), hasValues: undefined });
    }
    const state: TableState = { exists: reader.currentRowCount > 0, columns, order, receivedAtIsTz };
    this.tablesByKey.set(target.key, state);
    return state;
  }

  /** Creates the table or adds and widens columns so that every value of the batch fits. */
  private async evolve(
    target: Target,
    state: TableState,
    batch: Batch,
    seen: readonly KindsSeen[],
    warnings: string[],
    writer: DuckDBConnection,
  ): Promise<void> {
    const planned: { name: string; type: string | undefined }[] = [];
    for (const [slot, c] of batch.columns.entries()) {
      const existing = state.columns.get(c.column);
      const { first, fromFirst, fromExisting } = seen[slot]!;
      let type = existing?.type;
      if (first !== undefined) {
        // A column created from nulls only is VARCHAR by default, not by content: its first real value decides.
        const restart = existing?.type === 'VARCHAR' && FIRST_TYPE[first] !== 'VARCHAR' && !(await this.hasValues(target, existing, writer));
        type = existing === undefined || restart ? fromFirst : fromExisting;
      }
      planned.push({ name: existing?.name ?? c.name, type });
    }

    if (!state.exists) {
      await writer.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
      const defs = planned.map((p) => `${quoteIdent(p.name)} ${p.type ?? 'VARCHAR'}`);
      defs.push(`${quoteIdent(RECEIVED_AT)} TIMESTAMPTZ`, `${quoteIdent(REQUEST_ID)} VARCHAR`);
      await writer.run(`CREATE TABLE ${target.sql} (${defs.join(', ')})`);
      batch.columns.forEach((c, slot) =>
        state.columns.set(c.column, { name: planned[slot]!.name, type: planned[slot]!.type ?? 'VARCHAR', hasValues: false }),
      );
      state.order = [...batch.columns.map((c) => c.column), RECEIVED_AT, REQUEST_ID];
      state.receivedAtIsTz = true;
      state.exists = true;
      return;
    }
    for (const [slot, c] of batch.columns.entries()) {
      const plan = planned[slot]!;
      const existing = state.columns.get(c.column);
      if (!existing) {
        const type = plan.type ?? 'VARCHAR';
        await writer.run(`ALTER TABLE ${target.sql} ADD COLUMN ${quoteIdent(plan.name)} ${type}`);
        state.columns.set(c.column, { name: plan.name, type, hasValues: false });
        state.order.push(c.column);
      } else if (plan.type !== undefined && plan.type !== existing.type) {
        await writer.run(`ALTER TABLE ${target.sql} ALTER COLUMN ${quoteIdent(existing.name)} TYPE ${plan.type}`);
        if (existing.hasValues !== false) {
          warnings.push(`column ${existing.name} of ${target.schema}.${target.table} widened from ${existing.type} to ${plan.type}`);
        }
        existing.type = plan.type;
      }
    }
  }

  private async hasValues(target: Target, column: Column, writer: DuckDBConnection): Promise<boolean> {
    if (column.hasValues !== undefined) return column.hasValues;
    const reader = await writer.runAndReadAll(`SELECT count(${quoteIdent(column.name)}) AS n FROM ${target.sql}`);
    column.hasValues = String(reader.getRowObjectsJson()[0]?.n ?? '0') !== '0';
    return column.hasValues;
  }

  /**
   * Appends the batch in table order through one appender, inside the caller's transaction. Each value goes in as
   * text: a string's content, anything else its JSON text; DuckDB casts it to the column's type (an integer text
   * to BIGINT or HUGEINT, `"NaN"` to a DOUBLE, a nested value's exact text to JSON).
   */
  private async insert(target: Target, state: TableState, batch: Batch, options: AppendOptions, writer: DuckDBConnection): Promise<void> {
    const slots = new Map(batch.columns.map((c, slot) => [c.column, slot]));
    // Per table column: the batch slot feeding it (-1: not in the batch, so its DEFAULT), and whether it is JSON.
    const feed = state.order.map((column) => slots.get(column) ?? -1);
    const json = state.order.map((column) => state.columns.get(column)?.type === 'JSON');
    const at = options.receivedAt ?? new Date();
    // One string per row costs a tenth of a TIMESTAMPTZ value object; DuckDB casts the ISO text to the same instant.
    const receivedAt = state.receivedAtIsTz ? at.toISOString() : timestampTZValue(BigInt(at.getTime()) * 1000n);
    // The current row's value span per slot; a start of -1: the row does not have the key.
    const starts = new Int32Array(batch.columns.length);
    const ends = new Int32Array(batch.columns.length);
    const { members, memberEnds, backslashes, text } = batch;
    const appender = await writer.createAppender(target.table, target.schema);
    try {
      for (let r = 0; r < batch.rows; r += 1) {
        starts.fill(-1);
        for (let m = r === 0 ? 0 : memberEnds[r - 1]!; m < memberEnds[r]!; m += 1) {
          const slot = members[3 * m]!;
          if (slot < 0) continue;
          starts[slot] = members[3 * m + 1]!;
          ends[slot] = members[3 * m + 2]!;
        }
        const firstBackslash = backslashes[r]!;
        for (let i = 0; i < feed.length; i += 1) {
          const slot = feed[i]!;
          if (slot >= 0) appendValue(appender, text, starts[slot]!, ends[slot]!, json[i]!, firstBackslash);
          else if (state.order[i] === RECEIVED_AT) appendReceivedAt(appender, receivedAt);
          else if (state.order[i] === REQUEST_ID) appendRequestId(appender, options.requestId);
          else appender.appendDefault();
        }
        appender.endRow();
      }
      appender.flushSync();
    } catch (err) {
      // Rows not flushed yet must not reach the table when the transaction is rolled back either.
      appender.clear();
      throw err;
    } finally {
      appender.closeSync();
    }
  }
}

/**
 * What a batch's values need of a column, per slot: the kind of the first non-null value (undefined when every
 * value is null or missing), and the type that holds every value, both starting from that first kind and from the
 * existing column's type. Which of the two applies can need a query (whether the existing column holds values), so
 * both are kept. Widening only ever moves up (BIGINT, HUGEINT, DOUBLE, VARCHAR; BOOLEAN, VARCHAR), so the kinds
 * seen decide the type whatever their order.
 */
interface KindsSeen {
  first: Exclude<ValueKind, 'null'> | undefined;
  fromFirst: string | undefined;
  fromExisting: string | undefined;
}

/** The type that holds a column of type `type` and values of every kind in `mask` (a bit per index in KINDS). */
export function widenAll(type: string, mask: number): string {
  let widened = type;
  KINDS.forEach((kind, k) => {
    if ((mask & (1 << k)) !== 0) widened = widen(widened, kind);
  });
  return widened;
}

/**
 * Whether storing the batch may create or alter a table (evolve decides; this errs on the side of yes): a table or
 * column that does not exist, a column to widen, or a VARCHAR column that may hold only nulls and be retyped.
 */
function mayChangeShape(batch: Batch, state: TableState, seen: readonly KindsSeen[]): boolean {
  if (!state.exists) return true;
  return batch.columns.some((c, slot) => {
    const existing = state.columns.get(c.column);
    if (existing === undefined) return true;
    const { first, fromExisting } = seen[slot]!;
    if (first === undefined) return false;
    if (fromExisting !== existing.type) return true;
    return existing.type === 'VARCHAR' && FIRST_TYPE[first] !== 'VARCHAR' && existing.hasValues !== true;
  });
}

function kindsSeen(batch: Batch, state: TableState): KindsSeen[] {
  return batch.columns.map((c, slot) => {
    const k = batch.firstKinds[slot]!;
    if (k === -1) return { first: undefined, fromFirst: undefined, fromExisting: undefined };
    const mask = batch.kindMasks[slot]!;
    const column = state.columns.get(c.column);
    const first = KINDS[k]!;
    return { first, fromFirst: widenAll(FIRST_TYPE[first], mask), fromExisting: column === undefined ? undefined : widenAll(column.type, mask) };
  });
}

/** A value as the appender takes it: NULL, a string's content (JSON columns keep the literal), or the JSON text. */
function appendValue(appender: DuckDBAppender, text: string, start: number, end: number, json: boolean, firstBackslash: number): void {
  if (start < 0 || isNullAt(text, start, end)) appender.appendNull();
  else if (!json && text.charCodeAt(start) === 0x22) appender.appendVarchar(stringAt(text, start, end, firstBackslash));
  else appender.appendVarchar(text.slice(start, end));
}

function appendRequestId(appender: DuckDBAppender, requestId: string | undefined): void {
  if (requestId === undefined) appender.appendNull();
  else appender.appendVarchar(requestId);
}

function appendReceivedAt(appender: DuckDBAppender, at: string | DuckDBTimestampTZValue): void {
  if (typeof at === 'string') appender.appendVarchar(at);
  else appender.appendTimestampTZ(at);
}
