import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { extractJobOptions } from '../src/queue/jobs.js';
import { dropCdcFixtures } from './helpers/cdc.js';
import { currentRows, modeConfig, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A filtered table moved from CDC to watermark sync while the old process's reader still streams, which sends a
 * delete after the switch. That delete recorded its CDC ordering in the new generation's filter ledger, and every
 * later watermark version of the key was skipped as older: the row inserted again never left.
 */
describe('a filtered table whose reader of the old config streams a delete after the switch from CDC to watermark', () => {
  const schema = uniqueName('fl');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let client: pg.Client;
  let receiver: Receiver;
  const records = (): VersionedRow[] => storedRecords(receiver, `bronze.app_items`);
  const config = (mode: 'cdc' | 'watermark'): Config =>
    modeConfig(mode, {
      prefix,
      receiverUrl: receiver.url,
      source: { name: 'app', kind: 'postgres', url: LOGICAL_PG_URL, cdc: { slot, publication: slot, flushInterval: '50ms', maxRunTime: '20s' } },
      tablePrefix: `${schema}.`,
      items: { where: "v <> 'hidden'" },
    });
  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    await client.query(`INSERT INTO items (id, v) SELECT g, 'v0' FROM generate_series(1, 4) g`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await dropCdcFixtures(client, slot, schema);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('a row deleted after the switch and inserted again reaches the current state', async () => {
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const old = createPipeline(config('cdc'), createLogger('silent'));
    const runtime = await startRuntime(old, { roles: ['extract'] });
    await old.extractQueue.add('app (cdc)', { v: 1, kind: 'cdc', source: 'app', table: '', reason: 'schedule' }, extractJobOptions(1));
    await sleep(1500);
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await client.query(`DELETE FROM items WHERE id = 1`);
    await sleep(1500);
    await runtime.stop();
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await client.query(`INSERT INTO items (id, v) VALUES (1, 'back')`);
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const state = currentRows(records());
    const { rows } = await client.query<{ id: number; v: string }>(`SELECT id, v FROM items ORDER BY id`);
    expect(state).toEqual(rows);
  });
});
