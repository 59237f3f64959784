import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import type { OnceSummary } from '../src/queue/run-once.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';

interface Rec {
  _op: string;
  _ordering: string;
  _extracted_at: string;
  id: number;
  v: string | null;
  n: string | null;
  at: string | null;
}

/** Binlog change data capture end to end: snapshot, then inserts, updates, deletes and key changes from the binlog. */
describe('change data capture from the MariaDB binlog', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  let redis: Redis;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  let config: Config;

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    redis = new Redis(REDIS_URL);
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, v varchar(100), n decimal(30,10), at datetime(6))`);
    await db.client.query(`INSERT INTO items SELECT seq, CONCAT('v', seq), seq * 1.25, '2024-01-01 00:00:00.000001' FROM seq_1_to_50`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          { name: 'shop', kind: 'mysql', url: db.url, mode: 'cdc', cdc: { slot, flushInterval: '50ms' }, tables: [{ name: 'items', batchRows: 20 }] },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await redis.quit();
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  const syncOnce = (): Promise<OnceSummary> => syncPass(config, { timeoutMs: 30_000 });
  const records = (): Rec[] => (receiver.stored.get('bronze.shop_items') ?? []).map((r) => JSON.parse(r) as Rec);

  async function expectStateEqualsSource(): Promise<void> {
    const rows = await textRows(db.client, `SELECT id, v, CAST(n AS CHAR), REPLACE(CAST(at AS CHAR), ' ', 'T') FROM items ORDER BY id`);
    const state = currentState(records());
    expect([...state.keys()].sort((a, b) => a - b)).toEqual(rows.map((r) => Number(r[0])));
    for (const [id, v, n, at] of rows) expect([state.get(Number(id))!.v, state.get(Number(id))!.n, state.get(Number(id))!.at]).toEqual([v, n, at]);
  }

  it('snapshots the table at the first run', async () => {
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(summary.timedOut).toBe(false);
    expect(records()).toHaveLength(50);
    expect(new Set(records().map((r) => r._op))).toEqual(new Set(['snapshot']));
    await expectStateEqualsSource();
  });

  it('streams inserts, updates, deletes and key changes, and the current state equals the source', async () => {
    await db.client.query(`INSERT INTO items SELECT seq, CONCAT('new', seq), seq, NULL FROM seq_51_to_60`);
    await db.client.query(`UPDATE items SET v = 'changed', n = 99999999999999999999.5 WHERE id BETWEEN 1 AND 5`);
    await db.client.query(`DELETE FROM items WHERE id BETWEEN 6 AND 10`);
    await db.client.query(`UPDATE items SET id = 1000 WHERE id = 11`);
    await db.client.query(`BEGIN`);
    await db.client.query(`UPDATE items SET v = 'a' WHERE id = 12`);
    await db.client.query(`DELETE FROM items WHERE id = 12`);
    await db.client.query(`COMMIT`);
    await db.client.query(`INSERT INTO items VALUES (12, 'back', 1, '2024-02-02 00:00:00.5')`);

    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(summary.timedOut).toBe(false);
    const changes = records().filter((r) => r._op !== 'snapshot');
    expect(
      changes
        .filter((r) => r._op === 'delete')
        .map((r) => r.id)
        .sort((a, b) => a - b),
    ).toEqual([6, 7, 8, 9, 10, 11, 12]);
    expect(changes.filter((r) => r._op === 'insert').map((r) => r.id)).toEqual(expect.arrayContaining([51, 60, 1000, 12]));
    await expectStateEqualsSource();
  });

  it('acknowledges only what it enqueued: an idle pass sends nothing, and the position is the server position', async () => {
    const before = records().length;
    // Other tests write to the same server meanwhile: the position the pass reaches lies between the server's
    // position before it and after it.
    const serverAt = async (): Promise<string> => {
      const [file, position] = (await textRows(db.client, 'SHOW MASTER STATUS'))[0]!;
      return `${file}:${position!.padStart(12, '0')}`;
    };
    const start = await serverAt();
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(records().length).toBe(before);
    const end = await serverAt();
    const [file, position] = (await redis.hget(`${prefix}:binlog:shop:${slot}`, 'confirmed'))!.split(':');
    const confirmed = `${file}:${position!.padStart(12, '0')}`;
    expect(confirmed >= start && confirmed <= end, `${start} <= ${confirmed} <= ${end}`).toBe(true);
  });

  it('refuses to continue a stream whose binlog file the server no longer has, asking for a new snapshot', async () => {
    await redis.hset(`${prefix}:binlog:shop:${slot}`, 'confirmed', 'binlog.000000:4');
    const summary = await syncOnce();
    expect(summary.failed.map((f) => f.reason)).toEqual([
      expect.stringMatching(/^\[CURSOR_INVALID\] .*invalidated: the server no longer has binlog file binlog.000000.*cdc reset --source shop/),
    ]);
  });
});
