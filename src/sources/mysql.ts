import { AppError } from '../core/errors.js';
import { Recent } from '../core/recent.js';
import { parseQualifiedName } from '../core/identifiers.js';
import { conditionProblem, mysqlLexerProblem, selectProblem } from '../core/sql-text.js';
import { planColumns, type Mask, type OutgoingColumn } from '../core/rules.js';
import type { Cursor, KeyRange, Phase, Position } from '../core/cursor.js';
import type { KeyedRow, NextRange, ReadOptions, Source, SourceRow, TableReader, TableShape, TableSpec } from '../core/ports.js';
import {
  clockSql,
  comparePositionsSql,
  conditionsProbeSql,
  describeColumnsSql,
  describeQuerySql,
  filterExpr,
  nextRangeSql,
  primaryKeySql,
  queryCollationsSql,
  quoteIdent,
  readBoundarySql,
  OPEN_TRANSACTIONS_SQL,
  UTC_NOW_SQL,
  type BoundaryBase,
  readKeysSql,
  readRangeSql,
  resolveTableSql,
  ruleKind,
  softDeleteExpr,
  sqlMask,
  truncateFraction,
  unorderableReason,
  valueKind,
  watermarkKind,
  type MyColumn,
  type TableSql,
} from './mysql-sql.js';
import { ROUND_TRIP_CHARSETS, roundTripKey } from './mysql-charsets.js';
import { keyJson, keyText, leavingEncoder, rowJson, rowPrefixes, type ValueEncoder } from './mysql-encode.js';
import { mysqlErrno, translateMysqlError } from './mysql-errors.js';
import { openTransactions, secondsBeforePrint } from './mysql-open-transactions.js';
import { MysqlPool, type RawRow, type ResultField } from './mysql-query.js';
import { resultColumn } from './mysql-result.js';
import { relationShapeOf, relationShapeSql } from './mysql-shape.js';
import { shapeFingerprint } from '../core/table-shape.js';

export interface MysqlSourceOptions {
  name: string;
  /** mysql:// or mariadb:// URL. */
  url: string;
  /** Connections per process. @defaultValue 4 */
  poolSize?: number;
  /** Server-side limit on one statement (max_statement_time on MariaDB, max_execution_time on MySQL). @defaultValue 300000 ms */
  statementTimeoutMs?: number;
  /** How long past `statementTimeoutMs` a statement's answer is waited for (see MysqlPool). @defaultValue 30000 ms */
  answerGraceMs?: number;
  /** How long a locking read of changed rows waits for a row's lock (see `sessionSql`). @defaultValue 15000 ms */
  lockWaitMs?: number;
}

/** Keys per statement when rows are read by key: bounds the statement's size well below max_allowed_packet. */
const KEYS_PER_STATEMENT = 1000;
/** Fewer for a locking read: the shared locks it holds while it waits, and its weight as a deadlock victim. */
const KEYS_PER_LOCKING_STATEMENT = 100;
const ER_LOCK_DEADLOCK = 1213;
/** Deadlocks of one locking read of changed rows retried before the failure is the job's (retryable). */
const LOCKING_READ_DEADLOCKS = 3;

const text = (v: Buffer | null | undefined): string | null => (v === null || v === undefined ? null : v.toString('utf8'));

/** MySQL and MariaDB as a watermark source: InnoDB tables, read through read-only sessions in UTC. */
/** How long one list of open transactions serves the read boundaries of a source's tables. */
const BOUNDARY_REUSE_MS = 1000;

/** MySQL 8.0.22+ and MariaDB 10.5+ know the first; older servers only the second (MySQL 8.4 removed it). */
const REPLICA_STATUS_SQL = ['SHOW REPLICA STATUS', 'SHOW SLAVE STATUS'];

export class MysqlSource implements Source {
  readonly name: string;
  readonly pool: MysqlPool;
  private readonly tables = new Map<string, Promise<MysqlTable>>();
  private readonly boundary = new Recent<BoundaryBase>(BOUNDARY_REUSE_MS);

