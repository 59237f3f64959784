import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeStreamEntry } from '../core/debezium-stream.js';
import { AppError } from '../core/errors.js';
import { redactUrl } from '../observability/logger.js';
import type { EventStream, StreamEntry } from '../core/ports.js';

export interface RedisStreamsOptions {
  url: string;
  streams: readonly string[];
  group: string;
  /** Entries per read. */
  batch: number;
  /** A consumer's pending entries are claimed by another once idle this long (XAUTOCLAIM). */
  claimIdleMs: number;
  nullValue: string;
}

/**
 * Reaches the Redis of a source's streams (as `pushsync check` and `/readyz` do) and returns the streams it does not
 * hold yet. Throws SOURCE_UNAVAILABLE naming the Redis by its URL without the password.
 */
export async function missingStreams(url: string, streams: readonly string[], timeoutMs: number): Promise<string[]> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  let lastError: unknown;
  redis.on('error', (err) => (lastError = err));
  try {
    await redis.connect();
    const missing: string[] = [];
    for (const stream of streams) if ((await redis.exists(stream)) === 0) missing.push(stream);
    return missing;
  } catch (err) {
    const e = (lastError ?? err) as Error & { code?: string; errors?: Error[] };
    // Node's connection errors can be an AggregateError with an empty message: its parts say why.
    const reason = e.message || e.errors?.map((x) => x.message).join('; ') || e.code || String(e);
    throw new AppError('SOURCE_UNAVAILABLE', `cannot reach the Redis of the streams at ${redactUrl(url)}: ${reason}`, {
      cause: err,
      retryable: true,
    });
  } finally {
    redis.disconnect();
  }
}

/** Pending entries per XPENDING page when looking for an earlier entry another consumer holds. */
const PENDING_PAGE = 1000;

/** Consumers with nothing pending and idle this long are removed from the group, so dead processes do not pile up. */
const FORGET_CONSUMER_MS = 60 * 60 * 1000;

type Entries = Array<[string, string[]]>;

/**
 * Reads Debezium Server's Redis sink streams through a consumer group (XREADGROUP), so several pushsync processes
 * share them; every process is its own consumer. Entries are acknowledged (XACK) only when told, and the pending
 * entries of a consumer that stopped acknowledging are claimed (XAUTOCLAIM) after `claimIdleMs`. pushsync never
 * deletes or trims the streams.
 */
export class DebeziumRedisStreams implements EventStream {
  readonly description: string;
  private readonly redis: Redis;
  private readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private lastClaim = 0;
  private readonly claimCursors = new Map<string, string>();

  constructor(private readonly o: RedisStreamsOptions) {
    this.description = `Redis streams ${o.streams.join(', ')} (group ${o.group})`;
    this.redis = new Redis(o.url, { maxRetriesPerRequest: null, lazyConnect: true });
    this.redis.on('error', () => {
      // Reported by the commands that fail; ioredis reconnects by itself.
    });
  }

  async prepare(): Promise<void> {
    for (const stream of this.o.streams) {
      try {
        // From the start of the stream: what Debezium wrote before pushsync first ran is read too.
        await this.untilClosed(this.redis.xgroup('CREATE', stream, this.o.group, '0', 'MKSTREAM'));
      } catch (err) {
        if (!String((err as Error).message).includes('BUSYGROUP')) throw this.unavailable(err);
      }
    }
    await this.forgetIdleConsumers().catch(() => {});
  }

