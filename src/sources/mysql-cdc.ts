import type ZongJi from '@vlasky/zongji';
import { AppError } from '../core/errors.js';
import type { RelationKeys } from '../core/changes.js';
import type { ChangeSource, ChangeStream, ChangeStreamEvent, ChangeStreamFacts, ChangeStreamStatus, StreamLease, TableShape } from '../core/ports.js';
import { MysqlSource } from './mysql.js';
import { connectionOptions } from './mysql-query.js';
import { translateMysqlError } from './mysql-errors.js';
import { binlogColumnsSql, existingTablesSql } from './mysql-shape.js';
import { BinlogShapes, forgetTable, shapedZongJi } from './mysql-binlog-shapes.js';
import { startWithHeartbeats, watchBinlogSilence } from './mysql-binlog-liveness.js';
import {
  BINARY_LOGS_SQL,
  BINLOG_RETENTION_SQL,
  BINLOG_SETTINGS_SQL,
  CHANGING_FOREIGN_KEYS_SQL,
  GRANTS_SQL,
  SERVER_CLOCK_SQL,
  binlogRetention,
  binlogStatusSql,
  gtidSql,
  identitySql,
  startPositionOf,
  startPositionSql,
  type MyColumn,
} from './mysql-sql.js';
import {
  BinlogTransaction,
  comparePositions,
  ddlTargets,
  formatPosition,
  gtidRegressed,
  keyableKind,
  parsePosition,
  snapshotOrdering,
  type BinlogColumn,
  type CapturedTable,
} from './mysql-binlog.js';

/**
 * Where the binlog reader keeps its durable stream: the position it was created at, the position confirmed by the
 * last acknowledgement (with when, `ackedAt`, and the binlog timestamp of the oldest transaction handed over past it,
 * `pendingSince`, both epoch ms, for the lag in seconds), and the server's identity. MySQL keeps no per-consumer position (there is no replication
 * slot), so this record is pushsync's; main.ts backs it with Redis.
 */
export interface BinlogStateStore {
  load(): Promise<Record<string, string>>;
  /**
   * With `lease`, the fields are written only while the lease is held, checked in the same step (nothing is written
   * otherwise, and the lease counts as lost): how a stream records its acknowledged position.
   */
  save(fields: Record<string, string>, lease?: StreamLease): Promise<void>;
  /** Deletes every field but those whose name starts with `keep`. */
  clear(keep: string): Promise<void>;
}

export interface MysqlBinlogOptions {
  name: string;
  url: string;
  /** The stream's name, for messages and the store (the source's `cdc.slot`). */
  stream: string;
  /** The replica server_id of the binlog connection: unique among the server's replicas and readers. */
  serverId: number;
  store: BinlogStateStore;
  /**
   * The stream ends with a retryable error when nothing arrives from the server for this long (0: never); the
   * server is asked for a heartbeat event at half of it while the binlog is idle (config `cdc.receiveTimeout`).
   * @defaultValue 60000 ms
   */
  receiveTimeoutMs?: number;
}

/** A stable server_id for a stream name, in 1,000,000,000 … 4,294,967,295 (clear of small hand-set ids). */
export function defaultServerId(name: string): number {
  let h = 2166136261;
  for (const ch of Buffer.from(name, 'utf8')) h = Math.imul(h ^ ch, 16777619) >>> 0;
  return 1_000_000_000 + (h % 3_294_967_295);
}

/** How long opening the binlog connection may take. */
const OPEN_TIMEOUT_MS = 30_000;

/** Spontaneous idle events at most this often, so readers advance over traffic of other tables without flooding. */
const IDLE_EVERY_MS = 1000;

/**
 * MySQL/MariaDB binlog change data capture (binlog_format=ROW, binlog_row_image=FULL). The stream hands over complete
 * committed transactions (XID, or COMMIT for non-transactional tables) of the watched tables as key-level changes; the
 * rows are read from the table when sent. Positions are `file:offset` after an event; a stream opened at a
 * position starts with the event there.
 */
export class MysqlBinlog implements ChangeSource {
  readonly name: string;
  readonly stream: string;
  private readonly admin: MysqlSource;

