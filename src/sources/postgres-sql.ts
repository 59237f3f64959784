import { AppError } from '../core/errors.js';
import { quoteIdent } from '../core/identifiers.js';
import type { Phase, Position } from '../core/cursor.js';
import type { WatermarkKind } from '../core/ordering.js';
import type { Mask, ValueKind } from '../core/rules.js';
import type { CopyForm } from '../core/copy-row.js';

/**
 * SQL text for the Postgres source, built from catalog facts. Pure functions, unit-tested without a database.
 *
 * The row's JSON is built by Postgres itself (`to_json` of a projection) so that values keep their exact text
 * (numeric digits, microseconds) and Node never parses them; only the types whose default JSON form would lose
 * information get an explicit encoding here.
 */
export interface PgColumn {
  name: string;
  /**
   * The type for parameter casts: `format_type(atttypid, NULL)`, without modifiers (a cast to `numeric(12,2)` or
   * `timestamp(3)` would round), except for `character` and `bit`, whose bare names mean char(1) and bit(1): a key
   * value cast to those would be truncated or rejected, so they keep their length.
   */
  castType: string;
  /** The base type's name after resolving domains, e.g. `numeric`, `_int8` for arrays. */
  baseName: string;
  /** pg_type.typcategory of the base type: N numeric, A array, U user, … */
  category: string;
  /** pg_type.typtype of the base type: b base, c composite, e enum, r range, m multirange. */
  typtype: string;
  /** For arrays, the element type's base name. */
  elemName: string | null;
}

/** Types whose JSON number form could lose digits in a consumer that reads JSON numbers as doubles. */
const EXACT_AS_TEXT = new Set(['int8', 'numeric', 'money']);

/**
 * Standard base64 on one line. Postgres's `encode(…, 'base64')` breaks lines every 76 characters (MIME style),
 * which strict decoders such as DuckDB's `from_base64` reject.
 */
function base64(expr: string): string {
  return `translate(encode(${expr}, 'base64'), chr(10), '')`;
}

/**
 * The expression for one column inside the row's projection, aliased to the column's name. `masked` replaces the
 * value with a mask computed in SQL (see `sqlMask`).
 */
export function columnExpr(col: PgColumn, table = 't', masked?: string): string {
  return `${masked ?? columnValue(col, table)} AS ${quoteIdent(col.name)}`;
}

/** `columnExpr` without its alias. */
function columnValue(col: PgColumn, table: string): string {
  const ref = `${table}.${quoteIdent(col.name)}`;
  if (EXACT_AS_TEXT.has(col.baseName)) return `${ref}::text`;
  if (col.baseName === 'bytea') return base64(ref);
  if (col.category === 'A' && col.elemName !== null && EXACT_AS_TEXT.has(col.elemName)) return `${ref}::text[]`;
  if (col.category === 'A' && col.elemName === 'bytea')
    return `(SELECT array_agg(${base64('e')} ORDER BY o) FROM unnest(${ref}) WITH ORDINALITY AS u(e, o))`;
  return ref;
}

/** Columns that can carry nested JSON (json, jsonb, composite, arrays): only those need a depth check. */
export function mayNest(columns: readonly PgColumn[]): boolean {
  return columns.some((c) => c.baseName === 'json' || c.baseName === 'jsonb' || c.typtype === 'c' || c.category === 'A');
}

/** What a column's outgoing value is, for the checks of masks. */
export function valueKind(col: PgColumn): ValueKind {
  if (col.baseName === 'json' || col.baseName === 'jsonb' || col.typtype === 'c' || col.category === 'A') return 'nested';
  if (col.baseName === 'timestamptz' || col.baseName === 'timestamp') return 'timestamp';
  if (col.baseName === 'date') return 'date';
  if (col.baseName === 'bool') return 'boolean';
  if (col.category === 'S') return 'text';
  if (col.category === 'N') return 'number';
  return 'other';
}

/**
 * A string constant for a value read from the table (a key): `E'…'` with backslashes and quotes doubled, exact
 * whatever `standard_conforming_strings` says, so no value can end the constant.
 */
