import { randomUUID } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import { pipelineValues, type RedisClient } from './redis.js';
import type { RunReason } from './jobs.js';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const HSET_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('HSET', KEYS[2], unpack(ARGV, 2)) return 1 end return 0`;
const SREM_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) return 1 end return 0`;

/** Members per SREM_IF_HELD call: Lua's unpack takes a few thousand values at most. */
const SREM_CHUNK = 1000;

/**
 * One reader per table across all workers: a Redis lease renewed while the run lasts. When its holder dies the
 * lease expires after `ttlMs` and the next scheduled run takes over from the saved cursor.
 */
export class TableLock {
  private readonly token = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private lost = false;
  private released = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly ttlMs = 30_000,
  ) {}

  async acquire(): Promise<boolean> {
    return this.held(await this.redis.set(this.key, this.token, 'PX', this.ttlMs, 'NX'));
  }

  /**
   * As `acquire`, in one round trip with the commands `first` queues ahead of the SET and `then` queues after it (a
   * pipeline, run in order): their replies come back whether or not the lease was taken. What `then` reads is read
   * after the lease was taken, so it holds for the holder as much as a read made once `acquire` resolved.
   */
  async acquireAfter(
    first: (p: ChainableCommander) => ChainableCommander,
    then: (p: ChainableCommander) => ChainableCommander = (p) => p,
  ): Promise<{ acquired: boolean; replies: unknown[]; following: unknown[] }> {
    const queued = first(this.redis.pipeline());
    const before = queued.length;
    const values = pipelineValues(await then(queued.set(this.key, this.token, 'PX', this.ttlMs, 'NX')).exec());
    return { acquired: this.held(values[before]), replies: values.slice(0, before), following: values.slice(before + 1) };
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

  /**
   * Removes `members` from the set `key` only while this holder has the lease, each chunk in one step with the
   * check, as `hsetWhileHeld` does. False, and the lease counts as lost, when it was not held; the chunks before may
   * have been removed.
   */
  async sremWhileHeld(key: string, members: readonly string[]): Promise<boolean> {
    for (let i = 0; i < members.length; i += SREM_CHUNK) {
      const done = (await this.redis.eval(SREM_IF_HELD, 2, this.key, key, this.token, ...members.slice(i, i + SREM_CHUNK))) === 1;
      if (!done) {
        this.lost = true;
        return false;
      }
    }
    return true;
  }

  async release(): Promise<void> {
    if (this.released) return;
    await this.queueRelease(this.redis.pipeline()).exec();
  }

  /**
   * Queues the lease's release on `p`, to go in the same round trip as the run's last writes; a later `release` then
   * does nothing. The renewals stop now: whatever `p` holds ahead of the release is sent while the lease is held.
   */
  queueRelease(p: ChainableCommander): ChainableCommander {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.released = true;
    return p.eval(RELEASE, 1, this.key, this.token);
  }
}
