import { quoteIdent } from '../core/identifiers.js';
import type { Phase, Position } from '../core/cursor.js';
import type { WatermarkKind } from '../core/ordering.js';

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

/** The expression for one column inside the row's projection, aliased to the column's name. */
export function columnExpr(col: PgColumn, table = 't'): string {
  const ref = `${table}.${quoteIdent(col.name)}`;
  const alias = quoteIdent(col.name);
  if (EXACT_AS_TEXT.has(col.baseName)) return `${ref}::text AS ${alias}`;
  if (col.baseName === 'bytea') return `${base64(ref)} AS ${alias}`;
  if (col.category === 'A' && col.elemName !== null && EXACT_AS_TEXT.has(col.elemName)) return `${ref}::text[] AS ${alias}`;
  if (col.category === 'A' && col.elemName === 'bytea') {
    return `(SELECT array_agg(${base64('e')} ORDER BY o) FROM unnest(${ref}) WITH ORDINALITY AS u(e, o)) AS ${alias}`;
  }
  return `${ref} AS ${alias}`;
}

/** Columns that can carry nested JSON (json, jsonb, composite, arrays): only those need a depth check. */
export function mayNest(columns: readonly PgColumn[]): boolean {
  return columns.some((c) => c.baseName === 'json' || c.baseName === 'jsonb' || c.typtype === 'c' || c.category === 'A');
}

export function watermarkKind(col: PgColumn): WatermarkKind {
  if (col.baseName === 'timestamptz' || col.baseName === 'timestamp') return 'timestamp';
  if (col.baseName === 'date') return 'date';
  if (col.baseName === 'int2' || col.baseName === 'int4' || col.baseName === 'int8') return 'integer';
  return 'other';
}

export interface TableSql {
  /** `"schema"."table"` */
  qualified: string;
  columns: PgColumn[];
  /** Null for tables read only by primary key (change data capture). */
  watermark: PgColumn | null;
  primaryKey: PgColumn[];
  /** SQL expression over alias `t` that is true for soft-deleted rows; absent when the table has none. */
  deleted?: string | undefined;
}

function keyColumns(t: TableSql, phase: Phase): PgColumn[] {
  return phase === 'wm' ? [t.watermark!, ...t.primaryKey] : t.primaryKey;
}

function positionValues(p: Position, phase: Phase): string[] {
  return phase === 'wm' ? [p.wm as string, ...p.pk] : p.pk;
}

/** `(t."a", t."b") <op> ($1::type, $2::type)`, parameters appended to `params`. */
function compare(cols: PgColumn[], op: string, values: string[], params: unknown[]): string {
  const lhs = cols.map((c) => `t.${quoteIdent(c.name)}`).join(', ');
  const rhs = cols.map((c, i) => {
    params.push(values[i]);
    return `$${params.length}::${c.castType}`;
  });
  return `(${lhs}) ${op} (${rhs.join(', ')})`;
}

function keySelect(t: TableSql, phase: Phase): string {
  const wm = phase === 'wm' ? [`t.${quoteIdent(t.watermark!.name)}::text AS "__w"`] : [];
  return [...wm, ...t.primaryKey.map((c, i) => `t.${quoteIdent(c.name)}::text AS "__k${i}"`)].join(', ');
}

