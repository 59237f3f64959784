import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { UnrecoverableError, Worker } from 'bullmq';
import type pg from 'pg';
import { parseConfig, type TableConfig } from '../config.js';
import { closePipeline, createPipeline } from '../main.js';
import { createLogger } from '../observability/logger.js';
import { IncrementalSnapshots, requestSnapshot, snapshotRequest } from './cdc-snapshots.js';
import type { PipelineContext } from './context.js';
import { PUSH_QUEUE } from './jobs.js';
import { PendingSet } from './pending.js';
import type { RedisClient } from './redis.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';
import { eventually } from '../../test/helpers/wait.js';

/**
 * The reader's connection, with `other` run once at the first command that `at` places (right after a read's reply,
 * right before a write is sent): an operator's command made to land at one exact point of the reader's sequence, as
 * it can when two processes share Redis.
 */
const INTERPOSED = new Set(['hget', 'hdel', 'eval', 'evalsha']);

function interposed(
  redis: RedisClient,
  at: (command: string, args: unknown[]) => 'before' | 'after' | null,
  other: () => Promise<void>,
): RedisClient {
  let fired = false;
  return new Proxy(redis, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      const command = String(prop);
      // Only the hash and script commands: the rest (multi, pipeline) must keep returning what they return.
      if (typeof value !== 'function' || !INTERPOSED.has(command)) return value;
      return async (...args: unknown[]) => {
        const when = fired ? null : at(command, args);
        if (when) fired = true;
        if (when === 'before') await other();
        const reply: unknown = await (value as (...a: unknown[]) => unknown).apply(target, args);
        if (when === 'after') await other();
        return reply;
      };
    },
  });
}

