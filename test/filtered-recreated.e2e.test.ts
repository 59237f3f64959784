import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { currentRows, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import type pg from 'pg';

/**
 * A filtered table (`where`) dropped and restored from an older backup: the new table is a new generation whose
 * watermark values are older than the old table's. The filter's ledger of what was decided per key belongs to one
 * generation; the old generation's newer orderings must not make the restored rows look stale, or none is sent.
 */
describe('a filtered table re-created with older watermark values', () => {
  const prefix = uniqueName('ps');
  let schema: string;
  let client: pg.Client;
  let drop: () => Promise<void>;
  let receiver: Receiver;
  let config: Config;
  const records = (): (VersionedRow & { region: string })[] => storedRecords(receiver, 'bronze.app_items');
  const create = async (at: string): Promise<void> => {
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, region text NOT NULL, updated_at timestamptz NOT NULL)`);
    await client.query(`INSERT INTO items SELECT g, 'v' || g, CASE WHEN g % 2 = 0 THEN 'EU' ELSE 'US' END, $1 FROM generate_series(1, 6) g`, [at]);
  };

  beforeAll(async () => {
    ({ schema, client, drop } = await createSchema());
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [{ name: `${schema}.items`, target: 'bronze.app_items', watermark: 'updated_at', safetyLag: '0s', where: "region <> 'EU'" }],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await drop();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('sends the restored table’s matching rows in its new generation', async () => {
    await create('2026-06-01 00:00:00+00');
    expect((await syncPass(config, { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(
      records()
        .map((r) => r.id)
        .sort((a, b) => a - b),
    ).toEqual([1, 3, 5]);

    // Restored from a backup taken before: the same keys, older timestamps.
    await client.query(`DROP TABLE items`);
    await create('2026-01-01 00:00:00+00');
    await client.query(`UPDATE items SET v = 'restored'`);
    expect((await syncPass(config, { timeoutMs: 20_000 })).failed).toEqual([]);
    expect((await syncPass(config, { timeoutMs: 20_000 })).failed).toEqual([]);

    const restored = records().filter((r) => r._generation === 1 && r._op !== 'table_recreated');
    expect(restored.map((r) => r.id).sort((a, b) => a - b)).toEqual([1, 3, 5]);
    const state = currentRows(records());
    const { rows } = await client.query<{ id: number; v: string }>(`SELECT id, v FROM items WHERE region <> 'EU' ORDER BY id`);
    expect(state).toEqual(rows);
  });
});