function orderBy(t: TableSql, phase: Phase): string {
  return keyColumns(t, phase).map((c) => `t.${quoteIdent(c.name)}`).join(', ');
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
export function nextRangeQuery(t: TableSql, phase: Phase, after: Position | null, limit: number, upperBound: string | null = null): Query {
  const values: unknown[] = [];
  const where = [phaseFilter(t, phase)];
  if (after) where.push(compare(keyColumns(t, phase), '>', positionValues(after, phase), values));
  if (upperBound !== null && phase === 'wm') where.push(compare([t.watermark!], '<', [upperBound], values));
  values.push(limit);
  return {
    text: `SELECT ${keySelect(t, phase)} FROM ${t.qualified} t WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT $${values.length}`,
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
  const projection = t.columns.map((c) => columnExpr(c)).join(', ');
  const deleted = t.deleted ? `, (${t.deleted})::text AS "__d"` : '';
  // `r.*`, not `r`: a bare `r` is ambiguous when the table has a column named r.
  return {
    text:
      `SELECT ${keySelect(t, phase)}, to_json(r.*)::text AS "__j"${deleted} FROM ${t.qualified} t, LATERAL (SELECT ${projection}) r ` +
      `WHERE ${where.join(' AND ')} ORDER BY ${orderBy(t, phase)} LIMIT $${values.length}`,
    values,
  };
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
 * Catalog facts for every column of a table, domains resolved to their base type, and for arrays the element
 * type's domains too (an array of a domain over numeric must be encoded like numeric[]).
 */
export const DESCRIBE_COLUMNS_SQL = `
WITH RECURSIVE base(oid, base_oid, depth) AS (
  SELECT t.oid, t.oid, 0 FROM pg_type t
  WHERE t.oid IN (
    SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = $1::regclass
    UNION
    SELECT e.typelem FROM pg_attribute a JOIN pg_type e ON e.oid = a.atttypid
    WHERE a.attrelid = $1::regclass AND e.typcategory = 'A'
    UNION
    SELECT e.typelem FROM pg_attribute a JOIN pg_type d ON d.oid = a.atttypid JOIN pg_type e ON e.oid = d.typbasetype
    WHERE a.attrelid = $1::regclass AND d.typtype = 'd' AND e.typcategory = 'A'
  )
  UNION ALL
  SELECT b.oid, d.typbasetype, b.depth + 1 FROM base b JOIN pg_type d ON d.oid = b.base_oid
  WHERE d.typtype = 'd' AND b.depth < 16
)
SELECT a.attname AS name,
       CASE WHEN a.atttypid IN ('bpchar'::regtype, '_bpchar'::regtype, 'bit'::regtype, '_bit'::regtype)
            THEN format_type(a.atttypid, a.atttypmod) ELSE format_type(a.atttypid, NULL) END AS cast_type,
       format_type(a.atttypid, a.atttypmod) AS type,
       bt.typname AS base_name, bt.typcategory AS category, bt.typtype AS typtype,
       et.typname AS elem_name
FROM pg_attribute a
JOIN LATERAL (SELECT base_oid FROM base WHERE base.oid = a.atttypid ORDER BY depth DESC LIMIT 1) r ON true
JOIN pg_type bt ON bt.oid = r.base_oid
LEFT JOIN LATERAL (SELECT base_oid FROM base WHERE base.oid = bt.typelem ORDER BY depth DESC LIMIT 1) er ON true
LEFT JOIN pg_type et ON et.oid = COALESCE(er.base_oid, bt.typelem) AND bt.typcategory = 'A'
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`;

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
 * The read boundary for time watermarks: the start of the oldest transaction still open in this database (its
 * `now()` is the smallest watermark it can still commit), or the current time, minus a safety lag for watermarks
 * set from application clocks. Transactions of other roles are visible only with pg_read_all_stats (or superuser).
 */
export function readBoundarySql(castType: string): string {
  const tz = castType === 'timestamp without time zone' ? " AT TIME ZONE 'UTC'" : '';
  return `
SELECT ((LEAST(now(), (SELECT min(xact_start) FROM pg_stat_activity
                        WHERE datname = current_database() AND pid <> pg_backend_pid()
                          AND backend_type = 'client backend' AND xact_start IS NOT NULL))
         - make_interval(secs => $1::double precision / 1000))${tz})::text`;
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
 * condition is operator-written SQL over the table's columns, evaluated against the row alone so its unqualified
 * names cannot clash with the query's own.
 */
export function softDeleteExpr(soft: { column?: PgColumn | undefined; condition?: string | undefined }): string | undefined {
  if (soft.column) {
    const ref = `t.${quoteIdent(soft.column.name)}`;
    return soft.column.baseName === 'bool' ? `${ref} IS TRUE` : `${ref} IS NOT NULL`;
  }
  if (soft.condition) return `COALESCE((SELECT (${soft.condition}) FROM (SELECT t.*) AS row_), false)`;
  return undefined;
}

function unnestKeys(t: TableSql, keys: readonly string[][], values: unknown[]): string {
  return t.primaryKey
    .map((c, i) => {
      values.push(keys.map((k) => k[i]));
      return `$${values.length}::text[]::${c.castType}[]`;
    })
    .join(', ');
}

/**
 * Full rows for a list of primary keys (change data capture re-reads changed rows by key when it sends them). Each
 * row comes with the 1-based index of the key that found it: key texts from a replication stream need not be
 * spelled like this session's (a timestamp's offset), but they compare equal once cast.
 */
export function readKeysQuery(t: TableSql, keys: readonly string[][]): Query {
  const values: unknown[] = [];
  const names = t.primaryKey.map((_c, i) => `"__k${i}"`);
  const join = t.primaryKey.map((c, i) => `t.${quoteIdent(c.name)} = k.${names[i]}`).join(' AND ');
  const projection = t.columns.map((c) => columnExpr(c)).join(', ');
  const deleted = t.deleted ? `, (${t.deleted})::text AS "__d"` : '';
  return {
    text:
      `SELECT k."__ord"::text, to_json(r.*)::text AS "__j"${deleted} ` +
      `FROM unnest(${unnestKeys(t, keys, values)}) WITH ORDINALITY AS k(${names.join(', ')}, "__ord") ` +
      `JOIN ${t.qualified} t ON ${join}, LATERAL (SELECT ${projection}) r`,
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
  const projection = t.primaryKey.map((c) => columnExpr(c)).join(', ');
  return {
    text:
      `SELECT to_json(r.*)::text FROM unnest(${unnestKeys(t, keys, values)}) WITH ORDINALITY AS t(${names}, "__ord"), ` +
      `LATERAL (SELECT ${projection}) r ORDER BY t."__ord"`,
    values,
  };
}
