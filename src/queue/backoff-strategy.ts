import { UnrecoverableError } from 'bullmq';
import { backoffDelay, type BackoffPolicy } from '../core/backoff.js';
import type { AppError } from '../core/errors.js';

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
 * goes straight to the failed set (the dead-letter queue) with a readable reason.
 */
export function toJobError(e: AppError): Error {
  return e.retryable ? new RetryableJobError(e.toString(), e.retryAfterMs) : new UnrecoverableError(e.toString());
}
