import { AppError } from '../core/errors.js';
import type { Phase, Position } from '../core/cursor.js';
import type { WatermarkKind } from '../core/ordering.js';
import type { Mask, ValueKind as RuleKind } from '../core/rules.js';

/**
 * SQL text for the MySQL/MariaDB source, built from catalog facts. Pure functions, unit-tested without a database.
 * Everything that differs between MySQL and MariaDB is in this file, keyed by `Flavor`.
 *
 * Values never travel as parameters: the text protocol runs one statement per query (multi-statements stay off), and
 * every value pushsync puts into SQL is rendered here as a literal that cannot end it: numbers and temporal values
 * after a strict check of their form, strings as hex literals (`_utf8mb4 X'…'`) converted to the column's character
 * set and collation, so that the server compares them exactly as it orders the column.
 */

export type Flavor = 'mariadb' | 'mysql';

/** How a column's values are read and encoded; see docs/encoding.md. */
export type ValueKind =
  | 'int'
  | 'bigint'
  | 'decimal'
  | 'float'
  | 'double'
  | 'bit'
  | 'year'
  | 'date'
  | 'datetime'
  | 'timestamp'
  | 'time'
  | 'enum'
  | 'set'
  | 'json'
  | 'text'
  | 'binary'
  | 'other';

export interface MyColumn {
  name: string;
  /** information_schema.COLUMNS.DATA_TYPE, e.g. `int`, `varchar`, `datetime`. */
  dataType: string;
  /** COLUMN_TYPE, e.g. `int(10) unsigned`, `enum('a','b')`: the declared type. */
  columnType: string;
  kind: ValueKind;
  /** Character set and collation of string columns; null for every other type. */
  charset: string | null;
  collation: string | null;
  /** Fractional-second digits of DATETIME, TIMESTAMP and TIME; 0 otherwise. */
  fsp: number;
  /** Width of BIT(n); 0 otherwise. */
  bits: number;
}

const INT_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer']);
const BINARY_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);
const TEXT_TYPES = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext']);
const GEOMETRY_TYPES = new Set([
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
  'geomcollection',
]);

/**
 * The value kind of a column from its catalog facts. `json`: MySQL's JSON type, or a MariaDB column declared JSON
 * (MariaDB's JSON is LONGTEXT with a `json_valid` check, which the caller finds in CHECK_CONSTRAINTS).
 */
export function valueKind(dataType: string, charset: string | null, json: boolean): ValueKind {
  const t = dataType.toLowerCase();
  if (t === 'json' || json) return 'json';
  if (INT_TYPES.has(t)) return 'int';
  if (t === 'bigint') return 'bigint';
  if (t === 'decimal' || t === 'numeric') return 'decimal';
  if (t === 'float') return 'float';
  if (t === 'double' || t === 'real' || t === 'double precision') return 'double';
  if (t === 'bit') return 'bit';
  if (t === 'year') return 'year';
  if (t === 'date' || t === 'datetime' || t === 'timestamp' || t === 'time') return t;
  if (t === 'enum' || t === 'set') return t;
  if (BINARY_TYPES.has(t) || GEOMETRY_TYPES.has(t)) return 'binary';
  if (TEXT_TYPES.has(t)) return charset === null || charset === 'binary' ? 'binary' : 'text';
  return 'other';
}

/** Kinds whose text form cannot carry a keyset cursor exactly, or whose order differs from their comparisons. */
const UNORDERABLE: Partial<Record<ValueKind, string>> = {
  float: 'its text form is rounded',
  double: 'its text form need not read back as the stored value',
  json: 'JSON has no order',
  enum: 'ENUM sorts by its index but compares by its label',
  set: 'SET sorts by its bits but compares by its text',
};

/** Why a column cannot be a watermark or primary-key column, or null when it can. */
export function unorderableReason(col: MyColumn): string | null {
  if (col.dataType === 'geometry' || GEOMETRY_TYPES.has(col.dataType)) return 'spatial values have no order';
  return UNORDERABLE[col.kind] ?? null;
}

export function watermarkKind(col: MyColumn): WatermarkKind {
  if (col.kind === 'datetime' || col.kind === 'timestamp') return 'timestamp';
  if (col.kind === 'date') return 'date';
  if (col.kind === 'int' || col.kind === 'bigint') return 'integer';
  if (col.kind === 'decimal') return 'decimal';
  return 'other';
}

