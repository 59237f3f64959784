import pg from 'pg';
import { AppError } from '../core/errors.js';
import { Recent } from '../core/recent.js';
import { parseQualifiedName, quoteIdent } from '../core/identifiers.js';
import type { Cursor, KeyRange, Phase, Position } from '../core/cursor.js';
import type {
  KeyedRow,
  NextRange,
  RangeEnd,
  RowEstimate,
  Source,
  SourceBytesRow,
  SourceRow,
  TableReader,
  TableShape,
  TableSpec,
} from '../core/ports.js';
import {
  DESCRIBE_COLUMNS_SQL,
  DESCRIBE_RESULT_SQL,
  HIDDEN_OPERATORS_SQL,
  PRIMARY_KEY_SQL,
  RESOLVE_TABLE_SQL,
  STATS_PRIVILEGE_SQL,
  mayNest,
  nextRangeQuery,
  nextRangeOrEmptyQuery,
  rangeEndsQuery,
  BOUNDARY_BASE_SQL,
  boundaryText,
  comparePositionsQuery,
  clockSql,
  readKeysQuery,
  keyJsonQuery,
  softDeleteExpr,
  readRangeQuery,
  rangeEndQuery,
  sqlMask,
  valueKind,
  conditionsProbe,
  watermarkKind,
  copyColumn,
  copyRangeText,
  type PgColumn,
  type Query,
  type TableSql,
} from './postgres-sql.js';
import { translatePgError } from './postgres-errors.js';
import { CopyRowDecoder } from '../core/copy-row.js';
import {
  answerBound,
  connectionSafety,
  copyEach,
  queryEach,
  queryEachIsolated,
  queryFieldsIsolated,
  queryRows,
  queryRowsIsolated,
  TEXT_FORM_OPTIONS,
  withStartupOptions,
  type ResultField,
} from './postgres-query.js';
import { conditionProblem, selectProblem } from '../core/sql-text.js';
import { planColumns, type OutgoingColumn } from '../core/rules.js';
import { shapeFingerprint, type RelationShape } from '../core/table-shape.js';
import { relationShapeOf, relationShapeQuery } from './postgres-shape.js';

export interface PostgresSourceOptions {
  name: string;
  url: string;
  /** Connections per process. @defaultValue 4 */
  poolSize?: number;
  /** Server-side limit on one statement; an answer `answerGraceMs` later than that is not waited for. @defaultValue 300000 ms */
  statementTimeoutMs?: number;
  /** How long past `statementTimeoutMs` an answer is waited for (answerBound, postgres-query.ts). @defaultValue 30000 ms */
  answerGraceMs?: number;
  /**
   * Who builds each row's JSON on backfill reads of tables without configured SQL: Postgres (`json`), or pushsync from
   * `COPY … TO STDOUT` text (`copy`), the same bytes either way. @defaultValue 'json'
   */
  backfillRead?: 'json' | 'copy';
}

/** Tables up to this many 8 kB pages (100 MB) are counted exactly for progress reports. */
const EXACT_COUNT_MAX_PAGES = 12_800;

/**
 * Session settings: the text forms of TEXT_FORM_OPTIONS, sent as startup options, so they hold on every pooled
 * connection without an extra round trip. Every transaction is read only: the source only reads, so a statement that
 * should not be there cannot write. Standard conforming strings make Postgres read string constants the way the
 * condition scanner does.
 */
const SESSION_OPTIONS = `${TEXT_FORM_OPTIONS} -c default_transaction_read_only=on -c standard_conforming_strings=on`;

/** How long one read of where boundaries lie serves the read boundaries of a source's tables. */
const BOUNDARY_REUSE_MS = 1000;

export class PostgresSource implements Source {
  readonly name: string;
  private readonly pool: pg.Pool;
  /** How long one query may wait for its answer (answerBound). */
  private readonly timeoutMs: number;
  /** Readers by table spec, each with the fingerprint of the shape (a custom SQL table: of the result) it was described with. */
  private readonly tables = new Map<string, { fingerprint: string | null; table: Promise<PostgresTable> }>();
  private readonly boundary = new Recent<string>(BOUNDARY_REUSE_MS);

  /** See PostgresSourceOptions. */
  readonly backfillRead: 'json' | 'copy';

  constructor(options: PostgresSourceOptions) {
    this.name = options.name;
    this.backfillRead = options.backfillRead ?? 'json';
    const statementTimeoutMs = options.statementTimeoutMs ?? 300_000;
    this.timeoutMs = answerBound(statementTimeoutMs, options.answerGraceMs);
    this.pool = new pg.Pool({
      ...withStartupOptions(options.url, SESSION_OPTIONS),
      max: options.poolSize ?? 4,
      application_name: 'pushsync',
      ...connectionSafety(statementTimeoutMs),
      idleTimeoutMillis: 30_000,
    });
    // An idle client that loses its connection emits here; without a listener the process would crash.
    this.pool.on('error', () => {});
  }

