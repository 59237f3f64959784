import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { currentRows, modeConfig, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, uniqueName } from './helpers/services.js';

/**
 * A binlog table moved from CDC to watermark sync and back while the source's stream keeps running for another
 * table. MySQL tables have no identity under watermark sync, so the stream's identity of the table stayed on the
 * first generation while the table moved on: every change after the return counted as a dropped table's, and none
 * was sent.
 */
describe('a binlog table moved from CDC to watermark sync and back', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.shop_items');
  const config = (mode: 'cdc' | 'watermark'): Config =>
    modeConfig(mode, {
      prefix,
      receiverUrl: receiver.url,
      source: { name: 'shop', kind: 'mysql', url: db.url, cdc: { slot, flushInterval: '50ms' } },
    });
  const pass = async (mode: 'cdc' | 'watermark'): Promise<void> => expect((await syncPass(config(mode), { timeoutMs: 30_000 })).failed).toEqual([]);

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    await db.client.query(
      `CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL, updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`,
    );
    await db.client.query(`INSERT INTO items (id, v) SELECT seq, 'v0' FROM seq_1_to_6`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await db.drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('streams the changes made after the return to CDC, in the newest generation', async () => {
    await pass('cdc');
    await db.client.query(`UPDATE items SET v = 'by cdc' WHERE id = 1`);
    await pass('cdc');
    await pass('watermark');
    await db.client.query(`UPDATE items SET v = 'by watermark' WHERE id = 2`);
    await pass('watermark');
    await pass('cdc');
    await db.client.query(`UPDATE items SET v = 'by cdc again' WHERE id IN (1, 3)`);
    await db.client.query(`DELETE FROM items WHERE id = 6`);
    await pass('cdc');

    const all = records();
    const newest = Math.max(...all.map((r) => r._generation ?? 0));
    expect(all.filter((r) => r.v === 'by cdc again').map((r) => [r.id, r._generation])).toEqual([
      [1, newest],
      [3, newest],
    ]);
    const state = currentRows(all);
    const source = (await textRows(db.client, `SELECT id, v FROM items ORDER BY id`)).map(([id, v]) => ({ id: Number(id), v }));
    expect(state).toEqual(source);
  });
});
