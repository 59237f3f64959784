import { Redis } from 'ioredis';

/**
 * Redis connections. BullMQ needs `maxRetriesPerRequest: null` so blocked commands survive reconnects; the same
 * settings suit pushsync's own keys (cursors, locks), which then wait for Redis to come back instead of failing.
 */
export function createRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
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
