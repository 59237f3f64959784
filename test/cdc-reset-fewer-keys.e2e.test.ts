import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';
import { currentRows, resetChangeStream, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, LOGICAL_PG_URL, SECOND_LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

/**
 * A logical replication source moved by `cdc reset` to a server restored from an older backup, whose table lacks
 * some keys. No change and no snapshot says those keys are gone; unless the new server's table starts a generation
 * of its own, they stay current downstream forever.
 */
describe('a logical replication source moved by cdc reset to a server whose copy of the table lacks some keys', () => {
  const schema = uniqueName('mv');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let a: pg.Client;
  let b: pg.Client;
  let receiver: Receiver;
  const records = (): VersionedRow[] => storedRecords(receiver, 'bronze.items');
  const config = (url: string): Config =>
    cdcConfig({ prefix, receiverUrl: receiver.url, slot, url, tables: [{ name: `${schema}.items`, target: 'bronze.items', batchRows: 4 }] });
  beforeAll(async () => {
    a = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await a.connect();
    b = new pg.Client({ connectionString: SECOND_LOGICAL_PG_URL });
    await b.connect();
    for (const c of [a, b]) await c.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.items (id int PRIMARY KEY, v text NOT NULL)`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    for (const c of [a, b]) {
      await dropCdcFixtures(c, slot, schema);
      await c.end();
    }
    await receiver.close();
    await dropRedisPrefix(prefix);
  });
  it('starts a new generation whose keys, the new server’s, are the current state', async () => {
    await a.query(`INSERT INTO ${schema}.items SELECT g, 'v0' FROM generate_series(1, 10) g`);
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 30_000 })).failed).toEqual([]);
    await b.query(`INSERT INTO ${schema}.items SELECT g, 'v0' FROM generate_series(1, 5) g`);
    const moved = config(SECOND_LOGICAL_PG_URL);
    await resetChangeStream(moved, 'app');
    expect((await syncPass(moved, { timeoutMs: 30_000 })).failed).toEqual([]);
    expect(
      records()
        .filter((r) => r._op === 'table_recreated')
        .map((r) => r._generation),
    ).toEqual([1]);
    expect(currentRows(records()).map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
  });
});