describe('IncrementalSnapshots', () => {
  let db: { schema: string; client: pg.Client; drop: () => Promise<void> };
  let prefix: string;
  let ctx: PipelineContext;
  let operator: Redis;
  let table: TableConfig;
  let stateKey: string;
  const log = createLogger('silent');

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await db.client.query(`INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 5) g`);
  });
  afterAll(async () => {
    await db.drop();
  });

  beforeEach(() => {
    prefix = uniqueName('snap');
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: 'http://127.0.0.1:9/v2/stream', apiKey: 'k' },
        extract: { maxPendingBatches: 2 },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            mode: 'cdc',
            cdc: { slot: 'slot1', publication: 'slot1' },
            tables: [{ name: `${db.schema}.items`, batchRows: 100 }],
          },
        ],
      },
      {},
    );
    ctx = createPipeline(config, createLogger('silent'));
    table = config.sources[0]!.tables[0]!;
    stateKey = ctx.keys.cdcState('app', 'slot1');
    operator = new Redis(REDIS_URL);
  });
  afterEach(async () => {
    await operator.quit();
    await closePipeline(ctx);
    await dropRedisPrefix(prefix);
  });

  const snapshots = (c: PipelineContext = ctx, l = log): IncrementalSnapshots =>
    new IncrementalSnapshots(c, stateKey, new Map([[table.name, { table }]]), (p) => `~${p}`, l);

  describe('finishing', () => {
    it('forgets the request that ran once its last range is read', async () => {
      await requestSnapshot(ctx, stateKey, table, 'table re-created');
      const s = snapshots();
      expect(await s.step('0/1')).toBe(5);
      // The one range was cut; the next step finds nothing after it.
      await ctx.redis.del(ctx.keys.pending('app', table.name));
      expect(await s.step('0/1')).toBe(0);
      expect(s.active).toBe(false);
      expect(await snapshotRequest(ctx, stateKey, table)).toBeNull();
    });

    it('keeps a backfill asked for while the reader finishes the snapshot before it, and runs it', async () => {
      await requestSnapshot(ctx, stateKey, table, 'table re-created');
      // The request lands after the range reads are over, just before the reader touches the request field to
      // finish: between its read of the field and its delete, when those were two commands.
      let asked = false;
      const reader = {
        ...ctx,
        redis: interposed(
          ctx.redis,
          (command, args) => {
            if (!asked || !args.includes(`resnap:${table.name}`)) return null;
            return command === 'hget' ? 'after' : ['hdel', 'eval', 'evalsha'].includes(command) ? 'before' : null;
          },
          () => requestSnapshot({ ...ctx, redis: operator }, stateKey, table, 'backfill'),
        ),
      };
      const s = snapshots(reader);
      expect(await s.step('0/1')).toBe(5);
      await ctx.redis.del(ctx.keys.pending('app', table.name));
      asked = true;
      expect(await s.step('0/1')).toBe(0);

      expect(await snapshotRequest(ctx, stateKey, table)).toMatchObject({ reason: 'backfill' });
      await s.load(true);
      expect(s.active).toBe(true);
      // The backfill starts over and reads the table again.
      expect(await s.step('0/2')).toBe(5);
      expect(await snapshotRequest(ctx, stateKey, table)).toMatchObject({ reason: 'backfill', ordering: '~0/2' });
    });
  });

  describe('backpressure', () => {
    const pendingIds = (): Promise<string[]> => ctx.redis.zrange(ctx.keys.pending('app', table.name), 0, -1);

    it('reads the next range once entries of jobs that no longer exist are dropped from a full backlog', async () => {
      // maxPendingBatches is 2: one entry whose job was removed by hand, one recorded after its job completed.
      const worker = new Worker(PUSH_QUEUE, async () => 'ok', { connection: { url: REDIS_URL }, prefix });
      try {
        await ctx.pushQueue.add('good', {}, { jobId: 'x-completed' });
        await eventually(async () => (await ctx.pushQueue.getJobState('x-completed')) === 'completed');
      } finally {
        await worker.close();
      }
      const pending = new PendingSet(ctx.redis, ctx.keys.pending('app', table.name));
      await pending.add('x-removed', 1_000);
      await pending.add('x-completed', 2_000);
      await requestSnapshot(ctx, stateKey, table, 'table re-created');
      expect(await snapshots().step('0/1')).toBe(5);
      const ids = await pendingIds();
      expect(ids).toHaveLength(1);
      expect(ids[0]).not.toMatch(/^x-/);
    });

    it('waits while dead-lettered jobs fill the backlog, says so once, and goes on when one is delivered', async () => {
      const worker = new Worker(
        PUSH_QUEUE,
        async () => {
          throw new UnrecoverableError('[DEST_REJECTED] refused');
        },
        { connection: { url: REDIS_URL }, prefix },
      );
      try {
        await ctx.pushQueue.add('bad', {}, { jobId: 'p-dead-1' });
        await ctx.pushQueue.add('bad', {}, { jobId: 'p-dead-2' });
        await eventually(async () => (await ctx.pushQueue.getFailedCount()) === 2);
      } finally {
        await worker.close();
      }
      const pending = new PendingSet(ctx.redis, ctx.keys.pending('app', table.name));
      await pending.add('p-dead-1', 1_000);
      await pending.add('p-dead-2', 2_000);
      const lines: string[] = [];
      const s = snapshots(ctx, createLogger('info', {}, { write: (line: string) => void lines.push(line) }));
      await requestSnapshot(ctx, stateKey, table, 'backfill');

      expect(await s.step('0/1')).toBe(0);
      expect(await s.step('0/1')).toBe(0);
      expect(await pendingIds()).toEqual(['p-dead-1', 'p-dead-2']);
      const said = (text: string): number => lines.filter((l) => l.includes(text)).length;
      expect(said('incremental snapshot of app.' + table.name + ' waits')).toBe(1);

      // A dead-lettered job removed by hand: its entry is dropped on the next check, not on every turn of the loop.
      await (await ctx.pushQueue.getJob('p-dead-2'))!.remove();
      expect(await s.step('0/1')).toBe(0);
      expect(await pendingIds()).toEqual(['p-dead-1', 'p-dead-2']);

      // What the push worker does once a retried job delivers its range.
      await pending.remove('p-dead-1');
      expect(await s.step('0/1')).toBe(5);
      expect(said('backpressure released: incremental snapshot')).toBe(1);
    });
  });
});