export function escapedLiteral(text: string): string {
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** The `null` mask in SQL. */
const NULL_MASK = 'NULL';

/** A string constant; exact under standard_conforming_strings, which pushsync's sessions set. */
function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * A mask as SQL over the column (alias `table`), when PostgreSQL has an exact built-in whose result encodes exactly
 * as pushsync would encode the masked value itself; null when pushsync computes it (hash, replace, truncating
 * blank-padded or other text types). NULL stays NULL under every mask.
 */
export function sqlMask(col: PgColumn, mask: Mask, table = 't'): string | null {
  const ref = `${table}.${quoteIdent(col.name)}`;
  switch (mask.kind) {
    case 'null':
      return NULL_MASK;
    case 'redact':
      return mask.text.includes('\0') ? null : `CASE WHEN ${ref} IS NULL THEN NULL ELSE ${literal(mask.text)}::text END`;
    case 'truncate':
      return col.baseName === 'text' || col.baseName === 'varchar' ? `left(${ref}::text, ${mask.chars})` : null;
    case 'truncateTime':
      // date_trunc works in the session's time zone, which is UTC; on a date it returns a timestamp, cast back.
      if (col.baseName === 'date') return `date_trunc(${literal(mask.unit)}, ${ref})::date`;
      return col.baseName === 'timestamptz' || col.baseName === 'timestamp' ? `date_trunc(${literal(mask.unit)}, ${ref})` : null;
    case 'hash':
    case 'replace':
      return null;
  }
}

export function watermarkKind(col: PgColumn): WatermarkKind {
  if (col.baseName === 'timestamptz' || col.baseName === 'timestamp') return 'timestamp';
  if (col.baseName === 'date') return 'date';
  if (col.baseName === 'int2' || col.baseName === 'int4' || col.baseName === 'int8') return 'integer';
  if (col.baseName === 'numeric' || col.baseName === 'float4' || col.baseName === 'float8') return 'decimal';
  return 'other';
}

export interface TableSql {
  /** `"schema"."table"`, or `(<query>)` for a custom SQL table. */
  qualified: string;
  /** The columns that leave, in order: the only ones the row's projection names. */
  columns: PgColumn[];
  /** Masks computed in SQL, by column name: expressions over alias `t` (see `sqlMask`). */
  masks?: ReadonlyMap<string, string> | undefined;
  /** Null for tables read only by primary key (change data capture). */
  watermark: PgColumn | null;
  primaryKey: PgColumn[];
  /**
   * The primary key is the relation's own (so a unique index serves it), not one the configuration names over a
   * view or a query: rows can then be looked up by key one at a time.
   */
  keyIndexed?: boolean | undefined;
  /** SQL expression over aliases `t` and `c` that is true for soft-deleted rows; absent when the table has none. */
  deleted?: string | undefined;
  /**
   * Configured conditions, evaluated over the row alone in `CROSS JOIN LATERAL (…) c` so that their unqualified
   * names resolve to the table's columns and nothing else: the soft-delete condition as `c."__d"`, the row filter
   * (`where`) as `c."__f"`.
   */
  conditions?: { deleted?: string | undefined; filter?: string | undefined } | undefined;
}

/** The lateral that evaluates the configured conditions (empty when there are none), right after `t`. */
function conditionsJoin(t: TableSql): string {
  const parts: string[] = [];
  if (t.conditions?.deleted !== undefined) parts.push(`(${t.conditions.deleted}) AS "__d"`);
  if (t.conditions?.filter !== undefined) parts.push(`(${t.conditions.filter}) AS "__f"`);
  return parts.length === 0 ? '' : ` CROSS JOIN LATERAL (SELECT ${parts.join(', ')}) c`;
}

function projection(t: TableSql): string {
  return t.columns.map((c) => columnExpr(c, 't', t.masks?.get(c.name))).join(', ');
}

/** The row's JSON, or NULL when the row does not match the filter: nothing of such a row leaves the database. */
function rowJson(t: TableSql): string {
  return t.conditions?.filter === undefined ? 'to_json(r.*)::text' : `CASE WHEN COALESCE(c."__f", false) THEN to_json(r.*)::text END`;
}

/** A statement that compiles the configured conditions against the table without reading a row. */
export function conditionsProbe(t: TableSql): Query {
  return { text: `SELECT 1 FROM ${t.qualified} t${conditionsJoin(t)} LIMIT 0`, values: [] };
}

function keyColumns(t: TableSql, phase: Phase): PgColumn[] {
  return phase === 'wm' ? [t.watermark!, ...t.primaryKey] : t.primaryKey;
}

function positionValues(p: Position, phase: Phase): string[] {
  return phase === 'wm' ? [p.wm as string, ...p.pk] : p.pk;
}

/** `(t."a", t."b") <op> ($1::type, $2::type)`, parameters appended to `params`. */
function compare(cols: PgColumn[], op: string, values: string[], params: unknown[]): string {
  return compareTo(cols, op, values, (value) => {
    params.push(value);
    return `$${params.length}`;
  });
}

/** `(t."a", t."b") <op> (<v1>::type, <v2>::type)`, each value written by `put`. */
function compareTo(cols: PgColumn[], op: string, values: string[], put: (value: string) => string): string {
  const lhs = cols.map((c) => `t.${quoteIdent(c.name)}`).join(', ');
  const rhs = cols.map((c, i) => `${put(values[i]!)}::${c.castType}`);
  return `(${lhs}) ${op} (${rhs.join(', ')})`;
}

function keySelect(t: TableSql, phase: Phase): string {
  const wm = phase === 'wm' ? [`t.${quoteIdent(t.watermark!.name)}::text AS "__w"`] : [];
  return [...wm, ...t.primaryKey.map((c, i) => `t.${quoteIdent(c.name)}::text AS "__k${i}"`)].join(', ');
}

function orderBy(t: TableSql, phase: Phase): string {
  return keyColumns(t, phase)
    .map((c) => `t.${quoteIdent(c.name)}`)
    .join(', ');
}

function phaseFilter(t: TableSql, phase: Phase): string {
  if (phase === 'pk' || t.watermark === null) return 'TRUE';
  return `t.${quoteIdent(t.watermark.name)} IS ${phase === 'wm' ? 'NOT ' : ''}NULL`;
}

export interface Query {
  text: string;
  values: unknown[];
}

/**
 * Key columns only: the next `limit` positions after `after` (or from the start of the phase), with watermarks
 * strictly below `upperBound` when one is given (rows of transactions still in progress may yet appear below it).
 */
export function nextRangeQuery(
  t: TableSql,
  phase: Phase,
  after: Position | null,
  limit: number,
  upperBound: string | null = null,
  /** More output columns after the keys. */
  extra = '',
): Query {
  const values: unknown[] = [];
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase), values));
  if (upperBound !== null && phase === 'wm') where.push(compare([t.watermark!], '<', [upperBound], values));
  values.push(limit);
  return {
    text: `SELECT ${keySelect(t, phase)}${extra} FROM ${t.qualified} t WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT $${values.length}`,
    values,
  };
}