  constructor(options: MysqlSourceOptions) {
    this.name = options.name;
    this.pool = new MysqlPool({
      url: options.url,
      poolSize: options.poolSize ?? 4,
      statementTimeoutMs: options.statementTimeoutMs ?? 300_000,
      ...(options.answerGraceMs !== undefined ? { answerGraceMs: options.answerGraceMs } : {}),
      ...(options.lockWaitMs !== undefined ? { lockWaitMs: options.lockWaitMs } : {}),
    });
  }

  /** One statement in a read-only session. `configured`: it carries SQL from the config (see MysqlPool.runIsolated). */
  async query(sql: string, what: string, configured = false): Promise<RawRow[]> {
    try {
      return await (configured ? this.pool.runIsolated(sql) : this.pool.run(sql));
    } catch (err) {
      throw translateMysqlError(err, `${this.name}: ${what}`);
    }
  }

  /** A locking read of changed rows (see MysqlPool.runLocking). */
  async queryLocking(sql: string, what: string): Promise<RawRow[]> {
    try {
      return await this.pool.runLocking(sql);
    } catch (err) {
      throw translateMysqlError(err, `${this.name}: ${what}`);
    }
  }

  /** The result columns of a statement carrying configured SQL, described without reading a row. */
  async fields(sql: string, what: string): Promise<ResultField[]> {
    try {
      return await this.pool.fieldsIsolated(sql);
    } catch (err) {
      throw translateMysqlError(err, `${this.name}: ${what}`);
    }
  }

  async queryText(sql: string, what: string, configured = false): Promise<Array<Array<string | null>>> {
    return (await this.query(sql, what, configured)).map((r) => r.map(text));
  }

  /** A table's columns as the catalog describes them, in table order. */
  async columns(schema: string, relname: string): Promise<MyColumn[]> {
    const flavor = await this.pool.flavor();
    return (await this.queryText(describeColumnsSql(flavor, schema, relname), `describe ${schema}.${relname}`)).map(columnFrom);
  }

  /**
   * The reader for the table as it is now: once described, each call compares the table's columns (one
   * information_schema query) with those its reader was described with, and describes it again when they changed.
   */
  async table(spec: TableSpec): Promise<TableReader> {
    const key = JSON.stringify([spec.name, spec.primaryKey, spec.watermark, spec.softDelete, spec.columns, spec.masks, spec.where, spec.query]);
    const cached = this.tables.get(key);
    const reader = cached && (await cached.catch(() => undefined));
    // A custom SQL table has no catalog shape to compare: its reader is described once.
    if (reader && spec.query !== undefined) return reader;
    if (reader && reader.shape.relation) {
      const { schema, relname } = reader.shape;
      const now = relationShapeOf(await this.queryText(relationShapeSql(schema, relname), `read the shape of ${schema}.${relname}`));
      if (!now) {
        throw new AppError('SOURCE_SCHEMA', `table ${spec.name} no longer exists in source ${this.name} (dropped, or being re-created?)`, {
          retryable: true,
        });
      }
      if (shapeFingerprint(now) === shapeFingerprint(reader.shape.relation)) return reader;
    }
    // A concurrent call may have described the new shape meanwhile.
    const current = this.tables.get(key);
    if (current && current !== cached) return current;
    const table = MysqlTable.describe(this, spec, reader);
    this.tables.set(key, table);
    table.catch(() => {
      if (this.tables.get(key) === table) this.tables.delete(key);
    });
    return table;
  }

  /**
   * Where read boundaries lie now (see `readBoundarySql`), shared by the source's tables for up to a second: a base
   * taken earlier is only lower, never unsafe, and listing the open transactions is a heavier statement than most.
   */
  boundaryBase(where: string): Promise<BoundaryBase> {
    return this.boundary.get(() => this.readBoundaryBase(where));
  }

  private async readBoundaryBase(where: string): Promise<BoundaryBase> {
    const [[before]] = (await this.queryText(UTC_NOW_SQL, `clock for the read boundary of ${where}`)) as [[string]];
    const [status] = await this.queryText(OPEN_TRANSACTIONS_SQL, `list open transactions for the read boundary of ${where}`);
    const open = openTransactions(status?.[2] ?? '', where);
    return { before, printedAt: open.printedAt, secondsBeforePrint: secondsBeforePrint(open) };
  }

