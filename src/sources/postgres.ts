import pg from 'pg';
import { AppError } from '../core/errors.js';
import { parseQualifiedName } from '../core/identifiers.js';
import { METADATA_FIELDS } from '../core/record.js';
import type { Cursor, KeyRange, Phase, Position } from '../core/cursor.js';
import type { KeyedRow, NextRange, RowEstimate, Source, SourceRow, TableReader, TableShape, TableSpec } from '../core/ports.js';
import {
  DESCRIBE_COLUMNS_SQL,
  PRIMARY_KEY_SQL,
  RESOLVE_TABLE_SQL,
  STATS_PRIVILEGE_SQL,
  mayNest,
  nextRangeQuery,
  readBoundarySql,
  comparePositionsQuery,
  clockSql,
  readKeysQuery,
  keyJsonQuery,
  softDeleteExpr,
  readRangeQuery,
  watermarkKind,
  type PgColumn,
  type Query,
  type TableSql,
} from './postgres-sql.js';
import { translatePgError } from './postgres-errors.js';
import { queryRows, queryRowsIsolated } from './postgres-query.js';
import { conditionProblem } from '../core/sql-text.js';

export interface PostgresSourceOptions {
  name: string;
  url: string;
  /** Connections per process. @defaultValue 4 */
  poolSize?: number;
  /** Server-side limit on one statement. @defaultValue 300000 ms */
  statementTimeoutMs?: number;
}

/**
 * Session settings that make the text forms exact and stable: UTC offsets (`+00`), ISO dates, shortest exact
 * floats. Sent as startup options, so they hold on every pooled connection without an extra round trip.
 * Every transaction is read only: the source only reads, so a statement that should not be there cannot write.
 * Standard conforming strings make Postgres read string constants the way the condition scanner does.
 */
/** Tables up to this many 8 kB pages (100 MB) are counted exactly for progress reports. */
const EXACT_COUNT_MAX_PAGES = 12_800;

const SESSION_OPTIONS =
  '-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=1 ' +
  '-c default_transaction_read_only=on -c standard_conforming_strings=on';

export class PostgresSource implements Source {
  readonly name: string;
  private readonly pool: pg.Pool;
  private readonly tables = new Map<string, Promise<PostgresTable>>();