/**
 * `nextRangeQuery` and the emptiness probe in one statement, so one snapshot: the page's rows with a last column
 * `__e` that is NULL, and, only when the table has no row at all (its page is then empty too), one row of NULL keys
 * with `__e` = 'empty'. A table with rows answers with its page alone, in the page's order.
 */
export function nextRangeOrEmptyQuery(t: TableSql, phase: Phase, after: Position | null, limit: number, upperBound: string | null = null): Query {
  const page = nextRangeQuery(t, phase, after, limit, upperBound, ', NULL::text AS "__e"');
  const width = (phase === 'wm' ? 1 : 0) + t.primaryKey.length;
  const nulls = Array.from({ length: width }, () => 'NULL::text, ').join('');
  return { text: `(${page.text}) UNION ALL SELECT ${nulls}'empty' WHERE NOT EXISTS (SELECT 1 FROM ${t.qualified} t)`, values: page.values };
}

/**
 * The last position of `nextRangeQuery`'s page when the page is full (no row when it holds fewer than `limit`): the
 * database walks the same index range but only that row leaves it, and only its key values become text.
 */
export function rangeEndQuery(t: TableSql, phase: Phase, after: Position | null, limit: number, upperBound: string | null = null): Query {
  const q = nextRangeQuery(t, phase, after, 1, upperBound);
  q.values.push(limit - 1);
  return { text: `${q.text} OFFSET $${q.values.length}`, values: q.values };
}

