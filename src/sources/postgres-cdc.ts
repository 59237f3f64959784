import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { LogicalReplicationService, PgoutputPlugin, Pgoutput } from 'pg-logical-replication';
import { AppError } from '../core/errors.js';
import { quoteIdent } from '../core/identifiers.js';
import { bigIntToLsn, compareLsn, lsnToBigInt, snapshotOrdering } from '../core/lsn.js';
import { ChangeCollector, type RelationKeys, type Tuple } from '../core/changes.js';
import type { ChangeSource, ChangeStream, ChangeStreamEvent, ChangeStreamStatus, TableShape } from '../core/ports.js';
import { translatePgError } from './postgres-errors.js';
import { changedRelation, decodeChange, relationLayout, type ChangeMessage, type RelationLayout } from './pgoutput-keys.js';
import { answerBound, connectionSafety, queryObjects, TEXT_FORM_OPTIONS, withStartupOptions } from './postgres-query.js';

/** pgoutput messages as the adapter consumes them; values are the text the server sent (never parsed into JS types). */
export type StreamMessage =
  | { tag: 'begin'; commitLsn: string; xid: number }
  | { tag: 'commit'; commitLsn: string; endLsn: string }
  | ChangeMessage
  | { tag: 'relation'; relation: string; id: string; columns: Array<{ name: string; type: string }> }
  | { tag: 'truncate'; relations: string[] }
  /** `walEnd`: everything before it has been sent. `replyRequested`: the server ends the connection without an answer. */
  | { tag: 'keepalive'; walEnd: string; replyRequested: boolean };

/**
 * pgoutput with changes decoded to their key columns (pgoutput-keys.ts); every other message as the library parses
 * it, but with column values kept as the server's text: the library's default parsers turn timestamps into JS Dates,
 * which drop microseconds. Shaped as the library's plugins are, so its service drives it.
 */
class KeyPgoutputPlugin {
  private readonly library: PgoutputPlugin;
  private readonly layouts = new Map<number, RelationLayout>();

  constructor(
    library: typeof PgoutputPlugin,
    readonly options: Pgoutput.Options,
    private readonly relations: ReadonlyMap<string, RelationKeys>,
  ) {
    this.library = new library(options);
  }

  get name(): string {
    return this.library.name;
  }

  start(client: pg.Client, slot: string, lastLsn: string): Promise<unknown> {
    return this.library.start(client, slot, lastLsn);
  }

  parse(buffer: Buffer): StreamMessage | null {
    const oid = changedRelation(buffer);
    const layout = oid === null ? undefined : this.layouts.get(oid);
    if (layout) return decodeChange(buffer, layout);
    const message = this.library.parse(buffer);
    if (message.tag === 'relation') {
      // The library caches this very object and reads later tuples through these parsers.
      for (const column of message.columns) column.parser = (raw: unknown) => raw;
      const columns = message.columns.map((c) => ({ name: c.name, identity: (c.flags & 1) === 1, padded: c.typeOid === BPCHAR_OID }));
      const name = relationName(message);
      this.layouts.set(message.relationOid, relationLayout(name, String(message.relationOid), columns, this.relations.get(name)?.primaryKey));
    }
    return toMessage(message);
  }
}

/** pg_type oid of `character(n)` (bpchar). */
const BPCHAR_OID = 1042;

function relationName(r: Pgoutput.MessageRelation): string {
  return `${r.schema}.${r.name}`;
}

/** The server's own text form (`0/198E518`): the library pads some positions (`00000000/0198E518`). */
function normalLsn(lsn: string | null | undefined): string {
  return bigIntToLsn(lsnToBigInt(lsn ?? '0/0'));
}

