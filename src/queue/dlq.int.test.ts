import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { listDeadLetters, purgeDeadLetters, retryDeadLetters } from './dlq.js';
import { PUSH_QUEUE, type ChangesPushJob, type RangePushJob } from './jobs.js';
import { PendingSet } from './pending.js';
import { Keys } from './redis.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';
import { eventually } from '../../test/helpers/wait.js';

const CUT_AT = '2024-05-01T00:00:00.000Z';

const rangeJob = (lo: number | null, hi: number): RangePushJob => ({
  v: 1,
  source: 'app',
  table: 'public.t',
  target: 'bronze.app_t',
  rows: 10,
  cutAt: CUT_AT,
  range: { phase: 'wm', lo: lo === null ? null : { wm: `w${lo}`, pk: [String(lo)] }, hi: { wm: `w${hi}`, pk: [String(hi)] } },
});

const changesJob: ChangesPushJob = {
  v: 1,
  source: 'app',
  table: 'public.t',
  target: 'bronze.app_t',
  rows: 2,
  cutAt: CUT_AT,
  changes: [
    { op: 'insert', pk: ['1'], ordering: '~00000001000000a0:0000000001' },
    { op: 'delete', pk: ['2'], ordering: '~00000001000000a0:0000000002' },
  ],
};

describe('dead-letter queue helpers', () => {
  let redis: Redis;
  let prefix: string;
  let keys: Keys;
  let pending: PendingSet;
  let queue: Queue;
  let worker: Worker | undefined;

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('dlq');
    keys = new Keys(prefix);
    pending = new PendingSet(redis, keys.pending('app', 'public.t'));
    queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await queue.close();
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  /** Runs a worker that fails every job whose name is `fail` as terminal and completes the others, until all settled. */
  async function settle(ids: string[]): Promise<void> {
    const w = new Worker(
      PUSH_QUEUE,
      async (job) => {
        if (job.name === 'fail') throw new UnrecoverableError(`[DEST_REJECTED] HTTP 400 for bronze.app_t (job ${String(job.id)})`);
        return 'ok';
      },
      { connection: { url: REDIS_URL }, prefix },
    );
    try {
      await eventually(async () => {
        const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
        return states.every((s) => s === 'failed' || s === 'completed');
      });
    } finally {
      await w.close();
    }
  }

  /** Three dead letters (two readable, one not), one completed job and one still waiting. */
  async function fill(): Promise<void> {
    await queue.add('fail', rangeJob(null, 5), { jobId: 'p-a' });
    await queue.add('fail', changesJob, { jobId: 'p-b' });
    await queue.add('fail', { something: 'else' }, { jobId: 'p-c' });
    await queue.add('done', rangeJob(5, 9), { jobId: 'p-d' });
    await settle(['p-a', 'p-b', 'p-c', 'p-d']);
    await queue.add('waiting', rangeJob(9, 12), { jobId: 'p-e' });
    for (const id of ['p-a', 'p-b', 'p-e']) await pending.add(id, 1_000);
  }

  const state = (id: string): Promise<string> => queue.getJobState(id);

  it('lists the failed jobs with reason, attempts, time and key range, and nothing else', async () => {
    await fill();
    const letters = (await listDeadLetters(queue)).sort((a, b) => a.id.localeCompare(b.id));
    expect(letters.map((l) => l.id)).toEqual(['p-a', 'p-b', 'p-c']);
    expect(letters[0]).toMatchObject({
      name: 'fail',
      reason: '[DEST_REJECTED] HTTP 400 for bronze.app_t (job p-a)',
      attempts: 1,
      range: 'wm (start, {"wm":"w5","pk":["5"]}]',
    });
    expect(new Date(letters[0]!.failedAt!).toISOString()).toBe(letters[0]!.failedAt);
    expect(letters[1]!.range).toBe('2 change(s), ~00000001000000a0:0000000001 … ~00000001000000a0:0000000002');
    expect(letters[2]!.range).toBe('unreadable payload');
    expect(await listDeadLetters(queue, 2)).toHaveLength(2);
  });

  it('retries the failed jobs it is given, back to waiting, and skips jobs that are not failed or do not exist', async () => {
    await fill();
    expect(await retryDeadLetters(queue, ['p-a', 'p-d', 'p-e', 'p-nope'])).toEqual(['p-a']);
    expect(await state('p-a')).toBe('waiting');
    expect(await state('p-b')).toBe('failed');
    expect(await state('p-d')).toBe('completed');
  });

  it('retries every failed job with --all', async () => {
    await fill();
    expect((await retryDeadLetters(queue, 'all')).sort()).toEqual(['p-a', 'p-b', 'p-c']);
    expect(await Promise.all(['p-a', 'p-b', 'p-c'].map(state))).toEqual(['waiting', 'waiting', 'waiting']);
    expect(await listDeadLetters(queue)).toEqual([]);
  });

  it('gives a retried job fresh attempts, so one more transient failure does not send it back to the dead-letter queue', async () => {
    let calls = 0;
    let failUntil = 2;
    worker = new Worker(
      PUSH_QUEUE,
      async () => {
        calls += 1;
        if (calls <= failUntil) throw new Error('[DEST_UNAVAILABLE] HTTP 503 for bronze.app_t');
        return 'ok';
      },
      { connection: { url: REDIS_URL }, prefix },
    );
    await queue.add('app.public.t', rangeJob(null, 5), { jobId: 'p-a', attempts: 2 });
    await eventually(async () => (await state('p-a')) === 'failed');
    expect((await queue.getJob('p-a'))!.attemptsMade).toBe(2);

    // The destination is back but still drops one request.
    failUntil = 3;
    expect(await retryDeadLetters(queue, ['p-a'])).toEqual(['p-a']);
    await eventually(async () => ['failed', 'completed'].includes(await state('p-a')));
    expect(await state('p-a')).toBe('completed');
    expect(calls).toBe(4);
  });

  it('purges the failed jobs it is given and their undelivered entries, and leaves other jobs alone', async () => {
    await fill();
    expect(await purgeDeadLetters(queue, redis, keys, ['p-a', 'p-d', 'p-e', 'p-nope'])).toEqual(['p-a']);
    expect(await queue.getJob('p-a')).toBeUndefined();
    expect(await state('p-d')).toBe('completed');
    expect(await state('p-e')).toBe('waiting');
    expect((await redis.zrange(keys.pending('app', 'public.t'), 0, -1)).sort()).toEqual(['p-b', 'p-e']);
  });

  it('purges every failed job with --all, readable or not', async () => {
    await fill();
    expect((await purgeDeadLetters(queue, redis, keys, 'all')).sort()).toEqual(['p-a', 'p-b', 'p-c']);
    expect(await listDeadLetters(queue)).toEqual([]);
    expect(await redis.zrange(keys.pending('app', 'public.t'), 0, -1)).toEqual(['p-e']);
    const left = (await queue.getJobs(['completed', 'waiting'])).filter((j): j is Job => j !== undefined).map((j) => j.id);
    expect(left.sort()).toEqual(['p-d', 'p-e']);
  });
});