/**
 * The last positions of up to `pages` consecutive pages of `nextRangeQuery` after `after`, in order, in one
 * statement: the database reads the positions of all of them (key columns only) as the page query would, numbers
 * them, and only each page's last position leaves it, with its number (`__n`, a multiple of `limit` but for the
 * phase's last row, which ends a shorter last page). The numbering runs over the limited rows, so a table without an
 * index on the page order is still read with a bounded (top-N) sort, as one page is. A set shorter than `pages`
 * pages means the phase ended: its last row, the only one with no row after it (`lead`), ends the last page.
 */
export function rangeEndsQuery(
  t: TableSql,
  phase: Phase,
  after: Position | null,
  limit: number,
  pages: number,
  upperBound: string | null = null,
): Query {
  const values: unknown[] = [];
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase), values));
  if (upperBound !== null && phase === 'wm') where.push(compare([t.watermark!], '<', [upperBound], values));
  const cols = keyColumns(t, phase);
  const inner = cols.map((c, i) => `t.${quoteIdent(c.name)} AS "__c${i}"`).join(', ');
  const order = cols.map((_, i) => `p."__c${i}"`).join(', ');
  const names = phase === 'wm' ? ['__w', ...t.primaryKey.map((_, i) => `__k${i}`)] : t.primaryKey.map((_, i) => `__k${i}`);
  const outer = cols.map((_, i) => `s."__c${i}"::text AS "${names[i]}"`).join(', ');
  values.push(limit * pages);
  const total = values.length;
  values.push(limit);
  return {
    text:
      `SELECT ${outer}, s."__n"::text AS "__n" FROM (SELECT p.*, row_number() OVER w AS "__n", lead(true) OVER w AS "__more" FROM ` +
      `(SELECT ${inner} FROM ${t.qualified} t WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT $${total}) p ` +
      `WINDOW w AS (ORDER BY ${order})) s WHERE s."__n" % $${values.length} = 0 OR s."__more" IS NULL ORDER BY s."__n"`,
    values,
  };
}

/** Full rows of a range, as JSON text, after `after` (exclusive) up to `hi` (inclusive). */
export function readRangeQuery(t: TableSql, phase: Phase, after: Position | null, hi: Position, limit: number): Query {
  const values: unknown[] = [];
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase), values));
  where.push(compare(keyColumns(t, phase), '<=', positionValues(hi, phase), values));
  values.push(limit);
  const deleted = t.deleted ? `, (${t.deleted})::text AS "__d"` : '';
  // `r.*`, not `r`: a bare `r` is ambiguous when the table has a column named r.
  return {
    text:
      `SELECT ${keySelect(t, phase)}, ${rowJson(t)} AS "__j"${deleted} FROM ${t.qualified} t${conditionsJoin(t)}, LATERAL (SELECT ${projection(t)}) r ` +
      `WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT $${values.length}`,
    values,
  };
}

/** How `copyRangeText` sends each column: its expression over alias `t`, and how its COPY text becomes JSON. */
export interface CopyColumn {
  expr: string;
  form: CopyForm;
}

/** Built-in types whose COPY text maps to their `to_json` form by a fixed rewrite (see core/copy-row.ts). */
const COPY_FORMS: ReadonlyMap<string, CopyForm> = new Map<string, CopyForm>([
  ['text', 'string'],
  ['varchar', 'string'],
  ['bpchar', 'string'],
  ['name', 'string'],
  ['uuid', 'string'],
  ['date', 'string'],
  ['int2', 'number'],
  ['int4', 'number'],
  ['float4', 'float'],
  ['float8', 'float'],
  ['bool', 'boolean'],
  ['timestamptz', 'timestamptz'],
  ['timestamp', 'timestamp'],
  ['json', 'json'],
  ['jsonb', 'json'],
]);

