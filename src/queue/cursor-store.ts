import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './redis.js';
import { AppError } from '../core/errors.js';
import { START_CURSOR, parseCursor, serializeCursor, type Cursor } from '../core/cursor.js';
import type { CursorStore, StoredCursor } from '../core/extract.js';

/**
 * Lua that ends the script with `answer` unless the table's generation counter (`key`) still holds `expected` ('' for
 * absent): a reset bumps the counter, and what a run read before it must not be written after it.
 */
const unlessGeneration = (key: string, expected: string, answer: number): string => `
local gen = redis.call('GET', ${key})
if not ((gen == false and ${expected} == '') or gen == ${expected}) then
  return ${answer}
end`;

/**
 * Compare-and-set: write ARGV[2] only when the key still holds ARGV[1] ('' meaning absent) and the table's
 * generation counter (KEYS[3]) still holds ARGV[3] (again '' for absent). The same value goes to the high-water key,
 * the furthest cursor ever saved, against which a cursor that went backwards is detected. The generation check makes
 * a reset (which bumps it) final for every run already under way: without it, a run that loaded no cursor before a
 * second reset would save past ranges it had sent before that reset, and they would not be sent again.
 */
const CAS = `${unlessGeneration('KEYS[3]', 'ARGV[3]', 2)}
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0`;

/**
 * HSET of ARGV[2..] (field, value pairs) into KEYS[1] only while the table's generation counter (KEYS[2]) still holds
 * ARGV[1] ('' meaning absent); returns whether it wrote.
 */
const HSET_UNLESS_RESET = `${unlessGeneration('KEYS[2]', 'ARGV[1]', 0)}
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1`;

/**
 * A table's cursor in Redis, written with compare-and-set so two readers can never interleave their saves, and read
 * together with the table's generation counter (`generationKey`), which numbers its re-reads: push job ids carry the
 * generation, so a range read again after a reset gets a new job instead of being absorbed by the completed one.
 */
export class RedisCursorStore implements CursorStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly generationKey: string,
    private readonly where: string,
    /** Where a table without a stored cursor starts. */
    private readonly start: Cursor = START_CURSOR,
  ) {}

  /** The stored texts (cursor, high water, generation) read with the run's other state, for the first `load` only. */
  private preloaded: [string | null, string | null, string | null] | undefined;

  private loadedGeneration: string | null | undefined;

  /**
   * The generation read with the cursor by the last `load`: the one the ranges cut from that cursor belong to. Read
   * in the same command as the cursor, so a cursor that a reset removed never comes with the generation from before.
   */
  get generation(): string | null {
    if (this.loadedGeneration === undefined) throw new AppError('INTERNAL', `cursor of ${this.where}: generation asked before load`);
    return this.loadedGeneration;
  }

  private get highWaterKey(): string {
    return RedisCursorStore.highWaterKey(this.key);
  }

  static highWaterKey(key: string): string {
    return `${key}:high`;
  }

  /**
   * Forgets a table's position entirely (cursor and high water) and starts its next generation, in one transaction
   * with `also` (more of the table's state to forget): the next run starts the table over under new job ids, and a
   * run under way can save no cursor any more (see CAS).
   */
  static async startOver(
    redis: RedisClient,
    key: string,
    generationKey: string,
    also: (m: ChainableCommander) => ChainableCommander = (m) => m,
  ): Promise<void> {
    const replies = await also(redis.multi().incr(generationKey).del(key, RedisCursorStore.highWaterKey(key))).exec();
    const failed = (replies ?? []).find(([err]) => err);
    if (!replies || failed)
      throw new AppError('INTERNAL', `could not reset the cursor of ${key}: ${String(failed?.[0] ?? 'transaction aborted')}`, { retryable: true });
  }

  /**
   * Hands the next `load` the cursor, high water and generation already read (one MGET of `key`,
   * `highWaterKey(key)` and the generation key), saving a round trip. Safe as compare-and-set guards every save: a
   * cursor or generation that changed since is a CURSOR_CONFLICT.
   */
  preload(text: string | null, high: string | null, generation: string | null): void {
    this.preloaded = [text, high, generation];
  }

  async load(): Promise<StoredCursor> {
    // One MGET: a reset between reading the generation and the cursor would pair the old generation's job ids with
    // a cursor at the table's start, and every range read again would be absorbed by its completed job.
    const [text, high, generation] = this.preloaded ?? (await this.redis.mget(this.key, this.highWaterKey, this.generationKey));
    this.preloaded = undefined;
    this.loadedGeneration = generation ?? null;
    return {
      cursor: parseCursor(text ?? null, this.where, this.start),
      version: text ?? null,
      highWater: high ? parseCursor(high, `${this.where} (high water)`, this.start) : null,
    };
  }

  /**
   * Queues on `p` an HSET of `fields` into `hashKey` that takes effect only while the table's generation is still the
   * one `load` read; its reply is 1 when it wrote, 0 when not. What a run records of reaching the table's end (caught
   * up, snapshot done) must not outlive a reset made during the run: the reset cleared it so that the re-read it
   * starts is seen as one (backfilling, with progress), and for a CDC table so that the snapshot is taken again.
   */
  queueUnlessReset(p: ChainableCommander, hashKey: string, fields: Record<string, string>): ChainableCommander {
    return p.eval(HSET_UNLESS_RESET, 2, hashKey, this.generationKey, this.generation ?? '', ...Object.entries(fields).flat());
  }

  async save(expected: StoredCursor, next: Cursor): Promise<StoredCursor> {
    const text = serializeCursor(next);
    const generation = this.generation;
    const ok = (await this.redis.eval(
      CAS,
      3,
      this.key,
      this.highWaterKey,
      this.generationKey,
      expected.version ?? '',
      text,
      generation ?? '',
    )) as number;
    if (ok === 2) {
      throw new AppError('CURSOR_CONFLICT', `${this.where} was reset during this run: it saves no position, and the next run starts the table over`, {
        retryable: true,
      });
    }
    if (ok !== 1) {
      throw new AppError('CURSOR_CONFLICT', `cursor of ${this.where} changed under this run; another reader is active`, { retryable: true });
    }
    return { cursor: next, version: text, highWater: next };
  }
}