/** Quotes an identifier with backticks: a`b → `a``b`. */
export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

export interface TableSql {
  /** `` `database`.`table` ``, or `(<query>)` for a custom SQL table. */
  qualified: string;
  /** The columns that leave, in record order: the only ones whose values a row statement reads. */
  columns: MyColumn[];
  /** Masks computed by the server, by column name: expressions over alias `t` (see `sqlMask`). */
  masks?: ReadonlyMap<string, string> | undefined;
  /** Null for tables read only by primary key. */
  watermark: MyColumn | null;
  primaryKey: MyColumn[];
  /** SQL expression over alias `t` that is true for soft-deleted rows; absent when the table has none. */
  deleted?: string | undefined;
  /** The row filter (`where`) as SQL over alias `t`, 1 for a row that matches; absent when every row leaves. */
  filter?: string | undefined;
}

function refuse(col: MyColumn, text: string): never {
  // The value is left out: it is a key value, which a mask may have kept from the records, so it stays out of logs too.
  throw new AppError('CURSOR_INVALID', `a position value (${text.length} characters) is not a valid ${col.columnType} for column ${col.name}`);
}

const HEX = (buf: Buffer): string => buf.toString('hex').toUpperCase();

/**
 * A key value as SQL: the text form pushsync keeps in cursors and key lists (see `keyText` in mysql-encode.ts),
 * checked for its type's form, so no text can end the literal.
 */
export function literal(col: MyColumn, text: string): string {
  switch (col.kind) {
    case 'int':
    case 'bigint':
    case 'year':
      // ZEROFILL integers print zeros up to their display width, which may pass 20 digits (BIGINT(25) ZEROFILL).
      return /^-?0*\d{1,20}$/.test(text) ? text : refuse(col, text);
    case 'decimal':
      return /^-?\d{1,65}(\.\d{1,30})?$/.test(text) ? text : refuse(col, text);
    case 'bit':
      return /^[01]{1,64}$/.test(text) ? BigInt(`0b${text}`).toString() : refuse(col, text);
    case 'date':
      return /^\d{4}-\d\d-\d\d$/.test(text) ? `CAST('${text}' AS DATE)` : refuse(col, text);
    case 'datetime':
    case 'timestamp':
      return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$/.test(text) ? `CAST('${text}' AS DATETIME(6))` : refuse(col, text);
    case 'time':
      return /^-?\d{1,3}:\d\d:\d\d(\.\d{1,6})?$/.test(text) ? `CAST('${text}' AS TIME(6))` : refuse(col, text);
    case 'binary': {
      const bytes = Buffer.from(text, 'base64');
      return bytes.toString('base64') === text ? `X'${HEX(bytes)}'` : refuse(col, text);
    }
    case 'text':
      // The stored key again only in ROUND_TRIP_CHARSETS (mysql-charsets.ts); describe refuses text keys in others.
      return `CONVERT(_utf8mb4 X'${HEX(Buffer.from(text, 'utf8'))}' USING ${col.charset}) COLLATE ${col.collation}`;
    default:
      return `_utf8mb4 X'${HEX(Buffer.from(text, 'utf8'))}'`;
  }
}

/**
 * `(a, b) > (x, y)` written out so that the server can use an index on (a, b): MySQL and MariaDB do not turn row
 * comparisons into index ranges. `op` is `>` (strictly after) or `<=` (up to and including).
 */
export function lexicographic(lhs: string[], op: '>' | '<=' | '<', rhs: string[]): string {
  const strict = op === '<=' ? '<' : op;
  const build = (i: number): string => {
    const last = i === lhs.length - 1;
    if (last) return `${lhs[i]} ${op} ${rhs[i]}`;
    return `(${lhs[i]} ${strict} ${rhs[i]} OR (${lhs[i]} = ${rhs[i]} AND ${build(i + 1)}))`;
  };
  const body = build(0);
  if (lhs.length === 1) return body;
  // A leading range on the first column, which the optimizer uses for the index scan.
  return `${lhs[0]} ${op === '>' ? '>=' : '<='} ${rhs[0]} AND ${body}`;
}

function keyColumns(t: TableSql, phase: Phase): MyColumn[] {
  return phase === 'wm' ? [t.watermark!, ...t.primaryKey] : t.primaryKey;
}

function positionValues(p: Position, phase: Phase): string[] {
  return phase === 'wm' ? [p.wm as string, ...p.pk] : p.pk;
}

