import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { TableLock } from './table-lock.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';
import { eventually, sleep } from '../../test/helpers/wait.js';

describe('TableLock', () => {
  let redis: Redis;
  let prefix: string;
  let key: string;
  const locks: TableLock[] = [];
  const lock = (ttlMs?: number): TableLock => {
    const l = new TableLock(redis, key, ttlMs);
    locks.push(l);
    return l;
  };

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('lock');
    key = `${prefix}:lock:app:public.t`;
  });
  afterEach(async () => {
    // Stops renewal timers; a lease held by another token is left alone.
    await Promise.all(locks.splice(0).map((l) => l.release()));
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('is held by one holder at a time', async () => {
    const a = lock();
    const b = lock();
    expect(await a.acquire()).toBe(true);
    expect(await b.acquire()).toBe(false);
    expect(await redis.pttl(key)).toBeGreaterThan(0);
  });

  it('is released only by its holder', async () => {
    const a = lock();
    const b = lock();
    expect(await a.acquire()).toBe(true);
    await b.release();
    expect(await redis.exists(key)).toBe(1);
    expect(await b.acquire()).toBe(false);
    await a.release();
    expect(await redis.exists(key)).toBe(0);
    expect(await b.acquire()).toBe(true);
  });

  it('is renewed while held, so it outlives its TTL', async () => {
    const a = lock(1500);
    const acquiredAt = Date.now();
    expect(await a.acquire()).toBe(true);
    // A renewal resets the remaining time upwards.
    let last = await redis.pttl(key);
    await eventually(async () => {
      const now = await redis.pttl(key);
      const renewed = now > last;
      last = now;
      return renewed;
    });
    await eventually(() => Date.now() > acquiredAt + 2500, 100);
    expect(await redis.exists(key)).toBe(1);
    expect(await lock().acquire()).toBe(false);
    expect(a.isLost).toBe(false);
  });

  it('knows it is lost once another holder took the lease, and then leaves that lease alone', async () => {
    const a = lock(300);
    expect(await a.acquire()).toBe(true);
    // The lease lapsed (the holder stalled) and another reader took it.
    await redis.set(key, 'another-token', 'PX', 30_000);
    await eventually(() => a.isLost);
    await a.release();
    expect(await redis.get(key)).toBe('another-token');
  });

  it('writes a hash only while it holds the lease, and counts itself lost when it does not', async () => {
    const a = lock();
    const state = `${prefix}:cdc:app:slot`;
    expect(await a.acquire()).toBe(true);
    expect(await a.hsetWhileHeld(state, { ackedLsn: '0/10', ackExact: '1' })).toBe(true);
    await redis.set(key, 'another-token', 'PX', 30_000);
    expect(await a.hsetWhileHeld(state, { ackedLsn: '0/5' })).toBe(false);
    expect(a.isLost).toBe(true);
    expect(await redis.hgetall(state)).toEqual({ ackedLsn: '0/10', ackExact: '1' });
  });

  it('removes set members only while the lease is held, in chunks past what one Lua call unpacks', async () => {
    const a = lock();
    const known = `${prefix}:keys:app:public.t`;
    const keys = Array.from({ length: 2500 }, (_, i) => `["${i}"]`);
    await redis.sadd(known, ...keys, '["kept"]');
    expect(await a.acquire()).toBe(true);
    expect(await a.sremWhileHeld(known, keys.slice(0, 2400))).toBe(true);
    expect((await redis.smembers(known)).sort()).toEqual([...keys.slice(2400), '["kept"]'].sort());
    // Another reader took the lapsed lease and remembered a key again: it stays.
    await redis.set(key, 'another-token', 'PX', 30_000);
    expect(await a.sremWhileHeld(known, keys.slice(2400))).toBe(false);
    expect(a.isLost).toBe(true);
    expect(await redis.scard(known)).toBe(101);
  });

  it('makes a one-shot run wait for the lease and take it once released', async () => {
    const a = lock();
    const b = lock();
    expect(await a.acquire()).toBe(true);
    let outcome: boolean | undefined;
    const waiting = b.acquireFor('once', () => true).then((ok) => (outcome = ok));
    await sleep(600);
    expect(outcome).toBeUndefined();
    await a.release();
    await waiting;
    expect(outcome).toBe(true);
    expect(await lock().acquire()).toBe(false);
  });

  it('makes a one-shot run give up when told to stop trying', async () => {
    const a = lock();
    expect(await a.acquire()).toBe(true);
    let tries = 0;
    expect(await lock().acquireFor('once', () => ++tries < 3)).toBe(false);
    expect(tries).toBe(3);
  });

  it('ends a scheduled run at once when the lease is taken', async () => {
    const a = lock();
    expect(await a.acquire()).toBe(true);
    let asked = 0;
    expect(await lock().acquireFor('schedule', () => ++asked > 0)).toBe(false);
    expect(asked).toBe(0);
    await a.release();
    expect(await lock().acquireFor('schedule', () => true)).toBe(true);
  });

  it('tries the lease in one round trip with other commands and returns their replies either way', async () => {
    await redis.set(`${prefix}:other`, 'x');
    const a = lock();
    const first = await a.acquireAfter((p) => p.get(`${prefix}:other`).exists(`${prefix}:none`));
    expect(first).toEqual({ acquired: true, replies: ['x', 0], following: [] });
    expect(await redis.get(key)).not.toBeNull();
    expect(await lock().acquireAfter((p) => p.get(`${prefix}:other`))).toEqual({ acquired: false, replies: ['x'], following: [] });
    await a.release();
    expect(await redis.get(key)).toBeNull();
  });

  it('reads what follows the SET after the lease is taken, and releases in the round trip of the last writes', async () => {
    const a = lock();
    // The command after the SET sees the lease it just took: it runs after it, in the same pipeline.
    const taken = await a.acquireAfter(
      (p) => p.get(key),
      (p) => p.get(key).set(`${prefix}:after`, 'y'),
    );
    expect(taken.acquired).toBe(true);
    expect(taken.replies).toEqual([null]);
    expect(taken.following[0]).toEqual(await redis.get(key));
    expect(taken.following[1]).toBe('OK');
    const b = lock();
    const refused = await b.acquireAfter(
      (p) => p,
      (p) => p.get(`${prefix}:after`),
    );
    expect(refused).toEqual({ acquired: false, replies: [], following: ['y'] });
    const replies = await a.queueRelease(redis.pipeline().set(`${prefix}:last`, 'z')).exec();
    expect(replies?.map(([, v]) => v)).toEqual(['OK', 1]);
    expect(await redis.get(key)).toBeNull();
    // Released once: a later release does nothing, and cannot end a lease another reader took since.
    expect(await b.acquire()).toBe(true);
    await a.release();
    expect(await redis.get(key)).not.toBeNull();
    await b.release();
  });
});
