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

/**
 * A data exception (SQLSTATE class 22) quotes the value the server failed on: `invalid input syntax for type
 * integer: "…"`, `value "…" is out of range for type integer`, `invalid byte sequence for encoding "UTF8": 0x…`. The
 * value is a row's: a table's where, query or server-side mask can fail on a column that columns leaves out, or on
 * a masked column's raw value. Its quoted texts and bytes are left out of the message, and the driver's error is
 * replaced by one holding the same message (its stack is logged with the job's failure).
 */
function withoutValues(e: { code?: string; message?: string; stack?: string }, err: unknown): { text: string; cause: unknown } {
  const text = e.message ?? String(err);
  if (typeof e.code !== 'string' || !e.code.startsWith('22')) return { text, cause: err };
  const kept = `${text.replace(/"(?:[^"]|"")*"?/g, '"…"').replace(/(?:\s*0x[0-9a-f]{2})+/gi, ' 0x…')} (SQLSTATE ${e.code}; the value is left out: it may be one the table's columns or masks keep from the records)`;
  const cause = Object.assign(new Error(kept), { code: e.code });
  const frames = (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
  cause.stack = [`Error: ${kept}`, ...frames].join('\n');
  return { text: kept, cause };
}

/** `what` names the source first, then the operation: `app: replication stream`. */
export function translatePgError(raw: unknown, what: string): AppError {
  if (raw instanceof AppError) return raw;
  const e = raw as { code?: string; message?: string; routine?: string; detail?: string; stack?: string };
  const { text, cause: err } = withoutValues(e, raw);
  const message = `${what}: ${text}`;
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
  if (unanswered(raw)) {
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
