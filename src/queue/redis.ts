import { Cluster, Redis, type RedisOptions as ConnectionOptions } from 'ioredis';
import { resolved, type Config } from '../config.js';
import { AppError } from '../core/errors.js';
import { redactUrl, type Logger } from '../observability/logger.js';

/** A connection to pushsync's Redis: one server (`url`, or the master Sentinel names), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;
export type RedisConfig = Config['redis'];

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

/** `host:port` (or `[v6]:port`) as ioredis takes it. */
function parseNode(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(text.slice(i + 1)) };
}

/** Where pushsync's Redis is, for logs and errors ("Redis at …"): never a password. */
export function describeRedis(c: RedisConfig): string {
  if (c.sentinel) return `sentinel master ${c.sentinel.masterName} via ${c.sentinel.nodes.join(', ')}`;
  if (c.cluster) return `cluster ${c.cluster.nodes.join(', ')}`;
  return redactUrl(c.url);
}

/**
 * A server that was a master and is now a replica (a failover it slept through) answers writes with READONLY:
 * reconnect, which asks the sentinels (or the cluster) again, and resend the command.
 */
function reconnectOnReadonly(err: Error): 2 | false {
  return err.message.startsWith('READONLY') ? 2 : false;
}

/**
 * A connection through Sentinel that does not end for good unless it is closed or its retry strategy gives up.
 *
 * ioredis' failover detector (`failoverDetector`) disconnects its connector when a sentinel announces
 * +switch-master. The detector of a connection whose master died stays subscribed while the connection reconnects;
 * when the announcement arrives during a reconnect attempt (while a sentinel is being asked where the master is),
 * ioredis abandons the attempt and ends the connection: status `end`, every command fails at once with "Connection
 * is closed." and nothing reconnects it (ioredis 5.x). A worker would then run on without Redis until restarted: a
 * CDC reader that never reads again, a scheduler that never repairs a schedule. Such an end, straight from
 * `connecting` and not asked for, is answered here by connecting again; its duplicates (BullMQ's own connections)
 * behave the same.
 */
class SentinelRedis extends Redis {
  private closing = false;
  private lastStatus = '';

  constructor(options: ConnectionOptions) {
    super(options);
    for (const status of ['connecting', 'close'] as const) this.on(status, () => (this.lastStatus = status));
    this.on('end', () => {
      if (!this.closing && this.lastStatus === 'connecting') this.connect().catch(() => {});
    });
  }

  override disconnect(reconnect = false): void {
    if (!reconnect) this.closing = true;
    super.disconnect(reconnect);
  }

  /** BullMQ makes its workers' blocking connections with this: they need the same care. */
  override duplicate(override?: Partial<ConnectionOptions>): Redis {
    return new SentinelRedis({ ...this.options, ...override });
  }
}

/**
 * The one place that opens connections to pushsync's Redis, in any of its modes. `connection` applies to every
 * connection to a data node; `retry` decides reconnects (null: give up).
 */