const ref = (c: MyColumn): string => `t.${quoteIdent(c.name)}`;

function compare(cols: MyColumn[], op: '>' | '<=' | '<', values: string[]): string {
  return lexicographic(
    cols.map(ref),
    op,
    cols.map((c, i) => literal(c, values[i]!)),
  );
}

function orderBy(t: TableSql, phase: Phase): string {
  return keyColumns(t, phase).map(ref).join(', ');
}

function phaseFilter(t: TableSql, phase: Phase): string {
  if (phase === 'pk' || t.watermark === null) return 'TRUE';
  return `${ref(t.watermark)} IS ${phase === 'wm' ? 'NOT ' : ''}NULL`;
}

/**
 * The expression that reads a column. FLOAT is widened to DOUBLE: the server prints FLOAT rounded to six digits, and
 * DOUBLE's text is the float's exact value, from which the encoder takes the shortest form that reads back as it.
 */
export function columnExpr(col: MyColumn): string {
  return col.kind === 'float' ? `CAST(${ref(col)} AS DOUBLE)` : ref(col);
}

function limit(n: number): string {
  if (!Number.isSafeInteger(n) || n < 1) throw new AppError('INTERNAL', `row limit ${n} is not a positive integer`);
  return String(n);
}

/**
 * Key columns only: the next `limit` positions after `after` (or from the start of the phase), with watermarks
 * strictly below `upperBound` when one is given.
 */
export function nextRangeSql(t: TableSql, phase: Phase, after: Position | null, n: number, upperBound: string | null = null): string {
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase)));
  if (upperBound !== null && phase === 'wm') where.push(compare([t.watermark!], '<', [upperBound]));
  const select = keyColumns(t, phase).map(ref).join(', ');
  return `SELECT ${select} FROM ${t.qualified} t WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT ${limit(n)}`;
}

/**
 * The value expression of a leaving column over alias `t`: its server-computed mask, or the column as read. FLOAT is
 * widened to DOUBLE (see `columnExpr`).
 */
function leavingExpr(t: TableSql, col: MyColumn): string {
  return t.masks?.get(col.name) ?? columnExpr(col);
}

/**
 * The select list of a row statement over alias `t` (key columns `k…`, leaving values `c…`, the soft-delete flag `d`,
 * the filter flag `f`), and the values an outer statement selects from it as alias `r`, keys left out. The
 * outer statement returns a leaving value only for a row that matches (`CASE WHEN r.f …`), so nothing of a row outside
 * the filter reaches pushsync but its key. `CASE` keeps every type's text except BIT's, which it prints as a decimal
 * number (`leavingEncoder` in mysql-encode.ts reads it so).
 */
function rowSelect(t: TableSql, keys: readonly MyColumn[]): { inner: string; values: string[] } {
  const inner = [
    ...keys.map((c, i) => `${ref(c)} AS k${i}`),
    ...t.columns.map((c, i) => `${leavingExpr(t, c)} AS c${i}`),
    ...(t.deleted ? [`${t.deleted} AS d`] : []),
    ...(t.filter ? [`${t.filter} AS f`] : []),
  ];
  const values = [
    ...t.columns.map((_c, i) => (t.filter ? `CASE WHEN r.f THEN r.c${i} END` : `r.c${i}`)),
    ...(t.deleted ? ['r.d'] : []),
    ...(t.filter ? ['r.f'] : []),
  ];
  return { inner: inner.join(', '), values };
}

/**
 * The rows of a range after `after` (exclusive) up to `hi` (inclusive), in keyset order: the key columns of the
 * phase, the leaving columns (masks computed by the server applied), then the soft-delete flag when the table has one
 * and the filter flag when it has a filter. A filtered table's row statement reads its range in a derived table and
 * returns only the key of a row outside the filter.
 */
export function readRangeSql(t: TableSql, phase: Phase, after: Position | null, hi: Position, n: number, lock = false): string {
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase)));
  where.push(compare(keyColumns(t, phase), '<=', positionValues(hi, phase)));
  const keys = keyColumns(t, phase);
  // `lock`: a locking read, as `readKeysSql` makes one.
  const range = `FROM ${t.qualified} t WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT ${limit(n)}${lock ? ' LOCK IN SHARE MODE' : ''}`;
  if (t.filter) {
    const { inner, values } = rowSelect(t, keys);
    return `SELECT ${[...keys.map((_c, i) => `r.k${i}`), ...values].join(', ')} FROM (SELECT ${inner} ${range}) r ORDER BY ${keys.map((_c, i) => `r.k${i}`).join(', ')}`;
  }
  const select = [...keys.map(ref), ...t.columns.map((c) => leavingExpr(t, c)), ...(t.deleted ? [t.deleted] : [])];
  return `SELECT ${select.join(', ')} ${range}`;
}

