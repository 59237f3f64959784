import { DelayedError, Worker, type Job } from 'bullmq';
import { deliverRange } from '../core/deliver.js';
import { deliverChanges } from '../core/deliver-changes.js';
import { AppError } from '../core/errors.js';
import { envelopeBytes, STREAM_LIMITS, type StreamLimits } from '../core/batching.js';
import { truncateText } from '../core/redact.js';
import type { Position } from '../core/cursor.js';
import type { PipelineContext } from './context.js';
import { logOncePerState } from './redis.js';
import { findSource, findTable } from './context.js';
import { tableSpec } from '../config.js';
import { PUSH_QUEUE, WORKER_LEASES, pushJobSchema } from './jobs.js';
import { PendingSet } from './pending.js';
import { backoffStrategy, jobProcessor } from './backoff-strategy.js';
import { classify, failJob } from './job-errors.js';
import { tableRules } from './table-rules.js';
import { pushBuffered } from './ingest-push.js';
import { FROZEN_FIELD, watchShape } from './schema-watch.js';
import { pushAnnouncement, pushBoundary } from './schema-push.js';
import { tableGeneration } from './generations.js';
import { jobFate, jobMode } from './table-mode.js';
import type { TableReader } from '../core/ports.js';

/** How long a push job of a table frozen by a schema change waits before it looks again. */
const FROZEN_RECHECK_MS = 5_000;

/** One job log entry per failed attempt, at most this long. */
const JOB_LOG_CHARS = 8192;

function limitsOf(ctx: PipelineContext): StreamLimits {
  return { ...STREAM_LIMITS, maxRows: ctx.config.destination.maxRows, maxBytes: ctx.config.destination.maxBytes };
}

/**
 * Reads the job's rows from the source (a key range, or the keys of streamed changes) and sends them; progress
 * inside the job is saved on the job after every accepted request.
 */
