import { AppError } from '../core/errors.js';

/**
 * Retry verdicts for MySQL/MariaDB failures, keyed by the server's error number (errno) or the driver's code for
 * network failures. Connection-level and lock failures are transient: the run fails, BullMQ retries it, and it
 * resumes from the saved cursor.
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
]);

/**
 * 1040 too many connections, 1053 server shutdown, 1205 lock wait timeout, 1213 deadlock, 1317 query interrupted,
 * 1927 connection killed (MariaDB), 1969 statement time exceeded (MariaDB), 2006/2013 server gone away or lost,
 * 3024 max_execution_time exceeded (MySQL), 1290 read-only server (--read-only during a failover).
 */
const TRANSIENT = new Set([1040, 1053, 1205, 1213, 1317, 1927, 1969, 2006, 2013, 3024, 1290]);

/**
 * 1146 no such table, 1054 unknown column, 1049 unknown database, 1305 no such function, 1792 a write in a read-only
 * transaction (only configured SQL, a soft-delete condition, can attempt one), 1267/1270/1271 illegal mix of
 * collations.
 */
const SCHEMA = new Set([1146, 1054, 1049, 1305, 1792, 1267, 1270, 1271]);

/** 1044/1045 access denied, 1142/1143 table or column privilege, 1227 a missing global privilege (PROCESS). */
const ACCESS = new Set([1044, 1045, 1142, 1143, 1227, 1370]);

export function translateMysqlError(err: unknown, what: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as { code?: unknown; errno?: unknown; sqlState?: unknown; message?: string; fatal?: boolean };
  const code = typeof e.code === 'string' ? e.code : '';
  const errno = typeof e.errno === 'number' ? e.errno : 0;
  const details = { errno, sqlstate: typeof e.sqlState === 'string' ? e.sqlState : undefined, code };
  let message = `${what}: ${e.message ?? String(err)}`;
  if (errno === 1227 && /PROCESS/i.test(e.message ?? ''))
    message += '; GRANT PROCESS ON *.* TO <user> (the late-commit read boundary lists open transactions with SHOW ENGINE INNODB STATUS)';
  if (NETWORK_CODES.has(code) || (e.fatal === true && errno === 0)) {
    return new AppError('SOURCE_UNAVAILABLE', message, { retryable: true, cause: err, details });
  }
  if (ACCESS.has(errno)) return new AppError('SOURCE_UNAVAILABLE', message, { cause: err, details });
  if (SCHEMA.has(errno)) return new AppError('SOURCE_SCHEMA', message, { cause: err, details });
  if (TRANSIENT.has(errno)) return new AppError('SOURCE_UNAVAILABLE', message, { retryable: true, cause: err, details });
  return new AppError('SOURCE_QUERY_FAILED', message, { retryable: true, cause: err, details });
}

/** The server's error number of an error `translateMysqlError` made; undefined for any other error. */
export function mysqlErrno(err: unknown): number | undefined {
  return err instanceof AppError ? (err.details as { errno?: number } | undefined)?.errno : undefined;
}