function connect(c: RedisConfig, connection: ConnectionOptions, retry: (attempt: number) => number | null): RedisClient {
  const auth: ConnectionOptions = {
    ...(c.username !== undefined ? { username: resolved(c.username, 'redis.username') } : {}),
    ...(c.password !== undefined ? { password: resolved(c.password, 'redis.password') } : {}),
    ...(c.tls ? { tls: {} } : {}),
  };
  const base: ConnectionOptions = { enableReadyCheck: true, reconnectOnError: reconnectOnReadonly, ...connection };
  if (c.cluster) {
    return new Cluster(c.cluster.nodes.map(parseNode), {
      clusterRetryStrategy: retry,
      enableOfflineQueue: connection.enableOfflineQueue ?? true,
      enableReadyCheck: true,
      // A master that died is replaced after cluster-node-timeout: keep redirected commands waiting that long.
      retryDelayOnFailover: 500,
      retryDelayOnClusterDown: 500,
      maxRedirections: 60,
      redisOptions: { ...base, ...auth },
    });
  }
  if (c.sentinel) {
    const s = c.sentinel;
    return new SentinelRedis({
      ...base,
      ...auth,
      retryStrategy: retry,
      sentinels: s.nodes.map(parseNode),
      name: s.masterName,
      // Subscribes to the sentinels' +switch-master, so a failover moves the connection at once.
      failoverDetector: true,
      ...(s.username !== undefined ? { sentinelUsername: resolved(s.username, 'redis.sentinel.username') } : {}),
      ...(s.password !== undefined ? { sentinelPassword: resolved(s.password, 'redis.sentinel.password') } : {}),
      ...(s.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
    });
  }
  return new Redis(resolved(c.url, 'redis.url'), { ...base, retryStrategy: retry });
}

/**
 * Redis connections. BullMQ needs `maxRetriesPerRequest: null` so blocked commands survive reconnects; the same
 * settings suit pushsync's own keys (cursors, locks), which then wait for Redis to come back instead of failing.
 */
export function createRedis(c: RedisConfig, options: RedisOptions): RedisClient {
  let downSince: number | undefined;
  const giveUp = options.giveUpAfterMs;
  const redis = connect(c, { maxRetriesPerRequest: null, lazyConnect: false, connectTimeout: options.connectTimeoutMs }, (attempt) => {
    if (giveUp === undefined) return reconnectDelay(attempt);
    downSince ??= Date.now();
    return Date.now() - downSince + reconnectDelay(attempt) < giveUp ? reconnectDelay(attempt) : null;
  });
  if (giveUp !== undefined) redis.on('ready', () => (downSince = undefined));
  countReconnects(redis);
  return redis;
}

const epochs = new WeakMap<RedisClient, number>();

function countReconnects(redis: RedisClient): void {
  const bump = (): void => void epochs.set(redis, connectionEpoch(redis) + 1);
  redis.on('close', bump);
  // A cluster node dropped from the slot map: its writes may be gone with it.
  if (redis instanceof Cluster) redis.on('-node', bump);
}

/**
 * How many times the connection was lost so far (a connection made by `createRedis`). Taken before writes and
 * passed to `waitForReplicas`: a write a server acknowledged just before it died may be missing on the replica
 * promoted in its place, and a WAIT sent after the reconnect counts the new master's replicas, not that write.
 */
export function connectionEpoch(redis: RedisClient): number {
  return epochs.get(redis) ?? 0;
}

/** How many replicas must hold pushsync's writes before it confirms a position outside Redis (config `redis.waitReplicas`). */
export interface ReplicaWait {
  replicas: number;
  /** How long to wait for them, ms. */
  timeoutMs: number;
}

export function replicaWait(c: RedisConfig): ReplicaWait {
  return { replicas: c.waitReplicas, timeoutMs: c.waitTimeout };
}

/**
 * Resolves once `wait.replicas` replicas hold every write made so far on this connection (Redis WAIT), or at once
 * when none are asked for; fails with a retryable REDIS_UNAVAILABLE when fewer confirm in time. Callers run it
 * after their writes and before telling a source or producer that can never resend that a position is done: a
 * failover may promote a replica that lacks the last writes a master acknowledged, and those would be lost.
 * `key`: any key of pushsync's (in a cluster, WAIT must reach the master of pushsync's slot). `since`: the
 * `connectionEpoch` taken before the writes; if the connection was lost after it, the writes may have reached a
 * server that is gone, and WAIT (sent again to whichever server answers now) proves nothing about them: that fails
 * too, with the same retryable error.
 */
/** The replies of a pipeline's `exec`, in order; the first command's error, if any, is thrown. */
export function pipelineValues(replies: Array<[Error | null, unknown]> | null): unknown[] {
  return (replies ?? []).map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

export async function waitForReplicas(redis: RedisClient, wait: ReplicaWait, key: string, since?: number): Promise<void> {
  if (wait.replicas === 0) return;
  let acked: number;
  if (redis instanceof Cluster) {
    // WAIT names no key: pipelined behind a command on pushsync's slot, it goes to that slot's master.
    const replies = await redis.pipeline().exists(key).wait(wait.replicas, wait.timeoutMs).exec();
    const [err, n] = replies?.[1] ?? [new Error('no reply to WAIT'), 0];
    if (err) throw err;
    acked = Number(n);
  } else {
    acked = await redis.wait(wait.replicas, wait.timeoutMs);
  }
  if (acked < wait.replicas) {
    throw new AppError(
      'REDIS_UNAVAILABLE',
      `only ${acked} of ${wait.replicas} Redis replicas confirmed pushsync's writes within ${wait.timeoutMs} ms (redis.waitReplicas); not confirming the position yet`,
      { retryable: true, retryAfterMs: 1000 },
    );
  }
  if (since !== undefined && connectionEpoch(redis) !== since) {
    throw new AppError(
      'REDIS_UNAVAILABLE',
      `the connection to Redis was lost after pushsync's writes were made: a failover may have dropped them, and the replicas that confirmed are the new master's; not confirming the position yet`,
      { retryable: true, retryAfterMs: 1000 },
    );
  }
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
export async function probeRedis(c: RedisConfig, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  const redis = connect(c, { enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: timeoutMs, commandTimeout: timeoutMs }, (attempt) =>
    Date.now() + reconnectDelay(attempt) < deadline ? reconnectDelay(attempt) : null,
  );
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
      `cannot reach Redis at ${describeRedis(c)} within ${timeoutMs} ms (redis.connectTimeout): ${errorText(err)}`,
      {
        retryable: true,
        cause: err,
      },
    );
  } finally {
    redis.disconnect();
  }
}

const lastErrors = new WeakMap<RedisClient, string>();

/**
 * Logs a connection's outages for people: one line per reconnect attempt with the reason, one when it is back.
 * The reason also answers `connectionProblem` (readiness).
 */
export function watchConnection(redis: RedisClient, where: string, logger: Logger): void {
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
export function connectionProblem(redis: RedisClient): string | undefined {
  if (redis.status === 'ready') return undefined;
  return `not connected (${redis.status})${lastErrors.has(redis) ? `: ${lastErrors.get(redis)}` : ''}`;
}

/**
 * An `error` listener for a BullMQ Queue or Worker: each distinct message is logged once until `redis` (the
 * connection they share a server with) is ready again, so an outage is a few lines, not one per retry per object.
 */
export function logOncePerState(redis: RedisClient, logger: Logger, fields: Record<string, unknown>, message: string): (err: unknown) => void {
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
export function redisReady(redis: RedisClient, where: string): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      redis.off('end', onEnd);
      resolve();
    };
    const onEnd = (): void => {
      redis.off('ready', onReady);
      reject(new AppError('REDIS_UNAVAILABLE', `gave up connecting to Redis at ${where}: ${lastErrors.get(redis) ?? 'connection closed'}`));
    };
    redis.once('ready', onReady);
    redis.once('end', onEnd);
  });
}