function toMessage(m: Pgoutput.Message): StreamMessage | null {
  switch (m.tag) {
    case 'begin':
      // The library reads the id as a signed 32-bit number; ids from 2^31 on are unsigned.
      return { tag: 'begin', commitLsn: normalLsn(m.commitLsn), xid: m.xid >>> 0 };
    case 'commit':
      return { tag: 'commit', commitLsn: normalLsn(m.commitLsn), endLsn: normalLsn(m.commitEndLsn ?? m.commitLsn) };
    case 'insert':
      return { tag: 'insert', relation: relationName(m.relation), row: m.new as Tuple, id: String(m.relation.relationOid) };
    case 'update':
      return {
        tag: 'update',
        relation: relationName(m.relation),
        row: m.new as Tuple,
        oldKey: (m.key ?? m.old) as Tuple | null,
        id: String(m.relation.relationOid),
      };
    case 'delete':
      return { tag: 'delete', relation: relationName(m.relation), oldKey: (m.key ?? m.old) as Tuple | null, id: String(m.relation.relationOid) };
    case 'relation':
      return {
        tag: 'relation',
        relation: relationName(m),
        id: String(m.relationOid),
        columns: m.columns.map((c) => ({ name: c.name, type: `${c.typeOid}:${c.typeMod}` })),
      };
    case 'truncate':
      return { tag: 'truncate', relations: m.relations.map(relationName) };
    default:
      return null;
  }
}

/**
 * SQL of the 64-bit transaction id nearest `reference` (a 64-bit id) whose low 32 bits are `xid`: `reference` plus
 * the signed 32-bit distance from it.
 */
export function widenedXid(xid: string, reference: string): string {
  return `${reference} + (((${xid} - ${reference}) % 4294967296 + 4294967296 + 2147483648) % 4294967296 - 2147483648)`;
}

/** A transaction's changes are handed over in parts of this many while it is still arriving. */
const HAND_OVER_CHANGES = 1000;

export interface PostgresCdcOptions {
  /**
   * Administration queries (slot, publication, catalog) not answered this long plus `answerGraceMs` fail, their
   * connection taken for dead (the source's `statementTimeout`; no server-side limit: creating a slot waits for the
   * transactions running then). @defaultValue 300000 ms
   */
  statementTimeoutMs?: number;
  /** @defaultValue 30000 ms */
  answerGraceMs?: number;
  /**
   * The replication stream ends with a retryable error when nothing arrives from the server for this long; at half
   * of it, the server is asked for a keepalive (config `cdc.receiveTimeout`, PostgreSQL's wal_receiver_timeout).
   * @defaultValue 60000 ms
   */
  receiveTimeoutMs?: number;
}

/**
 * Postgres logical replication (pgoutput) as a change source: publication and slot management, and a stream of
 * committed transactions whose position is acknowledged only when the caller says so.
 */
export class PostgresCdc implements ChangeSource {
  private readonly pool: pg.Pool;
  readonly stream: string;
  private readonly queryTimeoutMs: number;
  private readonly receiveTimeoutMs: number;

