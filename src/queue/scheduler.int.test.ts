import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../config.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics } from '../observability/metrics.js';
import { EXTRACT_QUEUE } from './jobs.js';
import { OVERDUE_MS, PERSISTENT_CHECK_FAILURES, repairSchedules, syncSchedules, watchSchedules } from './scheduler.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

describe('schedule repair', () => {
  let prefix: string;
  let queue: Queue;
  let redis: Redis;
  let config: Config;
  let lines: string[];
  const logger = () => createLogger('info', {}, { write: (line: string) => void lines.push(line) });

  beforeEach(() => {
    prefix = uniqueName('sched');
    lines = [];
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: 'http://127.0.0.1:9/v2/stream', apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              { name: 'public.a', watermark: 'updated_at', every: '1h' },
              { name: 'public.b', watermark: 'updated_at', every: '1h' },
            ],
          },
        ],
      },
      {},
    );
    queue = new Queue(EXTRACT_QUEUE, { connection: { url: REDIS_URL }, prefix });
    redis = new Redis(REDIS_URL);
  });
  afterEach(async () => {
    await queue.close();
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  /** Deletes a schedule's next job from Redis behind BullMQ's back, as a crash between its two steps leaves it. */
  async function loseNextJob(id: string): Promise<number> {
    const s = await queue.getJobScheduler(id);
    const jobId = `repeat:${id}:${s!.next}`;
    expect(['delayed', 'waiting']).toContain(await queue.getJobState(jobId));
    await redis.zrem(`${prefix}:${EXTRACT_QUEUE}:delayed`, jobId);
    await redis.lrem(`${prefix}:${EXTRACT_QUEUE}:wait`, 0, jobId);
    await redis.del(`${prefix}:${EXTRACT_QUEUE}:${jobId}`);
    expect(await queue.getJobState(jobId)).toBe('unknown');
    return s!.next!;
  }

  it('registers again a schedule whose due run has no job, and leaves the healthy one alone', async () => {
    await syncSchedules(queue, config, logger());
    const due = await loseNextJob('app/public.a');
    const healthyNext = (await queue.getJobScheduler('app/public.b'))!.next;

    // Not yet overdue: nothing is touched (the chain may be between its two steps).
    expect(await repairSchedules(queue, config, logger(), undefined, () => due + OVERDUE_MS - 1000)).toEqual([]);

    const metrics = createMetrics();
    const repaired = await repairSchedules(queue, config, logger(), metrics, () => due + OVERDUE_MS + 1000);
    expect(repaired).toEqual(['app/public.a']);
    const s = await queue.getJobScheduler('app/public.a');
    expect(['delayed', 'waiting']).toContain(await queue.getJobState(`repeat:app/public.a:${s!.next}`));
    expect((await queue.getJobScheduler('app/public.b'))!.next).toBe(healthyNext);
    expect(lines.some((l) => l.includes('the schedule of app.public.a stopped'))).toBe(true);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/pushsync_errors_total\{source="app",table="public\.a",code="SCHEDULE_REPAIRED"\} 1/);

    // Repaired: a second pass finds nothing to do, even long after.
    expect(await repairSchedules(queue, config, logger(), undefined, () => due + OVERDUE_MS + 1000)).toEqual([]);
  });

  it('says once, at warn, that schedule checks keep failing (a stopped schedule is then not repaired)', async () => {
    const broken = new Queue(EXTRACT_QUEUE, { connection: { url: REDIS_URL }, prefix });
    await broken.close();
    const stop = watchSchedules(broken, config, logger(), createMetrics(), 20);
    try {
      await new Promise((r) => setTimeout(r, 20 * (PERSISTENT_CHECK_FAILURES + 4)));
    } finally {
      stop();
    }
    const warnings = lines.filter((l) => l.includes('"level":40'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('schedule checks keep failing');
  });

  it('registers again a schedule removed from Redis while its table is still configured', async () => {
    await syncSchedules(queue, config, logger());
    await queue.removeJobScheduler('app/public.b');
    expect(await queue.getJobScheduler('app/public.b')).toBeFalsy();
    expect(await repairSchedules(queue, config, logger())).toEqual(['app/public.b']);
    expect(await queue.getJobScheduler('app/public.b')).toBeTruthy();
    expect(lines.some((l) => l.includes('was missing from Redis'))).toBe(true);
  });
});