/**
 * Closes a connection without waiting for a server that is not there (QUIT would wait in the offline queue). The
 * disconnect after QUIT also closes what QUIT leaves open: in sentinel mode, the subscriptions to every sentinel.
 */
export async function closeRedis(redis: RedisClient): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => undefined);
  redis.disconnect();
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

  /**
   * Hash of the table's generations: relation identity (oid) → generation, and `#` → the latest. A relation dropped
   * and created again under the table's name starts the next generation (queue/generations.ts).
   */
  generations(source: string, table: string): string {
    return `${this.prefix}:generations:${source}:${table}`;
  }

  /** Set of every primary key extraction handed to a push job, for reconciliation of hard deletes. */
  knownKeys(source: string, table: string): string {
    return `${this.prefix}:keys:${source}:${table}`;
  }

  /**
   * Hash of what was decided per key of a filtered table (core/filter-ledger.ts), for one table generation: a new
   * generation decides afresh (its orderings say nothing about the last one's). Generation 0 keeps the key it had
   * before generations had ledgers of their own.
   */
  filterLedger(source: string, table: string, generation = 0): string {
    return `${this.prefix}:filter:${source}:${table}${generation === 0 ? '' : `:g${generation}`}`;
  }

  /** Hash of a replication slot's facts: where it started, what pushsync acknowledged, which snapshots are done. */
  cdcState(source: string, slot: string): string {
    return `${this.prefix}:cdc:${source}:${slot}`;
  }

  /** The mode (`watermark`, `cdc`) the table's cursor and records belong to (queue/table-mode.ts). */
  tableMode(source: string, table: string): string {
    return `${this.prefix}:mode:${source}:${table}`;
  }

  /** The newest ordering epoch given to a change stream of any source (core/ordering-epoch.ts); kept across `cdc reset`. */
  cdcEpoch(): string {
    return `${this.prefix}:cdc-epoch`;
  }

  /** Hash: per target table, the newest ordering epoch of the change streams that sent records to it. */
  cdcTargetEpochs(): string {
    return `${this.prefix}:cdc-target-epochs`;
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
export async function deletePrefix(redis: RedisClient, prefix: string): Promise<number> {
  if (redis instanceof Cluster) {
    // SCAN sees one node's keys: ask every master. The prefix is a hash tag there, so one master holds them all.
    const counts = await Promise.all(redis.nodes('master').map((node) => deletePrefix(node, prefix)));
    return counts.reduce((a, n) => a + n, 0);
  }
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}
