import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeStream, ChangeStreamEvent, TableShape } from '../core/ports.js';
import { MysqlBinlog, type BinlogStateStore } from './mysql-cdc.js';
import { MysqlSource } from './mysql.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, MYSQL_URL, type MysqlDatabase } from '../../test/helpers/mysql.js';
import { uniqueName } from '../../test/helpers/services.js';

/** The store main.ts backs with Redis, here in memory: what the reader saves is what it loads. */
function memoryStore(): BinlogStateStore & { fields: Record<string, string> } {
  const store = {
    fields: {} as Record<string, string>,
    load: async () => ({ ...store.fields }),
    save: async (f: Record<string, string>) => void Object.assign(store.fields, f),
    clear: async (keep: string) => void (store.fields = Object.fromEntries(Object.entries(store.fields).filter(([k]) => k.startsWith(keep)))),
  };
  return store;
}

/** Collects what a stream hands over; `next` waits (bounded by count of polls) for the next event of a kind. */
class Inbox {
  events: ChangeStreamEvent[] = [];
  errors: Error[] = [];
  async next<K extends ChangeStreamEvent['kind']>(kind: K, polls = 400): Promise<Extract<ChangeStreamEvent, { kind: K }>> {
    for (let i = 0; i < polls; i++) {
      const at = this.events.findIndex((e) => e.kind === kind);
      if (at >= 0) return this.events.splice(0, at + 1)[at] as Extract<ChangeStreamEvent, { kind: K }>;
      if (this.errors.length > 0) throw this.errors[0];
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no ${kind} event arrived`);
  }
}

describe('MysqlBinlog against a MariaDB with the binary log on', () => {
  let db: MysqlDatabase;
  let source: MysqlSource;
  let shape: TableShape;
  let relations: Map<string, { primaryKey: string[] }>;
  const opened: ChangeStream[] = [];
  const binlog = (store: BinlogStateStore, url = db.url): MysqlBinlog =>
    new MysqlBinlog({ name: 'shop', url, stream: 'pushsync_shop', serverId: 100_000 + Math.floor(Math.random() * 1_000_000), store });

  async function open(cdc: MysqlBinlog): Promise<Inbox> {
    const inbox = new Inbox();
    opened.push(
      await cdc.open(
        relations,
        (e) => inbox.events.push(e),
        (err) => inbox.errors.push(err),
      ),
    );
    return inbox;
  }

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    source = new MysqlSource({ name: 'shop', url: db.url, poolSize: 1 });
    await db.client.query(`CREATE TABLE items (id bigint unsigned, code varchar(10), v text, PRIMARY KEY (id, code))`);
    await db.client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    shape = (await source.table({ source: 'shop', name: 'items' })).shape;
    relations = new Map([[`${db.database}.items`, { primaryKey: shape.primaryKey }]]);
  });
  afterAll(async () => {
    for (const s of opened) await s.stop().catch(() => {});
    await source.close();
    await db.drop();
  });

  it('finds the server ready, and says what a server without the binary log lacks', async () => {
    const cdc = binlog(memoryStore());
    expect(await cdc.prerequisites()).toEqual([]);
    expect(await cdc.keyProblems([shape])).toEqual([]);
    await cdc.close();
    const plain = await createMysqlDatabase(MYSQL_URL);
    try {
      const off = binlog(memoryStore(), plain.url);
      expect((await off.prerequisites()).join('\n')).toContain('the binary log is off');
      await plain.client.query(`CREATE TABLE timed (t time PRIMARY KEY)`);
      const timed = (await new MysqlSource({ name: 'p', url: plain.url, poolSize: 1 }).table({ source: 'p', name: 'timed' })).shape;
      expect((await off.keyProblems([timed]))[0]).toContain('key column t of type time cannot be read from the binlog');
      await plain.client.query(`CREATE TABLE jis (k varchar(5) CHARACTER SET sjis PRIMARY KEY)`);
      // The table reader refuses this key itself (see mysql.int.test.ts); the binlog check reads the catalog.
      const jis = { ...timed, relname: 'jis', primaryKey: ['k'] };
      expect((await off.keyProblems([jis]))[0]).toContain('key column k of type varchar(5) CHARACTER SET sjis cannot be read from the binlog');
      await off.close();
    } finally {
      await plain.drop();
    }
  });

  it('hands over committed transactions as key-level changes, and restarts exactly where acknowledged', async () => {
    const store = memoryStore();
    const cdc = binlog(store);
    expect((await cdc.status()).exists).toBe(false);
    const start = await cdc.create();
    expect(await cdc.status()).toMatchObject({ exists: true, confirmed: start, lost: false, lagBytes: 0 });
    const inbox = await open(cdc);

    await db.client.query(`INSERT INTO other VALUES (1)`);
    await db.client.query(`BEGIN`);
    await db.client.query(`INSERT INTO items VALUES (18446744073709551615, 'Ab', 'x'), (1, 'b ', NULL)`);
    await db.client.query(`UPDATE items SET v = 'y' WHERE id = 1`);
    await db.client.query(`UPDATE items SET code = 'c' WHERE id = 1`);
    await db.client.query(`DELETE FROM items WHERE id = 18446744073709551615`);
    await db.client.query(`COMMIT`);
    const first = await inbox.next('transaction');
    expect(first.changes.map((c) => [c.op, ...c.pk])).toEqual([
      ['insert', '18446744073709551615', 'Ab'],
      ['insert', '1', 'b '],
      ['update', '1', 'b '],
      ['delete', '1', 'b '],
      ['insert', '1', 'c'],
      ['delete', '18446744073709551615', 'Ab'],
    ]);
    expect(first.changes.every((c) => c.relation === `${db.database}.items`)).toBe(true);
    expect(cdc.comparePositions(first.end, start)).toBe(1);
    expect(cdc.snapshotOrdering(start) < first.changes[0]!.ordering).toBe(true);
    expect(new Set(first.changes.map((c) => c.ordering)).size).toBe(6);

    const stream = opened.pop()!;
    await stream.acknowledge(first.end);
    await stream.stop();
    expect(store.fields.confirmed).toBe(first.end);
    expect((await cdc.status()).confirmed).toBe(first.end);

    // Committed while no stream is open: the next stream starts at the acknowledged end, so it sees this and only this.
    await db.client.query(`INSERT INTO items VALUES (2, 'z', 'after')`);
    const again = await open(cdc);
    const second = await again.next('transaction');
    expect(second.changes.map((c) => [c.op, ...c.pk])).toEqual([['insert', '2', 'z']]);
    expect(cdc.comparePositions(second.end, first.end)).toBe(1);
    expect(cdc.confirmedPast(second.end, first.end)).toBe(true);
    expect(cdc.confirmedPast(first.end, first.end)).toBe(false);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('delivers a commit made right after an acknowledged idle position', async () => {
    const store = memoryStore();
    const cdc = binlog(store);
    await cdc.create();
    await db.client.query(`INSERT INTO other VALUES (2)`);
    const inbox = await open(cdc);
    const current = await cdc.currentPosition();
    // Idle positions move past other tables' transactions to the server's position.
    let idle = await inbox.next('idle');
    for (let i = 0; i < 40 && cdc.comparePositions(idle.position, current) < 0; i++) {
      await opened[opened.length - 1]!.requestPosition(store.fields.confirmed!);
      idle = await inbox.next('idle');
    }
    expect(idle.position).toBe(current);
    const stream = opened.pop()!;
    await stream.acknowledge(idle.position);
    await stream.stop();
    await db.client.query(`INSERT INTO items VALUES (3, 'q', 'late')`);
    const again = await open(cdc);
    expect((await again.next('transaction')).changes.map((c) => [c.op, ...c.pk])).toEqual([['insert', '3', 'q']]);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('decodes every row with the columns it was written with, across ADD COLUMN FIRST and DROP COLUMN, live and from a backlog', async () => {
    await db.client.query(`CREATE TABLE shifty (code varchar(10), id int PRIMARY KEY, v text)`);
    const rel = `${db.database}.shifty`;
    const shifty = new Map([[rel, { primaryKey: ['id'] }]]);
    const store = memoryStore();
    const cdc = binlog(store);
    await cdc.create();
    const openShifty = async (): Promise<Inbox> => {
      const inbox = new Inbox();
      opened.push(
        await cdc.open(
          shifty,
          (e) => inbox.events.push(e),
          (err) => inbox.errors.push(err),
        ),
      );
      return inbox;
    };
    const keys = async (inbox: Inbox): Promise<string[][]> => (await inbox.next('transaction')).changes.map((c) => [c.op, ...c.pk]);
    let inbox = await openShifty();
    expect((await inbox.next('relation')).columns.map((c) => c.name)).toEqual(['code', 'id', 'v']);
    await db.client.query(`INSERT INTO shifty VALUES ('a', 1, 'x')`);
    expect(await keys(inbox)).toEqual([['insert', '1']]);
    await db.client.query(`ALTER TABLE shifty ADD COLUMN head int FIRST`);
    const described = await inbox.next('relation');
    expect(described.columns.map((c) => c.name)).toEqual(['head', 'code', 'id', 'v']);
    expect(described.id).toBe('1');
    await db.client.query(`INSERT INTO shifty VALUES (7, 'b', 2, 'y')`);
    const live = await inbox.next('transaction');
    expect(live.changes.map((c) => [c.op, ...c.pk])).toEqual([['insert', '2']]);
    const first = opened.pop()!;
    await first.acknowledge(live.end);
    await first.stop();
    // Stopped: rows written with (head, code, id, v), then the table becomes (code, id, v2).
    await db.client.query(`INSERT INTO shifty VALUES (8, 'c', 3, 'z')`);
    await db.client.query(`ALTER TABLE shifty DROP COLUMN head, ADD COLUMN v2 int`);
    await db.client.query(`UPDATE shifty SET v2 = id WHERE id = 1`);
    inbox = await openShifty();
    expect(await keys(inbox)).toEqual([['insert', '3']]);
    expect((await inbox.next('relation')).columns.map((c) => c.name)).toEqual(['code', 'id', 'v', 'v2']);
    expect(await keys(inbox)).toEqual([['update', '1']]);
    expect(inbox.errors).toEqual([]);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('spells binlog keys of every keyable type exactly as the table reader spells them', async () => {
    await db.client.query(`
      CREATE TABLE keyed (i int, bu bigint unsigned, d decimal(12,3), s varchar(10) COLLATE utf8mb4_general_ci, b varbinary(4),
                          dt date, t0 datetime, t3 datetime(3), ts timestamp(6) NOT NULL DEFAULT '2000-01-01 00:00:00', y year, v int,
                          PRIMARY KEY (i, bu, d, s, b, dt, t0, t3, ts, y))`);
    const reader = await source.table({ source: 'shop', name: 'keyed' });
    const keyed = new Map([[`${db.database}.keyed`, { primaryKey: reader.shape.primaryKey }]]);
    const cdc = binlog(memoryStore());
    await cdc.create();
    const inbox = new Inbox();
    opened.push(
      await cdc.open(
        keyed,
        (e) => inbox.events.push(e),
        (err) => inbox.errors.push(err),
      ),
    );
    await db.client.query(`
      INSERT INTO keyed VALUES (-1, 18446744073709551615, -0.5, 'Ab ', x'00ff', '2024-02-29', '2024-01-01 00:00:00', '2024-01-01 00:00:00.120', '2038-01-19 03:14:07.000001', 2024, 1),
                               (2, 0, 12345.125, '😀', x'', '1000-01-01', '9999-12-31 23:59:59', '2024-01-01 00:00:00.000', '1970-01-01 00:00:01', 1901, 2)`);
    const txn = await inbox.next('transaction');
    const read = await reader.nextRange({ phase: 'pk', after: null }, 10);
    expect(txn.changes.map((c) => c.pk).sort()).toEqual(read!.keys.map((k) => [...k]).sort());
    // Rows are found by the keys the binlog gave, as the push worker reads them.
    expect((await reader.readKeys(txn.changes.map((c) => c.pk))).map((r) => r.index).sort()).toEqual([0, 1]);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('reports a TRUNCATE of a captured table', async () => {
    const cdc = binlog(memoryStore());
    await cdc.create();
    const inbox = await open(cdc);
    await db.client.query(`TRUNCATE TABLE items`);
    expect((await inbox.next('truncate')).relations).toEqual([`${db.database}.items`]);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('asks for a captured table to be read again when a session wrote its changes as statements, not rows', async () => {
    const cdc = binlog(memoryStore());
    await cdc.create();
    const inbox = await open(cdc);
    const session = await mysql.createConnection(db.url);
    try {
      // Allowed to a session with the privilege, whatever the server's binlog_format: such changes carry no rows.
      await session.query(`SET SESSION binlog_format = 'STATEMENT'`);
      await session.query(`UPDATE items SET v = 'by statement' WHERE id = 1`);
      await session.query(`INSERT INTO other VALUES (77)`);
    } finally {
      await session.end();
    }
    expect(await inbox.next('resnapshot')).toMatchObject({
      relation: `${db.database}.items`,
      reason: expect.stringContaining('written to the binlog as a statement'),
    });
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('measures the lag in bytes and in seconds: the age of what was handed over and not acknowledged', async () => {
    const store = memoryStore();
    const cdc = binlog(store);
    const start = await cdc.create();
    const created = await cdc.status();
    // Other suites write to this server too: with nothing past the start, the lag is 0 in both units.
    if (created.lagBytes === 0) expect(created.lagSeconds).toBe(0);
    const inbox = await open(cdc);
    await db.client.query(`INSERT INTO items VALUES (40, 'lag', 'x')`);
    const txn = await inbox.next('transaction');
    const stream = opened[opened.length - 1]!;
    await new Promise((r) => setTimeout(r, 2100));
    // Acknowledging the start leaves the transaction pending: the lag is at least the 2 s since its commit.
    await stream.acknowledge(start);
    const behind = await cdc.status();
    expect(behind.lagBytes).toBeGreaterThan(0);
    expect(behind.lagSeconds).toBeGreaterThanOrEqual(2);
    expect(behind.lagSeconds).toBeLessThan(60);
    await stream.acknowledge(txn.end);
    expect(store.fields.pendingSince).toBe('');
    const caughtUp = await cdc.status();
    expect(caughtUp.lagSeconds).toBeLessThan(2);
    await opened.pop()!.stop();
    await cdc.close();
  });

  it('states the binlog settings, retention and privileges for pushsync check', async () => {
    const cdc = binlog(memoryStore());
    const { facts, warnings } = await cdc.facts();
    expect(facts.slice(0, 3)).toEqual(['log_bin=ON', 'binlog_format=ROW', 'binlog_row_image=FULL']);
    expect(facts[3]).toMatch(/^binlog retention 86400 s \(binlog_expire_logs_seconds=86400, expire_logs_days=1[.0]*\)$/);
    expect(facts[4]).toBe('privileges ALL PRIVILEGES');
    expect(warnings).toEqual([]);
    await cdc.close();
  });

  it('warns of captured tables whose rows a foreign key action changes, which the binary log does not carry', async () => {
    await db.client.query(`CREATE TABLE fk_parent (id int PRIMARY KEY)`);
    await db.client.query(
      `CREATE TABLE fk_child (id int PRIMARY KEY, parent int, CONSTRAINT child_parent FOREIGN KEY (parent) REFERENCES fk_parent (id) ON DELETE CASCADE)`,
    );
    await db.client.query(`CREATE TABLE fk_plain (id int PRIMARY KEY, parent int, FOREIGN KEY (parent) REFERENCES fk_parent (id))`);
    const cdc = binlog(memoryStore());
    try {
      const captured = ['fk_parent', 'fk_child', 'fk_plain'].map((relname) => ({ schema: db.database, relname }));
      const { warnings } = await cdc.facts(captured);
      expect(warnings).toEqual([
        `source shop: ${db.database}.fk_child: foreign key child_parent references ${db.database}.fk_parent ON DELETE CASCADE; InnoDB changes ` +
          'those rows itself, and on MariaDB and MySQL 8 the binary log does not carry them, so change data capture never sees them: ' +
          `read ${db.database}.fk_child in watermark mode with a reconcile setting, which sends the deletes`,
      ]);
      // A child table not captured is not this source's concern.
      expect((await cdc.facts(captured.filter((t) => t.relname !== 'fk_child'))).warnings).toEqual([]);
    } finally {
      await cdc.close();
    }
  });

  it('reports the stream lost when its binlog file is gone or the server is another one', async () => {
    const store = memoryStore();
    const cdc = binlog(store);
    await cdc.create();
    const real = { ...store.fields };
    store.fields.confirmed = 'binlog.000000:4';
    expect(await cdc.status()).toMatchObject({ lost: true, lostReason: expect.stringContaining('no longer has binlog file binlog.000000') });
    store.fields.confirmed = real.confirmed!;
    store.fields.identity = `${uniqueName('other')} server`;
    expect((await cdc.status()).lost).toBe(true);
    store.fields.identity = real.identity!;
    expect((await cdc.status()).lost).toBe(false);
    // The GTID recorded at the start is the server's history then; one that went back means the binlog started over.
    expect(real.gtid).toMatch(/^\d+-\d+-\d+/);
    store.fields.gtid = real.gtid!.replace(/-\d+$/, '-999999999999');
    expect(await cdc.status()).toMatchObject({ lost: true, lostReason: expect.stringContaining('GTID history') });
    store.fields.gtid = real.gtid!;
    store.fields.confirmed = real.confirmed!.replace(/:\d+$/, ':999999999999');
    expect(await cdc.status()).toMatchObject({ lost: true, lostReason: expect.stringContaining('shorter than the position') });
    store.fields.confirmed = real.confirmed!;
    expect((await cdc.status()).lost).toBe(false);
    await cdc.drop();
    expect((await cdc.status()).exists).toBe(false);
    await cdc.close();
  });
});
