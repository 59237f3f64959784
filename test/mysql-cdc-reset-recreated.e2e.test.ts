import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { binlogConfig, currentRows, moveAndReset, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, SECOND_MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, uniqueName } from './helpers/services.js';

/**
 * MySQL has no table identity: pushsync counts a table's re-creations in the binlog (its incarnation). The count
 * must outlive `cdc reset`, or a table re-created after the reset comes back as an incarnation the old stream had
 * already seen, takes that generation again, and the dropped table's keys stay in the current state.
 */
describe('a binlog table re-created on both sides of a cdc reset', () => {
  let first: MysqlDatabase;
  let second: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.shop_items');
  const config = (url: string): Config => binlogConfig({ prefix, receiverUrl: receiver.url, slot, url });
  const table = `CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL)`;

  beforeAll(async () => {
    first = await createMysqlDatabase(SECOND_MYSQL_BINLOG_URL);
    // A restore keeps the database's name.
    second = await createMysqlDatabase(MYSQL_BINLOG_URL, first.database);
    for (const db of [first, second]) await db.client.query(table);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await first.drop();
    await second.drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('starts a new generation for a table re-created after the reset', async () => {
    await first.client.query(`INSERT INTO items SELECT seq, 'v0' FROM seq_1_to_10`);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    await first.client.query(`DROP TABLE items`);
    await first.client.query(table);
    await first.client.query(`INSERT INTO items SELECT seq, 'recreated' FROM seq_1_to_10`);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    expect(Math.max(...records().map((r) => r._generation ?? 0))).toBe(1);

    // Moved to another server, reset, streamed there.
    for (const [id, v] of await textRows(first.client, `SELECT id, v FROM items ORDER BY id`))
      await second.client.query(`INSERT INTO items VALUES (?, ?)`, [Number(id), v]);
    const moved = config(second.url);
    await moveAndReset(moved, 'shop');
    await second.client.query(`UPDATE items SET v = 'changed after reset' WHERE id <= 4`);
    expect((await syncPass(moved, { timeoutMs: 30_000 })).failed).toEqual([]);

    // Dropped and created again on the new server, with fewer keys: a new generation, without the others.
    await second.client.query(`DROP TABLE items`);
    await second.client.query(table);
    await second.client.query(`INSERT INTO items SELECT seq, 'recreated on the new server' FROM seq_1_to_3`);
    expect((await syncPass(moved, { timeoutMs: 30_000 })).failed).toEqual([]);
    expect((await syncPass(moved, { timeoutMs: 30_000 })).failed).toEqual([]);
    // Generation 2 began with the reset's snapshot; the re-creation began 3.
    expect(Math.max(...records().map((r) => r._generation ?? 0))).toBe(3);
    const state = currentRows(records());
    const source = (await textRows(second.client, `SELECT id, v FROM items ORDER BY id`)).map(([id, v]) => ({ id: Number(id), v }));
    expect(state).toEqual(source);
  });
});
