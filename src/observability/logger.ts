import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * The one root logger. Secrets are redacted by key wherever they appear in a logged object; source URLs are never
 * logged (they carry passwords), only source names.
 */
export const REDACT_PATHS = [
  'apiKey',
  '*.apiKey',
  '*.*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'password',
  '*.password',
  'token',
  '*.token',
  'url',
  '*.url',
  'masking',
  '*.masking',
];

export function createLogger(level: string = 'info', options: LoggerOptions = {}, stream?: DestinationStream): Logger {
  const opts: LoggerOptions = {
    level,
    base: { service: 'pushsync' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...options,
  };
  return stream ? pino(opts, stream) : pino(opts);
}

/** A logger on stderr, written synchronously: for the last line of a process that exits right after it. */
export function createStderrLogger(level: string = 'info'): Logger {
  return createLogger(level, {}, pino.destination({ fd: 2, sync: true }));
}

/**
 * A URL fit for logs and messages: its password replaced by `***` (user name, host, port and path kept). Text that
 * is not a URL loses everything between `//` and `@`.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//***@');
  }
}

