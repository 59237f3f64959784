import { DelayedError, RateLimitError, UnrecoverableError, WaitingChildrenError, WaitingError, type Job } from 'bullmq';
import { backoffDelay, type BackoffPolicy } from '../core/backoff.js';
import { failureReason } from '../core/error-hints.js';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';

/** BullMQ's custom backoff ('pushsync' type): exponential with jitter, never shorter than a server's Retry-After. */
export function backoffStrategy(policy: { base: number; cap: number; jitter: number }) {
  const p: BackoffPolicy = { baseMs: policy.base, capMs: policy.cap, jitter: policy.jitter };
  return (attemptsMade: number, _type?: string, err?: Error): number =>
    backoffDelay(attemptsMade, p, (err as { retryAfterMs?: number } | undefined)?.retryAfterMs);
}

/** A retryable failure as BullMQ sees it: the reason shown in the dashboard starts with the error code. */
export class RetryableJobError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
    this.name = 'RetryableJobError';
  }
}

/**
 * Translates an AppError into what BullMQ acts on: a non-retryable error becomes UnrecoverableError, so the job
 * goes straight to the failed set (the dead-letter queue) with a readable reason: `[CODE] message — what to do`.
 * BullMQ keeps each attempt's `stack` in the job's stacktrace, which the dashboard's Error tab shows instead of the
 * reason: it holds the same `[CODE] message — what to do` line, and the JavaScript stack goes to the log (see stackOf).
 */
export function toJobError(e: AppError): Error {
  const reason = failureReason(e);
  const err = e.retryable ? new RetryableJobError(reason, e.retryAfterMs) : new UnrecoverableError(reason);
  err.stack = reason;
  err.cause = e;
  return err;
}

/** The stack of an error and of its causes, for the log. */
export function stackOf(e: Error): string {
  const parts: string[] = [];
  for (let c: unknown = e; c instanceof Error && parts.length < 4; c = c.cause) parts.push(c.stack ?? String(c));
  return parts.join('\ncaused by: ');
}

/** What BullMQ itself throws, or a job throws on purpose through BullMQ, to move a job: passed on unchanged. */
function isBullMqSignal(err: unknown): boolean {
  return [UnrecoverableError, RetryableJobError, DelayedError, WaitingError, WaitingChildrenError, RateLimitError].some((c) => err instanceof c);
}

/**
 * Wraps a worker's processor: whatever escapes it without passing through toJobError is logged with its stack and
 * handed to BullMQ as toJobError makes it, so no failed job carries a JavaScript stack.
 */
export function jobProcessor<T>(
  logger: Logger,
  queue: string,
  run: (job: Job, token?: string) => Promise<T>,
): (job: Job, token?: string) => Promise<T> {
  return async (job, token) => {
    try {
      return await run(job, token);
    } catch (err) {
      if (isBullMqSignal(err)) throw err;
      // Anything but an AppError (a Redis hiccup outside the worker's try) stays retried, as BullMQ did before.
      const e = isAppError(err) ? err : new AppError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err, retryable: true });
      logger.warn({ queue, jobId: job.id, code: e.code, err: e.message, stack: stackOf(e) }, 'job failed');
      throw toJobError(e);
    }
  };
}
