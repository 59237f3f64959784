import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, type Job } from 'bullmq';
import { rangeId, type KeyRange } from '../core/cursor.js';
import { AppError, toAppError } from '../core/errors.js';
import { extractTable, type ExtractResult } from '../core/extract.js';
import type { PipelineContext } from './context.js';
import { logOncePerState } from './redis.js';
import { findSource, findTable } from './context.js';
import { tableSpec } from '../config.js';
import { EXTRACT_QUEUE, WORKER_LEASES, extractJobSchema, rangeJobId, pushJobName, pushJobOptions, type PushJob } from './jobs.js';
import { PendingSet } from './pending.js';
import { RedisCursorStore } from './cursor-store.js';
import { TableLock } from './table-lock.js';
import { backoffStrategy, toJobError } from './backoff-strategy.js';
import { runCdc, type CdcOutcome } from './cdc-worker.js';
import { runReconcile, type ReconcileOutcome } from './reconcile-worker.js';

export interface ExtractOutcome extends Partial<ExtractResult> {
  skipped?: 'locked';
}

type Outcome = ExtractOutcome | CdcOutcome | ReconcileOutcome;

/** Polls backpressure at this interval while a table's backlog is full. */
const CAPACITY_POLL_MS = 500;

export async function runExtract(ctx: PipelineContext, job: Job, stopping: () => boolean): Promise<Outcome> {
  const parsed = extractJobSchema.safeParse(job.data);
  if (!parsed.success) throw new AppError('JOB_INVALID', `extract job payload invalid: ${parsed.error.message}`);
  const { source: sourceName, table: tableName } = parsed.data;
  if (parsed.data.kind === 'cdc') return runCdc(ctx, job, sourceName, parsed.data.reason === 'once', stopping);
  const once = parsed.data.reason === 'once';
  if (parsed.data.kind === 'reconcile') return runReconcile(ctx, job, sourceName, tableName, stopping, once);
  const table = findTable(ctx.config, sourceName, tableName);
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName, table: tableName });
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, tableName), ctx.config.extract.leaseTtl);
  if (!(await (once ? lock.acquireWaiting(() => !stopping()) : lock.acquire()))) {
    log.debug('another worker is reading this table; skipping this run');
    return { skipped: 'locked' };
  }
  const labels = { source: sourceName, table: tableName };
  const pending = new PendingSet(ctx.redis, ctx.keys.pending(sourceName, tableName));
  const startedAt = Date.now();
  try {
    const reader = await findSource(ctx, sourceName).table(tableSpec(table));
    const generation = await ctx.redis.get(ctx.keys.generation(sourceName, tableName));
    const known = table.reconcile ? ctx.keys.knownKeys(sourceName, tableName) : undefined;
    const enqueue = async (range: KeyRange, rows: number, keys: string[][]): Promise<void> => {
      const jobId = rangeJobId(rangeId(sourceName, tableName, range), generation);
      const cutAt = Date.now();
      const data: PushJob = { v: 1, source: sourceName, table: tableName, target: table.target, range, rows, cutAt: new Date(cutAt).toISOString() };
      const job = await ctx.pushQueue.add(pushJobName(sourceName, tableName), data, pushJobOptions(ctx.config.destination.attempts, jobId));
      // The same range enqueued again after a crash finds its job; if that one already completed, nothing is pending.
      if ((await job.getState()) !== 'completed') await pending.add(jobId, cutAt);
      // Remembered before the cursor moves on, so a key can never be sent without reconciliation knowing it.
      if (known) await ctx.redis.sadd(known, ...keys.map((k) => JSON.stringify(k)));
      ctx.metrics.rowsExtracted.inc(labels, rows);
    };
    const bound = ctx.config.extract.maxPendingBatches;
    const waitForCapacity = async (): Promise<void> => {
      let reconciled = false;
      while (!stopping() && !lock.isLost && (await pending.count()) >= bound) {
        if (!reconciled) {
          reconciled = true;
          if ((await pending.reconcile(ctx.pushQueue)) > 0) continue;
          log.info({ bound }, 'undelivered backlog at its bound; extraction paused until push jobs drain');
        }
        await sleep(CAPACITY_POLL_MS);
      }
    };
    const result = await extractTable({
      reader,
      cursors: new RedisCursorStore(ctx.redis, ctx.keys.cursor(sourceName, tableName), `${sourceName}.${tableName}`),
      batchRows: table.batchRows,
      where: `${sourceName}.${tableName}`,
      safetyLagMs: table.safetyLag,
      enqueue,
      waitForCapacity,
      shouldStop: () => stopping() || lock.isLost,
    });
    if (result.caughtUp) await ctx.redis.hset(ctx.keys.state(sourceName, tableName), 'caughtUpAt', String(startedAt));
    return result;
  } catch (err) {
    const e = toAppError(err, 'SOURCE_QUERY_FAILED');
    ctx.metrics.errors.inc({ ...labels, code: e.code });
    log.warn({ code: e.code, err: e.message, attempt: job.attemptsMade + 1 }, 'extract run failed');
    throw toJobError(e);
  } finally {
    await lock.release().catch(() => {});
  }
}

export function startExtractWorker(ctx: PipelineContext): Worker {
  let closing = false;
  const worker = new Worker(EXTRACT_QUEUE, (job) => runExtract(ctx, job, () => closing), {
    connection: ctx.redis.duplicate(),
    prefix: ctx.config.redis.prefix,
    concurrency: ctx.config.extract.concurrency,
    // A killed worker's job is picked up again after its lease expires; a few such crashes are allowed.
    ...WORKER_LEASES,
    settings: { backoffStrategy: backoffStrategy(ctx.config.destination.backoff) },
  });
  worker.on('closing', () => {
    closing = true;
  });
  // A Redis outage makes every connection of the worker fail on each retry: one line per distinct error.
  worker.on('error', logOncePerState(ctx.redis, ctx.logger, { queue: EXTRACT_QUEUE }, 'worker error'));
  return worker;
}
