import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UnrecoverableError, Worker } from 'bullmq';
import { parseConfig } from '../config.js';
import { closePipeline, createPipeline } from '../main.js';
import { createLogger, type Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { PUSH_QUEUE, type RangePushJob } from './jobs.js';
import { PendingSet } from './pending.js';
import { enqueuePushJob, waitForCapacity } from './push-jobs.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';
import { eventually, sleep } from '../../test/helpers/wait.js';

const TABLE = { source: 'app', name: 'public.t' };

const job = (hi: number, cutAt = '2024-05-01T00:00:00.000Z'): RangePushJob => ({
  v: 1,
  source: 'app',
  table: 'public.t',
  target: 'bronze.app_t',
  rows: 10,
  cutAt,
  range: { phase: 'wm', lo: null, hi: { wm: `w${hi}`, pk: [String(hi)] } },
});

describe('push job helpers', () => {
  let prefix: string;
  let ctx: PipelineContext;
  let pending: PendingSet;
  let logLines: string[];
  let log: Logger;

  beforeEach(() => {
    prefix = uniqueName('pj');
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: 'http://127.0.0.1:9/v2/stream', apiKey: 'k' },
        extract: { maxPendingBatches: 2 },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: 'public.t', watermark: 'updated_at' }] }],
      },
      {},
    );
    ctx = createPipeline(config, createLogger('silent'));
    pending = new PendingSet(ctx.redis, ctx.keys.pending('app', 'public.t'));
    logLines = [];
    log = createLogger('info', {}, { write: (line: string) => void logLines.push(line) });
  });
  afterEach(async () => {
    await closePipeline(ctx);
    await dropRedisPrefix(prefix);
  });

  describe('enqueuePushJob', () => {
    it('adds one job and one undelivered entry for the same id enqueued twice, keeping the first cut time', async () => {
      await enqueuePushJob(ctx, 'p-1', job(5, '2024-05-01T00:00:00.000Z'));
      await enqueuePushJob(ctx, 'p-1', job(5, '2024-05-01T00:10:00.000Z'));
      expect(await ctx.pushQueue.getJobCounts('waiting', 'delayed', 'prioritized')).toEqual({ waiting: 1, delayed: 0, prioritized: 0 });
      expect((await ctx.pushQueue.getJob('p-1'))!.data).toEqual(job(5, '2024-05-01T00:00:00.000Z'));
      expect(await pending.count()).toBe(1);
      expect(await pending.oldest()).toBe(Date.parse('2024-05-01T00:00:00.000Z'));
    });

    it('names the job for its table and key range and keeps it in the failed set when it fails', async () => {
      await enqueuePushJob(ctx, 'p-1', job(5));
      const stored = (await ctx.pushQueue.getJob('p-1'))!;
      expect(stored.name).toBe('app.public.t · wm (start, {"wm":"w5","pk":["5"]}]');
      expect(stored.opts).toMatchObject({ attempts: ctx.config.destination.attempts, removeOnFail: false });
    });

    it('does not count a range whose job already completed as undelivered again', async () => {
      await enqueuePushJob(ctx, 'p-1', job(5));
      const worker = new Worker(
        PUSH_QUEUE,
        async (j) => {
          // What the push worker does once the range is delivered.
          await pending.remove(String(j.id));
          return 'ok';
        },
        { connection: { url: REDIS_URL }, prefix },
      );
      try {
        await eventually(async () => (await ctx.pushQueue.getJobState('p-1')) === 'completed');
      } finally {
        await worker.close();
      }
      expect(await pending.count()).toBe(0);
      // A crash before the cursor was saved: the same range is enqueued again.
      await enqueuePushJob(ctx, 'p-1', job(5));
      expect(await ctx.pushQueue.getJobState('p-1')).toBe('completed');
      expect(await ctx.pushQueue.getJobCounts('waiting')).toEqual({ waiting: 0 });
      expect(await pending.count()).toBe(0);
    });
  });

  describe('waitForCapacity', () => {
    it('returns at once while the backlog is below its bound', async () => {
      await enqueuePushJob(ctx, 'p-1', job(1));
      await waitForCapacity(ctx, TABLE, { shouldStop: () => false, log });
      expect(await pending.count()).toBe(1);
      expect(logLines).toEqual([]);
    });

    it('waits while the backlog is at its bound and returns once a job is delivered, saying so once', async () => {
      await enqueuePushJob(ctx, 'p-1', job(1));
      await enqueuePushJob(ctx, 'p-2', job(2));
      let done = false;
      const waiting = waitForCapacity(ctx, TABLE, { shouldStop: () => false, log }).then(() => (done = true));
      await sleep(1_200);
      expect(done).toBe(false);
      await pending.remove('p-1');
      await waiting;
      expect(logLines.filter((l) => l.includes('extraction paused'))).toHaveLength(1);
      expect(JSON.parse(logLines[0]!)).toMatchObject({ level: 30, source: 'app', table: 'public.t', bound: 2, pending: 2 });
    });

    it('reports backpressure once per change of state across the pages of a run, not once per page', async () => {
      const state = { paused: false };
      await enqueuePushJob(ctx, 'p-1', job(1));
      await enqueuePushJob(ctx, 'p-2', job(2));
      // A backlog hovering at its bound: every page waits for one delivery, then the run enqueues one more job.
      for (let page = 3; page <= 6; page += 1) {
        const waiting = waitForCapacity(ctx, TABLE, { shouldStop: () => false, log, state });
        await eventually(() => state.paused);
        await pending.remove(`p-${page - 2}`);
        await waiting;
        await enqueuePushJob(ctx, `p-${page}`, job(page));
      }
      // The destination catches up: the next page finds room at once.
      await pending.remove('p-5');
      await pending.remove('p-6');
      await waitForCapacity(ctx, TABLE, { shouldStop: () => false, log, state });
      await waitForCapacity(ctx, TABLE, { shouldStop: () => false, log, state });
      const said = logLines.map((l) => JSON.parse(l) as { level: number; msg: string; pending: number; bound: number });
      expect(said.map((l) => [l.level, l.msg.split(':')[0], l.pending, l.bound])).toEqual([
        [30, 'backpressure', 2, 2],
        [30, 'backpressure released', 0, 2],
      ]);
    });

    it('goes on once failed jobs holding the backlog are removed by hand while it waits', async () => {
      // Two dead letters fill the backlog (their rows are undelivered: they count), then an operator removes them
      // from the dashboard: their entries are found gone at the next check, not only when the next run starts.
      const failing = new Worker(
        PUSH_QUEUE,
        async () => {
          throw new UnrecoverableError('[DEST_REJECTED] refused');
        },
        { connection: ctx.redis.duplicate(), prefix },
      );
      try {
        await enqueuePushJob(ctx, 'p-1', job(1));
        await enqueuePushJob(ctx, 'p-2', job(2));
        await eventually(async () => (await ctx.pushQueue.getFailedCount()) === 2);
      } finally {
        await failing.close();
      }
      let done = false;
      const waiting = waitForCapacity(ctx, TABLE, { shouldStop: () => false, log, reconcileEveryMs: 1_000 }).then(() => (done = true));
      await eventually(() => logLines.some((l) => l.includes('extraction paused')));
      for (const id of ['p-1', 'p-2']) await (await ctx.pushQueue.getJob(id))!.remove();
      await sleep(300);
      expect(done).toBe(false);
      await waiting;
      expect(await pending.count()).toBe(0);
    });

    it('returns when the caller should stop, even with the backlog full', async () => {
      await enqueuePushJob(ctx, 'p-1', job(1));
      await enqueuePushJob(ctx, 'p-2', job(2));
      let stop = false;
      let done = false;
      const waiting = waitForCapacity(ctx, TABLE, { shouldStop: () => stop, log }).then(() => (done = true));
      await sleep(700);
      expect(done).toBe(false);
      stop = true;
      await waiting;
      expect(await pending.count()).toBe(2);
    });

    it('drops entries of jobs that no longer exist before waiting, and returns when that frees capacity', async () => {
      await enqueuePushJob(ctx, 'p-1', job(1));
      await enqueuePushJob(ctx, 'p-2', job(2));
      // Removed by hand from the dashboard: the job is gone, its entry is not.
      await (await ctx.pushQueue.getJob('p-1'))!.remove();
      // Gives up after a while only so that a regression fails on the assertions below instead of hanging.
      const deadline = Date.now() + 10_000;
      await waitForCapacity(ctx, TABLE, { shouldStop: () => Date.now() > deadline, log });
      expect(await ctx.redis.zrange(ctx.keys.pending('app', 'public.t'), 0, -1)).toEqual(['p-2']);
      expect(logLines).toEqual([]);
    });
  });
});
