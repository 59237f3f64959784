import { AppError } from '../core/errors.js';

/**
 * Retry verdicts for Postgres failures, keyed by SQLSTATE class (first two characters) or full code.
 * Connection-level failures are transient: the run fails, BullMQ retries it, and it resumes from the saved cursor.
 */
const TRANSIENT_CLASSES = new Set(['08', '53', '57', '58', '40']);
/** 25006: a write in a read-only transaction, which only configured SQL (a soft-delete condition) can attempt. */
const SCHEMA_CODES = new Set(['42P01', '42703', '42883', '3F000', '42704', '25006']);
const NETWORK_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

export function translatePgError(err: unknown, what: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; message?: string };
  const message = `${what}: ${e.message ?? String(err)}`;
  const code = typeof e.code === 'string' ? e.code : '';
  if (NETWORK_ERRNOS.has(code) || /Connection terminated|connection timeout|Client has encountered a connection error/i.test(e.message ?? '')) {
    return new AppError('SOURCE_UNAVAILABLE', message, { retryable: true, cause: err });
  }
  if (SCHEMA_CODES.has(code)) return new AppError('SOURCE_SCHEMA', message, { cause: err, details: { sqlstate: code } });
  if (code === '28P01' || code === '28000' || code === '42501') {
    return new AppError('SOURCE_UNAVAILABLE', message, { cause: err, details: { sqlstate: code } });
  }
  if (TRANSIENT_CLASSES.has(code.slice(0, 2))) {
    return new AppError('SOURCE_UNAVAILABLE', message, { retryable: true, cause: err, details: { sqlstate: code } });
  }
  return new AppError('SOURCE_QUERY_FAILED', message, { retryable: true, cause: err, details: { sqlstate: code } });
}
