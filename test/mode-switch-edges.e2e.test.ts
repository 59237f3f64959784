import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { currentRows, modeConfig, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropCdcFixtures } from './helpers/cdc.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { retryDeadLetters } from '../src/queue/dlq.js';
import { Keys } from '../src/queue/redis.js';
import { dropRedisPrefix, LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

function setup(tag: string) {
  const s = { schema: uniqueName(tag), slot: uniqueName('slot'), prefix: uniqueName('ps') } as {
    schema: string;
    slot: string;
    prefix: string;
    client: pg.Client;
    receiver: Receiver;
  };
  const records = (): VersionedRow[] => storedRecords(s.receiver, `bronze.app_items`);
  const config = (mode: 'cdc' | 'watermark'): Config =>
    modeConfig(mode, {
      prefix: s.prefix,
      receiverUrl: s.receiver.url,
      source: { name: 'app', kind: 'postgres', url: LOGICAL_PG_URL, cdc: { slot: s.slot, publication: s.slot, flushInterval: '50ms' } },
      tablePrefix: `${s.schema}.`,
    });
  const pass = async (mode: 'cdc' | 'watermark') => (await syncPass(config(mode), { timeoutMs: 20_000 })).failed;
  const expectStateEqualsSource = async (): Promise<void> => {
    const state = currentRows(records());
    const { rows } = await s.client.query<{ id: number; v: string }>(`SELECT id, v FROM items ORDER BY id`);
    expect(state).toEqual(rows);
  };
  beforeAll(async () => {
    s.client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await s.client.connect();
    await s.client.query(`CREATE SCHEMA ${s.schema}; SET search_path TO ${s.schema}`);
    await s.client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    await s.client.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    s.receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await dropCdcFixtures(s.client, s.slot, s.schema);
    await s.client.end();
    await s.receiver.close();
    await dropRedisPrefix(s.prefix);
  });
  return { s, records, config, pass, expectStateEqualsSource };
}

/**
 * A CDC batch the destination refused, removed by hand from the dead-letter queue (the dashboard), then the table
 * switched to watermark sync. The removed job's entry stayed in the table's pending set, and the switch waited for it
 * forever: the table was never read again and no later change was sent.
 */
describe('a CDC table switched to watermark sync after one of its failed CDC batches was removed by hand', () => {
  const { s, records, config, pass } = setup('removed');
  it('a failed CDC batch removed by hand does not hold the switch to watermark: every row is read again', async () => {
    await s.client.query(`INSERT INTO items (id, v) SELECT g, 'v0' FROM generate_series(1, 4) g`);
    expect(await pass('cdc')).toEqual([]);
    // A CDC batch fails, and the operator removes the failed job in the dashboard (Job.remove), as the
    // README's "retry or remove it" invites; `dlq purge` would clean the pending set, the dashboard does not.
    s.receiver.setDefault({ kind: 'status', status: 400 });
    await s.client.query(`UPDATE items SET v = 'refused' WHERE id = 1`);
    expect((await pass('cdc')).map((f) => f.queue)).toEqual(['push']);
    s.receiver.setDefault({ kind: 'ok' });
    const ctx = createPipeline(config('watermark'), createLogger('silent'));
    try {
      const failed = await ctx.pushQueue.getFailed();
      expect(failed).toHaveLength(1);
      await failed[0]!.remove();
    } finally {
      await closePipeline(ctx);
    }
    await s.client.query(`UPDATE items SET v = 'after the switch', updated_at = clock_timestamp()`);
    for (let i = 0; i < 3; i++) expect(await pass('watermark')).toEqual([]);
    expect(records().filter((r) => r.v === 'after the switch').length).toBe(4);
  });
});

/**
 * State left by a version that recorded no table modes, of a CDC table that was empty at its snapshot (so no cursor
 * was saved either). Nothing told the switch to watermark sync apart from a first run: no new generation started,
 * and the CDC versions, whose orderings sort after every watermark ordering, stayed current forever.
 */
describe('a CDC table switched to watermark sync from state that records no mode, snapshotted while empty', () => {
  const { s, records, config, pass, expectStateEqualsSource } = setup('nomode');
  it('starts a new generation, so the watermark versions, not the CDC ones, are the current state', async () => {
    expect(await pass('cdc')).toEqual([]); // snapshot of an empty table: no cursor saved
    await s.client.query(`INSERT INTO items (id, v) SELECT g, 'by cdc' FROM generate_series(1, 4) g`);
    expect(await pass('cdc')).toEqual([]);
    // What a version that recorded no modes left: no mode key.
    const ctx = createPipeline(config('watermark'), createLogger('silent'));
    try {
      await ctx.redis.del(new Keys(s.prefix).tableMode('app', `${s.schema}.items`));
    } finally {
      await closePipeline(ctx);
    }
    expect(await pass('watermark')).toEqual([]);
    await s.client.query(`UPDATE items SET v = 'by watermark', updated_at = clock_timestamp() WHERE id <= 2`);
    expect(await pass('watermark')).toEqual([]);
    expect(
      records()
        .filter((r) => r._op === 'table_recreated')
        .map((r) => r._generation),
    ).toEqual([1]);
    await expectStateEqualsSource();
  });
});

/**
 * A watermark batch the destination refused, retried from the dead-letter queue after the table switched to CDC.
 * The table has no watermark column configured any more; the batch must be sent or superseded by the CDC snapshot,
 * not fail as an internal error and stay in the dead-letter queue.
 */
describe('a watermark push job retried after its table switched to CDC', () => {
  const { s, config, pass } = setup('wmretry');
  it('is delivered or superseded, not failed as an internal error', async () => {
    await s.client.query(`INSERT INTO items (id, v) SELECT g, 'v0' FROM generate_series(1, 4) g`);
    s.receiver.setDefault({ kind: 'status', status: 400 });
    expect((await pass('watermark')).map((f) => f.queue)).toContain('push');
    s.receiver.setDefault({ kind: 'ok' });
    expect(await pass('cdc')).toEqual([]);
    const ctx = createPipeline(config('cdc'), createLogger('silent'));
    try {
      expect((await retryDeadLetters(ctx.pushQueue, 'all')).length).toBeGreaterThan(0);
    } finally {
      await closePipeline(ctx);
    }
    await syncPass(config('cdc'), { timeoutMs: 3_000 });
    const later = createPipeline(config('cdc'), createLogger('silent'));
    try {
      const reasons = (await later.pushQueue.getJobs(['failed', 'delayed', 'waiting'])).map((j) => j.failedReason ?? '');
      expect(reasons.filter((r) => r.startsWith('[INTERNAL]'))).toEqual([]);
    } finally {
      await closePipeline(later);
    }
  });
});