  async warnings(): Promise<string[]> {
    const warnings: string[] = [];
    try {
      await this.query(OPEN_TRANSACTIONS_SQL, 'check the PROCESS privilege');
    } catch (err) {
      if (mysqlErrno(err) !== 1227) throw err;
      warnings.push(
        `source ${this.name}: the user lacks the PROCESS privilege, so the late-commit read boundary ` +
          `(SHOW ENGINE INNODB STATUS) cannot be read and tables with a timestamp watermark fail; GRANT PROCESS ON *.* TO <user>`,
      );
    }
    if (await this.isReplica()) {
      warnings.push(
        `source ${this.name} is a replica: its open transactions are not the primary's, and rows a long primary ` +
          `transaction commits late arrive with its early NOW(), so timestamp-watermark tables could skip them; read ` +
          `from the primary, or set safetyLag above the longest transaction time of its writers plus the replication lag`,
      );
    }
    return warnings;
  }

  /** Whether the server replicates from another (needs REPLICATION CLIENT or REPLICA MONITOR; false when not allowed). */
  private async isReplica(): Promise<boolean> {
    for (const sql of REPLICA_STATUS_SQL) {
      try {
        return (await this.query(sql, 'check for a replica')).length > 0;
      } catch (err) {
        // 1064: a server without this statement's spelling; try the older one. Any other refusal: not known.
        if (mysqlErrno(err) !== 1064) return false;
      }
    }
    return false;
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1', 'ping');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Resolves a configured column name the way MySQL does: names are case-insensitive; quotes only group. */
function findColumn(columns: MyColumn[], written: string, table: string, role: string): MyColumn {
  const parts = parseQualifiedName(written);
  if (parts.length !== 1) {
    throw new AppError('SOURCE_SCHEMA', `${role} column ${written} in ${table} must be a single column name (quote names containing dots)`);
  }
  const name = parts[0]!.text;
  const found = columns.find((c) => c.name === name) ?? columns.find((c) => c.name.toLowerCase() === name.toLowerCase());
  if (found) return found;
  throw new AppError('SOURCE_SCHEMA', `${role} column ${written} not found in ${table}; columns: ${columns.map((c) => c.name).join(', ')}`);
}

/** The catalog name a configured column name refers to, by `findColumn`'s rules, or null. */
function resolveColumn(columns: MyColumn[]): (written: string) => string | null {
  return (written) => {
    let parts;
    try {
      parts = parseQualifiedName(written);
    } catch {
      return null;
    }
    if (parts.length !== 1) return null;
    const name = parts[0]!.text;
    return (columns.find((c) => c.name === name) ?? columns.find((c) => c.name.toLowerCase() === name.toLowerCase()))?.name ?? null;
  };
}

function columnFrom(row: Array<string | null>): MyColumn {
  const [name, dataType, columnType, charset, collation, fsp, precision, json] = row as [
    string,
    string,
    string,
    string | null,
    string | null,
    string,
    string,
    string,
  ];
  const kind = valueKind(dataType, charset, json === '1');
  return {
    name,
    dataType: dataType.toLowerCase(),
    columnType,
    kind,
    charset,
    collation,
    fsp: Number(fsp),
    bits: kind === 'bit' ? Number(precision) : 0,
  };
}

/** A table or a custom SQL table, as described: what follows FROM, and every column it has. */
interface Relation {
  /** `` `db`.`table` ``, or `(<query>)`. */
  qualified: string;
  schema: string;
  relname: string;
  columns: MyColumn[];
  /** False for a custom SQL table: it has no catalog entry and no primary key of its own. */
  catalogued: boolean;
}

/** The configured conditions (soft delete, where) must each be one SQL condition this server reads as checked. */
function checkConditions(spec: TableSpec, where: string): void {
  const conditions: Array<[string, string | undefined]> = [
    ['softDelete.condition', spec.softDelete?.condition],
    ['where', spec.where],
  ];
  for (const [key, sql] of conditions) {
    const problem = sql === undefined ? null : (conditionProblem(sql) ?? mysqlLexerProblem(sql));
    if (problem) throw new AppError('SOURCE_SCHEMA', `${key} of ${where} must be one SQL condition: ${problem}`);
  }
}

async function describeTable(source: MysqlSource, spec: TableSpec): Promise<Relation> {
  const { schema, relname } = await resolveTable(source, spec.name);
  const columns = await source.columns(schema, relname);
  return { qualified: `${quoteIdent(schema)}.${quoteIdent(relname)}`, schema, relname, columns, catalogued: true };
}

/**
 * A custom SQL table: its output columns, from the server's description of the query run with `LIMIT 0` in a
 * read-only transaction (nothing is read), and the character sets and collations the server reports for them.
 */
async function describeQuery(source: MysqlSource, spec: TableSpec, where: string): Promise<Relation> {
  const problem = selectProblem(spec.query!) ?? mysqlLexerProblem(spec.query!);
  if (problem) throw new AppError('SOURCE_SCHEMA', `query of ${where} must be one SELECT statement: ${problem}`);
  const qualified = `(${spec.query!})`;
  const invalid = (err: unknown): never => {
    throw new AppError('SOURCE_SCHEMA', `${where}: the query is not valid SQL: ${(err as Error).message}`, { cause: err });
  };
  const fields = await source.fields(describeQuerySql(qualified), `describe the query of ${spec.name}`).catch(invalid);
  const duplicate = fields.find((f, i) => fields.findIndex((g) => g.name.toLowerCase() === f.name.toLowerCase()) !== i);
  if (duplicate)
    throw new AppError(
      'SOURCE_SCHEMA',
      `${where}: the query returns two columns named ${duplicate.name}; give each output column its own name (AS …)`,
    );
  const [facts] = await source
    .queryText(
      queryCollationsSql(
        qualified,
        fields.map((f) => f.name),
      ),
      `describe the columns of ${spec.name}`,
      true,
    )
    .catch(invalid);
  const columns = fields.map((f, i) => resultColumn(f, facts?.[2 * i] ?? null, facts?.[2 * i + 1] ?? null));
  return { qualified, schema: '', relname: spec.name, columns, catalogued: false };
}

class MysqlTable implements TableReader {
  private readonly encoders: ValueEncoder[];
  private readonly prefixes: string[];
  private constructor(
    private readonly source: MysqlSource,
    private readonly sql: TableSql,
    readonly shape: TableShape,
    private readonly where: string,
    /** Statements that read rows carry configured SQL (a soft-delete condition, a filter, a query). */
    private readonly configured: boolean,
    /** Every statement that names the relation carries configured SQL (a custom SQL table). */
    private readonly queried: boolean,
    /** Every column the table had when described: names the configuration gave may refer to them. */
    readonly described: MyColumn[],
    /** Masks the server computes, by column name. */
    serverMasks: ReadonlyMap<string, Mask>,
  ) {
    this.encoders = sql.columns.map((c) => leavingEncoder(c, serverMasks.get(c.name) ?? null, sql.filter !== undefined));
    this.prefixes = rowPrefixes(sql.columns.map((c) => c.name));
  }

  /** `previous`: the reader of the table's earlier shape, whose columns configured names may still name. */
  static async describe(source: MysqlSource, spec: TableSpec, previous?: MysqlTable): Promise<MysqlTable> {
    const where = `${source.name}.${spec.name}`;
    checkConditions(spec, where);
    const condition = spec.softDelete?.condition;
    const rel = spec.query === undefined ? await describeTable(source, spec) : await describeQuery(source, spec, where);
    const { columns, schema, relname, qualified } = rel;
    let pkNames = spec.primaryKey;
    if (!pkNames || pkNames.length === 0) {
      if (!rel.catalogued)
        throw new AppError(
          'SOURCE_SCHEMA',
          `${where}: a query table needs primaryKey: [col, ...] naming output columns that are unique and not null`,
        );
      const pkRows = await source.queryText(primaryKeySql(schema, relname), `primary key of ${spec.name}`);
      if (pkRows.length === 0) {
        throw new AppError('SOURCE_SCHEMA', `${where} has no primary key; set primaryKey: [col, ...] to columns that are unique and not null`);
      }
      pkNames = pkRows.map(([n]) => `"${n!.replace(/"/g, '""')}"`);
    }
    const primaryKey = pkNames.map((n) => findColumn(columns, n, where, 'primaryKey'));
    const watermark = spec.watermark === undefined ? null : findColumn(columns, spec.watermark, where, 'watermark');
    if (watermark && primaryKey.some((c) => c.name === watermark.name)) {
      throw new AppError('SOURCE_SCHEMA', `${where}: the watermark column ${watermark.name} cannot also be part of the primary key`);
    }
    for (const c of [...(watermark ? [watermark] : []), ...primaryKey]) {
      const reason = unorderableReason(c);
      if (reason) throw new AppError('SOURCE_SCHEMA', `${where}: column ${c.name} of type ${c.columnType} cannot order a keyset (${reason})`);
      if (!roundTripKey(c))
        throw new AppError(
          'SOURCE_SCHEMA',
          `${where}: ${c === watermark ? 'watermark' : 'primary-key'} column ${c.name} is text in character set ${c.charset}, ` +
            `whose values do not convert to Unicode and back to the stored bytes, so cursors and reads by key could skip, repeat or miss rows; ` +
            `convert the column to utf8mb4 (ALTER TABLE … MODIFY ${c.name} … CHARACTER SET utf8mb4) or key the table by other columns ` +
            `(text keys may use ${[...ROUND_TRIP_CHARSETS].join(', ')})`,
        );
    }
    const plan = planColumns({
      table: where,
      columns: columns.map((c) => ({ name: c.name, type: c.columnType, kind: ruleKind(c) })),
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
    const serverMasks = new Map<string, Mask>();
    const outgoing: OutgoingColumn[] = plan.leaving.map((c) => {
      const expr = c.mask ? sqlMask(byName.get(c.name)!, c.mask) : null;
      if (expr !== null) {
        sqlMasks.set(c.name, expr);
        serverMasks.set(c.name, c.mask!);
      }
      return {
        name: c.name,
        type: c.type,
        mask: c.mask,
        appliedIn: c.mask ? (expr !== null ? 'source' : 'pipeline') : null,
        primaryKey: primaryKey.some((k) => k.name === c.name),
      };
    });
    const shape: TableShape = {
      columns: columns.map((c) => ({ name: c.name, type: c.columnType, kind: ruleKind(c) })),
      primaryKey: primaryKey.map((c) => c.name),
      schema,
      relname,
      watermark: watermark?.name ?? null,
      watermarkKind: watermark ? watermarkKind(watermark) : 'other',
      // A masked value is a scalar, whatever it was.
      mayNest: plan.leaving.some((c) => c.mask === null && byName.get(c.name)!.kind === 'json'),
      outgoing,
      withheld: plan.withheld.map((c) => ({ name: c.name, type: c.type, kind: c.kind })),
      filtered: spec.where !== undefined,
      // From the same catalog read as the columns: a change after it is seen by the next comparison.
      ...(rel.catalogued ? { relation: { identity: null, columns: columns.map((c) => ({ name: c.name, type: c.columnType })) } } : {}),
    };
    const softColumn = spec.softDelete?.column ? findColumn(columns, spec.softDelete.column, where, 'softDelete') : undefined;
    const deleted = softDeleteExpr({ column: softColumn, condition });
    const filter = spec.where === undefined ? undefined : filterExpr(spec.where);
    const sql: TableSql = { qualified, columns: leaving, masks: sqlMasks, watermark, primaryKey, deleted, filter };
    const configured = condition !== undefined || spec.where !== undefined || spec.query !== undefined;
    const table = new MysqlTable(source, sql, shape, where, configured, spec.query !== undefined, columns, serverMasks);
    if (condition !== undefined || spec.where !== undefined) {
      // Fail at start, not in a push job, when a condition does not compile.
      await source.query(conditionsProbeSql(sql), `conditions of ${spec.name}`, true).catch((err: unknown) => {
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

  private keyColumns(phase: Phase): MyColumn[] {
    return phase === 'wm' ? [this.sql.watermark!, ...this.sql.primaryKey] : this.sql.primaryKey;
  }

  /** The position of a row whose key columns come first in `row`. */
  private toPosition(row: RawRow, phase: Phase): Position {
    const values = this.keyColumns(phase).map((c, i) => keyText(c, row[i] ?? null));
    return phase === 'wm' ? { wm: values[0]!, pk: values.slice(1) } : { wm: null, pk: values };
  }

  async nextRange(cursor: Cursor, limit: number, upperBound: string | null = null): Promise<NextRange | null> {
    const sql = nextRangeSql(this.sql, cursor.phase, cursor.after, limit, upperBound);
    const rows = await this.source.query(sql, `page keys of ${this.where}`, this.queried);
    if (rows.length === 0) return null;
    const positions = rows.map((r) => this.toPosition(r, cursor.phase));
    const range: KeyRange = { phase: cursor.phase, lo: cursor.after, hi: positions[positions.length - 1]! };
    return { range, rows: rows.length, keys: positions.map((p) => p.pk) };
  }

  /**
   * A row's values after its keys, as `readRangeSql` and `readKeysSql` return them: the leaving columns, the
   * soft-delete flag, the filter flag. A row outside the filter comes without its values: nothing of it but its key
   * reached this process.
   */
  private rowOf(values: RawRow): { json: string; deleted: boolean; matched?: false } {
    const n = this.sql.columns.length;
    const deleted = this.sql.deleted !== undefined && text(values[n]) === '1';
    if (this.sql.filter !== undefined && text(values[values.length - 1]) !== '1') return { json: '', deleted, matched: false };
    return { json: rowJson(this.encoders, this.prefixes, values), deleted };
  }

  async readRange(range: KeyRange, after: Position | null, limit: number, options: ReadOptions = {}): Promise<SourceRow[]> {
    const lock = options.awaitWriters === true && !this.queried;
    const sql = readRangeSql(this.sql, range.phase, after ?? range.lo, range.hi, limit, lock);
    const rows = lock
      ? await this.locked(sql, `read rows of ${this.where}`)
      : await this.source.query(sql, `read rows of ${this.where}`, this.configured);
    const keys = this.keyColumns(range.phase).length;
    return rows.map((r) => ({ position: this.toPosition(r, range.phase), ...this.rowOf(r.slice(keys)) }));
  }

  async readBoundary(safetyLagMs: number): Promise<string | null> {
    const wm = this.sql.watermark;
    if (wm === null || this.shape.watermarkKind !== 'timestamp') return null;
    const base = await this.source.boundaryBase(this.where);
    const [row] = await this.source.queryText(readBoundarySql(wm, safetyLagMs, base), `read boundary of ${this.where}`);
    const boundary = row?.[0];
    if (!boundary) {
      throw new AppError(
        'SOURCE_SCHEMA',
        `${this.where}: the server could not convert the read boundary to its default time zone (@@global.time_zone); load the time zone tables or set it to an offset`,
      );
    }
    return truncateFraction(boundary, wm.fsp);
  }

  async comparePositions(phase: Phase, a: Position, b: Position): Promise<number> {
    const [row] = await this.source.queryText(comparePositionsSql(this.sql, phase, a, b), `compare cursors of ${this.where}`);
    return Number(row?.[0]);
  }

  async isEmpty(): Promise<boolean> {
    return (await this.source.query(`SELECT 1 FROM ${this.sql.qualified} t LIMIT 1`, `probe ${this.where}`, this.queried)).length === 0;
  }

  async now(): Promise<string | null> {
    const wm = this.sql.watermark;
    if (wm === null || this.shape.watermarkKind !== 'timestamp') return null;
    const [row] = await this.source.queryText(clockSql(wm), `clock of ${this.where}`);
    return row?.[0] ?? null;
  }

  async readKeys(keys: readonly string[][], options: ReadOptions = {}): Promise<KeyedRow[]> {
    // Changed rows of a table (not of configured SQL, a derived table a locking read cannot lock through) are read
    // with a locking read, in fewer keys a statement: each holds its rows' shared locks while it waits.
    const lock = options.awaitWriters === true && !this.queried;
    const per = lock ? KEYS_PER_LOCKING_STATEMENT : KEYS_PER_STATEMENT;
    const out: KeyedRow[] = [];
    for (let start = 0; start < keys.length; start += per) {
      const chunk = keys.slice(start, start + per);
      const rows = lock
        ? await this.locked(readKeysSql(this.sql, chunk, true), `read changed rows of ${this.where}`)
        : await this.source.query(readKeysSql(this.sql, chunk), `read rows of ${this.where} by key`, this.configured);
      for (const r of rows) out.push({ index: start + Number(text(r[0])), ...this.rowOf(r.slice(1)) });
    }
    return out;
  }

  /**
   * A locking read, so that a row is read only once the transaction that changed it is committed in the engine,
   * not only written to the binary log (see `readKeysSql`). A deadlock with the application's transactions is
   * retried. A lock held past `innodb_lock_wait_timeout` fails the read (retryable, the job tries again later): it
   * may be the changed row's own transaction, still waiting for a replica under a long semi-synchronous timeout,
   * and reading past it would lose the change.
   */
  private async locked(sql: string, what: string): Promise<RawRow[]> {
    for (let deadlocks = 0; ; deadlocks++) {
      try {
        return await this.source.queryLocking(sql, what);
      } catch (err) {
        if (mysqlErrno(err) === ER_LOCK_DEADLOCK && deadlocks < LOCKING_READ_DEADLOCKS) continue;
        throw err;
      }
    }
  }

  /** Key columns that leave, encoded like rows; a key column the table withholds is not in delete records either. */
  async keyJson(keys: readonly string[][]): Promise<string[]> {
    const leaving = new Set(this.sql.columns.map((c) => c.name));
    const pk = this.sql.primaryKey.map((c, i) => ({ c, i })).filter(({ c }) => leaving.has(c.name));
    return keys.map((k) => `{${pk.map(({ c, i }) => `${JSON.stringify(c.name)}:${keyJson(c, k[i]!)}`).join(',')}}`);
  }

  async countNullWatermark(): Promise<number> {
    if (this.sql.watermark === null) return 0;
    const sql = `SELECT COUNT(*) FROM ${this.sql.qualified} t WHERE t.${quoteIdent(this.sql.watermark.name)} IS NULL`;
    const [row] = await this.source.queryText(sql, `count NULL watermarks of ${this.where}`, this.queried);
    return Number(row?.[0] ?? 0);
  }
}

/** The table a configured name means: `table` in the URL's database, or `database.table`. */
async function resolveTable(source: MysqlSource, name: string): Promise<{ schema: string; relname: string }> {
  let parts;
  try {
    parts = parseQualifiedName(name);
  } catch (err) {
    throw new AppError('SOURCE_SCHEMA', `table name ${name} is not valid: ${(err as Error).message}`, { cause: err });
  }
  const schema = parts.length === 2 ? parts[0]!.text : null;
  const table = parts[parts.length - 1]!.text;
  const rows = await source.queryText(resolveTableSql(schema, table), `resolve ${name}`);
  // information_schema compares names without regard to case; the exact spelling wins, a single other one is used.
  const exact = rows.find((r) => r[1] === table && (schema === null || r[0] === schema));
  const row = exact ?? (rows.length === 1 ? rows[0] : undefined);
  if (!row) {
    const hint = schema === null ? ' (write database.table, or put the database in the source URL)' : '';
    const several = rows.length > 1 ? `; candidates differ only in case: ${rows.map((r) => `${r[0]}.${r[1]}`).join(', ')}` : '';
    throw new AppError('SOURCE_SCHEMA', `table ${name} not found in source ${source.name}${hint}${several}`);
  }
  return { schema: row[0]!, relname: row[1]! };
}
