import { Redis } from 'ioredis';
import { AppError } from '../core/errors.js';
import { redactUrl, type Logger } from '../observability/logger.js';

export interface RedisOptions {
  /** Limit of one connection attempt, in ms (config `redis.connectTimeout`). */
  connectTimeoutMs: number;
  /**
   * For commands without workers: after this long without a connection (ms), stop reconnecting and fail what
   * waits, instead of waiting for Redis forever. @defaultValue unset: reconnect forever
   */
  giveUpAfterMs?: number;
}

/** Pause before reconnect attempt `n`: 200 ms more each time, at most 2 s. */
function reconnectDelay(attempt: number): number {
  return Math.min(attempt * 200, 2000);
}

/**
 * Redis connections. BullMQ needs `maxRetriesPerRequest: null` so blocked commands survive reconnects; the same
 * settings suit pushsync's own keys (cursors, locks), which then wait for Redis to come back instead of failing.
 */
export function createRedis(url: string, options: RedisOptions): Redis {
  let downSince: number | undefined;
  const giveUp = options.giveUpAfterMs;
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    lazyConnect: false,
    connectTimeout: options.connectTimeoutMs,
    retryStrategy: (attempt) => {
      if (giveUp === undefined) return reconnectDelay(attempt);
      downSince ??= Date.now();
      return Date.now() - downSince + reconnectDelay(attempt) < giveUp ? reconnectDelay(attempt) : null;
    },
  });
  if (giveUp !== undefined) redis.on('ready', () => (downSince = undefined));
  return redis;
}

/** An error's text for one log line: Node's connection errors may be an AggregateError with an empty message. */
export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return [...new Set(err.errors.map(errorText))].join('; ');
  if (err instanceof Error) return err.message || (err as { code?: string }).code || err.name;
  return String(err);
}

/**
 * Answers whether Redis can be reached within `timeoutMs`, on a connection of its own that queues nothing and
 * stops retrying at the deadline: one-shot commands fail with REDIS_UNAVAILABLE instead of hanging.
 */
export async function probeRedis(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: (attempt) => (Date.now() + reconnectDelay(attempt) < deadline ? reconnectDelay(attempt) : null),
  });
  redis.on('error', (err) => (lastError = err));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(lastError ?? new Error('no answer')), timeoutMs);
      redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
      redis.once('end', () => {
        clearTimeout(timer);
        reject(lastError ?? new Error('connection closed'));
      });
    });
    await redis.ping();
  } catch (err) {
    throw new AppError(
      'REDIS_UNAVAILABLE',
      `cannot reach Redis at ${redactUrl(url)} within ${timeoutMs} ms (redis.connectTimeout): ${errorText(err)}`,
      {
        retryable: true,
        cause: err,
      },
    );
  } finally {
    redis.disconnect();
  }
}

const lastErrors = new WeakMap<Redis, string>();

/**
 * Logs a connection's outages for people: one line per reconnect attempt with the reason, one when it is back.
 * The reason also answers `connectionProblem` (readiness).
 */
export function watchConnection(redis: Redis, url: string, logger: Logger): void {
  const where = redactUrl(url);
  let attempts = 0;
  redis.on('error', (err: unknown) => lastErrors.set(redis, errorText(err)));
  redis.on('reconnecting', (delay: number) => {
    attempts += 1;
    logger.warn({ redis: where, attempt: attempts, retryInMs: delay, err: lastErrors.get(redis) }, 'Redis unreachable; retrying');
  });
  redis.on('ready', () => {
    if (attempts > 0) logger.info({ redis: where, attempts }, 'Redis connection restored');
    attempts = 0;
    lastErrors.delete(redis);
  });
}

/** Why the connection cannot serve commands now, or undefined when it is ready. */
export function connectionProblem(redis: Redis): string | undefined {
  if (redis.status === 'ready') return undefined;
  return `not connected (${redis.status})${lastErrors.has(redis) ? `: ${lastErrors.get(redis)}` : ''}`;
}

/**
 * An `error` listener for a BullMQ Queue or Worker: each distinct message is logged once until `redis` (the
 * connection they share a server with) is ready again, so an outage is a few lines, not one per retry per object.
 */
export function logOncePerState(redis: Redis, logger: Logger, fields: Record<string, unknown>, message: string): (err: unknown) => void {
  const seen = new Set<string>();
  redis.on('ready', () => seen.clear());
  return (err) => {
    const text = errorText(err);
    if (seen.has(text)) return;
    seen.add(text);
    logger.warn({ ...fields, err: text }, message);
  };
}

/** Resolves once the connection is ready (at once when it is); rejects when it gave up. */
export function redisReady(redis: Redis, url: string): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      redis.off('end', onEnd);
      resolve();
    };
    const onEnd = (): void => {
      redis.off('ready', onReady);
      reject(new AppError('REDIS_UNAVAILABLE', `gave up connecting to Redis at ${redactUrl(url)}: ${lastErrors.get(redis) ?? 'connection closed'}`));
    };
    redis.once('ready', onReady);
    redis.once('end', onEnd);
  });
}

/** Closes a connection without waiting for a server that is not there (QUIT would wait in the offline queue). */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}

/** Keys pushsync keeps beside BullMQ's, all under the configured prefix. */
export class Keys {
  constructor(readonly prefix: string) {}

  cursor(source: string, table: string): string {
    return `${this.prefix}:cursor:${source}:${table}`;
  }

  lock(source: string, table: string): string {
    return `${this.prefix}:lock:${source}:${table}`;
  }

  /** Sorted set of undelivered push job ids, scored by when their range was cut. */
  pending(source: string, table: string): string {
    return `${this.prefix}:pending:${source}:${table}`;
  }

  /** Counter bumped by a reset: push job ids of a new generation never collide with the old ones. */
  generation(source: string, table: string): string {
    return `${this.prefix}:generation:${source}:${table}`;
  }

  /** Set of every primary key extraction handed to a push job, for reconciliation of hard deletes. */
  knownKeys(source: string, table: string): string {
    return `${this.prefix}:keys:${source}:${table}`;
  }

  /** Hash of what was decided per key of a filtered table (core/filter-ledger.ts). */
  filterLedger(source: string, table: string): string {
    return `${this.prefix}:filter:${source}:${table}`;
  }

  /** Hash of a replication slot's facts: where it started, what pushsync acknowledged, which snapshots are done. */
  cdcState(source: string, slot: string): string {
    return `${this.prefix}:cdc:${source}:${slot}`;
  }

  /** Hash `{at, reason}` while an operator has paused the table's extraction. */
  paused(source: string, table: string): string {
    return `${this.prefix}:paused:${source}:${table}`;
  }

  /** The table's shape as last seen (JSON of a RelationShape): what schema changes are detected against. */
  schemaShape(source: string, table: string): string {
    return `${this.prefix}:shape:${source}:${table}`;
  }

  /** List of the table's latest schema change announcements (JSON), newest first, for status. */
  schemaChanges(source: string, table: string): string {
    return `${this.prefix}:schema-changes:${source}:${table}`;
  }

  /** Hash of per-table facts: last caught-up run, last error. */
  state(source: string, table: string): string {
    return `${this.prefix}:state:${source}:${table}`;
  }
}

/** Deletes every key under a prefix (queues, cursors, leases): a fresh start for demos, benchmarks and tests. */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}
