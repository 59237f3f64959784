import { randomUUID } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './redis.js';
import type { RunReason } from './jobs.js';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const HSET_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('HSET', KEYS[2], unpack(ARGV, 2)) return 1 end return 0`;

/**
 * One reader per table across all workers: a Redis lease renewed while the run lasts. When its holder dies the
 * lease expires after `ttlMs` and the next scheduled run takes over from the saved cursor.
 */
export class TableLock {
  private readonly token = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private lost = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly ttlMs = 30_000,
  ) {}

  async acquire(): Promise<boolean> {
    return this.held(await this.redis.set(this.key, this.token, 'PX', this.ttlMs, 'NX'));
  }

  /**
   * As `acquire`, in one round trip with the commands `first` queues ahead of the SET (a pipeline); their replies
   * come back in order, whether or not the lease was taken.
   */
  async acquireAfter(first: (p: ChainableCommander) => ChainableCommander): Promise<{ acquired: boolean; replies: unknown[] }> {
    const results = (await first(this.redis.pipeline()).set(this.key, this.token, 'PX', this.ttlMs, 'NX').exec()) ?? [];
    const values = results.map(([err, value]) => {
      if (err) throw err;
      return value;
    });
    return { acquired: this.held(values.pop()), replies: values };
  }

  private held(reply: unknown): boolean {
    if (reply !== 'OK') return false;
    this.timer = setInterval(
      () => {
        this.redis
          .eval(RENEW, 1, this.key, this.token, String(this.ttlMs))
          .then((r) => {
            if (r !== 1) this.lost = true;
          })
          .catch(() => {
            // A failed renewal is retried on the next tick; the lease only lapses if Redis stays away for ttlMs.
          });
      },
      Math.floor(this.ttlMs / 3),
    );
    this.timer.unref();
    return true;
  }

  /** Waits for the lease while `keepTrying` says so; false if it gave up. */
  async acquireWaiting(keepTrying: () => boolean, pollMs = 200): Promise<boolean> {
    for (;;) {
      if (await this.acquire()) return true;
      if (!keepTrying()) return false;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /**
   * The one acquisition rule of every reader: a scheduled run that finds the lease taken ends at once (the holder is
   * doing its work, runs do not pile up); a one-shot pass waits its turn while `keepTrying` says so.
   */
  async acquireFor(reason: RunReason, keepTrying: () => boolean): Promise<boolean> {
    return reason === 'once' ? this.acquireWaiting(keepTrying) : this.acquire();
  }

  /** True once a renewal (or `hsetWhileHeld`) found the lease held by someone else. */
  get isLost(): boolean {
    return this.lost;
  }

  /**
   * Sets `fields` of the hash `key` only while this holder has the lease, in one step with the check: a holder that
   * lost its lease before its renewal said so (a Redis failover let it lapse, another reader took it) cannot write
   * over what its successor recorded. False, and the lease counts as lost, when it was not held. In a cluster, `key`
   * must share the lease's slot (pushsync's prefix is a hash tag there).
   */
  async hsetWhileHeld(key: string, fields: Record<string, string>): Promise<boolean> {
    const done = (await this.redis.eval(HSET_IF_HELD, 2, this.key, key, this.token, ...Object.entries(fields).flat())) === 1;
    if (!done) this.lost = true;
    return done;
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.eval(RELEASE, 1, this.key, this.token);
  }
}
