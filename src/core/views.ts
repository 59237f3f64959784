import { quoteIdent } from './identifiers.js';

/**
 * The SQL that turns the append-only history (bronze) into the current state (silver), in DuckDB / DuckLake SQL.
 * One row per key: the newest version by `_ordering` (NULL, from rows without a watermark, counts as oldest), then
 * by `_extracted_at` (a later read of the same version), then `_event_id` for a total order. Deletes are filtered in
 * QUALIFY, after the newest version is chosen: filtering in WHERE would bring back the version before the delete.
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

const HIDDEN = ['_op', '_event_id', '_source', '_table'];
const CARRY_META = ['_op', '_event_id', '_ordering', '_extracted_at', '_source', '_table', '_unavailable'];

function qualified(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
}

export function silverName(target: string): string {
  const [, table] = target.split('.');
  return `silver.${table}`;
}

function newestPerKey(spec: ViewSpec): string {
  const keys = spec.primaryKey.map(quoteIdent).join(', ');
  return `QUALIFY row_number() OVER (PARTITION BY ${keys} ORDER BY _ordering DESC NULLS LAST, _extracted_at DESC, _event_id DESC) = 1
    AND _op <> 'delete'`;
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
    (last_value(CASE WHEN json_contains(CAST(_unavailable AS JSON), to_json(alias(${data}))) THEN NULL ELSE {'v': ${data}} END IGNORE NULLS) OVER history).v
  FROM ${qualified(spec.target)}${where}
  WINDOW history AS (PARTITION BY ${keys} ORDER BY _ordering ASC NULLS FIRST, _extracted_at ASC, _event_id ASC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)`;
}

function versions(spec: ViewSpec, where = ''): string {
  return spec.carryForward ? carriedVersions(spec, where ? `\n  ${where}` : '') : `${qualified(spec.target)}${where ? `\n${where}` : ''}`;
}

function hidden(spec: ViewSpec): string {
  return (spec.carryForward ? [...HIDDEN, '_unavailable'] : HIDDEN).join(', ');
}

export function silverViewSql(spec: ViewSpec): string {
  return `CREATE SCHEMA IF NOT EXISTS silver;
CREATE OR REPLACE VIEW ${qualified(silverName(spec.target))} AS
SELECT * EXCLUDE (${hidden(spec)})
FROM ${versions(spec)}
${newestPerKey(spec)};`;
}

/**
 * The state as of a source time: only versions whose ordering value is at or before it. `asOf` is an `_ordering`
 * value, e.g. `2024-03-01T00:00:00.000000Z` for timestamp watermarks.
 */
export function pointInTimeSql(spec: ViewSpec, asOf: string): string {
  return `SELECT * EXCLUDE (${hidden(spec)})
FROM ${versions(spec, `WHERE _ordering <= '${asOf.replace(/'/g, "''")}'`)}
${newestPerKey(spec)};`;
}

/** Everything `pushsync views` prints for one table. */
export function viewsScript(spec: ViewSpec, asOf: string): string {
  return `-- ${spec.label} → ${spec.target}
-- bronze: every version as it landed (append-only), with _op, _event_id, _ordering, _extracted_at, _source, _table${spec.carryForward ? ', _unavailable' : ''}
${bronzeSql(spec)}

-- silver: the current state, one row per key (${spec.primaryKey.join(', ')})
${silverViewSql(spec)}

-- point in time: the state as of a source time (replace the literal); with DuckLake, a lake snapshot is also
-- reachable with FROM ${qualified(spec.target)} AT (TIMESTAMP => TIMESTAMP '2024-01-01 00:00:00')
${pointInTimeSql(spec, asOf)}
`;
}