  /**
   * One statement, never more (extended protocol), in a read-only session. `configured`: the statement carries SQL
   * from the config, so it runs in a read-only transaction of its own that is rolled back afterwards.
   */
  async query(q: Query, what: string, configured = false): Promise<string[][]> {
    try {
      return await (configured ? queryRowsIsolated(this.pool, q, this.timeoutMs) : queryRows(this.pool, q, this.timeoutMs));
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  /** As `query`, handing each row to `each` as it arrives (see queryEach); resolves to the row count. */
  async queryEach(q: Query, what: string, configured: boolean, each: (row: string[]) => void): Promise<number> {
    try {
      return await (configured ? queryEachIsolated(this.pool, q, each, this.timeoutMs) : queryEach(this.pool, q, each, this.timeoutMs));
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  /** A `COPY … TO STDOUT` of no configured SQL, its rows handed to `each` as they arrive (see copyEach). */
  async copyEach(text: string, what: string, each: (line: Buffer) => void): Promise<number> {
    try {
      return await copyEach(this.pool, text, each, this.timeoutMs);
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  /** The result columns of a statement carrying configured SQL, described without reading a row. */
  async fields(q: Query, what: string): Promise<ResultField[]> {
    try {
      return await queryFieldsIsolated(this.pool, q, this.timeoutMs);
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  /**
   * The reader for the table as it is now. One catalog query per call compares the table's shape with the one its
   * cached reader was described with; a change (a column added, dropped, renamed or retyped, the table re-created)
   * describes it again, so rows are never read with a column list that no longer fits.
   */
  async table(spec: TableSpec): Promise<TableReader> {
    const key = JSON.stringify([spec.name, spec.primaryKey, spec.watermark, spec.softDelete, spec.columns, spec.masks, spec.where, spec.query]);
    if (spec.query !== undefined) return this.queryTable(key, spec);
    const relation = await this.relationShape(spec.name, this.tables.has(key));
    // Read after the query: a concurrent call may have described the new shape meanwhile.
    const entry = this.tables.get(key);
    if (entry && relation && entry.fingerprint === shapeFingerprint(relation)) return entry.table;
    if (entry && !relation) {
      throw new AppError('SOURCE_SCHEMA', `table ${spec.name} no longer exists in source ${this.name} (dropped, or being re-created?)`, {
        retryable: true,
      });
    }
    // Without a relation (never described, not found) describing reports why, naming the table.
    const previous = entry ? await entry.table.catch(() => undefined) : undefined;
    return this.describe(key, spec, relation, previous);
  }

  /**
   * A custom SQL table's reader, described again when the query's result columns changed (a column of a table it
   * reads with `*` added or dropped, a type changed): one statement that plans the query and reads no row. Its shape
   * then differs from the one last seen and the change is announced like a table's (no identity: a re-created table
   * under a query is not told apart).
   */
  private async queryTable(key: string, spec: TableSpec): Promise<PostgresTable> {
    const entry = this.tables.get(key);
    const fingerprint = JSON.stringify(await queryResultFields(this, spec, `${this.name}.${spec.name}`));
    // Read after the query: a concurrent call may have described the new result meanwhile.
    const now = this.tables.get(key) ?? entry;
    if (now && now.fingerprint === fingerprint) return now.table;
    const previous = now ? await now.table.catch(() => undefined) : undefined;
    return this.describe(key, spec, null, previous, fingerprint);
  }

  private describe(
    key: string,
    spec: TableSpec,
    relation: RelationShape | null,
    previous: PostgresTable | undefined,
    fingerprint: string | null = relation && shapeFingerprint(relation),
  ): Promise<PostgresTable> {
    const table = PostgresTable.describe(this, spec, relation, previous);
    this.tables.set(key, { fingerprint, table });
    table.catch(() => {
      if (this.tables.get(key)?.table === table) this.tables.delete(key);
    });
    return table;
  }

  /**
   * The table's shape now, or null when it is not found. A malformed name is left for describing to report, unless
   * the table was described before (then it is a query failure like any other).
   */
  private async relationShape(name: string, known: boolean): Promise<RelationShape | null> {
    try {
      return relationShapeOf(await this.query(relationShapeQuery(name), `read the shape of ${name}`));
    } catch (err) {
      if (known) throw err;
      return null;
    }
  }

  /**
   * Where read boundaries lie now (BOUNDARY_BASE_SQL), shared by the source's tables for up to a second: a base
   * taken earlier is only lower, never unsafe (a transaction that starts later has a later `now()`), and a run of
   * many idle tables then spends no statement of its own on it.
   */
  boundaryBase(where: string): Promise<string> {
    return this.boundary.get(() => this.readBoundaryBase(where));
  }

  private async readBoundaryBase(where: string): Promise<string> {
    const [row] = await this.query({ text: BOUNDARY_BASE_SQL, values: [] }, `read boundary of ${where}`);
    if (row?.[1] === 'off') {
      // The boundary would be now, blind to every open transaction: their late commits below it would be skipped.
      throw new AppError(
        'SOURCE_UNAVAILABLE',
        `${where}: track_activities is off on the server, so pg_stat_activity shows no open transaction and the ` +
          `late-commit read boundary cannot be placed; turn it on (ALTER SYSTEM SET track_activities = on; SELECT pg_reload_conf())`,
      );
    }
    if (!row?.[0]) throw new AppError('INTERNAL', `${where}: the read boundary query returned no time`, { retryable: true });
    return row[0];
  }

  async warnings(): Promise<string[]> {
    const [row] = await this.query({ text: STATS_PRIVILEGE_SQL, values: [] }, 'check pg_read_all_stats');
    const [server] = await this.query(
      { text: "SELECT pg_is_in_recovery()::text, current_setting('server_encoding')", values: [] },
      'check for a standby and the database encoding',
    );
    const warnings: string[] = [];
    if (row?.[0] !== 'true') {
      warnings.push(
        `source ${this.name}: the role cannot see other roles' transactions in pg_stat_activity, so rows of a long ` +
          `transaction committing late could be skipped; GRANT pg_read_all_stats TO <role>`,
      );
    }
    if (server?.[0] === 'true') {
      warnings.push(
        `source ${this.name} is a standby: pg_stat_activity there shows none of the primary's open transactions, so ` +
          `rows of a transaction committing late on the primary could be skipped by timestamp-watermark tables; read ` +
          `from the primary, or set safetyLag above the longest transaction time of its writers`,
      );
    }
    if (server?.[1] === 'SQL_ASCII') {
      // Every other encoding is converted to the UTF8 each connection asks for; SQL_ASCII's bytes pass as stored.
      warnings.push(
        `source ${this.name}: the database's encoding is SQL_ASCII, so the server passes text bytes on as stored, ` +
          `without knowing their encoding; bytes that are not UTF-8 reach the destination as U+FFFD (the replacement ` +
          `character), so their values are not what is stored; move the data to a database created with ENCODING 'UTF8'`,
      );
    }
    return warnings;
  }

  async ping(): Promise<void> {
    await this.query({ text: 'SELECT 1', values: [] }, 'ping');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Resolves a configured column name the way Postgres would: unquoted names fold to lower case. */
function findColumn(columns: PgColumn[], written: string, table: string, role: string): PgColumn {
  const parts = parseQualifiedName(written);
  const part = parts[0];
  if (parts.length !== 1) {
    throw new AppError('SOURCE_SCHEMA', `${role} column ${written} in ${table} must be a single column name (quote names containing dots)`);
  }
  const name = part!.quoted ? part!.text : part!.text.toLowerCase();
  const found = columns.find((c) => c.name === name);
  if (found) return found;
  const hint = columns.find((c) => c.name.toLowerCase() === name.toLowerCase());
  throw new AppError(
    'SOURCE_SCHEMA',
    `${role} column ${written} not found in ${table}` +
      (hint ? `; did you mean "${hint.name}" (quote mixed-case names: '"${hint.name}"')?` : `; columns: ${columns.map((c) => c.name).join(', ')}`),
  );
}

/** The name a configured column refers to, by the same folding rules as `findColumn`, or null. */
function resolveColumn(columns: PgColumn[]): (written: string) => string | null {
  return (written) => {
    let parts;
    try {
      parts = parseQualifiedName(written);
    } catch {
      return null;
    }
    if (parts.length !== 1) return null;
    const name = parts[0]!.quoted ? parts[0]!.text : parts[0]!.text.toLowerCase();
    return columns.some((c) => c.name === name) ? name : null;
  };
}

interface Relation {
  /** The table's oid; null for a query. */
  oid: string | null;
  /** What follows FROM: `"schema"."table"`, or `(<query>)`. */
  qualified: string;
  schema: string;
  relname: string;
  columns: PgColumn[];
  /** Declared types with modifiers (`numeric(12,2)`), by column name. */
  declared: Map<string, string>;
}

/**
 * Refuses key and watermark columns whose type's comparison operators this connection cannot name (see
 * HIDDEN_OPERATORS_SQL): paging by them would sort by one order and continue by another, skipping rows.
 */
async function checkKeyOperators(source: PostgresSource, cols: readonly PgColumn[], where: string): Promise<void> {
  const hidden = await source.query({ text: HIDDEN_OPERATORS_SQL, values: [cols.map((c) => c.castType)] }, `key operators of ${where}`);
  const [first] = hidden;
  if (!first) return;
  const col = cols[Number(first[0]) - 1]!;
  throw new AppError(
    'SOURCE_SCHEMA',
    `${where}: column ${col.name} of type ${col.castType} is compared by operators in schema ${first[1]}, which is not on ` +
      `the connection's search_path, so key comparisons would fall back to another type's and skip rows; add ${first[1]} ` +
      `to the search_path (ALTER ROLE … SET search_path, or ?options=-c search_path=… in the URL)`,
  );
}

const UNORDERABLE = ['json', 'xml', 'point', 'polygon', 'box', 'circle', 'line', 'lseg', 'path'];

function toColumns(described: string[][]): { columns: PgColumn[]; declared: Map<string, string> } {
  const columns = described.map(
    ([name, castType, _type, baseName, category, typtype, elemName]) =>
      ({ name, castType, baseName, category, typtype, elemName: elemName ?? null }) as PgColumn,
  );
  return { columns, declared: new Map(described.map(([name, , type]) => [name!, type!])) };
}

async function resolveTable(source: PostgresSource, spec: TableSpec): Promise<Relation> {
  let resolved: string[][];
  try {
    resolved = await source.query({ text: RESOLVE_TABLE_SQL, values: [spec.name] }, `resolve ${spec.name}`);
  } catch (err) {
    // to_regclass rejects a malformed name with 42602 instead of returning null.
    if (err instanceof AppError && err.code === 'SOURCE_QUERY_FAILED') {
      throw new AppError('SOURCE_SCHEMA', `table name ${spec.name} is not valid: ${err.message}`, { cause: err });
    }
    throw err;
  }
  const [row] = resolved;
  if (!row)
    throw new AppError(
      'SOURCE_SCHEMA',
      `table ${spec.name} not found in source ${source.name} (names follow SQL rules: quote mixed case, e.g. public."Orders")`,
    );
  const [oid, qualified, , schema, relname] = row as [string, string, string, string, string];
  const described = await source.query({ text: DESCRIBE_COLUMNS_SQL, values: [oid] }, `describe ${spec.name}`);
  return { oid, qualified, schema, relname, ...toColumns(described) };
}

/** The result columns of a custom SQL table's query, as the server describes them (nothing is read). */
async function queryResultFields(source: PostgresSource, spec: TableSpec, where: string): Promise<ResultField[]> {
  const problem = selectProblem(spec.query!);
  if (problem) throw new AppError('SOURCE_SCHEMA', `query of ${where} must be one SELECT statement: ${problem}`);
  return source
    .fields({ text: `SELECT * FROM (${spec.query!}) t LIMIT 0`, values: [] }, `describe the query of ${spec.name}`)
    .catch((err: unknown) => {
      throw new AppError('SOURCE_SCHEMA', `${where}: the query is not valid SQL: ${(err as Error).message}`, { cause: err });
    });
}

/** A custom SQL table: its output columns, from the server's description of the query (nothing is read). */
async function describeQuery(source: PostgresSource, spec: TableSpec, where: string): Promise<Relation> {
  const qualified = `(${spec.query!})`;
  const fields = await queryResultFields(source, spec, where);
  const duplicate = fields.find((f, i) => fields.findIndex((g) => g.name === f.name) !== i);
  if (duplicate)
    throw new AppError(
      'SOURCE_SCHEMA',
      `${where}: the query returns two columns named ${duplicate.name}; give each output column its own name (AS …)`,
    );
  const described = await source.query(
    { text: DESCRIBE_RESULT_SQL, values: [fields.map((f) => f.name), fields.map((f) => f.typeOid), fields.map((f) => f.typeModifier)] },
    `describe the columns of ${spec.name}`,
  );
  return { oid: null, qualified, schema: '', relname: spec.name, ...toColumns(described) };
}

/** The configured conditions (soft delete, where) must each be one SQL condition before they enter a statement. */
function checkConditions(spec: TableSpec, where: string): void {
  const conditions: Array<[string, string | undefined]> = [
    ['softDelete.condition', spec.softDelete?.condition],
    ['where', spec.where],
  ];
  for (const [key, text] of conditions) {
    const problem = text === undefined ? null : conditionProblem(text);
    if (problem) throw new AppError('SOURCE_SCHEMA', `${key} of ${where} must be one SQL condition: ${problem}`);
  }
}

class PostgresTable implements TableReader {
  private constructor(
    private readonly source: PostgresSource,
    private readonly sql: TableSql,
    readonly shape: TableShape,
    private readonly where: string,
    /** Statements that read rows carry configured SQL (a soft-delete condition, a filter, a query). */
    private readonly configured: boolean,
    /** Every statement that names the relation carries configured SQL (a custom SQL table). */
    private readonly queried: boolean,
    /** Every column the table had when described: names the configuration gave may refer to them. */
    private readonly described: PgColumn[],
  ) {
    // COPY's text forms are those of pushsync's own session settings, which configured SQL could change
    // (set_config) before the values are printed: such tables keep the JSON Postgres builds.
    if (!configured && source.backfillRead === 'copy') {
      const columns = sql.columns.map((c) => ({ name: c.name, form: copyColumn(c, sql.masks?.get(c.name)).form }));
      // The watermark phase's positions lead with the watermark; the others' are the key alone.
      const decoder = (keys: number): CopyRowDecoder => new CopyRowDecoder({ keys, columns, flag: sql.deleted !== undefined });
      const byWatermark = decoder(1 + sql.primaryKey.length);
      const byKey = decoder(sql.primaryKey.length);
      this.readRangeBytes = (range, after, limit, each) => this.copyRange(range.phase === 'wm' ? byWatermark : byKey, range, after, limit, each);
    }
  }

  readonly readRangeBytes?: (range: KeyRange, after: Position | null, limit: number, each: (row: SourceBytesRow) => void) => Promise<number>;

  /**
   * `relation`: the shape read before describing (so a change racing the description is seen by the next check);
   * `previous`: the reader of the table's earlier shape, whose columns configured names may still name.
   */
  static async describe(source: PostgresSource, spec: TableSpec, relation: RelationShape | null, previous?: PostgresTable): Promise<PostgresTable> {
    const where = `${source.name}.${spec.name}`;
    checkConditions(spec, where);
    const condition = spec.softDelete?.condition;
    const rel = spec.query === undefined ? await resolveTable(source, spec) : await describeQuery(source, spec, where);
    const { columns, declared, qualified } = rel;
    let pkNames = spec.primaryKey;
    // A key found in the catalog is the table's primary key, so an index serves lookups by it.
    const keyIndexed = !pkNames || pkNames.length === 0;
    if (!pkNames || pkNames.length === 0) {
      if (rel.oid === null)
        throw new AppError(
          'SOURCE_SCHEMA',
          `${where}: a query table needs primaryKey: [col, ...] naming output columns that are unique and not null`,
        );
      const pkRows = await source.query({ text: PRIMARY_KEY_SQL, values: [rel.oid] }, `primary key of ${spec.name}`);
      if (pkRows.length === 0) {
        throw new AppError('SOURCE_SCHEMA', `${where} has no primary key; set primaryKey: [col, ...] to columns that are unique and not null`);
      }
      pkNames = pkRows.map(([n]) => `"${(n as string).replace(/"/g, '""')}"`);
    }
    const primaryKey = pkNames.map((n) => findColumn(columns, n, where, 'primaryKey'));
    const watermark = spec.watermark === undefined ? null : findColumn(columns, spec.watermark, where, 'watermark');
    if (watermark && primaryKey.some((c) => c.name === watermark.name)) {
      throw new AppError('SOURCE_SCHEMA', `${where}: the watermark column ${watermark.name} cannot also be part of the primary key`);
    }
    const unorderable = [...(watermark ? [watermark] : []), ...primaryKey].find((c) => UNORDERABLE.includes(c.baseName));
    if (unorderable)
      throw new AppError('SOURCE_SCHEMA', `${where}: column ${unorderable.name} of type ${unorderable.castType} cannot order a keyset`);
    await checkKeyOperators(source, [...(watermark ? [watermark] : []), ...primaryKey], where);
    const typeOf = (c: PgColumn): string => declared.get(c.name) ?? c.castType;
    const plan = planColumns({
      table: where,
      columns: columns.map((c) => ({ name: c.name, type: typeOf(c), kind: valueKind(c) })),
      primaryKey: primaryKey.map((c) => c.name),
      watermark: watermark?.name ?? null,
      selection: spec.columns,
      masks: spec.masks,
      resolve: resolveColumn(columns),
      vanished: previous ? (written) => resolveColumn(previous.described)(written) !== null : undefined,
    });
    const byName = new Map(columns.map((c) => [c.name, c]));
    const leaving = plan.leaving.map((c) => byName.get(c.name)!);
    const sqlMasks = new Map<string, string>();
    const outgoing: OutgoingColumn[] = plan.leaving.map((c) => {
      const expr = c.mask ? sqlMask(byName.get(c.name)!, c.mask) : null;
      if (expr !== null) sqlMasks.set(c.name, expr);
      return {
        name: c.name,
        type: c.type,
        mask: c.mask,
        appliedIn: c.mask ? (expr !== null ? 'source' : 'pipeline') : null,
        primaryKey: primaryKey.some((k) => k.name === c.name),
      };
    });
    const shape: TableShape = {
      columns: columns.map((c) => ({ name: c.name, type: typeOf(c), kind: valueKind(c) })),
      primaryKey: primaryKey.map((c) => c.name),
      schema: rel.schema,
      relname: rel.relname,
      watermark: watermark?.name ?? null,
      watermarkKind: watermark ? watermarkKind(watermark) : 'other',
      // A masked value is a scalar, whatever it was.
      mayNest: mayNest(leaving.filter((c) => !plan.leaving.find((p) => p.name === c.name)!.mask)),
      outgoing,
      withheld: plan.withheld.map((c) => ({ name: c.name, type: c.type, kind: c.kind })),
      filtered: spec.where !== undefined,
      // A custom SQL table's result has no identity, but its columns are tracked like a table's.
      ...(relation
        ? { relation }
        : rel.oid === null
          ? { relation: { identity: null, columns: columns.map((c) => ({ name: c.name, type: typeOf(c) })) } }
          : {}),
    };
    const softColumn = spec.softDelete?.column ? findColumn(columns, spec.softDelete.column, where, 'softDelete') : undefined;
    const deleted = softDeleteExpr({ column: softColumn, condition });
    const conditions = { deleted: condition, filter: spec.where };
    const sql: TableSql = { qualified, columns: leaving, masks: sqlMasks, watermark, primaryKey, keyIndexed, deleted, conditions };
    const configured = condition !== undefined || spec.where !== undefined || spec.query !== undefined;
    const table = new PostgresTable(source, sql, shape, where, configured, spec.query !== undefined, columns);
    if (condition !== undefined || spec.where !== undefined) {
      // Fail at start, not in a push job, when a condition does not compile.
      await source.query(conditionsProbe(sql), `conditions of ${spec.name}`, true).catch((err: unknown) => {
        const what =
          condition !== undefined && spec.where !== undefined
            ? 'softDelete condition or where'
            : condition !== undefined
              ? 'softDelete condition'
              : 'where';
        throw new AppError('SOURCE_SCHEMA', `${where}: ${what} is not valid SQL for this table: ${(err as Error).message}`, { cause: err });
      });
    }
    return table;
  }

  private toPosition(row: string[], phase: Phase): Position {
    return phase === 'wm'
      ? { wm: row[0]!, pk: row.slice(1, 1 + this.sql.primaryKey.length) }
      : { wm: null, pk: row.slice(0, this.sql.primaryKey.length) };
  }

  async nextRange(cursor: Cursor, limit: number, upperBound: string | null = null): Promise<NextRange | null> {
    const rows = await this.source.query(
      nextRangeQuery(this.sql, cursor.phase, cursor.after, limit, upperBound),
      `page keys of ${this.where}`,
      this.queried,
    );
    return this.pageOf(rows, cursor);
  }

  async nextRangeOrEmpty(cursor: Cursor, limit: number, upperBound: string | null = null): Promise<NextRange | null | 'empty'> {
    const rows = await this.source.query(
      nextRangeOrEmptyQuery(this.sql, cursor.phase, cursor.after, limit, upperBound),
      `page keys of ${this.where}`,
      this.queried,
    );
    if (rows.length === 1 && rows[0]![rows[0]!.length - 1] === 'empty') return 'empty';
    return this.pageOf(rows, cursor);
  }

  /** The range of a page's key rows after `cursor`; null for no row. */
  private pageOf(rows: string[][], cursor: Cursor): NextRange | null {
    const last = rows[rows.length - 1];
    if (!last) return null;
    const range: KeyRange = { phase: cursor.phase, lo: cursor.after, hi: this.toPosition(last, cursor.phase) };
    return { range, rows: rows.length, keys: rows.map((r) => this.toPosition(r, cursor.phase).pk) };
  }

  async nextRangeEnd(cursor: Cursor, limit: number, upperBound: string | null = null): Promise<RangeEnd | null> {
    const [last] = await this.source.query(
      rangeEndQuery(this.sql, cursor.phase, cursor.after, limit, upperBound),
      `page end of ${this.where}`,
      this.queried,
    );
    // Fewer than `limit` rows left: the page's end is its last row, which only reading the keys finds.
    if (!last) return this.nextRange(cursor, limit, upperBound);
    return { range: { phase: cursor.phase, lo: cursor.after, hi: this.toPosition(last, cursor.phase) }, rows: limit };
  }

  async nextRangeEnds(cursor: Cursor, limit: number, pages: number, upperBound: string | null = null): Promise<RangeEnd[]> {
    const rows = await this.source.query(
      rangeEndsQuery(this.sql, cursor.phase, cursor.after, limit, pages, upperBound),
      `page ends of ${this.where}`,
      this.queried,
    );
    let lo = cursor.after;
    let before = 0;
    return rows.map((r) => {
      const n = Number(r[r.length - 1]);
      const end = { range: { phase: cursor.phase, lo, hi: this.toPosition(r, cursor.phase) }, rows: n - before };
      lo = end.range.hi;
      before = n;
      return end;
    });
  }

  async readRange(range: KeyRange, after: Position | null, limit: number): Promise<SourceRow[]> {
    const q = readRangeQuery(this.sql, range.phase, after ?? range.lo, range.hi, limit);
    const rows = await this.source.query(q, `read rows of ${this.where}`, this.configured);
    const out = new Array<SourceRow>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = this.sourceRow(rows[i]!, range.phase);
    return out;
  }

  readRangeEach(range: KeyRange, after: Position | null, limit: number, each: (row: SourceRow) => void): Promise<number> {
    const q = readRangeQuery(this.sql, range.phase, after ?? range.lo, range.hi, limit);
    return this.source.queryEach(q, `read rows of ${this.where}`, this.configured, (r) => each(this.sourceRow(r, range.phase)));
  }

  private copyRange(
    decoder: CopyRowDecoder,
    range: KeyRange,
    after: Position | null,
    limit: number,
    each: (row: SourceBytesRow) => void,
  ): Promise<number> {
    const text = copyRangeText(this.sql, range.phase, after ?? range.lo, range.hi, limit);
    const keyCount = this.sql.primaryKey.length;
    return this.source.copyEach(text, `read rows of ${this.where}`, (line) => {
      let row;
      try {
        row = decoder.decode(line);
      } catch (err) {
        // Most likely a column's type changed since the table was described: a retry describes it again.
        throw new AppError(
          'SOURCE_SCHEMA',
          `${this.where}: a row read with COPY is not in the form its columns' types print: ${(err as Error).message}`,
          {
            retryable: true,
            cause: err,
          },
        );
      }
      const position: Position =
        range.phase === 'wm' ? { wm: row.keys[0]!, pk: row.keys.slice(1, 1 + keyCount) } : { wm: null, pk: row.keys.slice(0, keyCount) };
      each({ position, json: row.json, start: row.start, length: row.length, brackets: row.brackets, deleted: row.flag, utf8: row.utf8 });
    });
  }

  /** One object shape for every row: this runs for every row sent. */
  private sourceRow(r: string[], phase: Phase): SourceRow {
    const keyCount = (phase === 'wm' ? 1 : 0) + this.sql.primaryKey.length;
    const json = r[keyCount] ?? null;
    const row: SourceRow = { position: this.toPosition(r, phase), json: json ?? '', deleted: r[keyCount + 1] === 'true' };
    // A row outside the filter comes without its JSON: nothing of it reached this process.
    if (json === null) row.matched = false;
    return row;
  }

  async readBoundary(safetyLagMs: number): Promise<string | null> {
    if (this.sql.watermark === null || this.shape.watermarkKind !== 'timestamp') return null;
    return boundaryText(await this.source.boundaryBase(this.where), safetyLagMs, this.sql.watermark.castType);
  }

  async comparePositions(phase: Phase, a: Position, b: Position): Promise<number> {
    const [row] = await this.source.query(comparePositionsQuery(this.sql, phase, a, b), `compare cursors of ${this.where}`);
    return Number(row?.[0]);
  }

  async isEmpty(): Promise<boolean> {
    const rows = await this.source.query({ text: `SELECT 1 FROM ${this.sql.qualified} t LIMIT 1`, values: [] }, `probe ${this.where}`, this.queried);
    return rows.length === 0;
  }

  async now(): Promise<string | null> {
    if (this.sql.watermark === null || this.shape.watermarkKind !== 'timestamp') return null;
    const [row] = await this.source.query({ text: clockSql(this.sql.watermark.castType), values: [] }, `clock of ${this.where}`);
    return row?.[0] ?? null;
  }

  async readKeys(keys: readonly string[][]): Promise<KeyedRow[]> {
    if (keys.length === 0) return [];
    const rows = await this.source.query(readKeysQuery(this.sql, keys), `read changed rows of ${this.where}`, this.configured);
    return rows.map((r) => ({ index: Number(r[0]) - 1, json: r[1] ?? '', deleted: r[2] === 'true', ...(r[1] === null ? { matched: false } : {}) }));
  }

  async keyJson(keys: readonly string[][]): Promise<string[]> {
    if (keys.length === 0) return [];
    return (await this.source.query(keyJsonQuery(this.sql, keys), `encode deleted keys of ${this.where}`)).map((r) => r[0]!);
  }

  /**
   * The lines of the page query's plan that scan a whole relation, for a page continuing after the table's first key
   * (so the planner sees a real lower bound). Empty when every relation is read by an index.
   */
  async fullScans(): Promise<string[]> {
    if (this.sql.watermark === null) return [];
    const [first] = await this.source.query(nextRangeQuery(this.sql, 'wm', null, 1), `first key of ${this.where}`, this.queried);
    const q = nextRangeQuery(this.sql, 'wm', first ? this.toPosition(first, 'wm') : null, 5000);
    const plan = await this.source.query({ text: `EXPLAIN ${q.text}`, values: q.values }, `explain the page query of ${this.where}`, this.queried);
    return plan.map((r) => r[0]!.trim()).filter((line) => /\bSeq Scan on\b/.test(line));
  }

  /**
   * Why the page query of an incremental run is not an index range scan on (watermark, primary key), with the plan
   * line and the index to create; null when it is, or when the table has no watermark or is a query. Without that
   * index, a run that finds nothing new still reads (and sorts) the whole table: idle cost grows with its size.
   */
  async pageScanProblem(): Promise<string | null> {
    if (this.sql.watermark === null || this.sql.qualified.startsWith('(')) return null;
    const wanted = [this.sql.watermark.name, ...this.sql.primaryKey.map((c) => c.name)];
    const [first] = await this.source.query(nextRangeQuery(this.sql, 'wm', null, 1), `first key of ${this.where}`, this.queried);
    const q = nextRangeQuery(this.sql, 'wm', first ? this.toPosition(first, 'wm') : null, 5000);
    const plan = (
      await this.source.query({ text: `EXPLAIN ${q.text}`, values: q.values }, `explain the page query of ${this.where}`, this.queried)
    ).map((r) =>
      r[0]!
        .trim()
        .replace(/^->\s*/, '')
        .replace(/\s+\(cost=[^)]*\)$/, ''),
    );
    // Valid, unconditional btree indexes whose leading columns are (watermark, primary key...), in that order.
    const columns = await this.source.query(
      {
        text: `SELECT c.relname::text, k.n::text, a.attname::text, pg_relation_size(i.indrelid)::text
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
                    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = $1::regclass AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL AND k.n <= $2
               ORDER BY 1, 2`,
        values: [this.sql.qualified, wanted.length],
      },
      `list the indexes of ${this.where}`,
    );
    const byIndex = new Map<string, string[]>();
    for (const [index, , column] of columns) byIndex.set(index!, [...(byIndex.get(index!) ?? []), column!]);
    const suitable = new Set([...byIndex].filter(([, cols]) => cols.join('\0') === wanted.join('\0')).map(([name]) => name));
    const scan = plan.find((line) => /\bScan\b/.test(line)) ?? plan[0] ?? '';
    const used = /^Index (Only )?Scan using (\S+) on /.exec(scan);
    const ranged = plan.some((line) => line.startsWith('Index Cond:'));
    if (used && suitable.has(used[2]!) && ranged && !plan.some((line) => /^(Incremental )?Sort\b/.test(line))) return null;
    const columnsText = wanted.join(', ');
    if (suitable.size > 0) {
      // On a small table the planner rightly prefers reading it whole; the index takes over as it grows.
      const bytes = Number(columns[0]?.[3] ?? 0);
      if (bytes < 8 * 1024 * 1024) return null;
      return (
        `the page query is not an index range scan on (${columnsText}) although ${[...suitable].join(', ')} covers it (plan: ${scan}); ` +
        `run ANALYZE ${this.sql.qualified} so the planner sees the table's size`
      );
    }
    return (
      `the page query is not an index range scan on (${columnsText}) (plan: ${scan}), so a run that finds nothing new still reads the whole table; ` +
      `create the index: CREATE INDEX CONCURRENTLY ON ${this.sql.qualified} (${wanted.map(quoteIdent).join(', ')})`
    );
  }

  async countNullWatermark(): Promise<number> {
    if (this.sql.watermark === null) return 0;
    const text = `SELECT count(*)::text FROM ${this.sql.qualified} t WHERE t."${this.sql.watermark.name.replace(/"/g, '""')}" IS NULL`;
    const [row] = await this.source.query({ text, values: [] }, `count NULL watermarks of ${this.where}`, this.queried);
    return Number(row?.[0] ?? 0);
  }

  /** Exact `count(*)` for a table of up to 100 MB (a quick scan); beyond, the planner's `pg_class.reltuples`. */
  async estimateRows(): Promise<RowEstimate | null> {
    // A custom SQL table has no relation to look up, and counting its query could cost as much as the backfill.
    if (this.sql.qualified.startsWith('(')) return null;
    const stats = `SELECT reltuples::float8::text, relpages::text FROM pg_class WHERE oid = $1::regclass`;
    const [row] = await this.source.query({ text: stats, values: [this.sql.qualified] }, `estimate rows of ${this.where}`);
    const [reltuples, relpages] = [Number(row?.[0] ?? -1), Number(row?.[1] ?? 0)];
    if (relpages <= EXACT_COUNT_MAX_PAGES) {
      const [count] = await this.source.query(
        { text: `SELECT count(*)::text FROM ${this.sql.qualified}`, values: [] },
        `count rows of ${this.where}`,
      );
      return { rows: Number(count?.[0] ?? 0), exact: true };
    }
    return reltuples >= 0 ? { rows: Math.round(reltuples), exact: false } : null;
  }
}