  async read(blockMs: number, claimOnly = false): Promise<StreamEntry[]> {
    try {
      if (Date.now() - this.lastClaim >= Math.min(this.o.claimIdleMs, 5000)) {
        this.lastClaim = Date.now();
        const claimed = await this.claim();
        if (claimed.length > 0) return claimed;
      }
      if (claimOnly) return [];
      const reply = (await this.untilClosed(
        this.redis.xreadgroup(
          'GROUP',
          this.o.group,
          this.consumer,
          'COUNT',
          this.o.batch,
          'BLOCK',
          blockMs,
          'STREAMS',
          ...this.o.streams,
          ...this.o.streams.map(() => '>'),
        ),
      )) as Array<[string, Entries]> | null;
      return (reply ?? []).flatMap(([stream, entries]) => this.entries(stream, entries));
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** Pending entries of consumers idle longer than claimIdleMs, taken over by this one. */
  private async claim(): Promise<StreamEntry[]> {
    const out: StreamEntry[] = [];
    for (const stream of this.o.streams) {
      const cursor = this.claimCursors.get(stream) ?? '0-0';
      const [next, entries] = (await this.untilClosed(
        this.redis.xautoclaim(stream, this.o.group, this.consumer, this.o.claimIdleMs, cursor, 'COUNT', this.o.batch),
      )) as [string, Entries, string[]?];
      this.claimCursors.set(stream, next);
      // Entries deleted from the stream while pending come back as null; nothing is left to read of them.
      out.push(
        ...this.entries(
          stream,
          entries.filter((e) => Array.isArray(e) && Array.isArray(e[1])),
        ),
      );
    }
    return out;
  }

  private entries(stream: string, entries: Entries): StreamEntry[] {
    return entries.map(([id, fields]) => ({ stream, id, ...decodeStreamEntry(fields, this.o.nullValue) }));
  }

  async acknowledge(entries: readonly StreamEntry[]): Promise<void> {
    const byStream = new Map<string, string[]>();
    for (const e of entries) byStream.set(e.stream, [...(byStream.get(e.stream) ?? []), e.id]);
    try {
      for (const [stream, ids] of byStream) await this.untilClosed(this.redis.xack(stream, this.o.group, ...ids));
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  async heldElsewhere(stream: string, id: string): Promise<string | null> {
    try {
      // Pending entries up to `id` in order, a page at a time: this consumer's own (the ones it holds) come first
      // and between. Inclusive bounds (an exclusive one needs Redis 6.2): a page's last entry starts the next.
      let from = '-';
      for (;;) {
        const rows = (await this.untilClosed(this.redis.xpending(stream, this.o.group, from, id, PENDING_PAGE))) as Array<
          [string, string, number, number]
        >;
        const other = rows.find(([entry, consumer]) => entry !== id && consumer !== this.consumer);
        if (other) return other[0];
        if (rows.length < PENDING_PAGE) return null;
        const last = rows[rows.length - 1]![0];
        if (last === id) return null;
        const [ms, seq = '0'] = last.split('-');
        from = `${ms}-${BigInt(seq) + 1n}`;
      }
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  private async forgetIdleConsumers(): Promise<void> {
    for (const stream of this.o.streams) {
      const consumers = (await this.redis.xinfo('CONSUMERS', stream, this.o.group)) as Array<Array<string | number>>;
      for (const c of consumers) {
        const info = new Map<string, string | number>();
        for (let i = 0; i + 1 < c.length; i += 2) info.set(String(c[i]), c[i + 1]!);
        if (Number(info.get('pending')) === 0 && Number(info.get('idle')) > FORGET_CONSUMER_MS) {
          await this.redis.xgroup('DELCONSUMER', stream, this.o.group, String(info.get('name')));
        }
      }
    }
  }

  private unavailable(err: unknown): AppError {
    return new AppError('SOURCE_UNAVAILABLE', `${this.description}: ${(err as Error).message}`, { cause: err, retryable: true });
  }

  /**
   * A command of this connection, ended by close(): while Redis is unreachable commands wait for it (they are
   * retried as long as it takes), and a stop must not wait with them.
   */
  private untilClosed<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.closed.promise]);
  }

  private readonly closed = (() => {
    let reject!: (err: Error) => void;
    const promise = new Promise<never>((_, r) => (reject = r));
    promise.catch(() => {});
    return { promise, reject };
  })();

  async close(): Promise<void> {
    this.closed.reject(new AppError('SOURCE_UNAVAILABLE', `${this.description}: closed`, { retryable: true }));
    this.redis.disconnect();
  }
}
