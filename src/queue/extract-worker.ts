import { DelayedError, Worker, type Job } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import { rangeId, type KeyRange } from '../core/cursor.js';
import { AppError } from '../core/errors.js';
import { extractTable, type ExtractResult } from '../core/extract.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { logOncePerState, pipelineValues } from './redis.js';
import { findSource, findTable } from './context.js';
import { tableSpec, type TableConfig } from '../config.js';
import { EXTRACT_QUEUE, WORKER_LEASES, extractJobSchema, rangeJobId, type PushJob, type RunReason } from './jobs.js';
import { enqueuePushJob, waitForCapacity } from './push-jobs.js';
import { failJob } from './job-errors.js';
import { RedisCursorStore } from './cursor-store.js';
import { TableLock } from './table-lock.js';
import { TableProgress } from './table-progress.js';
import { pausedState } from './table-admin.js';
import { FROZEN_FIELD, watchShape } from './schema-watch.js';
import { backoffStrategy, jobProcessor } from './backoff-strategy.js';
import { runCdc, type CdcOutcome } from './cdc-worker.js';
import { runReconcile, type ReconcileOutcome } from './reconcile-worker.js';
import { runIngestCut, type CutOutcome } from './ingest-cutter.js';
import { recordMode, startWatermarkOver, watermarkStart } from './table-mode.js';

export interface ExtractOutcome extends Partial<ExtractResult> {
  /** `mode`: the table is no longer synced by watermark (its mode changed after the run was queued). */
  skipped?: 'locked' | 'paused' | 'mode';
}

type Outcome = ExtractOutcome | CdcOutcome | ReconcileOutcome | CutOutcome;

/** How long a manual run that found its table's lease taken waits before it tries again. */
export const MANUAL_RUN_RETRY_MS = 1000;

export async function runExtract(ctx: PipelineContext, job: Job, stopping: () => boolean, token?: string): Promise<Outcome> {
  const parsed = extractJobSchema.safeParse(job.data);
  if (!parsed.success)
    throw failJob(new AppError('JOB_INVALID', `extract job payload invalid: ${parsed.error.message}`), { ctx, job, what: 'extract job rejected' });
  const data = parsed.data;
  switch (data.kind) {
    case 'cdc':
      return runCdc(ctx, job, data.source, data.reason === 'once', stopping);
    case 'reconcile':
      return runReconcile(ctx, job, data.source, data.table, stopping, data.reason);
    case 'table':
      return runTable(ctx, job, data.source, data.table, data.reason, stopping, token);
    case 'ingest':
      return runIngestCut(ctx, job, data.source, data.reason, stopping);
  }
}

