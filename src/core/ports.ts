import type { ChangeEvent, RelationKeys } from './changes.js';
import type { Cursor, KeyRange, Phase, Position } from './cursor.js';
import type { WatermarkKind } from './ordering.js';
import type { ColumnSelection, Mask, OutgoingColumn, ValueKind } from './rules.js';
import type { RelationShape } from './table-shape.js';
import type { EncodedRecords } from './encoded-records.js';

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
  /** Which columns leave; the others are never read unless keys, ordering, soft deletes or the filter need them. */
  columns?: ColumnSelection | undefined;
  /** Masks by column name, as configured. */
  masks?: Record<string, Mask> | undefined;
  /** Rows not matching this SQL condition never leave. */
  where?: string | undefined;
  /** A SELECT read in place of a table (`name` is then a label). */
  query?: string | undefined;
}

export interface ColumnInfo {
  name: string;
  /** The source's own type name, e.g. `timestamp with time zone`, `numeric(12,2)`. */
  type: string;
  /** What its outgoing value is, for masks. */
  kind?: ValueKind | undefined;
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
  /**
   * The columns that leave, in record order, with their masks. Set by sources that apply the table's column rules;
   * masks with `appliedIn: 'pipeline'` arrive unmasked in rows and are applied by pushsync before a record exists.
   */
  outgoing?: OutgoingColumn[] | undefined;
  /** Columns that never leave. */
  withheld?: ColumnInfo[] | undefined;
  /** True when rows carry `matched` (the table has a `where`). */
  filtered?: boolean | undefined;
  /**
   * The relation as the catalog described it when this reader was made (identity, every column and its type),
   * compared with later readings to detect schema changes (`core/table-shape.ts`). Absent for a custom SQL table
   * and for sources that do not track it.
   */
  relation?: RelationShape | undefined;
}

export interface SourceRow {
  position: Position;
  /** The row as a JSON object text, values already in their documented encoding. */
  json: string;
  /** True when the table's soft-delete rule marks the row deleted. */
  deleted: boolean;
  /** False when the row does not match the table's `where`: `json` is then empty and nothing of the row may leave. */
  matched?: boolean | undefined;
}

/** A row of `readRangeBytes`; `json` is read only during the call that hands it over. */
export interface SourceBytesRow {
  position: Position;
  /** The row's JSON object text as UTF-8, in `json[start, start + length)`; the bytes before it are free to overwrite. */
  json: Buffer;
  start: number;
  length: number;
  /** At least the nesting depth of the record the row becomes (see core/copy-row.ts). */
  brackets: number;
  /** False when `json` is not valid UTF-8: it is then read as text, invalid bytes as U+FFFD. */
  utf8: boolean;
  deleted: boolean;
}

/**
 * `awaitWriters`: the rows are read after changes already streamed (the keys of those changes, or an incremental
 * snapshot that sorts after them), and a source whose stream hands a change over before the engine commits it
 * (MySQL's binary log) waits for the transactions still holding the rows read.
 */
export interface ReadOptions {
  awaitWriters?: boolean;
}

export interface KeyedRow {
  /** Index into the keys asked for. */
  index: number;
  json: string;
  deleted: boolean;
  /** As in SourceRow. */
  matched?: boolean | undefined;
}

export interface NextRange {
  range: KeyRange;
  rows: number;
  /** Primary-key values of every row in the range, in order (read anyway to find its end). */
  keys: string[][];
}

/** A range and how many rows it held when it was found. */
export type RangeEnd = Omit<NextRange, 'keys'>;

export interface RowEstimate {
  rows: number;
  /** True for a count, false for a statistics estimate. */
  exact: boolean;
}

