import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { binlogConfig, currentRows, moveAndReset, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, SECOND_MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, uniqueName } from './helpers/services.js';

/**
 * A binlog source moved by `cdc reset` to a server restored from an older backup, whose table lacks some keys. The
 * table on the new server stayed in the old server's generation, and a snapshot cannot see keys that are gone: the
 * missing keys stayed current downstream forever. The new stream's snapshot must start a generation of its own.
 */
describe('a binlog source moved by cdc reset to a server whose copy of the table lacks some keys', () => {
  let first: MysqlDatabase;
  let second: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.shop_items');
  const config = (url: string): Config => binlogConfig({ prefix, receiverUrl: receiver.url, slot, url });
  beforeAll(async () => {
    first = await createMysqlDatabase(SECOND_MYSQL_BINLOG_URL);
    second = await createMysqlDatabase(MYSQL_BINLOG_URL, first.database);
    for (const db of [first, second]) await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, v varchar(40) NOT NULL)`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await first.drop();
    await second.drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('starts a new generation whose rows, the new server’s, are the current state', async () => {
    await first.client.query(`INSERT INTO items SELECT seq, 'v0' FROM seq_1_to_10`);
    expect((await syncPass(config(first.url), { timeoutMs: 30_000 })).failed).toEqual([]);
    // Restored from a backup taken when only keys 1..5 existed.
    await second.client.query(`INSERT INTO items SELECT seq, 'v0' FROM seq_1_to_5`);
    const moved = config(second.url);
    await moveAndReset(moved, 'shop');
    expect(
      records()
        .filter((r) => r._op === 'table_recreated')
        .map((r) => r._generation),
    ).toEqual([1]);
    const state = currentRows(records());
    const source = (await textRows(second.client, `SELECT id, v FROM items ORDER BY id`)).map(([id, v]) => ({ id: Number(id), v }));
    expect(state).toEqual(source);
  });
});