async function runTable(
  ctx: PipelineContext,
  job: Job,
  sourceName: string,
  tableName: string,
  reason: RunReason,
  stopping: () => boolean,
  token: string | undefined,
): Promise<ExtractOutcome> {
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName, table: tableName });
  let table: TableConfig;
  try {
    table = findTable(ctx.config, sourceName, tableName);
  } catch (err) {
    throw failJob(err, { ctx, job, log, what: 'extract job rejected' });
  }
  // A table run queued while the table was synced by watermark, run after its mode became CDC: reading it now would
  // switch it back to watermark under the change stream (table-mode.ts). Its source's change reader reads it.
  if (table.mode !== 'watermark') {
    log.info(`${sourceName}.${tableName} is in mode ${table.mode} now; this watermark run is skipped`);
    return { skipped: 'mode' };
  }
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, tableName), ctx.config.extract.leaseTtl);
  const cursorKey = ctx.keys.cursor(sourceName, tableName);
  let acquired: boolean;
  let run: RunState | undefined;
  if (reason === 'once') {
    if (await pausedState(ctx, table)) return pausedRun(log);
    acquired = await lock.acquireFor(reason, () => !stopping());
  } else {
    // A scheduled run asks whether the table is paused, tries the lease and reads the state it starts from in one
    // round trip (the reads come after the SET, so they are the holder's); a paused table's lease, when it got it,
    // is handed back at once.
    const {
      acquired: got,
      replies,
      following,
    } = await lock.acquireAfter(
      (p) => p.hexists(ctx.keys.paused(sourceName, tableName), 'at'),
      (p) => queueRunState(p, ctx, table, cursorKey),
    );
    if (replies[0] === 1) {
      if (got) await lock.release();
      return pausedRun(log);
    }
    acquired = got;
    if (got) run = runStateOf(following);
  }
  if (!acquired) {
    // A manual run (a backfill, a re-created table) is asked for once: skipped, it would wait for the next scheduled
    // run, hours away for a daily cron. It waits its turn in the delayed set instead, holding no worker slot.
    if (reason === 'manual' && token !== undefined) {
      log.debug('another worker is reading this table; this manual run tries again shortly');
      await job.moveToDelayed(Date.now() + MANUAL_RUN_RETRY_MS, token);
      throw new DelayedError();
    }
    log.debug('another worker is reading this table; skipping this run');
    return { skipped: 'locked' };
  }
  const labels = { source: sourceName, table: tableName };
  const startedAt = Date.now();
  // A pause taken during the run stops it at its next page (checked before each page is read).
  let paused = false;
  const shouldStop = (): boolean => stopping() || lock.isLost || paused;
  let tracker: TableProgress | undefined;
  try {
    const reader = await findSource(ctx, sourceName).table(tableSpec(table));
    // What the run needs before its first page, in one round trip: an idle run of a caught-up table makes few.
    run ??= await readRunState(ctx, table, cursorKey);
    if (await watchShape(ctx, table, reader, log, undefined, false, { stored: run.shape, frozen: run.frozen })) {
      log.info('table frozen by a schema change (pushsync schema accept --table); skipping this run');
      return { skipped: 'paused' };
    }
    // The generation is read after the shape check: a re-created table starts over under a new one. Unless the
    // stored shape was already this one (nothing changed, nothing was written), the state is read again.
    const relation = reader.shape.relation;
    if (relation !== undefined && run.shape !== JSON.stringify(relation)) run = await readRunState(ctx, table, cursorKey);
    // A table that change data capture synced until now starts over in a new generation (table-mode.ts). State
    // from before modes were recorded is looked at once more: a CDC snapshot of the table finished on the source's
    // stream tells too.
    const where = `${sourceName}.${tableName}`;
    let start = watermarkStart(run.mode, run.cursor, false, where);
    if (start === 'ready' && run.mode === null) {
      const slot = ctx.config.sources.find((s) => s.name === sourceName)?.cdc.slot;
      const done = slot !== undefined && (await ctx.redis.hexists(ctx.keys.cdcState(sourceName, slot), `snapshot:${tableName}`)) === 1;
      start = watermarkStart(run.mode, run.cursor, done, where);
      if (start === 'ready') await recordMode(ctx, table, 'watermark');
    }
    if (start !== 'ready') {
      await startWatermarkOver(ctx, table, relation?.identity, start, log);
      run = await readRunState(ctx, table, cursorKey);
    }
    const known = table.reconcile ? ctx.keys.knownKeys(sourceName, tableName) : undefined;
    tracker = await TableProgress.start(ctx, table, reader, job, log, run.state);
    const counted = tracker;
    const enqueue = async (range: KeyRange, rows: number, keys: string[][]): Promise<void> => {
      const data: PushJob = { v: 1, source: sourceName, table: tableName, target: table.target, range, rows, cutAt: new Date().toISOString() };
      // The generation read with the cursor the range was cut from (see RedisCursorStore.load).
      await enqueuePushJob(ctx, rangeJobId(rangeId(sourceName, tableName, range), cursors.generation), data);
      // Remembered before the cursor moves on, so a key can never be sent without reconciliation knowing it.
      if (known) await ctx.redis.sadd(known, ...keys.map((k) => JSON.stringify(k)));
      await counted.add(rows);
    };
    const backpressure = { paused: false };
    // The first page's pause check and backlog count come with the run's state; later pages read them anew.
    let first: { paused: boolean; pending: number } | undefined = { paused: run.paused, pending: run.pending };
    const cursors = new RedisCursorStore(ctx.redis, cursorKey, ctx.keys.generation(sourceName, tableName), `${sourceName}.${tableName}`);
    cursors.preload(run.cursor, run.highWater, run.generation);
    const result = await extractTable({
      reader,
      cursors,
      batchRows: table.batchRows,
      keys: known !== undefined,
      where: `${sourceName}.${tableName}`,
      safetyLagMs: table.safetyLag,
      enqueue,
      waitForCapacity: async () => {
        const known = first;
        first = undefined;
        paused = known ? known.paused : (await pausedState(ctx, table)) !== null;
        if (!paused) return waitForCapacity(ctx, table, { shouldStop, log, state: backpressure, ...(known ? { count: known.pending } : {}) });
        log.info('table paused during the run; stopping at this page');
        return 0;
      },
      shouldStop,
    });
    // The run's state and the lease's release go in one round trip.
    await tracker.finish(
      result.caughtUp,
      result.caughtUp ? (p, key) => cursors.queueUnlessReset(p, key, { caughtUpAt: String(startedAt) }) : undefined,
      (p) => lock.queueRelease(p),
    );
    return result;
  } catch (err) {
    throw failJob(err, { ctx, job, labels, log, what: 'extract run failed' });
  } finally {
    tracker?.stop();
    await lock.release().catch(() => {});
  }
}