export interface TableReader {
  readonly shape: TableShape;
  /**
   * The next range of at most `limit` rows after `cursor`, or null when the cursor's phase has no more rows.
   * Reads only key columns.
   */
  nextRange(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null>;
  /**
   * `nextRange` without the keys: the same range and row count, found by reading only the range's last position
   * (one row leaves the database instead of `limit`). For extraction that does not remember keys. Optional: without
   * it, callers use `nextRange`.
   */
  nextRangeEnd?(cursor: Cursor, limit: number, upperBound?: string | null): Promise<RangeEnd | null>;
  /**
   * `nextRangeEnd` for up to `pages` consecutive pages at once, in order: one statement where each page would take
   * its own, so a busy or distant reader plans many pages per round trip. Every page holds `limit` rows but the last
   * one found when the phase has fewer left; empty when it has none. Optional.
   */
  nextRangeEnds?(cursor: Cursor, limit: number, pages: number, upperBound?: string | null): Promise<RangeEnd[]>;
  /**
   * `nextRange` and `isEmpty` in one statement: 'empty' when the table has no row at all. A run's first page is read
   * with it when the cursor check needs the probe, so an idle run spends no round trip on it. Optional: without it,
   * the probe is a statement of its own.
   */
  nextRangeOrEmpty?(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null | 'empty'>;
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
  readRange(range: KeyRange, after: Position | null, limit: number, options?: ReadOptions): Promise<SourceRow[]>;
  /**
   * `readRange`, handing each row to `each` as it arrives instead of collecting them, and resolving to how many were
   * read. A row is then garbage as soon as `each` returns, rather than living through the whole read: on a backfill
   * the collected rows were most of what the garbage collector copied. `each` must not throw. Optional: without it,
   * or on a reader that rewrites rows (masks), `readRange` is used.
   */
  readRangeEach?(range: KeyRange, after: Position | null, limit: number, each: (row: SourceRow) => void): Promise<number>;
  /**
   * `readRangeEach` with each row's JSON as UTF-8 bytes, the same bytes `readRangeEach` would give as text, never
   * turned into a string. Optional: a reader offers it only for the tables it can read this way.
   */
  readRangeBytes?(range: KeyRange, after: Position | null, limit: number, each: (row: SourceBytesRow) => void): Promise<number>;
  /** Rows whose watermark is NULL: sent once during the initial backfill only. */
  countNullWatermark(): Promise<number>;
  /**
   * The table's row count, for progress reports: exact for a small table, else the database's estimate; null when
   * it has none. Optional: an engine without it reports progress without a total.
   */
  estimateRows?(): Promise<RowEstimate | null>;
  /** The rows that still exist among `keys` (primary-key values as text), each with the index of its key. */
  readKeys(keys: readonly string[][], options?: ReadOptions): Promise<KeyedRow[]>;
  /** JSON objects holding only the key columns, encoded like rows, in the order of `keys` (for delete records). */
  keyJson(keys: readonly string[][]): Promise<string[]>;
  /**
   * Primary-key values as a change stream delivers them, turned into the form positions and keys of this reader
   * take (sealed when the key is masked). Absent: the values are used as they are.
   */
  storedKey?(pk: readonly string[]): string[];
  /** Lines of the page query's plan that read a whole relation (for `pushsync check`); absent when not known. */
  fullScans?(): Promise<string[]>;
  /**
   * Why an incremental run's page query is not an index range scan on (watermark, primary key), naming the plan
   * line and the index to create (for `pushsync check`); null when it is; absent when not known.
   */
  pageScanProblem?(): Promise<string | null>;
}

export interface Source {
  readonly name: string;
  /**
   * Resolves and validates the table (columns exist, types usable), cached per process. A source that tracks
   * `TableShape.relation` reads the table's shape with one catalog query on every call and returns a new reader when
   * it changed (a column added, dropped, renamed or retyped; the table re-created), so a caller always reads rows
   * with the columns the table has now.
   */
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
  /**
   * `send` for records `from` to `to` (exclusive) of a batch already encoded as UTF-8. The batch's buffer is reused
   * once the returned promise settles: copy what must outlive the call. Optional: senders fall back to `send` with
   * the record texts.
   */
  sendEncoded?(target: string, records: EncodedRecords, from: number, to: number): Promise<SendResult>;
  /**
   * Asked before a push attempt reads its rows: throws a retryable error instead when the destination is known to
   * be down and the attempt would only be refused (see CircuitDestination). Optional: without it every attempt runs.
   */
  admit?(lastAttempt?: boolean): { done(): void };
  close(): Promise<void>;
}

/**
 * What a change source says while it streams. Positions are opaque text owned by the source (an LSN, a binlog
 * file and offset, a stream entry id): the pipeline stores them, compares them with `ChangeSource.comparePositions`
 * and hands them back to `acknowledge`, and never reads them.
 */
export type ChangeStreamEvent =
  /** A committed transaction's key-level changes, in commit order. Acknowledging `end` confirms it and all before. */
  | {
      kind: 'transaction';
      changes: ChangeEvent[];
      end: string;
      /** Changes left out because they belong to a dropped table of a watched name (another relation id). */
      ignored?: number | undefined;
      /** What `ChangeSource.visible` takes to tell whether the transaction's rows can be read yet (a transaction id). */
      transaction?: string | undefined;
    }
  /**
   * The first changes of a transaction still arriving, handed over before its end so that a large transaction is
   * sent while the rest of it is read. Its `transaction` event follows with the changes after these; only that event
   * may be acknowledged. Sources may hand every change over at the end instead.
   */
  | { kind: 'changes'; changes: ChangeEvent[]; transaction?: string | undefined }
  /** Nothing is in flight: everything before `position` has been handed over, so acknowledging it loses nothing. */
  | { kind: 'idle'; position: string }
  /** The relations were emptied; no keys travel with it. */
  | { kind: 'truncate'; relations: string[] }
  /** Changes of the relation went by that the stream could not turn into keys: it must be read again. */
  | { kind: 'resnapshot'; relation: string; reason: string }
  /**
   * A watched relation's description as the stream states it before its first change in a session and after a
   * change of its columns: its identity and its columns in order, each with a text that differs when the column's
   * type differs (a type id and modifier, not a name). Columns the stream never carries (Postgres generated
   * columns) are absent.
   */
  | {
      kind: 'relation';
      relation: string;
      id: string;
      columns: Array<{ name: string; type: string }>;
      /** The `_ordering` of the first change described this way; null when not known. */
      from: string | null;
    };

export interface ChangeStream {
  /**
   * Tells the source every change before `position` is durably handled: it may forget them, and a new stream starts
   * exactly at `position`. Only positions the stream handed out (a transaction's end, an idle position) are valid.
   */
  acknowledge(position: string): Promise<void>;
  /** Acknowledges `position` again and asks the source to report where it stands (an `idle` event) soon. */
  requestPosition(position: string): Promise<void>;
  stop(): Promise<void>;
  /** Settles when the stream ends (stop, or an error). */
  done: Promise<void>;
}

/** The durable stream a change source keeps for pushsync (a replication slot, a binlog position, a consumer group). */
export interface ChangeStreamStatus {
  exists: boolean;
  /** The position a new stream would start from; null when unknown. */
  confirmed: string | null;
  /** How far the source's current position is past `confirmed`, in bytes; null when unknown. */
  lagBytes: number | null;
  /**
   * An upper bound on the age of the oldest change past `confirmed`, in seconds (0 when none is); null or absent when
   * the source does not measure it.
   */
  lagSeconds?: number | null;
  /** True while a reader is attached. */
  active: boolean;
  /** True when the source discarded changes the stream still needed: it cannot continue. */
  lost: boolean;
  /** Why it was lost, for the error that asks for a new snapshot; absent when the source does not say. */
  lostReason?: string | undefined;
}

/** What `pushsync check` shows about a durable stream beside its status: settings, retention, privileges. */
export interface ChangeStreamFacts {
  facts: string[];
  /** Settings that work but put the stream at risk, each with what to change. */
  warnings: string[];
}

/**
 * The reader's lease on its stream (one reader per stream). A reader whose lease lapsed unnoticed must not write
 * its position over what its successor recorded.
 */
export interface StreamLease {
  /**
   * Sets `fields` of the Redis hash `key` only while the lease is held, in one step with the check. False, with
   * nothing written and the lease counted as lost, when it was not held.
   */
  hsetWhileHeld(key: string, fields: Record<string, string>): Promise<boolean>;
}

/**
 * A source of committed changes with an explicit acknowledgement: Postgres logical replication, and by the same
 * shape a MySQL binlog reader or an ingested Debezium stream. The queue layer drives it through this port only.
 */
export interface ChangeSource {
  /** The configured source name. */
  readonly name: string;
  /** What the durable stream is, for messages and status, e.g. `replication slot pushsync_app`. */
  readonly stream: string;
  /** Problems that make change capture impossible, each with what to change. */
  prerequisites(): Promise<string[]>;
  /** Tables whose deletes or updates would arrive without their key, each with the fix. */
  keyProblems(tables: readonly TableShape[]): Promise<string[]>;
  /** Makes sure the tables are captured (e.g. in the publication). */
  prepare(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<void>;
  /**
   * The identity of each table (`schema.relname` → a Postgres oid) as the catalog resolves its name now; a table
   * missing from the catalog is absent. Optional: a source without relation identities never detects a re-created table.
   */
  relationIds?(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<Map<string, string>>;
  /** The catalog's names (modifier included) of types as `relation` events state them; unknown ones are absent. */
  typeNames?(types: readonly string[]): Promise<Map<string, string>>;
  status(): Promise<ChangeStreamStatus>;
  /**
   * Facts about the stream for `pushsync check` and `cdc status`, with warnings about the captured `tables`; absent
   * when the engine has none beyond its status.
   */
  facts?(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<ChangeStreamFacts>;
  /** Creates the durable stream and returns the position it starts from: every later commit streams from it. */
  create(): Promise<string>;
  /** The source's current position: a one-shot run streams until it has acknowledged it. */
  currentPosition(): Promise<string>;
  /** Negative, zero or positive as position `a` is before, at or after `b`. */
  comparePositions(a: string, b: string): number;
  /**
   * True when a stream confirmed at `confirmed` went past what pushsync acknowledged, i.e. it skipped changes
   * pushsync never saw. `legacy`: the acknowledgement was recorded by a version of pushsync whose acknowledgements
   * could stand a source-defined margin behind the stream's confirmed position.
   */
  confirmedPast(confirmed: string, acknowledged: string, legacy: boolean): boolean;
  /** `_ordering` of rows read by the initial snapshot taken from `start`: sorts before every streamed change. */
  snapshotOrdering(start: string): string;
  /**
   * Whether every one of these streamed transactions (their events' `transaction`) can be seen by a read started
   * now: changes travel as keys and their rows are read afterwards, and a stream may hand a transaction over before
   * its rows are visible (Postgres sends a commit the primary still holds back for a synchronous standby). A read
   * that found none of the rows would drop an insert. Optional: a source whose streamed commits are always visible
   * needs none.
   */
  visible?(transactions: readonly string[]): Promise<boolean>;
  /**
   * Streams committed changes of `relations` (keyed `schema.relname`) from the confirmed position. A source that
   * records its confirmed position in pushsync's Redis (the binlog reader) records it through `options.lease` only
   * while the reader holds it; a source whose server keeps the position (a replication slot) needs no lease.
   */
  open(
    relations: ReadonlyMap<string, RelationKeys>,
    onEvent: (e: ChangeStreamEvent) => void,
    onError: (err: Error) => void,
    options: { lease: StreamLease },
  ): Promise<ChangeStream>;
  /** Drops the durable stream (and, with `capture`, what `prepare` created). */
  drop(options: { capture: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** One entry of a stream of change events that carry their rows (Debezium Server's Redis sink). */
export interface StreamEntry {
  /** The stream it was read from: Debezium names it after the topic, `<prefix>.<schema>.<table>`. */
  stream: string;
  id: string;
  /** The event value's text; null for a tombstone. */
  value: string | null;
  /** The event key's text, when the entry carries one. */
  key: string | null;
}

/**
 * Change events with explicit acknowledgement and redelivery of what was not acknowledged: Redis streams read
 * through a consumer group. Entries a dead consumer took and never acknowledged are handed out again.
 */
export interface EventStream {
  /** What is read, for messages, e.g. `Redis streams a, b (group pushsync)`. */
  readonly description: string;
  /** Creates what reading needs (the consumer group) where it is missing. */
  prepare(): Promise<void>;
  /**
   * The next entries for this consumer: those claimed from consumers idle too long, else new ones, waiting up to
   * `blockMs` for some; with `claimOnly`, claimed ones only (none when no claim is due). Entries handed out stay
   * pending until acknowledged.
   */
  read(blockMs: number, claimOnly?: boolean): Promise<StreamEntry[]>;
  /** The entries are durably handled: they are never handed out again. */
  acknowledge(entries: readonly StreamEntry[]): Promise<void>;
  /**
   * The earliest entry of `stream` up to entry `id` that another consumer was handed and has not acknowledged, or
   * null. Entries of a stream are stored in its order only if each waits for those before it: the snapshot floor of
   * a Postgres table (core/debezium-ordering.ts) is set by the snapshot's rows and obeyed by the changes after
   * them. Optional: a stream with one reader keeps its order anyway.
   */
  heldElsewhere?(stream: string, id: string): Promise<string | null>;
  close(): Promise<void>;
}
