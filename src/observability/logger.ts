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