/** A statement that compiles the configured conditions (soft delete, filter) against the table without reading a row. */
export function conditionsProbeSql(t: TableSql): string {
  const conditions = [t.deleted, t.filter].filter((c): c is string => c !== undefined);
  return `SELECT ${conditions.join(', ') || '1'} FROM ${t.qualified} t LIMIT 0`;
}

/** The row filter over alias `t` as a 1/0 flag: a row leaves only when its condition is true (not false, not NULL). */
export function filterExpr(condition: string): string {
  return `((${condition}) IS TRUE)`;
}

/** `-1`, `0` or `1`: how two positions compare in the server's order (collations, types) for a phase. */
export function comparePositionsSql(t: TableSql, phase: Phase, a: Position, b: Position): string {
  const cols = keyColumns(t, phase);
  const left = positionValues(a, phase).map((v, i) => literal(cols[i]!, v));
  const right = positionValues(b, phase).map((v, i) => literal(cols[i]!, v));
  const equal = left.map((l, i) => `${l} = ${right[i]}`).join(' AND ');
  return `SELECT CASE WHEN ${lexicographic(left, '<', right)} THEN -1 WHEN ${equal} THEN 0 ELSE 1 END`;
}

/**
 * The rows for a list of primary keys, each with the 0-based index of the key that found it, then the values as
 * `readRangeSql` returns them after its key columns (leaving columns, soft-delete flag, filter flag). The keys form a
 * derived table whose values carry the key columns' collations; the rows are read in a derived table of their own, in
 * which the configured conditions see only the table's columns. A text key finds only the row spelled exactly so.
 * `lock`: a locking read (`LOCK IN SHARE MODE`) of the table's rows, which waits for a transaction still holding one: the binary log hands a transaction over before the
 * engine has committed it (with semi-synchronous replication, until a replica answered), and a plain read in that
 * window finds an inserted row missing and an updated one as it was. Not for configured SQL (a derived table).
 */
export function readKeysSql(t: TableSql, keys: readonly string[][], lock = false): string {
  if (keys.length === 0) throw new AppError('INTERNAL', 'readKeysSql needs at least one key');
  const kcols = t.primaryKey;
  // A text key is found only under its own spelling, the text pushsync holds (`s…`, its UTF-8 bytes): a collation may
  // make `abc`, `ABC` and `abc ` one key for the server, but the destination tells them apart, so a key respelled in
  // place is gone under its old spelling. The row's key is compared as the reader reads it, converted to utf8mb4.
  const spelled = (c: MyColumn, text: string, i: number): string => (c.kind === 'text' ? `, X'${HEX(Buffer.from(text, 'utf8'))}' AS s${i}` : '');
  const branches = keys.map((k, n) => `SELECT ${n} AS o, ${kcols.map((c, i) => `${literal(c, k[i]!)} AS k${i}${spelled(c, k[i]!, i)}`).join(', ')}`);
  const { inner, values } = rowSelect(t, kcols);
  const members = keys.map((k) => `(${kcols.map((c, i) => literal(c, k[i]!)).join(', ')})`);
  const keyList = kcols.length === 1 ? kcols.map(ref).join('') : `(${kcols.map(ref).join(', ')})`;
  const on = kcols
    .map((c, i) => `r.k${i} = k.k${i}${c.kind === 'text' ? ` AND CAST(CONVERT(r.k${i} USING utf8mb4) AS BINARY) = k.s${i}` : ''}`)
    .join(' AND ');
  return (
    `SELECT ${['k.o', ...values].join(', ')} FROM (${branches.join(' UNION ALL ')}) k ` +
    `JOIN (SELECT ${inner} FROM ${t.qualified} t WHERE ${keyList} IN (${members.join(', ')})${lock ? ' LOCK IN SHARE MODE' : ''}) r ON ${on}`
  );
}

/**
 * The soft-delete test as SQL over alias `t`, 1 or 0. A column is deleted when true (TINYINT(1), which BOOLEAN
 * declares) or set (anything else); a condition is operator-written SQL over the table's columns.
 */
