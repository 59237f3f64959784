import type { RedisClient } from './redis.js';
import { AppError } from '../core/errors.js';
import { START_CURSOR, parseCursor, serializeCursor, type Cursor } from '../core/cursor.js';
import type { CursorStore, StoredCursor } from '../core/extract.js';

/**
 * Compare-and-set: write ARGV[2] only when the key still holds ARGV[1] ('' meaning absent). The same value goes to
 * the high-water key, the furthest cursor ever saved, against which a cursor that went backwards is detected.
 */
const CAS = `
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0`;

/** A table's cursor in Redis, written with compare-and-set so two readers can never interleave their saves. */
export class RedisCursorStore implements CursorStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly where: string,
    /** Where a table without a stored cursor starts. */
    private readonly start: Cursor = START_CURSOR,
  ) {}

  /** The stored texts (cursor, high water) read with the run's other state, for the first `load` only. */
  private preloaded: [string | null, string | null] | undefined;

  private get highWaterKey(): string {
    return RedisCursorStore.highWaterKey(this.key);
  }

  static highWaterKey(key: string): string {
    return `${key}:high`;
  }

  /** Forgets a table's position entirely (cursor and high water): the next run starts the table over. */
  static async clear(redis: RedisClient, key: string): Promise<void> {
    await redis.del(key, RedisCursorStore.highWaterKey(key));
  }

  /**
   * Hands the next `load` the cursor and high water already read (MGET of `key` and `highWaterKey(key)`), saving a
   * round trip. Safe as compare-and-set guards every save: a cursor that changed since is a CURSOR_CONFLICT.
   */
  preload(text: string | null, high: string | null): void {
    this.preloaded = [text, high];
  }

  async load(): Promise<StoredCursor> {
    const [text, high] = this.preloaded ?? (await this.redis.mget(this.key, this.highWaterKey));
    this.preloaded = undefined;
    return {
      cursor: parseCursor(text ?? null, this.where, this.start),
      version: text ?? null,
      highWater: high ? parseCursor(high, `${this.where} (high water)`, this.start) : null,
    };
  }

  async save(expected: StoredCursor, next: Cursor): Promise<StoredCursor> {
    const text = serializeCursor(next);
    const ok = (await this.redis.eval(CAS, 2, this.key, this.highWaterKey, expected.version ?? '', text)) as number;
    if (ok !== 1) {
      throw new AppError('CURSOR_CONFLICT', `cursor of ${this.where} changed under this run; another reader is active`, { retryable: true });
    }
    return { cursor: next, version: text, highWater: next };
  }
}
