import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { cdcReset } from '../src/queue/cdc-admin.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';
import { currentState } from './helpers/current-state.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, LOGICAL_PG_URL, SECOND_LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

interface Rec {
  id: number;
  v: string;
  _op: string;
  _ordering: string;
  _extracted_at: string;
  _generation?: number;
}

/**
 * A CDC source moved to another server and back (a failback: the first server's table is the one it always had,
 * with the same oid). The oid maps to the first generation, so without a new generation at each new stream every
 * record after the move back was generation 0 while silver kept the other server's generation 1.
 */
describe('a CDC source moved to another server and back', () => {
  const schema = uniqueName('moved');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let a: pg.Client;
  let b: pg.Client;
  let receiver: Receiver;
  const records = (): Rec[] => (receiver.stored.get(`bronze.app_items`) ?? []).map((r) => JSON.parse(r) as Rec);
  const config = (url: string): Config =>
    cdcConfig({ prefix, receiverUrl: receiver.url, slot, url, tables: [{ name: `${schema}.items`, batchRows: 4 }] });
  const reset = async (c: Config): Promise<void> => {
    const ctx = createPipeline(c, createLogger('silent'));
    try {
      await cdcReset(ctx, c.sources[0]!, false);
    } finally {
      await closePipeline(ctx);
    }
  };
  const state = async (c: pg.Client): Promise<Array<{ id: number; v: string }>> => (await c.query(`SELECT id, v FROM items ORDER BY id`)).rows;
  const silver = (): Array<{ id: number; v: string }> =>
    [...currentState(records()).values()].map((r) => ({ id: r.id, v: r.v })).sort((x, y) => x.id - y.id);

  beforeAll(async () => {
    a = new pg.Client({ connectionString: LOGICAL_PG_URL });
    b = new pg.Client({ connectionString: SECOND_LOGICAL_PG_URL });
    await a.connect();
    await b.connect();
    for (const c of [a, b]) {
      await c.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
      await c.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)`);
    }
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await dropCdcFixtures(a, slot, schema);
    await dropCdcFixtures(b, slot, schema);
    await a.end();
    await b.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('keeps the current server’s rows after moving back', async () => {
    await a.query(`INSERT INTO items SELECT g, 'on a' FROM generate_series(1, 5) g`);
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    // Moved to B (a restore of A, then changed there).
    for (const r of await state(a)) await b.query(`INSERT INTO items VALUES ($1, $2)`, [r.id, r.v]);
    await b.query(`UPDATE items SET v = 'on b'`);
    await syncPass(config(SECOND_LOGICAL_PG_URL), { timeoutMs: 20_000 });
    await reset(config(SECOND_LOGICAL_PG_URL));
    expect((await syncPass(config(SECOND_LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(silver()).toEqual(await state(b));
    // Moved back to A (a failback; A's table is the one it always had), brought up to date, then changed there.
    await a.query(`UPDATE items SET v = 'back on a'`);
    await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 });
    await reset(config(LOGICAL_PG_URL));
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    await a.query(`UPDATE items SET v = 'changed on a' WHERE id = 1`);
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(silver()).toEqual(await state(a));
  });
});
