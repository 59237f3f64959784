import { pino, stdTimeFunctions, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { createRequire } from 'node:module';
import type PinoPretty from 'pino-pretty';

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
    timestamp: stdTimeFunctions.isoTime,
    ...options,
  };
  return stream ? pino(opts, stream) : pino(opts);
}

export type LogFormat = 'json' | 'pretty';

/**
 * The process's logger as `log` configures it: `pretty` (one line per entry for people, coloured on a terminal: ISO time in UTC, level,
 * message, then the fields) or `json` (one object per line for log shippers). Without a format: pretty when stdout
 * is a terminal, json otherwise. Both write synchronously, so the last line before an exit is never lost.
 */
export function loggerFor(
  log: { level: string; format?: LogFormat | undefined },
  out: { isTty?: boolean; destination?: DestinationStream } = {},
): Logger {
  const isTty = out.isTty ?? process.stdout.isTTY === true;
  const format = log.format ?? (isTty ? 'pretty' : 'json');
  if (format === 'json') return createLogger(log.level, {}, out.destination);
  // Loaded only for people's logs: a deployment logging JSON never loads its 30 modules.
  const { build: prettyStream } = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return createLogger(
    log.level,
    {},
    prettyStream({
      colorize: isTty,
      sync: true,
      destination: out.destination ?? 1,
      translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'",
      // Set on every line by pushsync or pino: noise for a person reading a terminal.
      ignore: 'pid,hostname,service',
    }),
  );
}

/** A logger on stderr, written synchronously: for the last line of a process that exits right after it. */
export function createStderrLogger(level: string = 'info'): Logger {
  return createLogger(level, {}, pino.destination({ fd: 2, sync: true }));
}

/** Query parameters that carry a credential (ioredis and node-postgres read `password` from the query too). */
const SECRET_PARAM = /^(?:[\w-]*password|passwd|pass|token|secret|[\w-]*api[_-]?key|auth)$/i;

/**
 * A URL fit for logs and messages: its password replaced by `***`, in the user info and in any credential-named
 * query parameter (`?password=…`), user name, host, port and path kept. Text that is not a URL loses everything
 * between `//` and `@`, and its query.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) if (SECRET_PARAM.test(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//***@').replace(/\?.*$/s, '');
  }
}
