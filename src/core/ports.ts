import type { Cursor, KeyRange, Phase, Position } from './cursor.js';
import type { WatermarkKind } from './ordering.js';

/**
 * The interfaces adapters implement. Defined here, by the code that uses them, so that the domain and the
 * queue layer never import a driver.
 */

/** What the pipeline needs to know of one configured table. */
export interface TableSpec {
  source: string;
  /** As configured, e.g. `public.orders` or `public."Order Items"`. */
  name: string;
  /** Primary-key columns; when omitted the source reads the table's own primary key. */
  primaryKey?: string[] | undefined;
  /** The watermark column; absent for tables synced by change data capture, which are read by primary key. */
  watermark?: string | undefined;
  /** Rows matching this are sent with `_op = delete`: a column (true or non-null means deleted) or a SQL condition. */
  softDelete?: { column?: string | undefined; condition?: string | undefined } | undefined;
}

export interface ColumnInfo {
  name: string;
  /** The source's own type name, e.g. `timestamp with time zone`, `numeric(12,2)`. */
  type: string;
}

/** A table as the source found it: resolved names and what the encoder needs. */
export interface TableShape {
  /** Schema and name as the catalog spells them, to match change streams. */
  schema: string;
  relname: string;
  columns: ColumnInfo[];
  primaryKey: string[];
  watermark: string | null;
  watermarkKind: WatermarkKind;
  /** False when no column can hold nested JSON, which lets the encoder skip the depth scan. */
  mayNest: boolean;
}

export interface SourceRow {
  position: Position;
  /** The row as a JSON object text, values already in their documented encoding. */
  json: string;
  /** True when the table's soft-delete rule marks the row deleted. */
  deleted: boolean;
}

export interface KeyedRow {
  /** Index into the keys asked for. */
  index: number;
  json: string;
  deleted: boolean;
}

export interface NextRange {
  range: KeyRange;
  rows: number;
  /** Primary-key values of every row in the range, in order (read anyway to find its end). */
  keys: string[][];
}

export interface TableReader {
  readonly shape: TableShape;
  /**
   * The next range of at most `limit` rows after `cursor`, or null when the cursor's phase has no more rows.
   * Reads only key columns.
   */
  nextRange(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null>;
  /**
   * An exclusive upper bound for watermarks that is safe to read up to now: no transaction still in progress can
   * commit a row below it. Null when the watermark's type admits no such bound (then every row is read).
   */
  readBoundary(safetyLagMs: number): Promise<string | null>;
  /** How two positions of a phase compare in the database's own order: negative, zero or positive. */
  comparePositions(phase: Phase, a: Position, b: Position): Promise<number>;
  /** True when the table has no rows at all. */
  isEmpty(): Promise<boolean>;
  /** The source's clock now, in the watermark's text form (timestamp watermarks only; null otherwise). */
  now(): Promise<string | null>;
  /** Rows of `range` strictly after `after` (or from the range start), in keyset order, at most `limit`. */
  readRange(range: KeyRange, after: Position | null, limit: number): Promise<SourceRow[]>;
  /** Rows whose watermark is NULL: sent once during the initial backfill only. */
  countNullWatermark(): Promise<number>;
  /** The rows that still exist among `keys` (primary-key values as text), each with the index of its key. */
  readKeys(keys: readonly string[][]): Promise<KeyedRow[]>;
  /** JSON objects holding only the key columns, encoded like rows, in the order of `keys` (for delete records). */
  keyJson(keys: readonly string[][]): Promise<string[]>;
}

export interface Source {
  readonly name: string;
  /** Resolves and validates the table (columns exist, types usable); cached per process. */
  table(spec: TableSpec): Promise<TableReader>;
  /** Conditions that weaken a guarantee (missing privileges, settings), for `pushsync check`. */
  warnings(): Promise<string[]>;
  /** Cheap reachability probe for readiness checks. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The outcome of one accepted request. */
export interface SendResult {
  rows: number;
  requestId?: string | undefined;
  latencyMs: number;
}

/**
 * Where batches go. `send` resolves only when every record was accepted; anything else is an AppError whose code
 * says whether retrying could help (DEST_TOO_LARGE asks the caller to split).
 */
export interface Destination {
  send(target: string, records: readonly string[]): Promise<SendResult>;
  close(): Promise<void>;
}
