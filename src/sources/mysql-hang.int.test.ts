import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMysqlDatabase, MYSQL_BINLOG_URL, MYSQL_URL, type MysqlDatabase } from '../../test/helpers/mysql.js';
import { TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { eventually } from '../../test/helpers/wait.js';
import type { ChangeStream, ChangeStreamEvent } from '../core/ports.js';
import { MysqlBinlog, type BinlogStateStore } from './mysql-cdc.js';
import { MysqlSource } from './mysql.js';

/** `url` with its host and port replaced by the proxy's. */
function through(proxy: TcpProxy, url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}

/**
 * Regression: a statement awaited on a connection that stops answering without a FIN or RST (a partition, a host
 * that died) waited forever. A proxy that stops carrying bytes, and closes nothing, plays that network.
 */
describe('a MySQL statement on a connection that stops answering', () => {
  let proxy: TcpProxy;
  let source: MysqlSource | undefined;

  afterEach(async () => {
    await proxy?.close();
    await Promise.race([source?.close(), sleep(2000)]);
    source = undefined;
  });

  it('fails retryable once its statement timeout and the grace have passed, instead of waiting forever', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_URL).port || 3306));
    source = new MysqlSource({ name: 'm', url: through(proxy, MYSQL_URL), poolSize: 2, statementTimeoutMs: 600, answerGraceMs: 400 });
    const s = source;
    // A pooled connection, its session set up, for each statement below.
    await Promise.all([s.query('SELECT SLEEP(0.1)', 'probe'), s.query('SELECT SLEEP(0.1)', 'probe')]);
    proxy.hang();
    for (const configured of [false, true]) {
      const started = Date.now();
      await expect(s.query('SELECT 2', 'read a page', configured)).rejects.toMatchObject({ code: 'SOURCE_UNAVAILABLE', retryable: true });
      // One bound, not one per statement of the transaction around configured SQL.
      expect(Date.now() - started).toBeLessThan(1000 + 900);
    }
  }, 20_000);

  it('does not cut a statement that runs longer than the grace but within its statement timeout', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_URL).port || 3306));
    source = new MysqlSource({ name: 'm', url: through(proxy, MYSQL_URL), poolSize: 1, statementTimeoutMs: 3000, answerGraceMs: 200 });
    const rows = await source.query('SELECT SLEEP(1.5)', 'a long page');
    expect(rows.map((r) => r.map((v) => v?.toString('utf8')))).toEqual([['0']]);
  }, 20_000);
});

/** The store main.ts backs with Redis, here in memory: what the reader saves is what it loads. */
function memoryStore(): BinlogStateStore {
  let fields: Record<string, string> = {};
  return {
    load: async () => ({ ...fields }),
    save: async (f) => void Object.assign(fields, f),
    clear: async () => void (fields = {}),
  };
}

/**
 * Regression: a binlog stream whose connection stopped answering without a FIN or RST waited for events forever,
 * and an idle binlog sent nothing that could tell it apart from a dead one (no heartbeat was asked for).
 */
describe('a binlog stream on a connection that stops answering', () => {
  let db: MysqlDatabase;
  let proxy: TcpProxy;
  const streams: ChangeStream[] = [];
  const sources: MysqlBinlog[] = [];
  let relations: Map<string, { primaryKey: string[] }>;

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE t (id int PRIMARY KEY)`);
    relations = new Map([[`${db.database}.t`, { primaryKey: ['id'] }]]);
  });

  afterEach(async () => {
    // Connections through a hung proxy never answer a goodbye: stopping must not wait on them.
    for (const s of streams.splice(0)) await Promise.race([s.stop().catch(() => {}), sleep(2000)]);
    await proxy?.close();
    for (const c of sources.splice(0)) await Promise.race([c.close().catch(() => {}), sleep(2000)]);
  });

  afterAll(async () => {
    await db?.drop();
  });

  function binlog(store: BinlogStateStore, url: string, receiveTimeoutMs: number): MysqlBinlog {
    const cdc = new MysqlBinlog({
      name: 'shop',
      url,
      stream: 'pushsync_shop',
      serverId: 100_000 + Math.floor(Math.random() * 1_000_000),
      store,
      receiveTimeoutMs,
    });
    sources.push(cdc);
    return cdc;
  }

  async function open(cdc: MysqlBinlog): Promise<{ errors: Error[]; events: ChangeStreamEvent[]; stream: ChangeStream }> {
    const errors: Error[] = [];
    const events: ChangeStreamEvent[] = [];
    const stream = await cdc.open(
      relations,
      (e) => events.push(e),
      (err) => errors.push(err),
    );
    streams.push(stream);
    return { errors, events, stream };
  }

  const transactions = async (events: ChangeStreamEvent[], errors: Error[]): Promise<string[][]> => {
    await eventually(() => errors.length > 0 || events.some((e) => e.kind === 'transaction'), 25, 10_000);
    expect(errors).toEqual([]);
    return events.flatMap((e) => (e.kind === 'transaction' ? [e.changes.map((c) => `${c.op} ${c.pk.join()}`)] : []));
  };

  it('keeps an idle stream that answers past cdc.receiveTimeout: the server sends heartbeats at half of it', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_BINLOG_URL).port || 3306));
    const cdc = binlog(memoryStore(), through(proxy, db.url), 2000);
    await cdc.prepare([{ schema: db.database, relname: 't' }]);
    await cdc.create();
    const { errors, events } = await open(cdc);
    await sleep(5000);
    expect(errors).toEqual([]);
    await db.client.query(`INSERT INTO t VALUES (1)`);
    expect(await transactions(events, errors)).toEqual([['insert 1']]);
  }, 20_000);

  it('ends with a retryable error once nothing arrives for cdc.receiveTimeout, and the next stream resumes at the confirmed position', async () => {
    proxy = await TcpProxy.start(Number(new URL(MYSQL_BINLOG_URL).port || 3306));
    const store = memoryStore();
    const cdc = binlog(store, through(proxy, db.url), 2000);
    await cdc.prepare([{ schema: db.database, relname: 't' }]);
    await cdc.create();
    const { errors, events, stream } = await open(cdc);
    proxy.hang();
    const started = Date.now();
    // Committed while the connection is dead: never received, so never acknowledged.
    await db.client.query(`INSERT INTO t VALUES (2)`);
    await Promise.race([stream.done, sleep(10_000)]);
    expect(errors[0]).toMatchObject({ code: 'SOURCE_UNAVAILABLE', retryable: true });
    expect(errors[0]!.message).toMatch(/^shop: binlog stream pushsync_shop: nothing received from the server for \d+ s \(cdc\.receiveTimeout 2 s\)/);
    expect(Date.now() - started).toBeLessThan(2000 + 1500);
    expect(events.some((e) => e.kind === 'transaction')).toBe(false);

    const again = await open(binlog(store, db.url, 2000));
    expect(await transactions(again.events, again.errors)).toEqual([['insert 2']]);
  }, 30_000);
});
