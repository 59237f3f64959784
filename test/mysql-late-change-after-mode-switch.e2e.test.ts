import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { extractJobOptions } from '../src/queue/jobs.js';
import { currentRows, modeConfig, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, uniqueName } from './helpers/services.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A rolling deploy that moves a table from CDC to watermark sync: the old process's binlog reader still streams when
 * the new one switches the table. Binlog change jobs carry no generation, so a late change was sent in the new
 * generation with its CDC ordering, above every watermark ordering: the key never changed downstream again.
 */
describe('a binlog change enqueued by a reader of the old config after its table switched from CDC to watermark', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.shop_items');
  const config = (mode: 'cdc' | 'watermark'): Config =>
    modeConfig(mode, {
      prefix,
      receiverUrl: receiver.url,
      source: { name: 'shop', kind: 'mysql', url: db.url, cdc: { slot, flushInterval: '50ms', maxRunTime: '20s' } },
    });

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    await db.client.query(
      `CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL, updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`,
    );
    await db.client.query(`INSERT INTO items (id, v, updated_at) SELECT seq, 'v0', '2026-01-01 00:00:00' FROM seq_1_to_4`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await db.drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('is not sent in the new generation: later watermark versions of the key reach the current state', async () => {
    expect((await syncPass(config('cdc'), { timeoutMs: 30_000 })).failed).toEqual([]);
    // The old process: its binlog reader streams (a scheduled run, up to maxRunTime).
    const old = createPipeline(config('cdc'), createLogger('silent'));
    const runtime = await startRuntime(old, { roles: ['extract'] });
    await old.extractQueue.add('shop (cdc)', { v: 1, kind: 'cdc', source: 'shop', table: '', reason: 'schedule' }, extractJobOptions(1));
    await sleep(1500);
    // The new process switches the table.
    expect((await syncPass(config('watermark'), { timeoutMs: 30_000 })).failed).toEqual([]);
    await db.client.query(`UPDATE items SET v = 'late cdc', updated_at = '2026-02-01 00:00:00' WHERE id = 1`);
    await sleep(1500);
    await runtime.stop();
    expect((await syncPass(config('watermark'), { timeoutMs: 30_000 })).failed).toEqual([]);
    await db.client.query(`UPDATE items SET v = 'by watermark', updated_at = '2026-03-01 00:00:00' WHERE id = 1`);
    expect((await syncPass(config('watermark'), { timeoutMs: 30_000 })).failed).toEqual([]);
    const switched = records().filter((r) => (r._generation ?? 0) > 0 && r._op !== 'table_recreated');
    expect(switched.filter((r) => r._ordering.startsWith('~'))).toEqual([]);
    const s = currentRows(records());
    const src = (await textRows(db.client, `SELECT id, v FROM items ORDER BY id`)).map(([id, v]) => ({ id: Number(id), v }));
    expect(s).toEqual(src);
  });
});
