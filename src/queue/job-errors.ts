import { AppError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { toJobError } from './backoff-strategy.js';

export interface FailureReport {
  ctx: PipelineContext;
  labels: { source: string; table: string };
  log: Logger;
  /** The log line's message, e.g. `push attempt failed`. */
  what: string;
  attempt: number;
}

/**
 * The one place a job handler turns what it caught into what BullMQ acts on. An AppError keeps its verdict; any
 * other error is `INTERNAL` and retryable (UNCLASSIFIED_IS_RETRYABLE): a failure nobody foresaw may be transient (a
 * Redis reconnect inside BullMQ, a driver hiccup), and a retried job loses nothing, while a bug only costs the
 * job's bounded attempts before it rests in the dead-letter queue. With a report, the failure is counted in
 * `errors_total` and logged once.
 */
export function failJob(err: unknown, report?: FailureReport): Error {
  const e = classify(err);
  if (report) {
    report.ctx.metrics.errors.inc({ ...report.labels, code: e.code });
    report.log.warn({ code: e.code, err: e, attempt: report.attempt, retryable: e.retryable }, report.what);
  }
  return toJobError(e);
}

/** See `failJob`: the documented fallback for an error no adapter classified. */
export const UNCLASSIFIED_IS_RETRYABLE = true;

export function classify(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('INTERNAL', message, { cause: err, retryable: UNCLASSIFIED_IS_RETRYABLE });
}
