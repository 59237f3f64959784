import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisCursorStore } from './cursor-store.js';
import { AppError } from '../core/errors.js';
import { SNAPSHOT_START_CURSOR, START_CURSOR, serializeCursor, type Cursor } from '../core/cursor.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

const at = (id: number): Cursor => ({ phase: 'wm', after: { wm: `2024-01-01 00:00:${String(id).padStart(2, '0')}+00`, pk: [String(id)] } });

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('RedisCursorStore', () => {
  let redis: Redis;
  let prefix: string;
  let key: string;
  let gen: string;
  let store: RedisCursorStore;
  const storeFor = (start?: Cursor): RedisCursorStore => new RedisCursorStore(redis, key, gen, 'app.public.t', start);

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('cur');
    key = `${prefix}:cursor:app:public.t`;
    gen = `${prefix}:generation:app:public.t`;
    store = storeFor();
  });
  afterEach(async () => {
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('starts a table with no stored cursor at the given start, with no version and no high water', async () => {
    expect(await store.load()).toEqual({ cursor: START_CURSOR, version: null, highWater: null });
    const snapshot = storeFor(SNAPSHOT_START_CURSOR);
    expect((await snapshot.load()).cursor).toEqual(SNAPSHOT_START_CURSOR);
  });

  it('saves a cursor that a later load returns, with its version and as high water', async () => {
    const saved = await store.save(await store.load(), at(5));
    expect(saved).toEqual({ cursor: at(5), version: serializeCursor(at(5)), highWater: at(5) });
    expect(await store.load()).toEqual(saved);
    // A second reader sees the same.
    expect(await storeFor().load()).toEqual(saved);
  });

  it('refuses a save from a stale version with a retryable CURSOR_CONFLICT, keeping the stored cursor', async () => {
    const first = await store.load();
    const mine = await store.save(first, at(5));
    const err = await rejection(store.save(first, at(9)));
    expect(err.code).toBe('CURSOR_CONFLICT');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('app.public.t');
    expect(await store.load()).toEqual(mine);
  });

  it('lets only one of two readers that loaded the same cursor save past it', async () => {
    const a = storeFor();
    const b = storeFor();
    await a.save(await a.load(), at(1));
    const [la, lb] = [await a.load(), await b.load()];
    const results = await Promise.allSettled([a.save(la, at(4)), b.save(lb, at(7))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((refused.reason as AppError).code).toBe('CURSOR_CONFLICT');
  });

  it('refuses a save that expects no cursor when one is stored', async () => {
    const empty = await store.load();
    await store.save(empty, at(3));
    expect((await rejection(store.save(empty, at(4)))).code).toBe('CURSOR_CONFLICT');
  });

  it('keeps the high water when the cursor is set back or removed behind its back', async () => {
    await store.save(await store.load(), at(8));
    await redis.set(key, serializeCursor(at(2)));
    expect(await store.load()).toMatchObject({ cursor: at(2), highWater: at(8) });
    await redis.del(key);
    expect(await store.load()).toEqual({ cursor: START_CURSOR, version: null, highWater: at(8) });
  });

  it('forgets the cursor and its high water on startOver, with the next generation and what else it is given, at once', async () => {
    await store.save(await store.load(), at(8));
    expect(store.generation).toBeNull();
    await redis.set(`${prefix}:state`, 'x');
    await RedisCursorStore.startOver(redis, key, gen, (m) => m.del(`${prefix}:state`));
    expect(await store.load()).toEqual({ cursor: START_CURSOR, version: null, highWater: null });
    expect(store.generation).toBe('1');
    expect(await redis.exists(key, `${key}:high`, `${prefix}:state`)).toBe(0);
    await RedisCursorStore.startOver(redis, key, gen);
    await store.load();
    expect(store.generation).toBe('2');
  });

  it('refuses the save of a run that loaded its cursor before a reset, even one that found no cursor', async () => {
    // A run that loaded the table's start after one reset, and saves after a second: without the generation check
    // its compare-and-set ('' expected, '' found) would pass, and the ranges it sent before the second reset would
    // never be sent again.
    await RedisCursorStore.startOver(redis, key, gen);
    const before = await store.load();
    expect(before.version).toBeNull();
    await RedisCursorStore.startOver(redis, key, gen);
    const refused = await rejection(store.save(before, at(3)));
    expect(refused.code).toBe('CURSOR_CONFLICT');
    expect(refused.retryable).toBe(true);
    expect(refused.message).toBe('app.public.t was reset during this run: it saves no position, and the next run starts the table over');
    expect(await redis.get(key)).toBeNull();
    // A run that loaded a cursor before the reset is refused too.
    const fresh = storeFor();
    await fresh.save(await fresh.load(), at(5));
    const loaded = await fresh.load();
    await RedisCursorStore.startOver(redis, key, gen);
    expect((await rejection(fresh.save(loaded, at(9)))).code).toBe('CURSOR_CONFLICT');
    // The next run starts over under the new generation and saves.
    const next = storeFor();
    const start = await next.load();
    expect(next.generation).toBe('3');
    expect((await next.save(start, at(1))).version).toBe(serializeCursor(at(1)));
  });

  it('never lets a reader see the cursor gone under the generation from before the reset', async () => {
    // A reset that deleted the cursor and bumped the generation in two commands let a run between them read the
    // table's start under the old generation: its ranges got the job ids of the completed jobs of the previous
    // re-read, which absorbed them, and the backfill sent nothing.
    // The cursor is in place before the watcher's first read: a read before it would see the table's start under
    // the generation it began with, which is no reset at all.
    await redis.set(key, serializeCursor(at(1)));
    const reader = new Redis(REDIS_URL);
    let stop = false;
    let gone = 0;
    const stale: string[] = [];
    const watching = (async () => {
      let present: string | null = null;
      while (!stop) {
        const [cursor, generation] = (await reader.mget(key, gen)) as [string | null, string | null];
        if (cursor !== null) present = generation;
        else {
          gone++;
          if (generation === present) stale.push(`cursor gone, generation still ${generation}`);
          // Put a cursor back, as the run that reads the table again would.
          await reader.set(key, serializeCursor(at(1)));
        }
      }
    })();
    try {
      for (let i = 0; i < 300; i++) await RedisCursorStore.startOver(redis, key, gen);
    } finally {
      stop = true;
      await watching;
      reader.disconnect();
    }
    expect(gone).toBeGreaterThan(10);
    expect(stale).toEqual([]);
  });

  it("writes what a run records of the table's end only while the generation is the one it loaded under", async () => {
    const state = `${prefix}:state:app:public.t`;
    const record = async (s: RedisCursorStore, value: string): Promise<number> => {
      const [reply] = (await s.queueUnlessReset(redis.pipeline(), state, { caughtUpAt: value, other: 'x' }).exec()) ?? [];
      expect(reply?.[0]).toBeNull();
      return reply?.[1] as number;
    };
    // No generation yet (a table never reset), then one: each written while it stays.
    await store.load();
    expect(await record(store, '1')).toBe(1);
    expect(await redis.hgetall(state)).toEqual({ caughtUpAt: '1', other: 'x' });
    await RedisCursorStore.startOver(redis, key, gen, (m) => m.del(state));
    const after = storeFor();
    await after.load();
    expect(await record(after, '2')).toBe(1);
    // A reset after the load: nothing is written, the state stays as the reset left it.
    await RedisCursorStore.startOver(redis, key, gen, (m) => m.del(state));
    expect(await record(after, '3')).toBe(0);
    expect(await record(store, '4')).toBe(0);
    expect(await redis.exists(state)).toBe(0);
  });

  it('reports a stored cursor it cannot read as CURSOR_INVALID instead of starting over', async () => {
    await redis.set(key, '{"v":1,"phase":"wm"');
    expect((await rejection(store.load())).code).toBe('CURSOR_INVALID');
  });
});
