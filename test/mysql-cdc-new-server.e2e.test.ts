import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { binlogConfig, currentRows, moveAndReset, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, SECOND_MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, uniqueName } from './helpers/services.js';

/**
 * A binlog CDC source moved to another MariaDB (a restored backup, a new primary, a binlog after RESET MASTER): its
 * binlog starts at a lower file and offset than the old server had reached, and MySQL has no table identity that
 * would start a new table generation. After `pushsync cdc reset`, the current state downstream must be the new
 * server's rows, not the old server's versions, which used to sort after every new one.
 */
describe('a binlog CDC source moved to a server whose binlog positions are lower', () => {
  let first: MysqlDatabase;
  let second: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');

  const binlogFile = async (db: MysqlDatabase): Promise<number> => {
    const [[status]] = (await db.client.query(`SHOW MASTER STATUS`)) as unknown as [[{ File: string }]];
    return Number(status.File.split('.').pop());
  };
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.shop_items');
  const config = (url: string): Config => binlogConfig({ prefix, receiverUrl: receiver.url, slot, url });

  beforeAll(async () => {
    // The server moved from is the one only this test uses: its binlog is rotated (FLUSH BINARY LOGS) until it is on a
    // later file than the shared one's, so all its positions sort after the new server's.
    first = await createMysqlDatabase(SECOND_MYSQL_BINLOG_URL);
    second = await createMysqlDatabase(MYSQL_BINLOG_URL);
    for (const db of [first, second]) await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL)`);
    for (let i = 0; i < 200 && (await binlogFile(first)) <= (await binlogFile(second)); i++) await first.client.query(`FLUSH BINARY LOGS`);
    receiver = await startReceiver('k');
  });

  afterAll(async () => {
    await first.drop();
    await second.drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('keeps the new server’s rows as the current state after cdc reset', async () => {
    expect(await binlogFile(first)).toBeGreaterThan(await binlogFile(second));
    await first.client.query(`INSERT INTO items SELECT seq, 'v0' FROM seq_1_to_10`);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    await first.client.query(`UPDATE items SET v = 'old server' WHERE id <= 5`);
    await first.client.query(`DELETE FROM items WHERE id = 10`);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    const before = records();
    expect(before.some((r) => r.id === 10 && r._op === 'delete')).toBe(true);

    // The table restored on the second server, then changed there before pushsync reads it.
    for (const [id, v] of await textRows(first.client, `SELECT id, v FROM items ORDER BY id`))
      await second.client.query(`INSERT INTO items VALUES (?, ?)`, [Number(id), v]);
    await second.client.query(`UPDATE items SET v = 'new server' WHERE id <= 3`);
    await second.client.query(`INSERT INTO items VALUES (10, 'back again')`);

    // The binlog pushsync read is another server's: refused until a reset takes a new snapshot.
    const moved = config(second.url);
    await moveAndReset(moved, 'shop');
    await second.client.query(`UPDATE items SET v = 'changed later' WHERE id = 4`);
    expect((await syncPass(moved, { timeoutMs: 30_000 })).failed).toEqual([]);

    const all = records();
    const state = currentRows(all);
    const source = (await textRows(second.client, `SELECT id, v FROM items ORDER BY id`)).map(([id, v]) => ({ id: Number(id), v }));
    expect(state).toEqual(source);
    const after = all.slice(before.length);
    expect(after.length).toBeGreaterThanOrEqual(11);
    // The new stream's snapshot starts a table generation of its own (a table_recreated record, no ordering).
    expect(after.filter((r) => r._op === 'table_recreated').map((r) => r._generation)).toEqual([1]);
    expect(after.filter((r) => r._op !== 'table_recreated').every((r) => r._ordering.startsWith('~~000001~') && r._generation === 1)).toBe(true);
  });
});