  constructor(
    readonly name: string,
    private readonly url: string,
    readonly publication: string,
    readonly slot: string,
    options: PostgresCdcOptions = {},
  ) {
    this.stream = `replication slot ${slot}`;
    this.queryTimeoutMs = answerBound(options.statementTimeoutMs ?? 300_000, options.answerGraceMs);
    this.receiveTimeoutMs = options.receiveTimeoutMs ?? 60_000;
    this.pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'pushsync-cdc', ...connectionSafety(0) });
    this.pool.on('error', () => {});
  }

  private async query(text: string, values: unknown[], what: string, bounded = true): Promise<{ rows: Array<Record<string, unknown>> }> {
    try {
      return { rows: await queryObjects(this.pool, { text, values }, bounded ? this.queryTimeoutMs : 0) };
    } catch (err) {
      throw translatePgError(err, `${this.name}: ${what}`);
    }
  }

  /** Problems that make CDC impossible, with what to change. */
  async prerequisites(): Promise<string[]> {
    const problems: string[] = [];
    const { rows } = await this.query(
      `SELECT current_setting('wal_level') AS wal_level,
              (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate`,
      [],
      'check wal_level',
    );
    const row = rows[0] as { wal_level: string; can_replicate: boolean };
    if (row.wal_level !== 'logical') {
      problems.push(`source ${this.name}: wal_level is ${row.wal_level}; CDC needs wal_level = logical in postgresql.conf (and a restart)`);
    }
    if (!row.can_replicate) {
      problems.push(`source ${this.name}: the role lacks REPLICATION; ALTER ROLE <role> WITH REPLICATION`);
    }
    return problems;
  }

  /**
   * Tables whose deletes would arrive without a key: REPLICA IDENTITY NOTHING, or DEFAULT without a primary key.
   */
  async keyProblems(tables: readonly TableShape[]): Promise<string[]> {
    const problems: string[] = [];
    for (const t of tables) {
      const { rows } = await this.query(
        `SELECT c.relreplident AS ident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
        [t.schema, t.relname],
        'read replica identity',
      );
      const row = rows[0] as { ident: string; has_pk: boolean } | undefined;
      const name = `${quoteIdent(t.schema)}.${quoteIdent(t.relname)}`;
      if (row?.ident === 'n' || (row?.ident === 'd' && !row.has_pk)) {
        problems.push(`${name}: deletes and updates would arrive without a key; ALTER TABLE ${name} REPLICA IDENTITY FULL (or add a primary key)`);
      }
    }
    return problems;
  }

  /** Creates the publication for these tables, or adds the ones it lacks. */
  async prepare(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<void> {
    const list = tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.relname)}`);
    const { rows } = await this.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [this.publication], 'find publication');
    if (rows.length === 0) {
      await this.query(`CREATE PUBLICATION ${quoteIdent(this.publication)} FOR TABLE ${list.join(', ')}`, [], 'create publication');
      return;
    }
    const { rows: present } = await this.query(
      `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`,
      [this.publication],
      'list publication tables',
    );
    const have = new Set(present.map((r) => `${String(r.schemaname)}.${String(r.tablename)}`));
    const missing = tables.filter((t) => !have.has(`${t.schema}.${t.relname}`));
    if (missing.length > 0) {
      await this.query(
        `ALTER PUBLICATION ${quoteIdent(this.publication)} ADD TABLE ${missing.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.relname)}`).join(', ')}`,
        [],
        'add tables to publication',
      );
    }
  }

  async relationIds(tables: ReadonlyArray<Pick<TableShape, 'schema' | 'relname'>>): Promise<Map<string, string>> {
    const { rows } = await this.query(
      `SELECT n.nspname || '.' || c.relname AS name, c.oid::text AS id
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [tables.map((t) => t.schema), tables.map((t) => t.relname)],
      'read relation ids',
    );
    return new Map(rows.map((r) => [String(r.name), String(r.id)]));
  }

  /** `23:-1` (type oid and modifier, as relation events state them) → `integer`. */
  async typeNames(types: readonly string[]): Promise<Map<string, string>> {
    const parts = types.map((t) => t.split(':'));
    const { rows } = await this.query(
      `SELECT t.oid::text || ':' || t.mod::text AS id, format_type(t.oid, t.mod) AS name
       FROM unnest($1::oid[], $2::int[]) AS t(oid, mod)`,
      [parts.map((p) => p[0]), parts.map((p) => p[1])],
      'name column types',
    );
    return new Map(rows.map((r) => [String(r.id), String(r.name)]));
  }

  async status(): Promise<ChangeStreamStatus> {
    const { rows } = await this.query(
      `SELECT confirmed_flush_lsn::text AS confirmed, active, wal_status = 'lost' AS lost,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag
       FROM pg_replication_slots WHERE slot_name = $1`,
      [this.slot],
      'read slot',
    );
    const row = rows[0] as { confirmed: string | null; active: boolean; lost: boolean | null; lag: number | null } | undefined;
    if (!row) return { exists: false, confirmed: null, lagBytes: null, active: false, lost: false };
    return { exists: true, confirmed: row.confirmed, lagBytes: row.lag, active: row.active, lost: row.lost === true };
  }

  /** Creates the slot (in a statement of its own: Postgres refuses in a transaction that wrote) and returns its start. */
  async create(): Promise<string> {
    // Unbounded: the server creates the slot once every transaction running now has ended, however long that takes.
    const { rows } = await this.query(
      `SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [this.slot],
      'create slot',
      false,
    );
    return (rows[0] as { lsn: string }).lsn;
  }

  async drop(options: { capture: boolean }): Promise<void> {
    await this.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [this.slot], 'drop slot');
    if (options.capture) await this.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(this.publication)}`, [], 'drop publication');
  }

  async currentPosition(): Promise<string> {
    const { rows } = await this.query(`SELECT pg_current_wal_lsn()::text AS lsn`, [], 'read WAL position');
    return (rows[0] as { lsn: string }).lsn;
  }

  comparePositions(a: string, b: string): number {
    return compareLsn(a, b);
  }

  /** Versions before 0.2 confirmed the slot one byte past each acknowledged position. */
  confirmedPast(confirmed: string, acknowledged: string, legacy: boolean): boolean {
    return lsnToBigInt(confirmed) > lsnToBigInt(acknowledged) + (legacy ? 1n : 0n);
  }

  snapshotOrdering(start: string): string {
    return snapshotOrdering(start);
  }

  /**
   * Whether the transactions (32-bit ids, as pgoutput names them) are visible in a snapshot taken now. The commit
   * record is decoded once it is flushed, but the transaction becomes visible only after the backend ends it, which
   * with synchronous replication waits for the standby's answer. Each id is widened to its 64-bit form as the one
   * nearest the snapshot's xmax (one past the latest completed transaction): a transaction still held back is at or
   * past it, a completed one before it, either within 2^31 ids.
   */
  async visible(transactions: readonly string[]): Promise<boolean> {
    if (transactions.length === 0) return true;
    const { rows } = await this.query(
      `SELECT bool_and(txid_visible_in_snapshot(${widenedXid('x', 'txid_snapshot_xmax(s)')}, s)) AS visible
       FROM txid_current_snapshot() s, unnest($1::bigint[]) x`,
      [transactions],
      'check that streamed transactions are visible',
    );
    return (rows[0] as { visible: boolean }).visible;
  }

  /**
   * Streams committed transactions from the slot's confirmed position. Events are handed over synchronously in
   * stream order; the caller buffers and acknowledges what it has made durable.
   */
  async open(
    relations: ReadonlyMap<string, RelationKeys>,
    onEvent: (e: ChangeStreamEvent) => void,
    onError: (err: Error) => void,
  ): Promise<ChangeStream> {
    const collector = new ChangeCollector(relations);
    // Loaded by the first stream: a process without CDC sources (most one-shot runs) does not pay for it at start.
    const replication = await import('pg-logical-replication');
    // What the slot confirms: a reply the server insists on (inside a long transaction) repeats it.
    let acknowledged = (await this.status()).confirmed;
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      onError(err instanceof AppError ? err : translatePgError(err, `${this.name}: replication stream`));
    };
    // pgoutput (protocol 1) sends a transaction only once it committed, so its rows may be read before its end arrives.
    // The transaction being received: its rows are read only once it is visible (see `visible`).
    let transaction = '';
    const handOver = (): void => {
      if (collector.pending >= HAND_OVER_CHANGES) onEvent({ kind: 'changes', changes: collector.take(), transaction });
    };
    const onMessage = (m: StreamMessage): void => {
      switch (m.tag) {
        case 'begin':
          transaction = String(m.xid);
          collector.begin(m.commitLsn);
          break;
        case 'insert':
          collector.insert(m.relation, m.row, m.id);
          handOver();
          break;
        case 'update':
          collector.update(m.relation, m.row, m.oldKey, m.id);
          handOver();
          break;
        case 'delete':
          collector.delete(m.relation, m.oldKey, m.id);
          handOver();
          break;
        case 'relation':
          if (relations.has(m.relation))
            onEvent({ kind: 'relation', relation: m.relation, id: m.id, columns: m.columns, from: collector.nextOrdering() });
          break;
        case 'truncate': {
          const watched = m.relations.filter((r) => relations.has(r));
          if (watched.length > 0) onEvent({ kind: 'truncate', relations: watched });
          break;
        }
        case 'commit': {
          const ignored = collector.ignored;
          onEvent({ kind: 'transaction', changes: collector.commit(), end: m.endLsn, transaction, ...(ignored > 0 ? { ignored } : {}) });
          break;
        }
        case 'keepalive':
          if (!collector.inTransaction) {
            onEvent({ kind: 'idle', position: m.walEnd });
          } else if (m.replyRequested && acknowledged !== null) {
            // Without an answer the server ends the connection after wal_sender_timeout.
            void sendStatus(service, acknowledged, false).catch(fail);
          }
          break;
      }
    };
    const service = new replication.LogicalReplicationService(
      { ...withStartupOptions(this.url, TEXT_FORM_OPTIONS), application_name: 'pushsync-cdc', ...connectionSafety(0) },
      // No automatic acknowledgement: the library would otherwise confirm every received position, including
      // changes not yet enqueued, and a crash would then skip them.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    const silence = this.watchSilence(service, () => acknowledged, fail);
    service.on('data', (_lsn: string, m: StreamMessage | null) => {
      silence.heard();
      try {
        if (m) onMessage(m);
      } catch (err) {
        // A change without its key: the stream cannot go on without losing it.
        fail(err);
        void service.stop();
      }
    });
    service.on('heartbeat', (lsn: string, _timestamp: number, shouldRespond: boolean) => {
      silence.heard();
      onMessage({ tag: 'keepalive', walEnd: normalLsn(lsn), replyRequested: shouldRespond });
    });
    service.on('error', fail);
    const plugin = new KeyPgoutputPlugin(replication.PgoutputPlugin, { protoVersion: 1, publicationNames: [this.publication] }, relations);
    const started = new Promise<void>((resolve) => service.once('start', () => resolve()));
    const done = service.subscribe(plugin, this.slot).then(() => undefined, fail);
    void done.finally(silence.end);
    // Stopping a replication connection before the server has started streaming can leave it hanging.
    await Promise.race([started, done, sleep(30_000)]);
    if (failed) await done;
    const report = async (lsn: string, ping: boolean): Promise<void> => {
      await sendStatus(service, lsn, ping);
      acknowledged = lsn;
    };
    return {
      acknowledge: (lsn: string) => report(lsn, false),
      requestPosition: (lsn: string) => report(lsn, true),
      stop: async () => {
        silence.end();
        const stopped = service.stop().then(() => done);
        const timedOut = await Promise.race([stopped.then(() => false), sleep(5000).then(() => true)]);
        if (timedOut) {
          // The slot stays busy while its connection lives; end it from the server side so the next reader can start.
          await this.query(
            `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`,
            [this.slot],
            'end a stuck replication connection',
          ).catch(() => undefined);
        }
      },
      done,
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /**
   * Ends a replication stream that receives nothing for `receiveTimeoutMs`: a connection that stops answering without
   * a reset (a partition, a host that died) would otherwise leave the reader waiting for changes forever, its lease
   * renewed, so no other process takes over. A live server sends changes or keepalives, and answers the keepalive
   * request sent at half the time (with the position already confirmed: it confirms nothing new).
   */
  private watchSilence(
    service: LogicalReplicationService,
    confirmed: () => string | null,
    fail: (err: unknown) => void,
  ): { heard: () => void; end: () => void } {
    const limit = this.receiveTimeoutMs;
    if (limit <= 0) return { heard: () => undefined, end: () => undefined };
    let last = Date.now();
    let asked = false;
    const timer = setInterval(
      () => {
        const silent = Date.now() - last;
        if (silent >= limit) {
          clearInterval(timer);
          fail(
            new AppError(
              'SOURCE_UNAVAILABLE',
              `${this.name}: replication stream: nothing received from the server for ${Math.round(silent / 1000)} s (cdc.receiveTimeout): the connection is taken for dead`,
              { retryable: true },
            ),
          );
          // The socket is destroyed, not closed politely: a dead peer would never answer the goodbye.
          void service.stop().catch(() => undefined);
        } else if (!asked && silent >= limit / 2) {
          asked = true;
          const position = confirmed();
          if (position !== null) void sendStatus(service, position, true).catch(fail);
        }
      },
      Math.max(10, Math.min(1000, limit / 10)),
    );
    timer.unref();
    return {
      heard: () => {
        last = Date.now();
        asked = false;
      },
      end: () => clearInterval(timer),
    };
  }
}

/**
 * Sends a standby status update whose written, flushed and applied positions are exactly `lsn`, as PostgreSQL's own
 * subscriber reports a commit's end LSN. The library reports its argument plus one (it takes "the last byte
 * received"), so it is given `lsn - 1`. Confirming one byte too far is silent loss: when decoding restarts,
 * PostgreSQL skips every transaction whose COMMIT record starts before the confirmed position, and a COMMIT that
 * starts exactly at an acknowledged keepalive position would be skipped.
 */
async function sendStatus(service: LogicalReplicationService, lsn: string, ping: boolean): Promise<void> {
  const position = lsnToBigInt(lsn);
  // 0/0 confirms nothing; the server keeps the slot where it is.
  if (position === 0n) return;
  await service.acknowledge(bigIntToLsn(position - 1n), ping);
}

export function assertSlotName(name: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(name)) {
    throw new AppError('CONFIG_INVALID', `replication slot name ${name} must be 1-63 lower-case letters, digits or _`);
  }
  return name;
}