export function softDeleteExpr(soft: { column?: MyColumn | undefined; condition?: string | undefined }): string | undefined {
  if (soft.column) {
    const boolean = soft.column.columnType.startsWith('tinyint(1)');
    return `(${ref(soft.column)} IS ${boolean ? 'TRUE' : 'NOT NULL'})`;
  }
  if (soft.condition) return `((${soft.condition}) IS TRUE)`;
  return undefined;
}

/**
 * A mask as SQL over the column (alias `t`), when the server computes it exactly as pushsync would: `null`,
 * `redact`, `truncate` of VARCHAR and TEXT columns (characters, as `firstChars` counts them), `truncate` of dates and
 * times to the day, month or year (on the server's text, in UTC for TIMESTAMP: the session's zone). Null when pushsync
 * computes it (hash, replace, truncating other types). NULL stays NULL under every mask.
 */
export function sqlMask(col: MyColumn, mask: Mask): string | null {
  const r = ref(col);
  switch (mask.kind) {
    case 'null':
      return 'NULL';
    case 'redact':
      return `CASE WHEN ${r} IS NULL THEN NULL ELSE ${q(mask.text)} END`;
    case 'truncate':
      return col.kind === 'text' && col.dataType !== 'char' ? `LEFT(${r}, ${characters(mask.chars)})` : null;
    case 'truncateTime': {
      const keep = { year: 4, month: 7, day: 10 }[mask.unit];
      const date = { year: '-01-01', month: '-01', day: '' }[mask.unit];
      if (col.kind === 'date') return `CONCAT(LEFT(CAST(${r} AS CHAR), ${keep}), '${date}')`;
      if (col.kind !== 'datetime' && col.kind !== 'timestamp') return null;
      const fraction = col.fsp > 0 ? `.${'0'.repeat(col.fsp)}` : '';
      return `CONCAT(LEFT(CAST(${r} AS CHAR), ${keep}), '${date} 00:00:00${fraction}')`;
    }
    case 'hash':
    case 'replace':
      return null;
  }
}

function characters(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new AppError('INTERNAL', `character count ${n} is not a non-negative integer`);
  return String(n);
}

/** What a column's outgoing value is, for the checks of masks (core/rules.ts). */
export function ruleKind(col: MyColumn): RuleKind {
  switch (col.kind) {
    case 'int':
    case 'bigint':
    case 'decimal':
    case 'float':
    case 'double':
    case 'year':
      return 'number';
    case 'date':
      return 'date';
    case 'datetime':
    case 'timestamp':
      return 'timestamp';
    case 'text':
    case 'enum':
      return 'text';
    case 'json':
    case 'set':
      return 'nested';
    default:
      return 'other';
  }
}

/** The result columns of a custom SQL table, described by the server without reading a row. */
export function describeQuerySql(qualified: string): string {
  return `SELECT * FROM ${qualified} t LIMIT 0`;
}

/**
 * The character set and collation of each named output column of a custom SQL table (`binary` for values that are
 * not strings): a result's metadata gives only the connection's character set. The query is joined so that it yields
 * no row; COLLATION() and CHARSET() are facts of the expression, not of a value.
 */
export function queryCollationsSql(qualified: string, names: readonly string[]): string {
  const cols = names.flatMap((n) => [`CHARSET(t.${quoteIdent(n)})`, `COLLATION(t.${quoteIdent(n)})`]);
  return `SELECT ${cols.join(', ')} FROM (SELECT 1 AS one) x LEFT JOIN ${qualified} t ON FALSE`;
}

/**
 * Settings of every session: UTC for TIMESTAMP values, ANSI_QUOTES and NO_BACKSLASH_ESCAPES so that configured SQL
 * is read the way the condition scanner reads it (and no zero-date mode turns stored zero dates into errors), the
 * statement timeout, and read-only transactions. Two statements: transaction characteristics have their own syntax.
 * `lockWaitMs`: how long a locking read of changed rows waits for a row's lock (innodb_lock_wait_timeout, whole
 * seconds, at least 1) before it fails (see `readKeysSql`).
 */
