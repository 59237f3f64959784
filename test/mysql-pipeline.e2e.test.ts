import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { newestPerKey } from './helpers/current-state.js';

const PAGE = 100;

interface Received {
  _op: string;
  _event_id: string;
  _ordering: string;
  _extracted_at: string;
  id: string;
  updated_at: string | null;
  amount: string | null;
  note: string | null;
}

function currentState(rows: Received[]): Map<string, Received> {
  return newestPerKey(rows);
}

/**
 * The watermark pipeline end to end with a MariaDB source: backfill through BullMQ to a Stream API endpoint on
 * localhost, increments, re-sends with the same event ids, soft deletes, hard deletes by reconciliation, and the
 * cursor-sanity checks. Watermarks are fixed past times, so transactions of other tests on the server (the read
 * boundary looks at all of them) never hold these rows back.
 */
describe('end-to-end watermark sync from MariaDB', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  let redis: Redis;
  const prefix = uniqueName('ps');
  let config: Config;

  beforeAll(async () => {
    db = await createMysqlDatabase();
    receiver = await startReceiver('k');
    redis = new Redis(REDIS_URL);
    await db.client.query(
      `CREATE TABLE orders (id bigint unsigned PRIMARY KEY, updated_at datetime(6), amount decimal(30,10), note text, KEY (updated_at, id))`,
    );
    await db.client.query(
      `CREATE TABLE items (id int PRIMARY KEY, updated_at timestamp(3) NOT NULL, status varchar(10) NOT NULL, deleted tinyint(1) NOT NULL DEFAULT 0)`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 10, cap: 50 }, attempts: 5 },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            tables: [
              { name: 'orders', watermark: 'updated_at', batchRows: PAGE },
              {
                name: `${db.database}.items`,
                watermark: 'updated_at',
                batchRows: 7,
                softDelete: { condition: `status = 'void'` },
                reconcile: { every: '1h' },
              },
            ],
          },
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

  const received = (target = 'bronze.shop_orders'): Received[] => (receiver.stored.get(target) ?? []).map((t) => JSON.parse(t) as Received);

  async function sync(reconcile = false): Promise<void> {
    const summary = await syncPass(config, { reconcile });
    expect(summary.failed).toEqual([]);
    expect(summary.timedOut).toBe(false);
  }

  /** The current state received equals the table, value for value, in forms the server computes. */
  async function expectCurrentStateEqualsSource(): Promise<void> {
    const source = await textRows(db.client, `SELECT id, REPLACE(CAST(updated_at AS CHAR), ' ', 'T'), CAST(amount AS CHAR), note FROM orders`);
    const state = currentState(received());
    expect(state.size).toBe(source.length);
    for (const [id, updatedAt, amount, note] of source) {
      const got = state.get(id!);
      expect(got, `row ${id} missing`).toBeDefined();
      expect([got!.updated_at, got!.amount, got!.note]).toEqual([updatedAt, amount, note]);
    }
  }

  it('backfills every row, three pages sharing one microsecond and rows with a NULL watermark included', async () => {
    await db.client.query(`
      INSERT INTO orders SELECT seq, '2024-03-01 12:00:00' + INTERVAL seq * 1000001 MICROSECOND, seq * 1234567.0123456789, CONCAT('note ', seq) FROM seq_1_to_1000`);
    await db.client.query(`INSERT INTO orders SELECT seq, '2024-03-02 00:00:00.123456', 99999999999999999999.0000000001, NULL FROM seq_1001_to_1300`);
    await db.client.query(`INSERT INTO orders VALUES (18446744073709551615, NULL, 1, 'no watermark'), (5001, NULL, 2, 'no watermark either')`);

    await sync();
    const rows = received();
    expect(rows.length).toBe(1302);
    expect(new Set(rows.map((r) => r.id)).size).toBe(1302);
    await expectCurrentStateEqualsSource();
    const sample = rows.find((r) => r.id === '1001')!;
    expect(sample).toMatchObject({ _op: 'upsert', amount: '99999999999999999999.0000000001', updated_at: '2024-03-02T00:00:00.123456' });
    expect(sample._ordering).toBe('2024-03-02T00:00:00.123456');
    expect(rows.find((r) => r.id === '18446744073709551615')).toMatchObject({ updated_at: null, note: 'no watermark' });
  });

  it('sends only what changed on the next run, ordered after the old versions', async () => {
    const before = received().length;
    await db.client.query(`UPDATE orders SET note = 'changed', updated_at = '2024-04-01 00:00:00.000001' WHERE id BETWEEN 1 AND 300`);
    await db.client.query(`UPDATE orders SET amount = 0.5, updated_at = '2024-04-01 00:00:00.000002' WHERE id = 1300`);
    await db.client.query(`INSERT INTO orders VALUES (2000, '2024-04-02 00:00:00', 7, 'new')`);
    await sync();
    const added = received().slice(before);
    expect(added.length).toBe(302);
    expect(new Set(added.map((r) => r.id))).toEqual(new Set([...Array.from({ length: 300 }, (_, i) => String(i + 1)), '1300', '2000']));
    await expectCurrentStateEqualsSource();
  });

  it('re-sends after a lost cursor with the same event ids, so duplicates are removable', async () => {
    const before = received();
    const ids = new Map([...currentState(before)].map(([id, r]) => [id, r._event_id]));
    // Losing Redis state means starting over: everything is sent again, nothing skipped.
    await dropRedisPrefix(prefix);
    await sync();
    const again = received().slice(before.length);
    expect(again.length).toBe(ids.size);
    for (const r of again) expect(r._event_id).toBe(ids.get(r.id));
  });

  it('sends soft deletes by a condition, and hard deletes found by reconciliation', async () => {
    const target = 'bronze.shop_items';
    await db.client.query(
      `INSERT INTO items (id, updated_at, status) SELECT seq, '2024-01-01 00:00:00' + INTERVAL seq SECOND, IF(seq % 5 = 0, 'void', 'live') FROM seq_1_to_30`,
    );
    await sync(true);
    const ops = (): Record<string, string> => Object.fromEntries([...currentState(received(target))].map(([id, r]) => [id, r._op]));
    expect(
      Object.entries(ops())
        .filter(([, op]) => op === 'delete')
        .map(([id]) => Number(id))
        .sort((a, b) => a - b),
    ).toEqual([5, 10, 15, 20, 25, 30]);

    await db.client.query(`DELETE FROM items WHERE id IN (3, 4, 17)`);
    await sync(true);
    const state = ops();
    expect(Object.keys(state)).toHaveLength(30);
    expect(
      Object.entries(state)
        .filter(([, op]) => op === 'delete')
        .map(([id]) => Number(id))
        .sort((a, b) => a - b),
    ).toEqual([3, 4, 5, 10, 15, 17, 20, 25, 30]);
    const hard = received(target).filter((r) => r._op === 'delete' && ['3', '4', '17'].includes(String(r.id)));
    expect(hard).toHaveLength(3);
    // The delete record carries the key, encoded like the row's own key (an INT: a JSON number).
    expect(hard.map((r) => r.id as unknown as number).sort((a, b) => a - b)).toEqual([3, 4, 17]);
  });

  it('reports a cursor that moved backwards, and a table that is suddenly empty', async () => {
    const key = `${prefix}:cursor:shop:${db.database}.items`;
    const saved = JSON.parse((await redis.get(key))!) as { after: { wm: string; pk: string[] } };
    expect(saved.after).toEqual({ wm: '2024-01-01 00:00:30.000', pk: ['30'] });
    await redis.set(key, JSON.stringify({ ...saved, after: { wm: '2024-01-01 00:00:10.000', pk: ['10'] } }));
    const back = await syncPass(config);
    expect(back.failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[CURSOR_INVALID\] .*moved backwards/)]);
    await redis.set(key, JSON.stringify(saved));

    await db.client.query(`DELETE FROM items`);
    const empty = await syncPass(config);
    expect(empty.failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[SOURCE_EMPTY\] .*no rows, but rows were read from it before/)]);
  });
});
