import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { parseConfig, type TableConfig } from '../config.js';
import { closePipeline, createPipeline } from '../main.js';
import { createLogger } from '../observability/logger.js';
import { IncrementalSnapshots, requestSnapshot, snapshotRequest } from './cdc-snapshots.js';
import type { PipelineContext } from './context.js';
import type { RedisClient } from './redis.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

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

  const snapshots = (c: PipelineContext = ctx): IncrementalSnapshots =>
    new IncrementalSnapshots(c, stateKey, new Map([[table.name, { table }]]), (p) => `~${p}`, log);

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
});
