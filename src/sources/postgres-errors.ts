import { AppError } from '../core/errors.js';
import { unanswered } from './postgres-query.js';

/**
 * Retry verdicts for Postgres failures, keyed by SQLSTATE class (first two characters) or full code.
 * Connection-level failures are transient: the run fails, BullMQ retries it, and it resumes from the saved cursor.
 */
const TRANSIENT_CLASSES = new Set(['08', '53', '57', '58', '40']);
/** 25006: a write in a read-only transaction, which only configured SQL (a soft-delete condition) can attempt. */
const SCHEMA_CODES = new Set(['42P01', '42703', '42883', '3F000', '42704', '25006']);
const NETWORK_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

/**
 * Logical decoding refuses a slot of this name from this database: it was created in another database of the
 * server (slot names are cluster-wide), or it is a physical slot. The server raises both from CreateDecodingContext
 * with SQLSTATE 55000 and no detail (an invalidated slot comes with a detail). Retrying cannot help; another name can.
 */
function slotTaken(e: { code?: string; routine?: string; detail?: string }): boolean {
  return e.code === '55000' && e.routine === 'CreateDecodingContext' && !e.detail;
}

/** `what` names the source first, then the operation: `app: replication stream`. */
export function translatePgError(err: unknown, what: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; message?: string; routine?: string; detail?: string };
  const message = `${what}: ${e.message ?? String(err)}`;
  const code = typeof e.code === 'string' ? e.code : '';
  if (slotTaken(e)) {
    const source = what.split(': ')[0];
    return new AppError(
      'SOURCE_SLOT_TAKEN',
      `${message}; replication slot names are shared by all databases of a server and another database (or a physical slot) has this one: ` +
        `choose another slot name in the cdc.slot setting of source ${source} (the next run creates that slot and snapshots again)`,
      { cause: err, details: { sqlstate: code } },
    );
  }
  // No answer within query_timeout (postgres-query.ts connectionSafety): no answer, the connection is taken for dead.
  if (unanswered(err)) {
    return new AppError('SOURCE_UNAVAILABLE', `${message} (no answer from the server: the connection is taken for dead)`, {
      retryable: true,
      cause: err,
    });
  }
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
