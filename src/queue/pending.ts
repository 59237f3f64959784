import type { Queue } from 'bullmq';
import type { RedisClient } from './redis.js';

/**
 * Undelivered push jobs per table, as a sorted set scored by when each range was cut. It drives backpressure
 * (extract waits while a table has too many) and sync lag (the age of the oldest). Failed jobs stay in it: rows in
 * the dead-letter queue are undelivered.
 */
export class PendingSet {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
  ) {}

  async add(jobId: string, cutAtMs: number): Promise<void> {
    // NX keeps the original cut time when the same range is enqueued again after a crash.
    await this.redis.zadd(this.key, 'NX', cutAtMs, jobId);
  }

  async remove(jobId: string): Promise<void> {
    await this.redis.zrem(this.key, jobId);
  }

  async count(): Promise<number> {
    return this.redis.zcard(this.key);
  }

  /** Cut time of the oldest undelivered range, if any. */
  async oldest(): Promise<number | undefined> {
    const [, score] = await this.redis.zrange(this.key, 0, 0, 'WITHSCORES');
    return score === undefined ? undefined : Number(score);
  }

  /** Drops entries whose job no longer exists (removed by hand from the dashboard, or purged). */
  async reconcile(queue: Queue): Promise<number> {
    const ids = await this.redis.zrange(this.key, 0, -1);
    let dropped = 0;
    for (const id of ids) {
      const state = await queue.getJobState(id);
      if (state === 'unknown' || state === 'completed') {
        await this.remove(id);
        dropped += 1;
      }
    }
    return dropped;
  }
}