export function sessionSql(flavor: Flavor, statementTimeoutMs: number, lockWaitMs = LOCK_WAIT_MS): string[] {
  const timeout =
    flavor === 'mariadb' ? `max_statement_time = ${statementTimeoutMs / 1000}` : `max_execution_time = ${Math.round(statementTimeoutMs)}`;
  const lockWait = `innodb_lock_wait_timeout = ${Math.max(1, Math.round(lockWaitMs / 1000))}`;
  return [`SET time_zone = '+00:00', sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES', ${timeout}, ${lockWait}`, 'SET SESSION TRANSACTION READ ONLY'];
}

/**
 * Longer than semi-synchronous replication waits for a replica by default (10 s): the lock of a transaction in that
 * wait is waited out. Shorter than InnoDB's default of 50 s, which a row locked by a transaction left open would
 * cost every read of it.
 */
export const LOCK_WAIT_MS = 15_000;

/** The session's settings as the server holds them, to check that `sessionSql` took effect. */
export function sessionCheckSql(flavor: Flavor): string {
  return `SELECT @@session.time_zone, @@session.sql_mode, @@session.${flavor === 'mariadb' ? 'tx_read_only' : 'transaction_read_only'}`;
}

/** Why the session's settings are not the ones pushsync reads with, or null when they are. */
export function sessionProblem(row: ReadonlyArray<string | null> | undefined): string | null {
  const [zone, mode, readOnly] = row ?? [];
  const modes = new Set((mode ?? '').split(','));
  if (zone !== '+00:00') return `time_zone is ${zone}, not +00:00`;
  if (!modes.has('ANSI_QUOTES') || !modes.has('NO_BACKSLASH_ESCAPES')) return `sql_mode is ${mode}`;
  if (readOnly !== '1') return 'the session is not read only';
  return null;
}

export const VERSION_SQL = 'SELECT VERSION()';

export function flavorOf(version: string): Flavor {
  return /mariadb/i.test(version) ? 'mariadb' : 'mysql';
}

const q = (s: string): string => `_utf8mb4 X'${HEX(Buffer.from(s, 'utf8'))}'`;

/** Candidate tables for a configured name; the caller picks the exact spelling first. */
export function resolveTableSql(schema: string | null, table: string): string {
  const db = schema === null ? 'DATABASE()' : q(schema);
  return `SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db} AND TABLE_NAME = ${q(table)}`;
}

/**
 * Column facts in table order. The last value says whether the column holds JSON: MySQL's JSON type, or on MariaDB a
 * column declared JSON, which is LONGTEXT with a `json_valid(col)` check (MySQL's CHECK_CONSTRAINTS has no table).
 * The server prints the check's identifiers in the session's quoting, double quotes under ANSI_QUOTES.
 */
export function describeColumnsSql(flavor: Flavor, schema: string, table: string): string {
  const json =
    flavor === 'mariadb'
      ? `EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA ` +
        `AND k.TABLE_NAME = c.TABLE_NAME AND k.CHECK_CLAUSE = CONCAT('json_valid("', REPLACE(c.COLUMN_NAME, '"', '""'), '")'))`
      : `c.DATA_TYPE = 'json'`;
  return (
    `SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_SET_NAME, c.COLLATION_NAME, ` +
    `COALESCE(c.DATETIME_PRECISION, 0), COALESCE(c.NUMERIC_PRECISION, 0), ${json} ` +
    `FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ${q(schema)} AND c.TABLE_NAME = ${q(table)} ORDER BY c.ORDINAL_POSITION`
  );
}

export function primaryKeySql(schema: string, table: string): string {
  return (
    `SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ${q(schema)} AND TABLE_NAME = ${q(table)} ` +
    `AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`
  );
}

/** A probe of the transaction list: fails with error 1227 without the PROCESS privilege. */

/**
 * The time in which watermarks are compared: TIMESTAMP values read in UTC (the session's zone); DATETIME values as
 * writers with the server's default zone stamp them (`NOW()` in a session that did not set time_zone).
 */
function inWatermarkZone(utc: string, col: MyColumn): string {
  return col.kind === 'datetime' ? `CONVERT_TZ(${utc}, '+00:00', @@global.time_zone)` : utc;
}

const MICROS = "'%Y-%m-%d %H:%i:%s.%f'";

/** Where the late-commit read boundary lies, in UTC, before the safety lag: see `readBoundarySql`. */
export interface BoundaryBase {
  /** UTC_TIMESTAMP(6) just before the open transactions were listed. */
  before: string;
  /** The list's print time, `YYYY-MM-DD HH:MM:SS` in the server's system time zone. */
  printedAt: string;
  /** Whole seconds before `printedAt` that no open transaction's rows can lie below; null when none was open. */
  secondsBeforePrint: number | null;
}

