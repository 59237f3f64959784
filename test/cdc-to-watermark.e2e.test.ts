import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { currentState } from './helpers/current-state.js';
import { currentRows, modeConfig, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { eventually } from './helpers/wait.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropCdcFixtures } from './helpers/cdc.js';
import { closePipeline, createPipeline, startRuntime } from '../src/main.js';
import { Keys } from '../src/queue/redis.js';
import { createLogger } from '../src/observability/logger.js';
import { retryDeadLetters } from '../src/queue/dlq.js';
import { dropRedisPrefix, LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

describe('a table moved between CDC and watermark sync while its source streams other tables', () => {
  const schema = uniqueName('back');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let client: pg.Client;
  let receiver: Receiver;

  const records = (): VersionedRow[] => storedRecords(receiver, `bronze.app_items`);
  // The source's stream keeps running for `other` whatever the mode of `items`.
  const config = (mode: 'cdc' | 'watermark'): Config =>
    modeConfig(mode, {
      prefix,
      receiverUrl: receiver.url,
      source: { name: 'app', kind: 'postgres', url: LOGICAL_PG_URL, cdc: { slot, publication: slot, flushInterval: '50ms' } },
      tablePrefix: `${schema}.`,
    });

  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    await client.query(`INSERT INTO items (id, v) SELECT g, 'v0' FROM generate_series(1, 10) g`);
    receiver = await startReceiver('k');
  });

  afterAll(async () => {
    await dropCdcFixtures(client, slot, schema);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  async function expectStateEqualsSource(): Promise<void> {
    const state = currentRows(records());
    const { rows } = await client.query<{ id: number; v: string }>(`SELECT id, v FROM items ORDER BY id`);
    expect(state).toEqual(rows);
  }

  it('CDC to watermark: reads the table again in a new generation, whose rows are the current state', async () => {
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await client.query(`UPDATE items SET v = 'by cdc', updated_at = clock_timestamp() WHERE id <= 5`);
    await client.query(`DELETE FROM items WHERE id = 10`);
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);

    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await client.query(`UPDATE items SET v = 'by watermark', updated_at = clock_timestamp() WHERE id <= 3`);
    await client.query(`INSERT INTO items (id, v) VALUES (10, 'back again')`);
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);

    const all = records();
    // Before: watermark sync continued after the snapshot's last key and sent nothing of either change.
    expect(
      all
        .filter((r) => r.v === 'by watermark' || r.v === 'back again')
        .map((r) => r.id)
        .sort((a, b) => a - b),
    ).toEqual([1, 2, 3, 10]);
    expect(all.filter((r) => r._op === 'table_recreated').map((r) => r._generation)).toEqual([1]);
    expect(new Set(all.filter((r) => r._generation === 1 && r._op !== 'table_recreated').map((r) => r._ordering.slice(0, 1)))).toEqual(
      new Set(['2']),
    );
    await expectStateEqualsSource();
  });

  it('watermark to CDC: snapshots the table from the start, and its changes follow', async () => {
    const before = records().length;
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const snapshot = records().slice(before);
    expect(
      snapshot
        .filter((r) => r._op === 'snapshot')
        .map((r) => r.id)
        .sort((a, b) => a - b),
    ).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await client.query(`UPDATE items SET v = 'by cdc again' WHERE id IN (1, 6)`);
    await client.query(`DELETE FROM items WHERE id = 2`);
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await expectStateEqualsSource();
  });

  it('CDC to watermark does not send a CDC batch retried after the switch: the new generation read its row again', async () => {
    receiver.setDefault({ kind: 'status', status: 400 });
    await client.query(`UPDATE items SET v = 'refused' WHERE id = 7`);
    const refused = await syncPass(config('cdc'), { timeoutMs: 20_000 });
    expect(refused.failed.map((f) => f.queue)).toEqual(['push']);
    receiver.setDefault({ kind: 'ok' });

    const count = records().length;
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const switched = records().slice(count);
    expect(switched.filter((r) => r._op === 'table_recreated').map((r) => r._generation)).toEqual([3]);
    expect(switched.filter((r) => r._generation === 3 && r._op !== 'table_recreated').length).toBe(9);
    expect(switched.find((r) => r.id === 7)?.v).toBe('refused');
    // The failed CDC batch, retried now, is superseded: sent, its `~` ordering would outrank every later version.
    const ctx = createPipeline(config('watermark'), createLogger('silent'));
    try {
      expect(await retryDeadLetters(ctx.pushQueue, 'all')).toHaveLength(1);
    } finally {
      await closePipeline(ctx);
    }
    await client.query(`UPDATE items SET v = 'after the switch', updated_at = clock_timestamp() WHERE id = 7`);
    const before = records().length;
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(
      records()
        .slice(before)
        .map((r) => [r.id, r.v, r._generation]),
    ).toEqual([[7, 'after the switch', 3]]);
    await expectStateEqualsSource();
  });

  it('watermark to CDC: a watermark batch retried after the switch is superseded, not failed', async () => {
    // Back to watermark first (a third generation), then a batch that fails, then CDC.
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    receiver.setDefault({ kind: 'status', status: 400 });
    await client.query(`UPDATE items SET v = 'refused by watermark', updated_at = clock_timestamp() WHERE id = 3`);
    expect((await syncPass(config('watermark'), { timeoutMs: 20_000 })).failed.map((f) => f.queue)).toEqual(['push']);
    receiver.setDefault({ kind: 'ok' });
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const ctx = createPipeline(config('cdc'), createLogger('silent'));
    try {
      expect(await retryDeadLetters(ctx.pushQueue, 'all')).toHaveLength(1);
    } finally {
      await closePipeline(ctx);
    }
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await client.query(`UPDATE items SET v = 'by cdc at last' WHERE id = 3`);
    expect((await syncPass(config('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    await expectStateEqualsSource();
  });

  it('watermark to CDC: a reconciliation delete retried after the switch is superseded, and the key is gone downstream', async () => {
    const reconciled = (mode: 'cdc' | 'watermark'): Config => {
      const c = config(mode);
      const t = c.sources[0]!.tables.find((x) => x.name === `${schema}.items`)!;
      if (mode === 'watermark') t.reconcile = { every: 3_600_000, maxWait: 1000 };
      return c;
    };
    expect((await syncPass(reconciled('watermark'), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect((await syncPass(reconciled('watermark'), { timeoutMs: 20_000, reconcile: true })).failed).toEqual([]);
    // A hard delete that reconciliation finds, whose delete the destination refuses.
    await client.query(`DELETE FROM items WHERE id = 5`);
    receiver.setDefault({ kind: 'status', status: 400 });
    expect((await syncPass(reconciled('watermark'), { timeoutMs: 20_000, reconcile: true })).failed.map((f) => f.queue)).toContain('push');
    receiver.setDefault({ kind: 'ok' });
    expect((await syncPass(reconciled('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    const ctx = createPipeline(reconciled('cdc'), createLogger('silent'));
    try {
      expect((await retryDeadLetters(ctx.pushQueue, 'all')).length).toBeGreaterThan(0);
    } finally {
      await closePipeline(ctx);
    }
    expect((await syncPass(reconciled('cdc'), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect([...currentState(records()).keys()]).not.toContain(5);
    await expectStateEqualsSource();
  });

  it('skips a watermark run queued before the table moved to CDC, which would otherwise switch it back', async () => {
    const cfg = config('cdc');
    expect((await syncPass(cfg, { timeoutMs: 20_000 })).failed).toEqual([]);
    const ctx = createPipeline(cfg, createLogger('silent'));
    const runtime = await startRuntime(ctx, { roles: ['extract'] });
    try {
      const job = await ctx.extractQueue.add('leftover', { v: 1, kind: 'table', source: 'app', table: `${schema}.items`, reason: 'schedule' });
      // Its state polled, not its events awaited: an event published before the listener reads the stream is missed.
      await eventually(async () => (await job.getState()) === 'completed', 50, 30_000);
      expect((await ctx.extractQueue.getJob(job.id!))?.returnvalue).toEqual({ skipped: 'mode' });
      expect(await ctx.redis.get(new Keys(prefix).tableMode('app', `${schema}.items`))).toBe('cdc');
    } finally {
      await runtime.stop();
      await closePipeline(ctx);
    }
  });
});