  constructor(options: PostgresSourceOptions) {
    this.name = options.name;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 4,
      options: SESSION_OPTIONS,
      application_name: 'pushsync',
      statement_timeout: options.statementTimeoutMs ?? 300_000,
      connectionTimeoutMillis: 10_000,
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
      return await (configured ? queryRowsIsolated(this.pool, q) : queryRows(this.pool, q));
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  table(spec: TableSpec): Promise<TableReader> {
    const key = JSON.stringify([spec.name, spec.primaryKey, spec.watermark, spec.softDelete]);
    let table = this.tables.get(key);
    if (!table) {
      table = PostgresTable.describe(this, spec);
      this.tables.set(key, table);
      table.catch(() => this.tables.delete(key));
    }
    return table;
  }

  async warnings(): Promise<string[]> {
    const [row] = await this.query({ text: STATS_PRIVILEGE_SQL, values: [] }, 'check pg_read_all_stats');
    if (row?.[0] === 'true') return [];
    return [
      `source ${this.name}: the role cannot see other roles' transactions in pg_stat_activity, so rows of a long ` +
        `transaction committing late could be skipped; GRANT pg_read_all_stats TO <role>`,
    ];
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

class PostgresTable implements TableReader {
  private constructor(
    private readonly source: PostgresSource,
    private readonly sql: TableSql,
    readonly shape: TableShape,
    private readonly where: string,
    /** The table's statements carry configured SQL (a soft-delete condition). */
    private readonly configured: boolean,
  ) {}

  static async describe(source: PostgresSource, spec: TableSpec): Promise<PostgresTable> {
    const where = `${source.name}.${spec.name}`;
    const condition = spec.softDelete?.condition;
    const problem = condition === undefined ? null : conditionProblem(condition);
    if (problem) throw new AppError('SOURCE_SCHEMA', `softDelete.condition of ${where} must be one SQL condition: ${problem}`);
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
    if (!row) throw new AppError('SOURCE_SCHEMA', `table ${spec.name} not found in source ${source.name} (names follow SQL rules: quote mixed case, e.g. public."Orders")`);
    const [oid, qualified, , schema, relname] = row as [string, string, string, string, string];
    const described = await source.query({ text: DESCRIBE_COLUMNS_SQL, values: [oid] }, `describe ${spec.name}`);
    const columns = described.map(
      ([name, castType, _type, baseName, category, typtype, elemName]) =>
        ({ name, castType, baseName, category, typtype, elemName: elemName ?? null }) as PgColumn,
    );
    // The declared type with its modifiers (`numeric(12,2)`), as ColumnInfo promises.
    const declared = new Map(described.map(([name, , type]) => [name!, type!]));
    const clash = columns.find((c) => (METADATA_FIELDS as readonly string[]).includes(c.name));
    if (clash) {
      throw new AppError('SOURCE_SCHEMA', `${where}: column "${clash.name}" collides with pushsync's metadata field of the same name; exclude or rename it in a view`);
    }
    let pkNames = spec.primaryKey;
    if (!pkNames || pkNames.length === 0) {
      const pkRows = await source.query({ text: PRIMARY_KEY_SQL, values: [oid] }, `primary key of ${spec.name}`);
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
    const unorderable = [...(watermark ? [watermark] : []), ...primaryKey].find((c) => ['json', 'xml', 'point', 'polygon', 'box', 'circle', 'line', 'lseg', 'path'].includes(c.baseName));
    if (unorderable) throw new AppError('SOURCE_SCHEMA', `${where}: column ${unorderable.name} of type ${unorderable.castType} cannot order a keyset`);
    const shape: TableShape = {
      columns: columns.map((c) => ({ name: c.name, type: declared.get(c.name) ?? c.castType })),
      primaryKey: primaryKey.map((c) => c.name),
      schema,
      relname,
      watermark: watermark?.name ?? null,
      watermarkKind: watermark ? watermarkKind(watermark) : 'other',
      mayNest: mayNest(columns),
    };
    const softColumn = spec.softDelete?.column ? findColumn(columns, spec.softDelete.column, where, 'softDelete') : undefined;
    const deleted = softDeleteExpr({ column: softColumn, condition });
    const table = new PostgresTable(source, { qualified, columns, watermark, primaryKey, deleted }, shape, where, condition !== undefined);
    if (condition !== undefined) {
      // Fail at start, not in a push job, when the condition does not compile.
      await source.query({ text: `SELECT ${deleted} FROM ${qualified} t LIMIT 0`, values: [] }, `softDelete condition of ${spec.name}`, true).catch((err: unknown) => {
        throw new AppError('SOURCE_SCHEMA', `${where}: softDelete condition is not valid SQL for this table: ${(err as Error).message}`, { cause: err });
      });
    }
    return table;
  }

  private toPosition(row: string[], phase: Phase): Position {
    return phase === 'wm' ? { wm: row[0]!, pk: row.slice(1, 1 + this.sql.primaryKey.length) } : { wm: null, pk: row.slice(0, this.sql.primaryKey.length) };
  }

  async nextRange(cursor: Cursor, limit: number, upperBound: string | null = null): Promise<NextRange | null> {
    const rows = await this.source.query(nextRangeQuery(this.sql, cursor.phase, cursor.after, limit, upperBound), `page keys of ${this.where}`);
    const last = rows[rows.length - 1];
    if (!last) return null;
    const range: KeyRange = { phase: cursor.phase, lo: cursor.after, hi: this.toPosition(last, cursor.phase) };
    return { range, rows: rows.length, keys: rows.map((r) => this.toPosition(r, cursor.phase).pk) };
  }

  async readRange(range: KeyRange, after: Position | null, limit: number): Promise<SourceRow[]> {
    const q = readRangeQuery(this.sql, range.phase, after ?? range.lo, range.hi, limit);
    const rows = await this.source.query(q, `read rows of ${this.where}`, this.configured);
    const keyCount = (range.phase === 'wm' ? 1 : 0) + this.sql.primaryKey.length;
    return rows.map((r) => ({ position: this.toPosition(r, range.phase), json: r[keyCount]!, deleted: r[keyCount + 1] === 'true' }));
  }

  async readBoundary(safetyLagMs: number): Promise<string | null> {
    if (this.sql.watermark === null || this.shape.watermarkKind !== 'timestamp') return null;
    const [row] = await this.source.query({ text: readBoundarySql(this.sql.watermark.castType), values: [safetyLagMs] }, `read boundary of ${this.where}`);
    return row?.[0] ?? null;
  }

  async comparePositions(phase: Phase, a: Position, b: Position): Promise<number> {
    const [row] = await this.source.query(comparePositionsQuery(this.sql, phase, a, b), `compare cursors of ${this.where}`);
    return Number(row?.[0]);
  }

  async isEmpty(): Promise<boolean> {
    const rows = await this.source.query({ text: `SELECT 1 FROM ${this.sql.qualified} LIMIT 1`, values: [] }, `probe ${this.where}`);
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
    return rows.map((r) => ({ index: Number(r[0]) - 1, json: r[1]!, deleted: r[2] === 'true' }));
  }

  async keyJson(keys: readonly string[][]): Promise<string[]> {
    if (keys.length === 0) return [];
    return (await this.source.query(keyJsonQuery(this.sql, keys), `encode deleted keys of ${this.where}`)).map((r) => r[0]!);
  }

  async countNullWatermark(): Promise<number> {
    if (this.sql.watermark === null) return 0;
    const text = `SELECT count(*)::text FROM ${this.sql.qualified} t WHERE t."${this.sql.watermark.name.replace(/"/g, '""')}" IS NULL`;
    const [row] = await this.source.query({ text, values: [] }, `count NULL watermarks of ${this.where}`);
    return Number(row?.[0] ?? 0);
  }

  /** Exact `count(*)` for a table of up to 100 MB (a quick scan); beyond, the planner's `pg_class.reltuples`. */
  async estimateRows(): Promise<RowEstimate | null> {
    const stats = `SELECT reltuples::float8::text, relpages::text FROM pg_class WHERE oid = $1::regclass`;
    const [row] = await this.source.query({ text: stats, values: [this.sql.qualified] }, `estimate rows of ${this.where}`);
    const [reltuples, relpages] = [Number(row?.[0] ?? -1), Number(row?.[1] ?? 0)];
    if (relpages <= EXACT_COUNT_MAX_PAGES) {
      const [count] = await this.source.query({ text: `SELECT count(*)::text FROM ${this.sql.qualified}`, values: [] }, `count rows of ${this.where}`);
      return { rows: Number(count?.[0] ?? 0), exact: true };
    }
    return reltuples >= 0 ? { rows: Math.round(reltuples), exact: false } : null;
  }
}
