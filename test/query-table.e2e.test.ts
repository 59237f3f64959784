import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

interface Rec {
  _op: string;
  _ordering: string;
  id: number;
  total: string;
  country: string;
  customer_id?: number;
}

describe('a custom SQL query read as a table', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  let config: Config;
  const records = (): Rec[] => (receiver.stored.get('bronze.app_active_orders') ?? []).map((r) => JSON.parse(r) as Rec);

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    await db.client.query(`CREATE TABLE customers (id int PRIMARY KEY, country text)`);
    await db.client.query(
      `CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, updated_at timestamptz NOT NULL, total numeric(12,2), status text)`,
    );
    await db.client.query(`INSERT INTO customers VALUES (1, 'DE'), (2, 'FR')`);
    // 25 orders sharing one microsecond watermark, 5 more after it; two are cancelled and not part of the query.
    await db.client.query(
      `INSERT INTO orders SELECT g, 1 + g % 2, CASE WHEN g <= 25 THEN '2024-01-01 00:00:00.000001+00'::timestamptz ELSE '2024-01-02'::timestamptz + g * interval '1 s' END,
              g * 1.10, CASE WHEN g IN (7, 27) THEN 'cancelled' ELSE 'open' END FROM generate_series(1, 30) g`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              {
                name: 'active_orders',
                query: `SELECT o.id, o.updated_at, o.total, o.customer_id, c.country FROM ${db.schema}.orders o JOIN ${db.schema}.customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'`,
                primaryKey: ['id'],
                watermark: 'updated_at',
                columns: { exclude: ['customer_id'] },
                batchRows: 4,
              },
            ],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('pages the query by the tie-safe keyset: every row once, in keyset order, with its own encoding and column rules', async () => {
    expect((await syncPass(config)).failed).toEqual([]);
    // Push jobs run in parallel: records of different ranges arrive in no fixed order.
    const ids = records()
      .map((r) => r.id)
      .sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 30 }, (_, i) => i + 1).filter((g) => g !== 7 && g !== 27));
    expect(records().find((r) => r.id === 1)).toMatchObject({
      _op: 'upsert',
      _ordering: '2024-01-01T00:00:00.000001Z',
      id: 1,
      total: '1.10',
      country: 'FR',
    });
    expect(records().some((r) => 'customer_id' in r)).toBe(false);
  });

  it('sends what changed on the next run, and a row newly in the query', async () => {
    const before = records().length;
    await db.client.query(`UPDATE orders SET total = 99.99, updated_at = '2024-02-01' WHERE id = 3`);
    await db.client.query(`UPDATE orders SET status = 'open', updated_at = '2024-02-02' WHERE id = 7`);
    expect((await syncPass(config)).failed).toEqual([]);
    expect(
      records()
        .slice(before)
        .map((r) => [r.id, r.total]),
    ).toEqual([
      [3, '99.99'],
      [7, '7.70'],
    ]);
  });
});
