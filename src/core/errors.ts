/**
 * Every failure pushsync reports carries a stable code and a retry verdict, so workers decide what to do
 * by code, never by message text. Adapters translate driver errors (SQLSTATE, errno, HTTP status) into these
 * at their edge.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'SOURCE_UNAVAILABLE'
  | 'SOURCE_QUERY_FAILED'
  | 'SOURCE_SCHEMA'
  | 'SOURCE_SLOT_TAKEN'
  | 'SOURCE_EMPTY'
  | 'CURSOR_CONFLICT'
  | 'CURSOR_INVALID'
  | 'DEST_UNAVAILABLE'
  | 'DEST_TIMEOUT'
  | 'DEST_RATE_LIMITED'
  | 'DEST_AUTH'
  | 'DEST_REJECTED'
  | 'DEST_ROWS_REJECTED'
  | 'DEST_TOO_LARGE'
  | 'DEST_BAD_RESPONSE'
  | 'ROW_TOO_LARGE'
  | 'TRANSFORM_FAILED'
  | 'JOB_INVALID'
  | 'EVENT_INVALID'
  | 'TABLE_NOT_CONFIGURED'
  | 'INGEST_FULL'
  | 'REDIS_UNAVAILABLE'
  | 'RUN_INCOMPLETE'
  | 'INTERNAL';

export interface AppErrorOptions {
  retryable?: boolean;
  retryAfterMs?: number;
  cause?: unknown;
  /** Structured facts kept with the failed job (server errors, offending keys): never row values. */
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  /** `[CODE] message`: the form shown in logs, job failure reasons and Bull Board. */
  override toString(): string {
    return `[${this.code}] ${this.message}`;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** Wraps anything thrown into an AppError, keeping AppErrors as they are. */
export function toAppError(err: unknown, fallback: ErrorCode = 'INTERNAL'): AppError {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError(fallback, message, { cause: err, retryable: fallback !== 'INTERNAL' });
}
