import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { PendingSet } from './pending.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';
import { eventually } from '../../test/helpers/wait.js';

describe('PendingSet', () => {
  let redis: Redis;
  let prefix: string;
  let pending: PendingSet;
  let queue: Queue | undefined;

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('pend');
    pending = new PendingSet(redis, `${prefix}:pending:app:public.t`);
  });
  afterEach(async () => {
    await queue?.close();
    queue = undefined;
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('is empty with no oldest entry at first', async () => {
    expect(await pending.count()).toBe(0);
    expect(await pending.oldest()).toBeUndefined();
  });

  it('counts ids and reports the earliest cut time as the oldest', async () => {
    await pending.add('p-b', 2_000);
    await pending.add('p-a', 1_000);
    await pending.add('p-c', 3_000);
    expect(await pending.count()).toBe(3);
    expect(await pending.oldest()).toBe(1_000);
    await pending.remove('p-a');
    expect(await pending.count()).toBe(2);
    expect(await pending.oldest()).toBe(2_000);
  });

  it('keeps the first cut time when the same range is added again', async () => {
    await pending.add('p-a', 1_000);
    await pending.add('p-a', 9_000);
    expect(await pending.count()).toBe(1);
    expect(await pending.oldest()).toBe(1_000);
  });

  it('drops on reconcile the ids whose job is unknown or completed, and keeps waiting and failed ones', async () => {
    queue = new Queue('push', { connection: { url: REDIS_URL }, prefix });
    const worker = new Worker(
      'push',
      async (job) => {
        if (job.name === 'bad') throw new UnrecoverableError('[DEST_REJECTED] refused');
        return 'ok';
      },
      { connection: { url: REDIS_URL }, prefix },
    );
    try {
      await queue.add('good', {}, { jobId: 'p-done' });
      await queue.add('bad', {}, { jobId: 'p-failed' });
      await eventually(async () => (await queue!.getJobState('p-done')) === 'completed' && (await queue!.getJobState('p-failed')) === 'failed');
    } finally {
      await worker.close();
    }
    await queue.add('good', {}, { jobId: 'p-waiting' });
    for (const [i, id] of ['p-done', 'p-failed', 'p-waiting', 'p-gone'].entries()) await pending.add(id, 1_000 + i);

    expect(await pending.reconcile(queue)).toBe(2);
    expect(await redis.zrange(`${prefix}:pending:app:public.t`, 0, -1)).toEqual(['p-failed', 'p-waiting']);
    expect(await pending.reconcile(queue)).toBe(0);
  });
});
