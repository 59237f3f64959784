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

/**
 * Why an extract run was started. `once`: part of a one-shot pass, which waits for a table's lease instead of
 * skipping the run and reads a change stream only up to the position current at its start.
 */
export const RUN_REASONS = ['schedule', 'once', 'manual'] as const;
export type RunReason = (typeof RUN_REASONS)[number];

const extractBase = { v: z.literal(1), source: z.string().min(1), reason: z.enum(RUN_REASONS).default('schedule') };

/** Extract jobs, by kind: page one table by its watermark, reconcile its hard deletes, or read a source's change stream. */
export const extractJobSchema = z.preprocess(
  // Jobs written before `kind` existed are table runs.
  (v) => (typeof v === 'object' && v !== null && !('kind' in v) ? { ...v, kind: 'table' } : v),
  z.discriminatedUnion('kind', [
    z.object({ ...extractBase, kind: z.literal('table'), table: z.string().min(1) }),
    z.object({ ...extractBase, kind: z.literal('reconcile'), table: z.string().min(1) }),
    // One run covers every CDC table of the source.
    z.object({ ...extractBase, kind: z.literal('cdc'), table: z.literal('').default('') }),
    // Cuts a Debezium source's buffered events into push jobs.
    z.object({ ...extractBase, kind: z.literal('ingest'), table: z.literal('').default('') }),
  ]),
);
export type ExtractJob = z.output<typeof extractJobSchema>;

const pushBase = {
  v: z.literal(1),
  source: z.string(),
  table: z.string(),
  target: z.string(),
  /** Rows (or changes) when the job was cut; ranges are re-read at push time, so the sent count can differ. */
  rows: z.number().int(),
  /** When the job was cut, ISO-8601: the age of undelivered data. */
  cutAt: z.string(),
};

/** A key range of a table, read when sent. */
export const rangePushSchema = z.object({
  ...pushBase,
  range: z.object({ phase: z.enum(['null', 'wm', 'pk']), lo: position.nullable(), hi: position }),
  /** Operation for rows not soft-deleted; a CDC table's snapshot sends `snapshot`. */
  op: z.enum(['upsert', 'snapshot']).optional(),
  /** One `_ordering` for every row (a CDC table's snapshot), instead of the watermark's. */
  ordering: z.string().optional(),
  /** An incremental snapshot's range, whose rows sort after changes already streamed (see ReadOptions). */
  awaitWriters: z.literal(true).optional(),
  /** Resume point after a partially delivered attempt. */
  resumeAfter: position.nullable().optional(),
});

/** Changes from a replication stream: keys only, rows are read when sent. */
export const changesPushSchema = z.object({
  ...pushBase,
  changes: z.array(z.object({ op: z.enum(['insert', 'update', 'delete']), pk: z.array(z.string()).min(1), ordering: z.string() })).min(1),
  /**
   * The table generation of the relation the changes were streamed from (queue/generations.ts); absent in jobs
   * written before generations existed (then the generation rows are read from).
   */
  generation: z.number().int().min(0).optional(),
  /** Index of the first change not yet delivered, after a partially delivered attempt. */
  resumeAt: z.number().int().min(0).optional(),
});

/**
 * Change events that arrived with their rows (Debezium): a range of the table's ingest buffer in Redis, the one
 * case where the rows sit in Redis until delivered (queue/ingest-buffer.ts). The payload holds entry ids only.
 */
export const bufferPushSchema = z.object({
  ...pushBase,
  buffer: z.object({ from: z.string().regex(/^\d+-\d+$/), to: z.string().regex(/^\d+-\d+$/) }),
  /** Last entry delivered by an earlier attempt. */
  resumeAfter: z
    .string()
    .regex(/^\d+-\d+$/)
    .nullable()
    .optional(),
});

/**
 * Schema change announcements of a table, sent to `destination.schemaChangesTarget` through the push queue so they
 * are retried and dead-lettered like any batch. They hold column names and types, never row data.
 */
export const announcePushSchema = z.object({
  ...pushBase,
  /** The table's generation the changes apply to (a re-creation: the new one), its records' `_generation`. */
  generation: z.number().int().min(0).optional(),
  announce: z
    .array(
      z.object({
        source: z.string(),
        table: z.string(),
        kind: z.enum(['column_added', 'column_dropped', 'type_changed', 'table_recreated']),
        column: z.string().nullable(),
        old_type: z.string().nullable(),
        new_type: z.string().nullable(),
        verdict: z.enum(['widening', 'narrowing', 'incompatible']).nullable(),
        note: z.string(),
        sent: z.boolean().nullable(),
        detected_at: z.string(),
        applies_from: z.string().nullable(),
      }),
    )
    .min(1),
});

/**
 * The start of a table generation (the table was dropped and created again): one `table_recreated` record to the
 * table's target, with no columns of the table, so silver drops the older generations' keys even before (or
 * without) any row of the new one.
 */
export const boundaryPushSchema = z.object({
  ...pushBase,
  boundary: z.object({ generation: z.number().int().min(1), ordering: z.string().nullable() }),
});

export const pushJobSchema = z.union([rangePushSchema, changesPushSchema, bufferPushSchema, announcePushSchema, boundaryPushSchema]);
export type RangePushJob = z.infer<typeof rangePushSchema>;
export type ChangesPushJob = z.infer<typeof changesPushSchema>;
export type BufferPushJob = z.infer<typeof bufferPushSchema>;
export type AnnouncePushJob = z.infer<typeof announcePushSchema>;
export type BoundaryPushJob = z.infer<typeof boundaryPushSchema>;
export type PushJob = RangePushJob | ChangesPushJob | BufferPushJob | AnnouncePushJob | BoundaryPushJob;

/**
 * Job leases: a job whose worker died is handed to another worker within about LOCK_DURATION + STALLED_INTERVAL.
 * Leases are renewed every LOCK_DURATION / 2 while a job runs, so long jobs are not affected.
 */
export const WORKER_LEASES = { lockDuration: 15_000, stalledInterval: 10_000, maxStalledCount: 5 };

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

/** What a push job carries, in words (keys as the payload holds them: hashed keys stay encrypted). */
export function describePushJob(d: PushJob): string {
  if ('changes' in d) return `${d.changes.length} change(s), ${d.changes[0]!.ordering} … ${d.changes[d.changes.length - 1]!.ordering}`;
  if ('buffer' in d) return `${d.rows} buffered event(s), ${d.buffer.from} … ${d.buffer.to}`;
  if ('announce' in d) return `${d.announce.length} schema change announcement(s) for ${d.target}`;
  if ('boundary' in d) return `generation ${d.boundary.generation} starts (the table was created again)`;
  return `${d.range.phase} (${d.range.lo ? JSON.stringify(d.range.lo) : 'start'}, ${JSON.stringify(d.range.hi)}]`;
}

/** The job's name, which the dashboard lists: its table and what it carries, readable without opening it. */
export function pushJobName(d: PushJob): string {
  return `${d.source}.${d.table} · ${describePushJob(d)}`;
}

/**
 * The id of the push job for a key range: the same range enqueued again (after a crash, before the cursor was
 * saved) finds its job instead of adding a second one. A reset bumps the generation so ranges read again are new.
 */
export function rangeJobId(rangeHash: string, generation: string | null): string {
  return generation && generation !== '0' ? `p-${rangeHash}-g${generation}` : `p-${rangeHash}`;
}