export async function runPush(ctx: PipelineContext, job: Job, token?: string): Promise<{ rows: number; requests: number }> {
  const parsed = pushJobSchema.safeParse(job.data);
  if (!parsed.success)
    throw failJob(new AppError('JOB_INVALID', `push job payload invalid: ${parsed.error.message}`), { ctx, job, what: 'push job rejected' });
  const data = parsed.data;
  const labels = { source: data.source, table: data.table };
  const log = ctx.logger.child({ queue: PUSH_QUEUE, jobId: job.id, source: data.source, table: data.table });
  const limits = limitsOf(ctx);
  const envelope = (target: string): number =>
    envelopeBytes({
      table: target,
      mode: 'append',
      wait: ctx.config.destination.wait,
      tags: { source: 'pushsync', ...ctx.config.destination.tags },
    }) + 64;
  const counted = (rows: number, latencyMs: number): void => {
    if (rows === 0) return;
    ctx.metrics.rowsPushed.inc(labels, rows);
    ctx.metrics.batchesPushed.inc(labels);
    ctx.metrics.pushDuration.observe(labels, latencyMs / 1000);
  };
  let reader: TableReader | undefined;
  let admission: { done(): void } | undefined;
  try {
    if ('announce' in data) {
      const result = await pushAnnouncement(ctx, data);
      await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
      return result;
    }
    if ('boundary' in data) {
      // Held by a schema freeze like every other job of the table: the old generation stays current until accepted.
      if ((await ctx.redis.hget(ctx.keys.paused(data.source, data.table), FROZEN_FIELD)) !== null && token !== undefined) {
        await job.moveToDelayed(Date.now() + FROZEN_RECHECK_MS, token);
        throw new DelayedError();
      }
      const result = await pushBoundary(ctx, findTable(ctx.config, data.source, data.table), data);
      await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
      return result;
    }
    // Before anything is read: while the destination is down, only a probe reads the source and sends.
    admission = ctx.destination.admit?.(job.attemptsMade + 1 >= (job.opts.attempts ?? 1));
    if ('buffer' in data) {
      const result = await pushBuffered(ctx, job, data, { limits, envelopeBytes: envelope, counted });
      await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
      return result;
    }
    const table = findTable(ctx.config, data.source, data.table);
    reader = await findSource(ctx, data.source).table(tableSpec(table));
    // Invariant: a frozen table sends nothing until its schema change is accepted; the job waits without using up
    // an attempt.
    if ((await watchShape(ctx, table, reader, log)) && token !== undefined) {
      await job.moveToDelayed(Date.now() + FROZEN_RECHECK_MS, token);
      throw new DelayedError();
    }
    // After the shape check, which starts the generation of a table found created again.
    const generation = await tableGeneration(ctx, table, reader.shape.relation?.identity);
    // Read after the generation: a switch of the table's mode records both in one step, so a job that got the new
    // generation sees the new mode too (table-mode.ts).
    const fate = jobFate(jobMode(data), await ctx.redis.get(ctx.keys.tableMode(data.source, data.table)), table.mode === 'cdc' ? 'cdc' : 'watermark');
    if (fate === 'superseded') {
      log.info(`${data.source}.${data.table}: batch of the mode the table left; the new mode reads its rows again, so it is not sent`);
      await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
      return { rows: 0, requests: 0 };
    }
    if (fate === 'wait' && token !== undefined) {
      await job.moveToDelayed(Date.now() + FROZEN_RECHECK_MS, token);
      throw new DelayedError();
    }
    const common = {
      reader,
      generation,
      // The ledger of the generation the records go out under: changes of a dropped table are sent as its own.
      rules: await tableRules(ctx, table, 'changes' in data ? (data.generation ?? generation) : generation),
      destination: ctx.destination,
      source: data.source,
      table: data.table,
      // The configured target, never the one in the payload: a job added by hand (the dashboard) cannot redirect rows.
      target: table.target,
      limits,
      envelopeBytes: envelope(table.target),
    };
    // Invariant: the resume point is stored before the next request, so a retry never re-sends less than what was
    // not acknowledged.
    const result =
      'changes' in data
        ? await deliverChanges({
            ...common,
            changes: data.changes,
            changesGeneration: data.generation,
            resumeAt: data.resumeAt ?? 0,
            onDelivered: async (resumeAt: number, rows: number, latencyMs: number) => {
              // Past the last change no request follows: the job completes next. Writing the whole change list once
              // more cost as much as enqueueing it; a crash before completion only re-sends the last request.
              if (resumeAt < data.changes.length) await job.updateData({ ...data, resumeAt });
              counted(rows, latencyMs);
            },
          })
        : await deliverRange({
            ...common,
            range: data.range,
            resumeAfter: data.resumeAfter ?? null,
            op: data.op,
            ordering: data.ordering,
            awaitWriters: data.awaitWriters,
            readRows: Math.min(limits.maxRows, 5000),
            onDelivered: async (after: Position | null, rows: number, latencyMs: number) => {
              await job.updateData({ ...data, resumeAfter: after });
              counted(rows, latencyMs);
            },
          });
    await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
    return result;
  } catch (err) {
    if (err instanceof DelayedError) throw err;
    const e = await reshaped(ctx, data, reader, classify(err));
    // Rows the destination refused or that could not be sent, whatever mix of reasons the sender reported.
    const rejected = Number(e.details?.rejectedRows ?? 0);
    if (rejected > 0) ctx.metrics.rowsRejected.inc(labels, rejected);
    // Details hold only redacted server text (the destination redacts it); the cap bounds what one attempt stores.
    if (e.details) await job.log(truncateText(JSON.stringify({ code: e.code, details: e.details }), JOB_LOG_CHARS)).catch(() => {});
    throw failJob(e, { ctx, job, labels, log, what: 'push attempt failed' });
  } finally {
    admission?.done();
  }
}

/**
 * A read that failed because the table changed under it (a column dropped or renamed between the shape check and the
 * read) is retried, with the new shape: no job fails for a column that vanished while it was in flight.
 */
async function reshaped(
  ctx: PipelineContext,
  data: { source: string; table: string },
  used: TableReader | undefined,
  e: AppError,
): Promise<AppError> {
  if (used === undefined || e.retryable || e.code !== 'SOURCE_SCHEMA') return e;
  try {
    const now = await findSource(ctx, data.source).table(tableSpec(findTable(ctx.config, data.source, data.table)));
    if (now === used) return e;
  } catch {
    return e;
  }
  return new AppError('SOURCE_QUERY_FAILED', `${e.message} (the table changed during the read; retried with its new shape)`, {
    cause: e,
    retryable: true,
  });
}

export function startPushWorker(ctx: PipelineContext): Worker {
  const worker = new Worker(
    PUSH_QUEUE,
    jobProcessor(ctx.logger, PUSH_QUEUE, (job, token) => runPush(ctx, job, token)),
    {
      connection: ctx.redis.duplicate(),
      prefix: ctx.config.redis.prefix,
      concurrency: ctx.config.destination.concurrency,
      ...WORKER_LEASES,
      settings: { backoffStrategy: backoffStrategy(ctx.config.destination.backoff) },
    },
  );
  // A Redis outage makes every connection of the worker fail on each retry: one line per distinct error.
  worker.on('error', logOncePerState(ctx.redis, ctx.logger, { queue: PUSH_QUEUE }, 'worker error'));
  return worker;
}