  constructor(private readonly options: MysqlBinlogOptions) {
    this.name = options.name;
    this.stream = `binlog stream ${options.stream}`;
    this.admin = new MysqlSource({ name: options.name, url: options.url, poolSize: 1 });
  }

  private async text(sql: string, what: string): Promise<Array<Array<string | null>>> {
    return this.admin.queryText(sql, what);
  }

  async prerequisites(): Promise<string[]> {
    const problems: string[] = [];
    const [settings] = await this.text(BINLOG_SETTINGS_SQL, 'read the binlog settings');
    const [logBin, format, image] = settings ?? [];
    if (logBin !== '1') problems.push(`source ${this.name}: the binary log is off; start the server with log_bin (and a server_id)`);
    if (format !== 'ROW') problems.push(`source ${this.name}: binlog_format is ${format}; set binlog_format = ROW`);
    if (image !== 'FULL') problems.push(`source ${this.name}: binlog_row_image is ${image}; set binlog_row_image = FULL`);
    const grants = (await this.text(GRANTS_SQL, 'read the grants')).map((r) => r[0] ?? '').join('\n');
    if (!/ALL PRIVILEGES ON \*\.\*|REPLICATION (SLAVE|REPLICA)/i.test(grants)) {
      problems.push(
        `source ${this.name}: the user lacks REPLICATION SLAVE, which reading the binlog needs; GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO <user>`,
      );
    }
    if (logBin === '1') {
      await this.text(BINARY_LOGS_SQL, 'list the binary logs').catch((err: unknown) => {
        problems.push(
          `source ${this.name}: cannot list the binary logs (${(err as Error).message}); GRANT REPLICATION CLIENT ON *.* TO <user> (BINLOG MONITOR on MariaDB)`,
        );
      });
    }
    return problems;
  }

  async keyProblems(tables: readonly TableShape[]): Promise<string[]> {
    const problems: string[] = [];
    for (const t of tables) {
      for (const c of await this.keyColumns(t)) {
        if (!keyableKind(c))
          problems.push(
            `${this.name}.${t.schema}.${t.relname}: key column ${c.name} of type ${c.columnType}${c.kind === 'text' ? ` CHARACTER SET ${c.charset}` : ''} cannot be read from the binlog; use watermark mode for it`,
          );
      }
    }
    return problems;
  }

  private async keyColumns(t: Pick<TableShape, 'schema' | 'relname' | 'primaryKey'>): Promise<MyColumn[]> {
    const columns = await this.admin.columns(t.schema, t.relname);
    return t.primaryKey.map((name) => {
      const c = columns.find((x) => x.name === name);
      if (!c) throw new AppError('SOURCE_SCHEMA', `${this.name}.${t.schema}.${t.relname}: key column ${name} not found`);
      return c;
    });
  }

  /** The tables of the last `prepare`: `create` records their columns with the start position. */
  private prepared: string[] = [];

  async prepare(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>> = []): Promise<void> {
    // The binlog has every table's changes: nothing to set up.
    this.prepared = tables.map((t) => `${t.schema}.${t.relname}`);
  }

