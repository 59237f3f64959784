import { Worker, type Job } from 'bullmq';
import { deliverRange, type DeliverResult } from '../core/deliver.js';
import { AppError, toAppError } from '../core/errors.js';
import { envelopeBytes, STREAM_LIMITS, type StreamLimits } from '../core/batching.js';
import type { Position } from '../core/cursor.js';
import type { PipelineContext } from './context.js';
import { findSource } from './context.js';
import { tableSpec } from '../config.js';
import { PUSH_QUEUE, pushJobSchema } from './jobs.js';
import { PendingSet } from './pending.js';
import { backoffStrategy, toJobError } from './backoff-strategy.js';

function limitsOf(ctx: PipelineContext): StreamLimits {
  return { ...STREAM_LIMITS, maxRows: ctx.config.destination.maxRows, maxBytes: ctx.config.destination.maxBytes };
}

/** Reads the job's range from the source and sends it; progress inside the range is saved on the job. */
export async function runPush(ctx: PipelineContext, job: Job): Promise<DeliverResult> {
  const parsed = pushJobSchema.safeParse(job.data);
  if (!parsed.success) throw toJobError(new AppError('JOB_INVALID', `push job payload invalid: ${parsed.error.message}`));
  const data = parsed.data;
  const labels = { source: data.source, table: data.table };
  const log = ctx.logger.child({ queue: PUSH_QUEUE, jobId: job.id, source: data.source, table: data.table });
  const limits = limitsOf(ctx);
  try {
    const table = ctx.config.sources.find((s) => s.name === data.source)?.tables.find((t) => t.name === data.table);
    if (!table) throw new AppError('JOB_INVALID', `push job names ${data.source}.${data.table}, which is not in the configuration`);
    const reader = await findSource(ctx, data.source).table(tableSpec(table));
    const result = await deliverRange({
      reader,
      destination: ctx.destination,
      range: data.range,
      resumeAfter: data.resumeAfter ?? null,
      source: data.source,
      table: data.table,
      target: data.target,
      limits,
      envelopeBytes: envelopeBytes({ table: data.target, mode: 'append', wait: ctx.config.destination.wait, tags: { source: 'pushsync', ...ctx.config.destination.tags } }) + 64,
      readRows: Math.min(limits.maxRows, 5000),
      onDelivered: async (after: Position | null, rows: number, latencyMs: number) => {
        // Invariant: the resume point is stored before the next request, so a retry never re-sends less than
        // what was not acknowledged.
        await job.updateData({ ...data, resumeAfter: after });
        if (rows > 0) {
          ctx.metrics.rowsPushed.inc(labels, rows);
          ctx.metrics.batchesPushed.inc(labels);
          ctx.metrics.pushLatency.observe(labels, latencyMs);
        }
      },
    });
    await new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table)).remove(String(job.id));
    return result;
  } catch (err) {
    const e = toAppError(err, 'INTERNAL');
    ctx.metrics.errors.inc({ ...labels, code: e.code });
    if (e.code === 'DEST_ROWS_REJECTED' || e.code === 'ROW_TOO_LARGE') {
      ctx.metrics.rowsRejected.inc(labels, Number(e.details?.rejectedRows ?? 0));
    }
    if (e.details) await job.log(JSON.stringify({ code: e.code, details: e.details })).catch(() => {});
    log.warn({ code: e.code, err: e.message, attempt: job.attemptsMade + 1, retryable: e.retryable }, 'push attempt failed');
    throw toJobError(e);
  }
}

export function startPushWorker(ctx: PipelineContext): Worker {
  const worker = new Worker(PUSH_QUEUE, (job) => runPush(ctx, job), {
    connection: ctx.redis.duplicate(),
    prefix: ctx.config.redis.prefix,
    concurrency: ctx.config.destination.concurrency,
    maxStalledCount: 5,
    settings: { backoffStrategy: backoffStrategy(ctx.config.destination.backoff) },
  });
  worker.on('error', (err) => ctx.logger.error({ err: err.message, queue: PUSH_QUEUE }, 'worker error'));
  return worker;
}