function pausedRun(log: Logger): ExtractOutcome {
  log.debug('table paused (pushsync resume --table); skipping this run');
  return { skipped: 'paused' };
}

interface RunState {
  generation: string | null;
  /** The table's state hash (progress, caughtUpAt). */
  state: Record<string, string>;
  cursor: string | null;
  highWater: string | null;
  /** Undelivered push jobs (the backpressure count). */
  pending: number;
  /** Whether the table is paused (its pause hash has `at`). */
  paused: boolean;
  /** The stored shape and the pause hash's freeze field, for the shape check. */
  shape: string | null;
  frozen: string | null;
  /** The mode the table's state was written in, when recorded (table-mode.ts). */
  mode: string | null;
}

/** The state a table run starts from, read in one round trip once the lease is held. */
async function readRunState(ctx: PipelineContext, table: TableConfig, cursorKey: string): Promise<RunState> {
  return runStateOf(pipelineValues(await queueRunState(ctx.redis.pipeline(), ctx, table, cursorKey).exec()));
}

/** Queues the reads of `RunState` on `p`; `runStateOf` makes it of their replies. */
function queueRunState(p: ChainableCommander, ctx: PipelineContext, table: TableConfig, cursorKey: string): ChainableCommander {
  return (
    p
      .hgetall(ctx.keys.state(table.source, table.name))
      // One command, for the reason RedisCursorStore.load gives.
      .mget(cursorKey, RedisCursorStore.highWaterKey(cursorKey), ctx.keys.generation(table.source, table.name))
      .zcard(ctx.keys.pending(table.source, table.name))
      .hmget(ctx.keys.paused(table.source, table.name), 'at', FROZEN_FIELD)
      .get(ctx.keys.schemaShape(table.source, table.name))
      .get(ctx.keys.tableMode(table.source, table.name))
  );
}

function runStateOf(v: unknown[]): RunState {
  if (v.length !== 6) throw new AppError('INTERNAL', 'redis pipeline returned no replies', { retryable: true });
  const [cursor, highWater, generation] = v[1] as [string | null, string | null, string | null];
  const [pausedAt, frozen] = v[3] as [string | null, string | null];
  return {
    generation,
    state: v[0] as Record<string, string>,
    cursor,
    highWater,
    pending: v[2] as number,
    paused: pausedAt !== null,
    shape: v[4] as string | null,
    frozen,
    mode: v[5] as string | null,
  };
}

/**
 * Extract jobs one process runs at once: `extract.concurrency` for table runs, plus one for each change data capture
 * source. A CDC reader holds its job while it streams (up to `cdc.maxRunTime`), so without its own slot two CDC
 * sources would leave the default two slots no room for any watermark table.
 */
export function extractSlots(config: PipelineContext['config']): number {
  return config.extract.concurrency + config.sources.filter((s) => s.tables.some((t) => t.mode === 'cdc')).length;
}

export function startExtractWorker(ctx: PipelineContext): Worker {
  let closing = false;
  const worker = new Worker(
    EXTRACT_QUEUE,
    jobProcessor(ctx.logger, EXTRACT_QUEUE, (job, token) => runExtract(ctx, job, () => closing, token)),
    {
      connection: ctx.redis.duplicate(),
      prefix: ctx.config.redis.prefix,
      concurrency: extractSlots(ctx.config),
      // A killed worker's job is picked up again after its lease expires; a few such crashes are allowed.
      ...WORKER_LEASES,
      settings: { backoffStrategy: backoffStrategy(ctx.config.destination.backoff) },
    },
  );
  worker.on('closing', () => {
    closing = true;
  });
  // A Redis outage makes every connection of the worker fail on each retry: one line per distinct error.
  worker.on('error', logOncePerState(ctx.redis, ctx.logger, { queue: EXTRACT_QUEUE }, 'worker error'));
  return worker;
}
