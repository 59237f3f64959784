import { z } from 'zod';
import type { JobsOptions } from 'bullmq';

/**
 * Job contracts: queue names, payload schemas and default options, all in one place.
 *
 * Push jobs carry a key range, never row data: the push worker reads the rows from the source when it sends them.
 * Customer data therefore never sits in Redis or shows in the dashboard, Redis stays small during an outage, and
 * several push workers read in parallel. What Redis does hold of the source is the boundary keys of each range
 * (primary-key values and watermark values).
 */
export const EXTRACT_QUEUE = 'extract';
export const PUSH_QUEUE = 'push';

const position = z.object({ wm: z.string().nullable(), pk: z.array(z.string()).min(1) });

export const extractJobSchema = z.object({
  v: z.literal(1),
  source: z.string(),
  table: z.string(),
  /** Why the run was started: `schedule`, `once`, `manual`. */
  reason: z.string().default('schedule'),
});
export type ExtractJob = z.infer<typeof extractJobSchema>;

export const pushJobSchema = z.object({
  v: z.literal(1),
  source: z.string(),
  table: z.string(),
  target: z.string(),
  range: z.object({ phase: z.enum(['null', 'wm']), lo: position.nullable(), hi: position }),
  /** Rows in the range when it was cut (the range is re-read at push time, so the sent count can differ). */
  rows: z.number().int(),
  /** When the range was cut, ISO-8601: the age of undelivered data. */
  cutAt: z.string(),
  /** Resume point after a partially delivered attempt. */
  resumeAfter: position.nullable().optional(),
});
export type PushJob = z.infer<typeof pushJobSchema>;

/** Keep recent history for the dashboard without letting Redis grow. */
export const KEEP_COMPLETED = { age: 24 * 3600, count: 1000 };

export function pushJobOptions(attempts: number, jobId: string): JobsOptions {
  return {
    jobId,
    attempts,
    backoff: { type: 'pushsync' },
    removeOnComplete: KEEP_COMPLETED,
    // The failed set is the dead-letter queue: failed jobs stay until retried or purged.
    removeOnFail: false,
  };
}

export function extractJobOptions(attempts: number): JobsOptions {
  return {
    attempts,
    backoff: { type: 'pushsync' },
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: { age: 7 * 24 * 3600, count: 1000 },
  };
}

export function pushJobName(source: string, table: string): string {
  return `${source}.${table}`;
}