/**
 * One column of `copyRangeText`. A value whose JSON form is not a rewrite of its text (arrays, composites, enums,
 * intervals, masks computed in SQL, every other type) is `to_json` of the same expression `columnExpr` projects, so
 * Postgres encodes it exactly as `to_json` of the whole row would.
 */
export function copyColumn(col: PgColumn, masked?: string): CopyColumn {
  const ref = `t.${quoteIdent(col.name)}`;
  // The `null` mask's bare NULL has no type for to_json; COPY prints any NULL as NULL, which every form reads as null.
  if (masked === NULL_MASK) return { expr: NULL_MASK, form: 'json' };
  if (masked !== undefined) return { expr: `to_json(${masked})::text`, form: 'json' };
  if (EXACT_AS_TEXT.has(col.baseName)) return { expr: `${ref}::text`, form: 'string' };
  if (col.baseName === 'bytea') return { expr: base64(ref), form: 'string' };
  const form = col.category === 'A' || col.typtype !== 'b' ? undefined : COPY_FORMS.get(col.baseName);
  // A column whose type changed since the table was described (the next job describes it again) must not make a
  // record invalid JSON: the decoder checks numbers, booleans and timestamps, and JSON is cast to its type, which
  // only a column that is no longer JSON pays for (with a check). Any text makes a valid JSON string.
  if (form !== undefined) return { expr: form === 'json' ? `${ref}::${col.baseName}` : ref, form };
  return { expr: `to_json(${columnValue(col, 't')})::text`, form: 'json' };
}

/**
 * `readRangeQuery` as one `COPY … TO STDOUT` statement (COPY takes no parameters: positions are written as string
 * constants, `escapedLiteral`, cast to their column's type as the parameters are). Its rows
 * are the key values as text, then each column of `copyColumn`, then the soft-delete flag when the table has one.
 * For tables without configured SQL: a filter's row-level NULL and a custom query's own text stay on
 * `readRangeQuery`.
 */
export function copyRangeText(t: TableSql, phase: Phase, after: Position | null, hi: Position, limit: number): string {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new AppError('INTERNAL', `read limit ${limit} is not a positive integer`);
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compareTo(keyColumns(t, phase), '>', positionValues(after, phase), escapedLiteral));
  where.push(compareTo(keyColumns(t, phase), '<=', positionValues(hi, phase), escapedLiteral));
  const values = t.columns.map((c) => copyColumn(c, t.masks?.get(c.name)).expr);
  const deleted = t.deleted ? `, (${t.deleted})::text` : '';
  return (
    `COPY (SELECT ${keySelect(t, phase)}, ${values.join(', ')}${deleted} FROM ${t.qualified} t${conditionsJoin(t)} ` +
    `WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT ${limit}) TO STDOUT`
  );
}

/** `-1`, `0` or `1`: how two positions compare in the database's order (collations, types) for a phase. */
export function comparePositionsQuery(t: TableSql, phase: Phase, a: Position, b: Position): Query {
  const values: unknown[] = [];
  const cols = keyColumns(t, phase);
  const param = (v: string, i: number): string => {
    values.push(v);
    return `$${values.length}::${cols[i]!.castType}`;
  };
  const left = positionValues(a, phase).map(param).join(', ');
  const right = positionValues(b, phase).map(param).join(', ');
  return { text: `SELECT (CASE WHEN ROW(${left}) < ROW(${right}) THEN -1 WHEN ROW(${left}) = ROW(${right}) THEN 0 ELSE 1 END)::text`, values };
}

/**
 * Catalog facts for every column of `cols(name, typid, typmod, ord)`, domains resolved to their base type, and for
 * arrays the element type's domains too (an array of a domain over numeric must be encoded like numeric[]).
 */
