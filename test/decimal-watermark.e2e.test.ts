import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';

interface Rec {
  _op: string;
  _ordering: string;
  _extracted_at: string;
  id: number;
  version: string | number;
  note: string;
}

/**
 * A watermark of a decimal type (Postgres numeric, float8; MySQL DECIMAL) moves by value, not by its text: version
 * 9 then 10, 9.5 then 10.25, 0.00001 then 1e21. The current-state view orders a key's versions by `_ordering` as text.
 */
describe('decimal watermarks order the versions of a key by value', () => {
  const prefix = uniqueName('ps');
  let receiver: Receiver;
  let pg: Awaited<ReturnType<typeof createSchema>>;
  let my: MysqlDatabase;
  let config: Config;

  const records = (table: string): Rec[] => (receiver.stored.get(table) ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 15_000 })).failed).toEqual([]);

  beforeAll(async () => {
    pg = await createSchema();
    my = await createMysqlDatabase();
    await pg.client.query(`CREATE TABLE n (id int PRIMARY KEY, version numeric, note text)`);
    await pg.client.query(`CREATE TABLE f (id int PRIMARY KEY, version float8, note text)`);
    await my.client.query(`CREATE TABLE d (id INT PRIMARY KEY, version DECIMAL(30,4), note TEXT)`);
    for (const [t, client] of [
      ['n', pg.client],
      ['f', pg.client],
    ] as const)
      await client.query(`INSERT INTO ${t} VALUES (1, 9, 'old'), (2, -2, 'old'), (3, 9.5, 'old'), (4, 0.00001, 'old')`);
    await my.client.query(`INSERT INTO d VALUES (1, 9, 'old'), (2, -2, 'old'), (3, 9.5, 'old'), (4, 0.00001, 'old')`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'pg',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              { name: `${pg.schema}.n`, watermark: 'version' },
              { name: `${pg.schema}.f`, watermark: 'version' },
            ],
          },
          { name: 'my', kind: 'mysql', url: my.url, tables: [{ name: `${my.database}.d`, watermark: 'version' }] },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await pg.drop();
    await my.drop();
    await dropRedisPrefix(prefix);
  });

  it('a row whose watermark grew is current in its newer version', async () => {
    await sync();
    const changes = `UPDATE %t SET version = CASE id WHEN 1 THEN 10 WHEN 2 THEN 11 WHEN 3 THEN 10.25 ELSE 1e21 END, note = 'new'`;
    await pg.client.query(changes.replace('%t', 'n'));
    await pg.client.query(changes.replace('%t', 'f'));
    await my.client.query(changes.replace('%t', 'd'));
    await sync();
    for (const table of ['bronze.pg_n', 'bronze.pg_f', 'bronze.my_d']) {
      expect(records(table), table).toHaveLength(8);
      const state = currentState(records(table));
      expect([...state.values()].map((r) => [r.id, r.note]).sort(), table).toEqual([
        [1, 'new'],
        [2, 'new'],
        [3, 'new'],
        [4, 'new'],
      ]);
    }
  });
});
