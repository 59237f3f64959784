import { AppError } from '../core/errors.js';
import type { Job } from 'bullmq';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { stackOf, toJobError } from './backoff-strategy.js';

export interface FailureReport {
  ctx: PipelineContext;
  job: Job;
  /** The log line's message, e.g. `push attempt failed`. */
  what: string;
  /** Defaults to the job's source and table (as its payload names them). */
  labels?: { source: string; table: string };
  /** Defaults to the root logger. */
  log?: Logger;
}

/**
 * The one place a job handler turns what it caught into what BullMQ acts on. An AppError keeps its verdict; any
 * other error is `INTERNAL` and retryable (UNCLASSIFIED_IS_RETRYABLE): a failure nobody foresaw may be transient (a
 * Redis reconnect inside BullMQ, a driver hiccup), and a retried job loses nothing, while a bug only costs the
 * job's bounded attempts before it rests in the dead-letter queue. Every failure is counted in `errors_total` and
 * logged once, with its stack; the job keeps only `[CODE] message`.
 */
export function failJob(err: unknown, r: FailureReport): Error {
  const e = classify(err);
  const data = (r.job.data ?? {}) as { source?: unknown; table?: unknown };
  const labels = r.labels ?? { source: String(data.source ?? 'unknown'), table: String(data.table ?? 'unknown') };
  r.ctx.metrics.errors.inc({ ...labels, code: e.code });
  (r.log ?? r.ctx.logger).warn(
    {
      queue: r.job.queueName,
      jobId: r.job.id,
      ...labels,
      code: e.code,
      err: e.message,
      stack: stackOf(e),
      attempt: r.job.attemptsMade + 1,
      retryable: e.retryable,
    },
    r.what,
  );
  return toJobError(e);
}

/** See `failJob`: the documented fallback for an error no adapter classified. */
export const UNCLASSIFIED_IS_RETRYABLE = true;

export function classify(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('INTERNAL', message, { cause: err, retryable: UNCLASSIFIED_IS_RETRYABLE });
}