function describeColumnsSql(cols: string): string {
  return `
WITH RECURSIVE cols(name, typid, typmod, ord) AS (${cols}),
base(oid, base_oid, depth) AS (
  SELECT t.oid, t.oid, 0 FROM pg_type t
  WHERE t.oid IN (
    SELECT typid FROM cols
    UNION
    SELECT e.typelem FROM cols JOIN pg_type e ON e.oid = cols.typid WHERE e.typcategory = 'A'
    UNION
    SELECT e.typelem FROM cols JOIN pg_type d ON d.oid = cols.typid JOIN pg_type e ON e.oid = d.typbasetype
    WHERE d.typtype = 'd' AND e.typcategory = 'A'
  )
  UNION ALL
  SELECT b.oid, d.typbasetype, b.depth + 1 FROM base b JOIN pg_type d ON d.oid = b.base_oid
  WHERE d.typtype = 'd' AND b.depth < 16
)
SELECT a.name,
       CASE WHEN a.typid IN ('bpchar'::regtype, '_bpchar'::regtype, 'bit'::regtype, '_bit'::regtype)
            THEN format_type(a.typid, a.typmod) ELSE format_type(a.typid, NULL) END AS cast_type,
       format_type(a.typid, a.typmod) AS type,
       bt.typname AS base_name, bt.typcategory AS category, bt.typtype AS typtype,
       et.typname AS elem_name
FROM cols a
JOIN LATERAL (SELECT base_oid FROM base WHERE base.oid = a.typid ORDER BY depth DESC LIMIT 1) r ON true
JOIN pg_type bt ON bt.oid = r.base_oid
LEFT JOIN LATERAL (SELECT base_oid FROM base WHERE base.oid = bt.typelem ORDER BY depth DESC LIMIT 1) er ON true
LEFT JOIN pg_type et ON et.oid = COALESCE(er.base_oid, bt.typelem) AND bt.typcategory = 'A'
ORDER BY a.ord`;
}

/** The columns of a table (`$1`: its oid). */
export const DESCRIBE_COLUMNS_SQL = describeColumnsSql(
  'SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnum::int FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped',
);

/** The output columns of a query, from its result description: `$1` names, `$2` type oids, `$3` type modifiers. */
export const DESCRIBE_RESULT_SQL = describeColumnsSql('SELECT * FROM unnest($1::text[], $2::oid[], $3::int[]) WITH ORDINALITY');

/**
 * The columns among `$1` (their types, as castType; 1-based answers) whose type has comparison operators of its own
 * (a default btree operator class for exactly it, such as citext's) that a statement does not find by name: their
 * schema is not on the connection's search path. Then `ORDER BY col` sorts by the type's own order while
 * `col > $1::type` or `col = …` resolves to another type's operators (citext falls back to text's), and keyset
 * pages computed by one and read by the other skip or repeat rows. The second column is the operators' schema.
 */
export const HIDDEN_OPERATORS_SQL = `
WITH RECURSIVE u(typ, n) AS (SELECT x.t::regtype::oid, x.n FROM unnest($1::text[]) WITH ORDINALITY AS x(t, n)),
base(n, oid, depth) AS (
  SELECT n, typ, 0 FROM u
  UNION ALL
  SELECT b.n, t.typbasetype, b.depth + 1 FROM base b JOIN pg_type t ON t.oid = b.oid WHERE t.typtype = 'd' AND b.depth < 16
)
SELECT DISTINCT b.n::text, o.oprnamespace::regnamespace::text
FROM base b
JOIN pg_opclass oc ON oc.opcintype = b.oid AND oc.opcdefault AND oc.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'btree')
JOIN pg_amop a ON a.amopfamily = oc.opcfamily AND a.amoplefttype = b.oid AND a.amoprighttype = b.oid AND a.amopstrategy IN (1, 3, 5)
JOIN pg_operator o ON o.oid = a.amopopr
WHERE NOT pg_operator_is_visible(o.oid)
ORDER BY 1`;

export const PRIMARY_KEY_SQL = `
SELECT a.attname AS name
FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::regclass AND i.indisprimary
ORDER BY k.ord`;

