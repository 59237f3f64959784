import type { Redis } from 'ioredis';
import { AppError } from '../core/errors.js';
import { START_CURSOR, parseCursor, serializeCursor, type Cursor } from '../core/cursor.js';
import type { CursorStore, StoredCursor } from '../core/extract.js';

/** Compare-and-set: write ARGV[2] only when the key still holds ARGV[1] ('' meaning absent). */
const CAS = `
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0`;

/** A table's cursor in Redis, written with compare-and-set so two readers can never interleave their saves. */
export class RedisCursorStore implements CursorStore {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly where: string,
    /** Where a table without a stored cursor starts. */
    private readonly start: Cursor = START_CURSOR,
  ) {}

  async load(): Promise<StoredCursor> {
    const text = await this.redis.get(this.key);
    return { cursor: parseCursor(text, this.where, this.start), version: text };
  }

  async save(expected: StoredCursor, next: Cursor): Promise<StoredCursor> {
    const text = serializeCursor(next);
    const ok = (await this.redis.eval(CAS, 1, this.key, expected.version ?? '', text)) as number;
    if (ok !== 1) {
      throw new AppError('CURSOR_CONFLICT', `cursor of ${this.where} changed under this run; another reader is active`, { retryable: true });
    }
    return { cursor: next, version: text };
  }
}
