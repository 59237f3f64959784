import type { Job, Queue } from 'bullmq';
import { describePushJob, pushJobSchema } from './jobs.js';
import type { Keys, RedisClient } from './redis.js';
import { IngestBuffer, ingestKeys } from './ingest-buffer.js';

/**
 * The dead-letter queue is BullMQ's failed set of the push queue. These helpers back `pushsync dlq` and behave
 * like the dashboard's buttons, except that a retry starts the attempts afresh.
 */
export interface DeadLetter {
  id: string;
  name: string;
  reason: string;
  attempts: number;
  failedAt: string | undefined;
  /** The key range, for orientation: `lo` exclusive, `hi` inclusive. */
  range: string;
}

function describe(job: Job): DeadLetter {
  const parsed = pushJobSchema.safeParse(job.data);
  const d = parsed.success ? parsed.data : undefined;
  const range = d === undefined ? 'unreadable payload' : describePushJob(d);
  return {
    id: String(job.id),
    name: job.name,
    reason: job.failedReason ?? '',
    attempts: job.attemptsMade,
    failedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : undefined,
    range,
  };
}

export async function listDeadLetters(queue: Queue, limit = 1000): Promise<DeadLetter[]> {
  const jobs = await queue.getFailed(0, limit - 1);
  return jobs.filter((j): j is Job => j !== undefined).map(describe);
}

async function selectJobs(queue: Queue, ids: readonly string[] | 'all'): Promise<Job[]> {
  if (ids === 'all') return (await queue.getFailed(0, -1)).filter((j): j is Job => j !== undefined);
  const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
  return jobs.filter((j): j is Job => j !== undefined && j !== null);
}

/**
 * Moves failed jobs back to waiting with fresh attempts. Returns the ids retried. (BullMQ's retry, which the dashboard
 * uses, keeps the attempts already made, so a job retried that way gets one attempt before it fails again.)
 */
export async function retryDeadLetters(queue: Queue, ids: readonly string[] | 'all'): Promise<string[]> {
  const retried: string[] = [];
  for (const job of await selectJobs(queue, ids)) {
    if ((await job.getState()) !== 'failed') continue;
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    retried.push(String(job.id));
  }
  return retried;
}

/**
 * Deletes failed jobs: their rows are then not delivered unless the table is re-read (reset its cursor). Also clears
 * them from the undelivered set, so sync lag and backpressure stop counting them.
 */
export async function purgeDeadLetters(queue: Queue, redis: RedisClient, keys: Keys, ids: readonly string[] | 'all'): Promise<string[]> {
  const purged: string[] = [];
  for (const job of await selectJobs(queue, ids)) {
    if ((await job.getState()) !== 'failed') continue;
    const parsed = pushJobSchema.safeParse(job.data);
    await job.remove();
    if (parsed.success) await redis.zrem(keys.pending(parsed.data.source, parsed.data.table), String(job.id));
    // Buffered events of a purged job are dropped with it, which frees their bytes of the ingest budget.
    if (parsed.success && 'buffer' in parsed.data) {
      const { source, table, buffer } = parsed.data;
      await new IngestBuffer(redis, ingestKeys(keys.prefix, source)).release(table, buffer.from, buffer.to);
    }
    purged.push(String(job.id));
  }
  return purged;
}
