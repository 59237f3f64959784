import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

interface Rec {
  _op: string;
  code: string;
  v: number;
}

/**
 * A case-insensitive, PAD SPACE collation makes `abc`, `ABC` and `abc ` one key for MySQL, and three for the
 * destination, which compares the texts pushsync sent. A key respelled in place was sent again under its new
 * spelling; its old spelling must be deleted downstream.
 */
describe('a MySQL key respelled in place under a case-insensitive PAD SPACE collation', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  let config: Config;

  const records = (): Rec[] => (receiver.stored.get('bronze.shop_codes') ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (reconcile = false): Promise<void> => {
    const summary = await syncPass(config, { reconcile, timeoutMs: 30_000 });
    expect(summary.failed).toEqual([]);
  };

  beforeAll(async () => {
    db = await createMysqlDatabase();
    await db.client.query(`CREATE TABLE codes (code varchar(10) COLLATE utf8mb4_general_ci PRIMARY KEY, updated_at timestamp(3) NOT NULL, v int)`);
    await db.client.query(
      `INSERT INTO codes VALUES ('abc', '2024-01-01 00:00:00', 1), ('pad', '2024-01-01 00:00:00', 1), ('keep', '2024-01-01 00:00:00', 1)`,
    );
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            tables: [{ name: 'codes', watermark: 'updated_at', reconcile: { every: '1h' } }],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver?.close();
    await db?.drop();
    await dropRedisPrefix(prefix);
  });

  it('reconciliation deletes the old spelling, as it deletes a row that is gone', async () => {
    await sync();
    expect(
      records()
        .map((r) => r.code)
        .sort(),
    ).toEqual(['abc', 'keep', 'pad']);
    await db.client.query(`UPDATE codes SET code = 'ABC', v = 2, updated_at = '2024-01-02 00:00:00' WHERE code = 'abc'`);
    await db.client.query(`UPDATE codes SET code = 'pad ', v = 2, updated_at = '2024-01-02 00:00:00' WHERE code = 'pad'`);
    await db.client.query(`DELETE FROM codes WHERE code = 'keep'`);
    await sync(true);
    const changes = records()
      .filter((r) => r._op !== 'upsert' || r.v === 2)
      .map((r) => [r._op, r.code]);
    expect(changes.sort()).toEqual([
      ['delete', 'abc'],
      ['delete', 'keep'],
      ['delete', 'pad'],
      ['upsert', 'ABC'],
      ['upsert', 'pad '],
    ]);
  });
});