export const UTC_NOW_SQL = "SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f')";
/** The read boundary's list of open transactions; it needs the PROCESS privilege. */
export const OPEN_TRANSACTIONS_SQL = 'SHOW ENGINE INNODB STATUS';

const DATETIME_TEXT = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$/;

function datetimeLiteral(text: string): string {
  if (!DATETIME_TEXT.test(text)) throw new AppError('INTERNAL', `not a server time: ${JSON.stringify(text.slice(0, 40))}`);
  return `CAST('${text}' AS DATETIME(6))`;
}

/**
 * The read boundary for timestamp watermarks: the start of the oldest transaction open when `SHOW ENGINE INNODB
 * STATUS` was printed (see mysql-open-transactions.ts), or a second before the time just before it was asked for,
 * minus the safety lag. A writer's `NOW()` and `ON UPDATE CURRENT_TIMESTAMP` give the time its statement started,
 * which InnoDB registers a moment later: a statement that began before the list was asked for may be missing from
 * it, and the second keeps its rows above the boundary as the margin in `secondsBeforePrint` does for a listed one.
 * The print time is in the server's system time zone (not the session's), so it is converted from 'SYSTEM' to UTC.
 * The result has six fractional digits; the caller cuts it to the column's precision.
 */
export function readBoundarySql(col: MyColumn, safetyLagMs: number, base: BoundaryBase): string {
  const lag = Math.max(0, Math.round(safetyLagMs * 1000));
  const before = `${datetimeLiteral(base.before)} - INTERVAL 1 SECOND`;
  const seconds = base.secondsBeforePrint;
  const oldest =
    seconds === null
      ? before
      : `LEAST(${before}, CONVERT_TZ(${datetimeLiteral(base.printedAt)}, 'SYSTEM', '+00:00') - INTERVAL ${Math.max(0, Math.trunc(seconds))} SECOND)`;
  return `SELECT DATE_FORMAT(${inWatermarkZone(`${oldest} - INTERVAL ${lag} MICROSECOND`, col)}, ${MICROS})`;
}

/** The server's clock in the watermark's zone, with microseconds. */
export function clockSql(col: MyColumn): string {
  return `SELECT DATE_FORMAT(${inWatermarkZone('UTC_TIMESTAMP(6)', col)}, ${MICROS})`;
}

/**
 * Cuts a `YYYY-MM-DD HH:MM:SS.ffffff` time to `fsp` fractional digits, rounding down: a value a writer stores in a
 * column of that precision is never below the time it was taken at, cut the same way.
 */
export function truncateFraction(text: string, fsp: number): string {
  const dot = text.indexOf('.');
  if (dot < 0) return text;
  return fsp === 0 ? text.slice(0, dot) : text.slice(0, dot + 1 + fsp);
}

/** The server's current binlog position: MySQL 8.2 renamed SHOW MASTER STATUS, which 8.4 removed. */
export function binlogStatusSql(flavor: Flavor): string {
  return flavor === 'mariadb' ? 'SHOW MASTER STATUS' : 'SHOW BINARY LOG STATUS';
}

export const BINARY_LOGS_SQL = 'SHOW BINARY LOGS';

export const BINLOG_SETTINGS_SQL = 'SELECT @@log_bin, @@binlog_format, @@binlog_row_image';

/**
 * Foreign keys whose actions change the referencing rows (CASCADE, SET NULL, SET DEFAULT): InnoDB carries them out
 * inside the engine, and the rows it changes so are not in the binary log. Child schema and table, constraint,
 * parent schema and table, delete rule, update rule.
 */
export const CHANGING_FOREIGN_KEYS_SQL =
  'SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, DELETE_RULE, UPDATE_RULE ' +
  "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE DELETE_RULE NOT IN ('RESTRICT', 'NO ACTION') OR UPDATE_RULE NOT IN ('RESTRICT', 'NO ACTION')";

/**
 * The binlog retention settings the server has: `binlog_expire_logs_seconds` (MySQL 8, MariaDB 10.6 and later) and
 * `expire_logs_days` (older servers; an alias of the first on MariaDB, removed in MySQL 8.4). SHOW VARIABLES lists
 * only those that exist, where `@@name` of a missing one would fail.
 */
export const BINLOG_RETENTION_SQL = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('binlog_expire_logs_seconds', 'expire_logs_days')";

