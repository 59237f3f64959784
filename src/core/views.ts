import { quoteIdent } from './identifiers.js';

/**
 * The SQL that turns the append-only history (bronze) into the current state (silver), in DuckDB / DuckLake SQL.
 * Only the newest table generation counts (`_generation`: a table dropped and created again starts a new one, whose
 * first record is a `table_recreated` marker): keys only an older generation had are gone, and a re-created table's
 * rows win whatever their watermark. Within it, one row per key: the newest version by `_ordering` (NULL, from rows
 * without a watermark, counts as oldest), then by `_extracted_at` (a later read of the same version), then
 * `_event_id` for a total order. Deletes are filtered in QUALIFY, after the newest version is chosen: filtering in
 * WHERE would bring back the version before the delete.
 */
export interface ViewSpec {
  /** e.g. `app.public.orders` */
  label: string;
  /** Bronze table, `schema.table`. */
  target: string;
  primaryKey: string[];
  /**
   * The records may leave columns out, naming them in `_unavailable` (Debezium could not read an unchanged TOASTed
   * value): silver then takes each such column from the newest version that had it.
   */
  carryForward?: boolean | undefined;
}

const HIDDEN = ['_op', '_event_id', '_generation', '_source', '_table'];
const CARRY_META = ['_op', '_event_id', '_ordering', '_generation', '_extracted_at', '_source', '_table', '_unavailable'];
/** Operations that are not a version of a key: a delete, and the marker that starts a generation. */
const NOT_A_ROW = `('delete', 'table_recreated')`;

function qualified(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
}

export function silverName(target: string): string {
  const [, table] = target.split('.');
  return `silver.${table}`;
}

/**
 * Bronze with `_generation` as a BIGINT, 0 where it is missing: records sent before generations existed have none,
 * and a table written only by such versions has no such column at all (UNION BY NAME adds it as NULL).
 */
function history(spec: ViewSpec): string {
  return `history AS (
  SELECT * REPLACE (coalesce(CAST(_generation AS BIGINT), 0) AS _generation)
  FROM (FROM ${qualified(spec.target)} UNION ALL BY NAME SELECT NULL::BIGINT AS _generation WHERE false)
)`;
}

/** Versions of the newest generation among those `where` admits (`where` is ANDed, may be empty). */
function currentGeneration(where: string): string {
  return `WHERE ${where ? `${where} AND ` : ''}_generation = (SELECT max(_generation) FROM history${where ? ` WHERE ${where}` : ''})`;
}

function newestPerKey(spec: ViewSpec): string {
  const keys = spec.primaryKey.map(quoteIdent).join(', ');
  return `QUALIFY row_number() OVER (PARTITION BY ${keys} ORDER BY _ordering DESC NULLS LAST, _extracted_at DESC, _event_id DESC) = 1
    AND _op NOT IN ${NOT_A_ROW}`;
}

export function bronzeSql(spec: ViewSpec): string {
  return `SELECT * FROM ${qualified(spec.target)};`;
}

/**
 * Every version with its columns carried forward: a column a version names in `_unavailable` takes the value of the
 * newest earlier version that had it (a real NULL counts as a value: the struct around it is not NULL). Written
 * with COLUMNS(*), so it needs no column list and columns added later are carried too.
 */
function carriedVersions(spec: ViewSpec, where: string): string {
  const keys = spec.primaryKey.map(quoteIdent).join(', ');
  const data = `COLUMNS(* EXCLUDE (${CARRY_META.join(', ')}))`;
  return `(
  SELECT ${CARRY_META.join(', ')},
    (last_value(CASE WHEN json_contains(CAST(_unavailable AS JSON), to_json(alias(${data}))) THEN NULL ELSE {'v': ${data}} END IGNORE NULLS) OVER versions).v
  FROM history
  ${where}
  WINDOW versions AS (PARTITION BY ${keys} ORDER BY _ordering ASC NULLS FIRST, _extracted_at ASC, _event_id ASC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)`;
}

function versions(spec: ViewSpec, where = ''): string {
  const filter = currentGeneration(where);
  return spec.carryForward ? carriedVersions(spec, filter) : `history\n${filter}`;
}

function hidden(spec: ViewSpec): string {
  return (spec.carryForward ? [...HIDDEN, '_unavailable'] : HIDDEN).join(', ');
}

export function silverViewSql(spec: ViewSpec): string {
  return `CREATE SCHEMA IF NOT EXISTS silver;
CREATE OR REPLACE VIEW ${qualified(silverName(spec.target))} AS
WITH ${history(spec)}
SELECT * EXCLUDE (${hidden(spec)})
FROM ${versions(spec)}
${newestPerKey(spec)};`;
}

/**
 * The state as of a source time: only versions whose ordering value is at or before it, of the newest generation
 * that has such versions. `asOf` is an `_ordering` value, e.g. `2024-03-01T00:00:00.000000Z` for timestamp
 * watermarks. (CDC orderings grow across generations, so this is the generation current then; watermark orderings
 * of two generations say nothing about each other.)
 */
export function pointInTimeSql(spec: ViewSpec, asOf: string): string {
  return `WITH ${history(spec)}
SELECT * EXCLUDE (${hidden(spec)})
FROM ${versions(spec, `_ordering <= '${asOf.replace(/'/g, "''")}'`)}
${newestPerKey(spec)};`;
}

/** Everything `pushsync views` prints for one table. */
export function viewsScript(spec: ViewSpec, asOf: string): string {
  return `-- ${spec.label} → ${spec.target}
-- bronze: every version as it landed (append-only), with _op, _event_id, _ordering, _generation, _extracted_at, _source, _table${spec.carryForward ? ', _unavailable' : ''}
${bronzeSql(spec)}

-- silver: the current state, one row per key (${spec.primaryKey.join(', ')}), of the newest table generation
${silverViewSql(spec)}

-- point in time: the state as of a source time (replace the literal); with DuckLake, a lake snapshot is also
-- reachable with FROM ${qualified(spec.target)} AT (TIMESTAMP => TIMESTAMP '2024-01-01 00:00:00')
${pointInTimeSql(spec, asOf)}
`;
}