  /**
   * Which table is under each name: MySQL keeps no identity that survives an ALTER but not a re-creation, so the
   * identity is pushsync's count of the times the binlog showed the name dropped, created or renamed
   * (`incarnation:<schema.table>`, bumped by the reader). A table missing now is absent.
   */
  async relationIds(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<Map<string, string>> {
    const state = await this.options.store.load();
    const existing = new Set((await this.text(existingTablesSql(tables), 'find the captured tables')).map(([schema, table]) => `${schema}.${table}`));
    const ids = new Map<string, string>();
    for (const t of tables) {
      const relation = `${t.schema}.${t.relname}`;
      if (!existing.has(relation)) continue;
      const n = Math.max(Number(state[`incarnation:${relation}`] ?? 1), this.incarnations.get(relation) ?? 1);
      ids.set(relation, String(n));
    }
    return ids;
  }

  /** Incarnations bumped by a reader of this process, ahead of the store until its write lands. */
  private readonly incarnations = new Map<string, number>();

  private async columnsNow(relation: string): Promise<BinlogColumn[] | null> {
    const dot = relation.indexOf('.');
    const rows = await this.text(binlogColumnsSql(relation.slice(0, dot), relation.slice(dot + 1)), `read the columns of ${relation}`);
    if (rows.length === 0) return null;
    return rows.map(([name, dataType, columnType, charset, collation]) => ({
      name: name!,
      dataType: dataType!,
      columnType: columnType!,
      charset: charset ?? null,
      collation: collation ?? null,
    }));
  }

  private async identity(): Promise<string> {
    const [row] = await this.text(identitySql(await this.admin.pool.flavor()), 'read the server identity');
    return row?.[0] ?? '';
  }

  async status(): Promise<ChangeStreamStatus> {
    const state = await this.options.store.load();
    if (!state.start || !state.confirmed) return { exists: false, confirmed: null, lagBytes: null, lagSeconds: null, active: false, lost: false };
    const logs = (await this.text(BINARY_LOGS_SQL, 'list the binary logs')).map(([file, size]) => ({ file: file!, size: Number(size) }));
    const confirmed = parsePosition(state.confirmed);
    const at = logs.findIndex((l) => l.file === confirmed.file);
    const lostReason = await this.lostReason(state, at >= 0 ? logs[at]!.size : null);
    const behind = at < 0 ? null : Math.max(0, logs.slice(at).reduce((sum, l) => sum + l.size, 0) - confirmed.offset);
    return {
      exists: true,
      confirmed: state.confirmed,
      lagBytes: behind,
      lagSeconds: await this.lagSeconds(behind, state),
      active: false,
      lost: lostReason !== null,
      ...(lostReason !== null ? { lostReason } : {}),
    };
  }

  /**
   * Why the stream cannot continue, or null: its binlog file was purged (or the server's history started over), the
   * server is another one, or its GTID history went back past the one recorded when the stream was created.
   */
  private async lostReason(state: Record<string, string>, fileSize: number | null): Promise<string | null> {
    const confirmed = parsePosition(state.confirmed!);
    if (fileSize === null) return `the server no longer has binlog file ${confirmed.file} (purged, or the binary log was reset)`;
    if (fileSize < confirmed.offset)
      return `binlog file ${confirmed.file} is shorter than the position ${state.confirmed} (the binary log was reset)`;
    const identity = await this.identity();
    if (state.identity !== identity) return `the server is another one (${identity}, where the stream was created on ${state.identity})`;
    if (state.gtid) {
      const [[now] = []] = await this.text(gtidSql(await this.admin.pool.flavor()), 'read the GTID position');
      if (gtidRegressed(state.gtid, now ?? ''))
        return `the server's GTID history (${now}) no longer holds the ${state.gtid} the stream was created at`;
    }
    return null;
  }

  /**
   * An upper bound on the age of the oldest change past the confirmed position: 0 when nothing is past it; the age of
   * the oldest transaction a reader handed over and the pipeline has not yet acknowledged, by the server's clock;
   * else (changes a reader has not received) the time since the last acknowledgement.
   */
  private async lagSeconds(behind: number | null, state: Record<string, string>): Promise<number | null> {
    if (behind === null) return null;
    if (behind === 0) return 0;
    if (state.pendingSince) {
      const [[now] = []] = await this.text(SERVER_CLOCK_SQL, 'read the server clock');
      return Math.max(0, Number(now) - Number(state.pendingSince) / 1000);
    }
    return state.ackedAt ? Math.max(0, (Date.now() - Number(state.ackedAt)) / 1000) : null;
  }

  async facts(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>> = []): Promise<ChangeStreamFacts> {
    const [[logBin, format, image] = []] = await this.text(BINLOG_SETTINGS_SQL, 'read the binlog settings');
    const settings = new Map((await this.text(BINLOG_RETENTION_SQL, 'read the binlog retention')).map(([k, v]) => [k!, v ?? '']));
    const retention = binlogRetention(settings);
    const grants = (await this.text(GRANTS_SQL, 'read the grants')).map((r) => r[0] ?? '').join('\n');
    const held = /ALL PRIVILEGES ON \*\.\*/i.test(grants)
      ? ['ALL PRIVILEGES']
      : ['REPLICATION SLAVE', 'REPLICATION REPLICA', 'REPLICATION CLIENT', 'BINLOG MONITOR'].filter((p) => new RegExp(p, 'i').test(grants));
    const facts = [
      `log_bin=${logBin === '1' ? 'ON' : 'OFF'}`,
      `binlog_format=${format ?? '?'}`,
      `binlog_row_image=${image ?? '?'}`,
      `binlog retention ${retention.seconds === 0 ? 'unlimited' : `${retention.seconds} s`} (${[...settings].map(([k, v]) => `${k}=${v}`).join(', ')})`,
      `privileges ${held.join(', ') || 'none for the binlog'}`,
    ];
    const warnings =
      retention.seconds > 0 && retention.seconds < 86_400
        ? [
            `source ${this.name}: the server purges binlog files after ${retention.seconds} s (${retention.setting}): a pushsync outage longer than that loses the stream and needs a new snapshot; keep a day or more`,
          ]
        : [];
    warnings.push(...(await this.foreignKeyWarnings(tables)));
    return { facts, warnings };
  }

  /** Captured tables whose rows a foreign key's action changes: those changes never reach the binary log. */
  private async foreignKeyWarnings(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<string[]> {
    if (tables.length === 0) return [];
    const captured = new Set(tables.map((t) => `${t.schema}.${t.relname}`.toLowerCase()));
    let rows: Array<Array<string | null>>;
    try {
      rows = await this.text(CHANGING_FOREIGN_KEYS_SQL, 'read foreign keys');
    } catch (err) {
      // A check of what may be missed, not of what works: its failure is said, and the stream's own checks stand.
      return [`source ${this.name}: could not look for foreign key actions on the captured tables (${(err as Error).message})`];
    }
    return rows
      .filter(([schema, table]) => captured.has(`${schema}.${table}`.toLowerCase()))
      .map(([schema, table, constraint, parentSchema, parent, onDelete, onUpdate]) => {
        const actions = [
          ...(onDelete === 'RESTRICT' || onDelete === 'NO ACTION' ? [] : [`ON DELETE ${onDelete}`]),
          ...(onUpdate === 'RESTRICT' || onUpdate === 'NO ACTION' ? [] : [`ON UPDATE ${onUpdate}`]),
        ].join(' ');
        return (
          `source ${this.name}: ${schema}.${table}: foreign key ${constraint} references ${parentSchema}.${parent} ${actions}; ` +
          `InnoDB changes those rows itself, and on MariaDB and MySQL 8 the binary log does not carry them, so change data capture never sees them: ` +
          `read ${schema}.${table} in watermark mode with a reconcile setting, which sends the deletes`
        );
      });
  }

  /**
   * Starts the stream at a position read inside a consistent snapshot (mysql-sql.ts `startPositionSql`): every
   * transaction before it is visible to the initial snapshot's reads, every one from it on is streamed. The GTID
   * read with it is recorded beside it.
   */
  async create(): Promise<string> {
    const flavor = await this.admin.pool.flavor();
    const { begin, reads } = startPositionSql(flavor);
    let results;
    try {
      results = await this.admin.pool.runInTransaction(begin, reads);
    } catch (err) {
      throw translateMysqlError(err, `${this.name}: read the binlog position of a consistent snapshot`);
    }
    const at = startPositionOf(
      flavor,
      results.map((rows) => rows.map((r) => r.map((v) => (v === null ? null : v.toString('utf8'))))),
    );
    if (!at) throw new AppError('SOURCE_SCHEMA', `source ${this.name}: the server reports no binlog position; is log_bin on?`);
    const start = formatPosition(at);
    // The columns row events from the start on are decoded with (BinlogShapes); read after the position, so a DDL in
    // between shows as a TABLE_MAP that does not fit them.
    const columns: Record<string, string> = {};
    for (const relation of this.prepared) {
      const now = await this.columnsNow(relation);
      if (now) columns[`columns:${relation}`] = JSON.stringify(now);
    }
    await this.options.store.save({
      ...columns,
      start,
      confirmed: start,
      identity: await this.identity(),
      gtid: at.gtid,
      ackedAt: String(Date.now()),
      pendingSince: '',
    });
    return start;
  }

  async currentPosition(): Promise<string> {
    const [row] = await this.text(binlogStatusSql(await this.admin.pool.flavor()), 'read the binlog position');
    if (!row?.[0]) throw new AppError('SOURCE_SCHEMA', `source ${this.name}: the server reports no binlog position; is log_bin on?`);
    return formatPosition({ file: row[0], offset: Number(row[1]) });
  }

  comparePositions(a: string, b: string): number {
    return comparePositions(a, b);
  }

  confirmedPast(confirmed: string, acknowledged: string): boolean {
    return comparePositions(confirmed, acknowledged) > 0;
  }

  snapshotOrdering(start: string): string {
    return snapshotOrdering(start);
  }

  async open(
    relations: ReadonlyMap<string, RelationKeys>,
    onEvent: (e: ChangeStreamEvent) => void,
    onError: (err: Error) => void,
    options: { lease?: StreamLease } = {},
  ): Promise<ChangeStream> {
    const state = await this.options.store.load();
    if (!state.confirmed) throw new AppError('INTERNAL', `${this.stream} has no confirmed position; create it first`);
    const start = parsePosition(state.confirmed);
    const captured = new Map<string, CapturedTable>();
    const schemas: Record<string, string[]> = {};
    for (const relation of relations.keys()) {
      const dot = relation.indexOf('.');
      const shape = { schema: relation.slice(0, dot), relname: relation.slice(dot + 1), primaryKey: relations.get(relation)!.primaryKey };
      captured.set(relation, { relation, key: await this.keyColumns(shape) });
      (schemas[shape.schema] ??= []).push(shape.relname);
    }
    const incarnation = (relation: string): string =>
      String(Math.max(Number(state[`incarnation:${relation}`] ?? 1), this.incarnations.get(relation) ?? 1));
    const shapes = new BinlogShapes((relation) => this.columnsNow(relation), {
      shape: (relation, columns, position) =>
        onEvent({
          kind: 'relation',
          relation,
          id: incarnation(relation),
          columns: columns.map((c) => ({ name: c.name, type: c.columnType })),
          from: snapshotOrdering(position),
        }),
      undecodable: (relation) => onEvent({ kind: 'resnapshot', relation, reason: 'binlog rows written with columns no longer known' }),
    });
    const fresh = await shapes.init(captured.keys(), state, state.confirmed);
    if (Object.keys(fresh).length > 0) await this.options.store.save(fresh);
    const replaced = async (relation: string): Promise<void> => {
      const n = Number(incarnation(relation)) + 1;
      this.incarnations.set(relation, n);
      await this.options.store.save({ [`incarnation:${relation}`]: String(n) });
    };
    // The confirmed position is the stream's own: a reader whose lease lapsed writing it after its successor's last
    // write could leave it ahead of the successor's acknowledged position, and every later run would refuse the
    // stream. So it is written only while the lease is held.
    const { lease } = options;
    const record = (fields: Record<string, string>): Promise<void> => this.options.store.save(fields, lease);
    const reader = new BinlogReader(this.options, start, captured, onEvent, { shapes, replaced, record });
    return reader.start(schemas, onError);
  }

  async drop(): Promise<void> {
    // The tables' incarnations outlive the stream: they are the tables' identities, which must never repeat, or a
    // table re-created on the next stream would take a generation already in use (queue/generations.ts).
    await this.options.store.clear('incarnation:');
  }

  async close(): Promise<void> {
    await this.admin.close();
  }
}

interface Event {
  getEventName(): string;
  /** The event header's time, epoch ms (whole seconds). */
  timestamp: number;
  nextPosition: number;
  binlogName?: string;
  position?: number;
  query?: string;
  schema?: string;
  tableId?: number;
  tableMap?: Record<number, { parentSchema: string; tableName: string }>;
  rows?: unknown[];
}

/** `schema.table` of a `TRUNCATE [TABLE] name` statement run in database `schema`, or null for other statements. */
export function truncatedRelation(statement: string, schema: string): string | null {
  const ident = '(?:`((?:[^`]|``)+)`|([^\\s.`;]+))';
  const m = new RegExp(`^TRUNCATE\\s+(?:TABLE\\s+)?${ident}(?:\\.${ident})?\\s*;?$`, 'i').exec(statement.trim());
  if (!m) return null;
  const name = (quoted: string | undefined, plain: string | undefined): string | undefined =>
    quoted !== undefined ? quoted.replace(/``/g, '`') : plain;
  const first = name(m[1], m[2])!;
  const second = name(m[3], m[4]);
  return second === undefined ? `${schema}.${first}` : `${first}.${second}`;
}

/**
 * The captured relations (`schema.table`) a data-changing statement logged as a statement (not as rows) may have
 * changed, or null for a statement that changes no rows (DDL, SET, ...). Such a statement carries no keys: a
 * session that set `binlog_format` to STATEMENT or MIXED writes its changes so, whatever the server's setting. A
 * table is named when its name appears in the statement as a word: a table it names under another schema, or in
 * a string, is read again for nothing, never missed.
 */
export function statementRelations(statement: string, captured: Iterable<string>): string[] | null {
  const text = statement.replace(/^(?:\s|\/\*[\s\S]*?\*\/|#[^\n]*\n|--[^\n]*\n)*/, '');
  if (!/^(?:INSERT|UPDATE|DELETE|REPLACE|LOAD\s+(?:DATA|XML))\b/i.test(text)) return null;
  const lower = text.toLowerCase();
  return [...captured].filter((relation) => {
    const table = relation.slice(relation.indexOf('.') + 1).toLowerCase();
    for (let at = lower.indexOf(table); at >= 0; at = lower.indexOf(table, at + 1)) {
      const before = lower[at - 1];
      const after = lower[at + table.length];
      if (!(before !== undefined && /[a-z0-9_$]/.test(before)) && !(after !== undefined && /[a-z0-9_$]/.test(after))) return true;
    }
    return false;
  });
}

/** One open binlog connection: turns events into transactions and idle positions. */
class BinlogReader {
  private file: string;
  private offset: number;
  private txn: BinlogTransaction | null = null;
  /** DDL statements whose tables' columns are being read again (see `ddl`). */
  private refreshing = 0;
  /** Captured tables that statements of the open transaction changed without rows in the binlog. */
  private readonly statementChanged = new Set<string>();
  private lastIdle = 0;
  /** Transactions handed over and not yet acknowledged: their end and their commit time (epoch ms). */
  private readonly handed: Array<{ end: string; at: number }> = [];
  private readonly zongji: ZongJi;

  constructor(
    private readonly options: MysqlBinlogOptions,
    start: { file: string; offset: number },
    private readonly captured: Map<string, CapturedTable>,
    private readonly onEvent: (e: ChangeStreamEvent) => void,
    private readonly tables: {
      shapes: BinlogShapes;
      replaced: (relation: string) => Promise<void>;
      /** Writes an acknowledged position (and what goes with it) to the store. */
      record: (fields: Record<string, string>) => Promise<void>;
    },
  ) {
    this.file = start.file;
    this.offset = start.offset;
    // Date strings in UTC, exact big numbers: key values arrive as the text the table reader uses.
    this.zongji = shapedZongJi(
      {
        ...connectionOptions(options.url),
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
        timezone: 'Z',
      },
      async (event) => {
        const relation = `${event.schemaName}.${event.tableName}`;
        return this.captured.has(relation) ? this.tables.shapes.resolve(relation, event, this.position) : null;
      },
    );
  }

  /**
   * A DDL statement on captured tables: the binlog connection waits while their columns are read again (and a
   * table under a name dropped, created or renamed gets a new identity), so every later row event is decoded with
   * them. Live, the columns read are the ones the statement made.
   */
  private ddl(statement: string, schema: string): boolean {
    const { altered, replaced } = ddlTargets(statement, schema);
    const touched = [...new Set([...altered, ...replaced])].filter((r) => this.captured.has(r));
    if (touched.length === 0) return false;
    const position = this.position;
    for (const relation of touched) {
      const dot = relation.indexOf('.');
      forgetTable(this.zongji, relation.slice(0, dot), relation.slice(dot + 1));
    }
    const connection = this.zongji.connection;
    connection?.pause();
    this.refreshing += 1;
    void (async () => {
      for (const relation of touched) {
        const recreated = replaced.includes(relation);
        if (recreated) await this.tables.replaced(relation);
        await this.tables.shapes.refresh(relation, position, recreated);
      }
    })()
      .finally(() => (this.refreshing -= 1))
      .then(
        () => connection?.resume(),
        (err: unknown) => this.zongji.emit('error', err),
      );
    return true;
  }

  private get position(): string {
    return formatPosition({ file: this.file, offset: this.offset });
  }

  /**
   * At a transaction boundary nothing received is waiting: the position may be acknowledged. Not while a DDL's
   * columns are being read again, even when asked for (`requestPosition`): the position is past the DDL, and an
   * acknowledgement stores the columns in force with it, which would still be the old ones.
   */
  private idle(force: boolean): void {
    if (this.txn !== null || this.refreshing > 0) return;
    if (!force && Date.now() - this.lastIdle < IDLE_EVERY_MS) return;
    this.lastIdle = Date.now();
    this.onEvent({ kind: 'idle', position: this.position });
  }

  /** Re-snapshots of the tables statements logged without rows changed (see `handle`), asked for now. */
  private askForSnapshots(): void {
    for (const relation of this.statementChanged)
      this.onEvent({
        kind: 'resnapshot',
        relation,
        reason: 'a change was written to the binlog as a statement, without its rows (binlog_format STATEMENT or MIXED in its session)',
      });
    this.statementChanged.clear();
  }

  private commit(at: number): void {
    const txn = this.txn;
    this.txn = null;
    this.askForSnapshots();
    if (txn && txn.size > 0) {
      this.handed.push({ end: this.position, at });
      this.onEvent({ kind: 'transaction', changes: txn.commit(this.position), end: this.position });
    } else this.idle(false);
  }

  /** What the store keeps with an acknowledged position: when, and the oldest transaction handed over past it. */
  private acknowledged(position: string): Record<string, string> {
    while (this.handed.length > 0 && comparePositions(this.handed[0]!.end, position) <= 0) this.handed.shift();
    return {
      ...this.tables.shapes.storedUpTo(position, comparePositions),
      confirmed: position,
      ackedAt: String(Date.now()),
      pendingSince: this.handed.length > 0 ? String(this.handed[0]!.at) : '',
    };
  }

  private handle(e: Event): void {
    const name = e.getEventName();
    // A heartbeat stands for events the server did not send: it moves no position pushsync relies on. It was asked
    // for (at half of cdc.receiveTimeout) so that an idle binlog keeps the receive timer from ending the stream.
    if (name === 'heartbeat') return;
    if (name === 'rotate') {
      this.file = e.binlogName!;
      this.offset = e.position!;
      return;
    }
    // Events the server makes up at the start of a stream (a rotate, the format description) have no position.
    if (e.nextPosition > 0) this.offset = e.nextPosition;
    switch (name) {
      case 'mariadbgtid':
        this.txn = new BinlogTransaction();
        return;
      case 'query': {
        const q = (e.query ?? '').trim();
        let changed: string[] | null;
        const upper = q.toUpperCase();
        if (upper === 'BEGIN') this.txn = new BinlogTransaction();
        else if (upper === 'COMMIT' || upper === 'ROLLBACK') this.commit(e.timestamp);
        else if (upper.startsWith('XA '))
          throw new AppError('SOURCE_SCHEMA', `${this.options.name}: XA transactions in the binlog are not supported (${q.slice(0, 40)})`);
        else if ((changed = statementRelations(q, this.captured.keys())) !== null) {
          // Changes without keys: the tables are read again. Asked for at the transaction's end, right before it is
          // handed over: the snapshot starts once the statement's transaction is whole in the binlog, and the request
          // is made before anything past it can be acknowledged.
          for (const relation of changed) this.statementChanged.add(relation);
          if (this.txn === null) this.askForSnapshots();
        } else if (this.txn === null || this.txn.size === 0) {
          // A statement of its own (DDL): a transaction boundary.
          this.txn = null;
          const truncated = truncatedRelation(q, e.schema ?? '');
          if (truncated !== null && this.captured.has(truncated)) this.onEvent({ kind: 'truncate', relations: [truncated] });
          // No idle position past a DDL of a captured table until its columns are read again: an acknowledgement
          // stores the columns in force with the position.
          if (!this.ddl(q, e.schema ?? '')) this.idle(false);
        }
        return;
      }
      case 'xaprepare':
        throw new AppError('SOURCE_SCHEMA', `${this.options.name}: XA transactions in the binlog are not supported`);
      case 'xid':
        this.commit(e.timestamp);
        return;
      case 'writerows':
      case 'updaterows':
      case 'deleterows': {
        const table = e.tableMap?.[e.tableId!];
        const t = table ? this.captured.get(`${table.parentSchema}.${table.tableName}`) : undefined;
        // Rows of a TABLE_MAP that fitted no known column list: the table is read again instead (BinlogShapes).
        if (!t || !this.tables.shapes.decodable(e.tableId!)) return;
        (this.txn ??= new BinlogTransaction()).add(t, name, e.rows ?? []);
        return;
      }
      default:
        this.idle(false);
    }
  }

  start(schemas: Record<string, string[]>, onError: (err: Error) => void): Promise<ChangeStream> {
    let ended!: () => void;
    const done = new Promise<void>((resolve) => (ended = resolve));
    let failed = false;
    let ready = false;
    const fail = (err: unknown): void => {
      // Before the stream is ready, open() reports the failure.
      if (failed || !ready) return;
      failed = true;
      onError(translateMysqlError(err, `${this.options.name}: ${this.options.stream}`));
      this.zongji.stop();
      ended();
    };
    const limit = this.options.receiveTimeoutMs ?? 60_000;
    // Armed once the stream is ready: until then the open timeout bounds the wait.
    let silence = { heard: (): void => undefined, end: (): void => undefined };
    void done.then(() => silence.end());
    this.zongji.on('binlog', (e: unknown) => {
      silence.heard();
      try {
        this.handle(e as Event);
      } catch (err) {
        fail(err);
      }
    });
    this.zongji.on('error', fail);
    this.zongji.on('stopped', () => ended());
    return new Promise<ChangeStream>((resolve, reject) => {
      // A server that accepts the connection but never answers must not hold the reader forever.
      const timer = setTimeout(
        () => onStartError(new AppError('SOURCE_UNAVAILABLE', `no answer within ${OPEN_TIMEOUT_MS / 1000} s`, { retryable: true })),
        OPEN_TIMEOUT_MS,
      );
      const onReady = (): void => {
        clearTimeout(timer);
        ready = true;
        this.zongji.removeListener('error', onStartError);
        // A silent stream fails retryably and acknowledges nothing: the next one starts at the confirmed position.
        // fail() does not wait on the dead peer: zongji's stop() destroys the binlog connection at once and the
        // control connection after at most a second (when its KILL of the dump thread goes unanswered).
        silence = watchBinlogSilence(this.zongji, limit, (ms) =>
          fail(
            new AppError(
              'SOURCE_UNAVAILABLE',
              `${this.options.name}: binlog stream ${this.options.stream}: nothing received from the server for ${Math.round(ms / 1000)} s (cdc.receiveTimeout ${limit / 1000} s): the connection is taken for dead`,
              { retryable: true },
            ),
          ),
        );
        resolve({
          acknowledge: async (position) => {
            await this.tables.record(this.acknowledged(position));
          },
          requestPosition: async (position) => {
            await this.tables.record(this.acknowledged(position));
            setImmediate(() => this.idle(true));
          },
          stop: async () => {
            silence.end();
            this.zongji.stop();
            await done;
          },
          done,
        });
      };
      const onStartError = (err: unknown): void => {
        clearTimeout(timer);
        this.zongji.removeListener('ready', onReady);
        this.zongji.removeListener('error', onStartError);
        this.zongji.stop();
        const e = translateMysqlError(err, `${this.options.name}: open ${this.options.stream}`);
        reject(
          err instanceof AppError
            ? new AppError(err.code, `${this.options.name}: open ${this.options.stream}: ${err.message}`, { retryable: err.retryable, cause: err })
            : e,
        );
      };
      this.zongji.once('ready', onReady);
      this.zongji.once('error', onStartError);
      startWithHeartbeats(
        this.zongji,
        {
          serverId: this.options.serverId,
          filename: this.file,
          position: this.offset,
          // Every event, so the position follows the binlog to its end (a one-shot run waits for the end it saw);
          // row events of other tables are left out.
          includeSchema: schemas,
        },
        limit / 2,
      );
    });
  }
}