/**
 * How long the server keeps binlog files, in seconds, from its retention settings (name → value), and which setting
 * says so; 0 seconds: files are never purged by age. `binlog_expire_logs_seconds` rules where it is set (MySQL 8 ignores
 * `expire_logs_days` then; MariaDB keeps the two in step).
 */
export function binlogRetention(settings: ReadonlyMap<string, string>): { seconds: number; setting: string } {
  const seconds = Number(settings.get('binlog_expire_logs_seconds') ?? 0);
  if (seconds > 0 || !settings.has('expire_logs_days')) return { seconds, setting: 'binlog_expire_logs_seconds' };
  return { seconds: Math.round(Number(settings.get('expire_logs_days')) * 86400), setting: 'expire_logs_days' };
}

/** The server's clock, in epoch seconds, the clock binlog event timestamps are written with. */
export const SERVER_CLOCK_SQL = 'SELECT UNIX_TIMESTAMP()';

export const GRANTS_SQL = 'SHOW GRANTS FOR CURRENT_USER()';

/**
 * What identifies the server whose binlog positions pushsync keeps: MySQL's server_uuid, and on MariaDB (which has
 * none) the server_id with the binlog's base name.
 */
export function identitySql(flavor: Flavor): string {
  return flavor === 'mariadb' ? "SELECT CONCAT(@@server_id, ' ', @@log_bin_basename)" : "SELECT CONCAT(@@server_uuid, ' ', @@log_bin_basename)";
}

/**
 * How a new binlog stream's start position is read, so that every transaction before it is committed in the storage
 * engine: a read made after it (the initial snapshot cuts its key ranges and reads its rows later, on other
 * sessions) sees each of them. A plain SHOW MASTER STATUS does not promise that: a transaction is written to the
 * binlog before the engine commits it, so the position can be past a transaction no read sees yet, whose rows the
 * snapshot then misses and whose changes the stream never hands over.
 *
 * - MariaDB (tested, 10.11): `START TRANSACTION WITH CONSISTENT SNAPSHOT` makes the binlog position of the snapshot
 *   available in the same session as `binlog_snapshot_file`/`binlog_snapshot_position`, consistent with what the
 *   snapshot sees; `@@gtid_binlog_pos` is read next, in that session.
 * - MySQL 8 (not tested: no MySQL server on the test machines): it has no snapshot position; the consistent-snapshot
 *   transaction holds `SHOW BINARY LOG STATUS` and `@@gtid_executed`, read together. The position is read without
 *   FLUSH TABLES WITH READ LOCK, so it can stand past a commit group the engine is still committing; README says so.
 *
 * The GTID recorded with the position is the server's history at that moment, used to recognize a server whose
 * history started over (RESET MASTER, a restored backup), never to resume: the stream resumes by file and offset.
 */
export function startPositionSql(flavor: Flavor): { begin: string; reads: string[] } {
  return flavor === 'mariadb'
    ? { begin: 'START TRANSACTION WITH CONSISTENT SNAPSHOT', reads: ["SHOW STATUS LIKE 'binlog_snapshot_%'", 'SELECT @@gtid_binlog_pos'] }
    : { begin: 'START TRANSACTION WITH CONSISTENT SNAPSHOT', reads: ['SHOW BINARY LOG STATUS', 'SELECT @@gtid_executed'] };
}

/** The start position and GTID from `startPositionSql`'s results (as text), or null when the binlog is off. */
export function startPositionOf(
  flavor: Flavor,
  [status, gtid]: ReadonlyArray<ReadonlyArray<ReadonlyArray<string | null>>>,
): { file: string; offset: number; gtid: string } | null {
  let file: string | null | undefined;
  let offset: string | null | undefined;
  if (flavor === 'mariadb') {
    const vars = new Map((status ?? []).map(([k, v]) => [(k ?? '').toLowerCase(), v]));
    file = vars.get('binlog_snapshot_file');
    offset = vars.get('binlog_snapshot_position');
  } else {
    [file, offset] = status?.[0] ?? [];
  }
  if (!file || !offset) return null;
  return { file, offset: Number(offset), gtid: (gtid?.[0]?.[0] ?? '').replace(/\s+/g, '') };
}

/** The server's GTID history now (`@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL). */
export function gtidSql(flavor: Flavor): string {
  return flavor === 'mariadb' ? 'SELECT @@gtid_binlog_pos' : 'SELECT @@gtid_executed';
}
