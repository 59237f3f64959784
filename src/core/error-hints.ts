import type { AppError, ErrorCode } from './errors.js';

/**
 * What whoever reads a failed job (in the dashboard, `pushsync dlq list` or a `sync --once` summary) can do about
 * it, by code. Retryable codes are retried with backoff first; the hint is for when every attempt failed.
 */
const HINTS: Partial<Record<ErrorCode, string>> = {
  SOURCE_UNAVAILABLE: 'check that the database is up and reachable from pushsync, then retry the job',
  SOURCE_QUERY_FAILED: 'look for the query in the database log; once it can run, retry the job',
  SOURCE_SCHEMA: 'change the table or its entry in the config as the message says, then retry the job',
  SOURCE_EMPTY: 'if the table was emptied on purpose, run pushsync reset --table; else check the source URL points at the right database',
  CURSOR_CONFLICT: 'another reader had the table; retry the job',
  CURSOR_INVALID: 'retrying does not help: reset as the message says',
  DEST_UNAVAILABLE: 'check destination.url and the Stream API status, then retry the job',
  DEST_TIMEOUT: "raise destination.timeout or lower the table's batchRows, then retry the job",
  DEST_RATE_LIMITED: 'lower destination.concurrency, then retry the job',
  DEST_AUTH: 'set a valid destination.apiKey (DEFINITE_API_KEY), restart pushsync, then retry the job',
  DEST_REJECTED: "the server's errors are in the job log; fix the data or the target table, then retry the job",
  DEST_ROWS_REJECTED: "the rejected rows and the server's errors are in the job log; fix them at the source, then retry the job",
  DEST_TOO_LARGE: "lower the table's batchRows or destination.maxBytes, then retry the job",
  DEST_BAD_RESPONSE: 'retry the job; if it fails again, report it with the job log',
  ROW_TOO_LARGE: 'shrink the value at the source, then retry the job',
  JOB_INVALID: 'remove the job: it was made by another pushsync version or names what is no longer configured',
  EVENT_INVALID: 'the change event is not one pushsync can read (the message names the field); fix the producer, then purge the job',
  TABLE_NOT_CONFIGURED: "add the table to the source's tables in the config and restart, then retry the job; or purge it",
  INGEST_FULL: 'the buffer of undelivered events is at its byte budget: wait for delivery, or raise maxBufferedBytes',
  REDIS_UNAVAILABLE: 'check that Redis is up, then retry the job',
  RUN_INCOMPLETE: 'see the failed jobs with pushsync dlq list; a pass that timed out continues on the next run',
  INTERNAL: "a bug in pushsync: report it with this job's log lines, which hold the stack",
};

/** `[CODE] message — what to do: hint`, the failure reason a person sees. */
export function failureReason(e: AppError): string {
  const hint = HINTS[e.code];
  return hint === undefined ? e.toString() : `${e.toString()} — what to do: ${hint}`;
}
