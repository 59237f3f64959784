import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { tableGeneration } from './generations.js';
import { Keys } from './redis.js';
import type { PipelineContext } from './context.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

describe('table generations in Redis', () => {
  let redis: Redis;
  let prefix: string;
  let ctx: PipelineContext;
  const t = { source: 'app', name: 'public.t' };

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('gen');
    // Only Redis and the key names are used.
    ctx = { redis, keys: new Keys(prefix) } as unknown as PipelineContext;
  });
  afterEach(async () => {
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('gives the first relation 0 and each new identity the next number, and an identity always its own', async () => {
    expect(await tableGeneration(ctx, t, '16384')).toBe(0);
    expect(await tableGeneration(ctx, t, '16384')).toBe(0);
    expect(await tableGeneration(ctx, t, '16400', '16384')).toBe(1);
    expect(await tableGeneration(ctx, t, '16500')).toBe(2);
    // A stale reader of an older relation keeps its number; none is handed out twice.
    expect(await tableGeneration(ctx, t, '16400')).toBe(1);
    expect(await tableGeneration(ctx, t, '16384')).toBe(0);
    expect(await tableGeneration(ctx, { source: 'app', name: 'public.other' }, '16500')).toBe(0);
  });

  it('a table re-created before generations were recorded: the identity recorded before is 0, the current one 1', async () => {
    expect(await tableGeneration(ctx, t, '200', '100')).toBe(1);
    expect(await tableGeneration(ctx, t, '100')).toBe(0);
    expect(await tableGeneration(ctx, t, '200', '100')).toBe(1);
  });

  it('without an identity (a custom SQL table) is the latest generation, 0 before any', async () => {
    expect(await tableGeneration(ctx, t, null)).toBe(0);
    await tableGeneration(ctx, t, '1');
    await tableGeneration(ctx, t, '2', '1');
    expect(await tableGeneration(ctx, t, null)).toBe(1);
  });

  it('two processes seeing the same re-creation at once agree on its number', async () => {
    await tableGeneration(ctx, t, 'a');
    const seen = await Promise.all(Array.from({ length: 8 }, () => tableGeneration(ctx, t, 'b', 'a')));
    expect(new Set(seen)).toEqual(new Set([1]));
  });
});