export const RESOLVE_TABLE_SQL = `
SELECT c.oid::text AS oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified, c.relkind AS kind,
       n.nspname AS schema, c.relname AS relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`;

/**
 * Where the read boundaries of time watermarks lie now, before each table's safety lag: the start of the oldest
 * transaction still open in this database (its `now()` is the smallest watermark it can still commit), or the current
 * time, as timestamptz text (the session is in UTC). Transactions of other roles are visible only with
 * pg_read_all_stats (or superuser). The second column is `track_activities`: with it off, pg_stat_activity shows no
 * transaction at all.
 */
export const BOUNDARY_BASE_SQL = `
SELECT LEAST(now(), (SELECT min(xact_start) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend' AND xact_start IS NOT NULL))::text,
       current_setting('track_activities')`;

const UTC_TIMESTAMPTZ = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\+00$/;

/**
 * A boundary base (timestamptz text in UTC, as BOUNDARY_BASE_SQL returns it) less `lagMs`, exact to the microsecond,
 * in the text form of the watermark's type: `…+00` for timestamptz, without the offset for a timestamp without time
 * zone (taken as UTC).
 */
export function boundaryText(base: string, lagMs: number, castType: string): string {
  const m = UTC_TIMESTAMPTZ.exec(base);
  if (!m) throw new AppError('INTERNAL', `the read boundary base is not a UTC time: ${JSON.stringify(base.slice(0, 40))}`);
  const [, y, mo, d, h, mi, sec, fraction = ''] = m;
  const seconds = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)) / 1000;
  const micros = BigInt(seconds) * 1_000_000n + BigInt(fraction.padEnd(6, '0')) - BigInt(Math.max(0, Math.round(lagMs * 1000)));
  const whole = micros / 1_000_000n;
  const iso = new Date(Number(whole) * 1000).toISOString();
  const text = `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(micros - whole * 1_000_000n).padStart(6, '0')}`;
  return castType === 'timestamp without time zone' ? text : `${text}+00`;
}

/** The database's clock (statement time), in the watermark's type and text form. */
export function clockSql(castType: string): string {
  const tz = castType === 'timestamp without time zone' ? " AT TIME ZONE 'UTC'" : '';
  return `SELECT (statement_timestamp()${tz})::text`;
}

export const STATS_PRIVILEGE_SQL = `
SELECT (r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'))::text
FROM pg_roles r WHERE r.rolname = current_user`;

/**
 * The soft-delete test as SQL over alias `t`. A column is deleted when true (booleans) or set (anything else); a
 * condition is operator-written SQL over the table's columns, evaluated in the conditions lateral (`c."__d"`, see
 * TableSql.conditions) so its unqualified names cannot clash with the query's own, and without naming every column.
 */
export function softDeleteExpr(soft: { column?: PgColumn | undefined; condition?: string | undefined }): string | undefined {
  if (soft.column) {
    const ref = `t.${quoteIdent(soft.column.name)}`;
    return soft.column.baseName === 'bool' ? `${ref} IS TRUE` : `${ref} IS NOT NULL`;
  }
  if (soft.condition) return `COALESCE(c."__d", false)`;
  return undefined;
}

/**
 * One parameter per key column, unnested into that column's values. An array column's keys stay text here: `T[]` of
 * an array type T is T itself, whose unnest would yield elements, so they are cast by `typedKey` where used.
 */
function unnestKeys(t: TableSql, keys: readonly string[][], values: unknown[]): string {
  return t.primaryKey
    .map((c, i) => {
      values.push(keys.map((k) => k[i]));
      return c.category === 'A' ? `$${values.length}::text[]` : `$${values.length}::text[]::${c.castType}[]`;
    })
    .join(', ');
}

/** A key column's value from `unnestKeys`'s output column `ref`, in the column's type. */
function typedKey(c: PgColumn, ref: string): string {
  return c.category === 'A' ? `${ref}::${c.castType}` : ref;
}

/** Base types whose equal values always print alike (in pushsync's sessions): a key of these needs no text check. */
const SPELLED_BY_VALUE = new Set(['int2', 'int4', 'int8', 'uuid', 'date', 'timestamp', 'timestamptz', 'bool', 'bytea', 'oid']);

/**
 * Full rows for a list of primary keys (change data capture re-reads changed rows by key when it sends them). Each
 * row comes with the 1-based index of the key that found it: key texts from a replication stream need not be
 * spelled like this session's (a timestamp's offset), but they compare equal once cast.
 */
export function readKeysQuery(t: TableSql, keys: readonly string[][]): Query {
  const values: unknown[] = [];
  const names = t.primaryKey.map((_c, i) => `"__k${i}"`);
  // A key finds only the row spelled exactly so: a citext or nondeterministic collation, a numeric's scale (1.0,
  // 1.00), a float's sign of zero, an interval's units ('1 day', '24:00:00') make values equal for the server that
  // the destination tells apart by their text. A key respelled in place is then gone under its old spelling.
  // The key's own text is cast and printed back first, so a stream's spelling of the same value (an offset) agrees.
  const join = t.primaryKey
    .map((c, i) => {
      const [col, key] = [`t.${quoteIdent(c.name)}`, typedKey(c, `k.${names[i]}`)];
      if (SPELLED_BY_VALUE.has(c.baseName)) return `${col} = ${key}`;
      return `${col} = ${key} AND ${col}::text COLLATE "C" = ${key}::text COLLATE "C"`;
    })
    .join(' AND ');
  const deleted = t.deleted ? `, (${t.deleted})::text AS "__d"` : '';
  const list = `unnest(${unnestKeys(t, keys, values)}) WITH ORDINALITY AS k(${names.join(', ')}, "__ord")`;
  if (t.keyIndexed) {
    // One index lookup per key. As a join, the planner hashes the whole table whenever it is small next to the key
    // list (a few hundred thousand rows for a job of 5000 keys), which costs more than the lookups and grows with the
    // table; OFFSET 0 keeps the lateral from being flattened into that join.
    return {
      text:
        `SELECT k."__ord"::text, x."__j"${t.deleted ? ', x."__d"' : ''} FROM ${list} CROSS JOIN LATERAL ` +
        `(SELECT ${rowJson(t)} AS "__j"${deleted} FROM ${t.qualified} t${conditionsJoin(t)}, LATERAL (SELECT ${projection(t)}) r ` +
        `WHERE ${join} OFFSET 0) x`,
      values,
    };
  }
  // The table comes first, so the conditions lateral sees its columns and nothing of the key list.
  return {
    text:
      `SELECT k."__ord"::text, ${rowJson(t)} AS "__j"${deleted} ` +
      `FROM ${t.qualified} t${conditionsJoin(t)} JOIN ${list} ` +
      `ON ${join}, LATERAL (SELECT ${projection(t)}) r`,
    values,
  };
}

/**
 * The JSON of key columns alone, encoded like full rows, for delete records of rows that no longer exist. Results
 * come back in the order of `keys`.
 */
export function keyJsonQuery(t: TableSql, keys: readonly string[][]): Query {
  const values: unknown[] = [];
  const names = t.primaryKey.map((c) => quoteIdent(c.name)).join(', ');
  // Only key columns that leave: a key column the table withholds is not in delete records either.
  const leaving = new Set(t.columns.map((c) => c.name));
  const keyProjection = t.primaryKey
    .filter((c) => leaving.has(c.name))
    .map((c) => columnExpr(c, 't', t.masks?.get(c.name)))
    .join(', ');
  const typed = t.primaryKey.map((c) => `${typedKey(c, `u.${quoteIdent(c.name)}`)} AS ${quoteIdent(c.name)}`).join(', ');
  return {
    text:
      `SELECT to_json(r.*)::text FROM unnest(${unnestKeys(t, keys, values)}) WITH ORDINALITY AS u(${names}, "__ord"), ` +
      `LATERAL (SELECT ${typed}) t, LATERAL (SELECT ${keyProjection}) r ORDER BY u."__ord"`,
    values,
  };
}
