import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { claimTargets, keepEpoch, nextEpoch, recordedEpoch, refuseLaterEpochs, startStream } from './cdc-epoch.js';
import { Keys } from './redis.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

describe('ordering epochs in Redis', () => {
  let redis: Redis;
  let prefix: string;
  let keys: Keys;

  beforeEach(() => {
    redis = new Redis(REDIS_URL);
    prefix = uniqueName('epoch');
    keys = new Keys(prefix);
  });
  afterEach(async () => {
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('gives the first stream under a prefix epoch 0 and every later one, of any source, the next', async () => {
    expect(await nextEpoch(redis, keys)).toBe(0);
    expect(await startStream(redis, keys, keys.cdcState('a', 's'), '0/10', [])).toBe(0);
    expect(await redis.hgetall(keys.cdcState('a', 's'))).toEqual({ slotStart: '0/10', ackedLsn: '0/10', ackExact: '1', epoch: '0' });
    expect(await nextEpoch(redis, keys)).toBe(1);
    expect(await startStream(redis, keys, keys.cdcState('b', 's'), '0/20', [])).toBe(1);
    expect(await startStream(redis, keys, keys.cdcState('a', 's'), '0/30', [])).toBe(2);
    expect(await redis.hget(keys.cdcState('a', 's'), 'epoch')).toBe('2');
  });

  it('keeps the counter at least at an epoch in use, so a stream recorded before epochs existed is followed by a later one', async () => {
    await keepEpoch(redis, keys, 0);
    expect(await startStream(redis, keys, keys.cdcState('a', 's'), '0/10', [])).toBe(1);
    await keepEpoch(redis, keys, 7);
    await keepEpoch(redis, keys, 3);
    expect(await redis.get(keys.cdcEpoch())).toBe('7');
  });

  it('reads a recorded epoch, absent as 0, and refuses anything else', () => {
    expect(recordedEpoch(null, 'k')).toBe(0);
    expect(recordedEpoch('12', 'k')).toBe(12);
    for (const bad of ['', '-1', '1.5', '1e3', '1234567', 'x'])
      expect(() => recordedEpoch(bad, 'k')).toThrow(/k: the stream's ordering epoch .* is not a count/);
  });

  it('starts a stream after every epoch its targets hold, when the counter was lost', async () => {
    await claimTargets(redis, keys, 'a', 4, ['bronze.x']);
    expect(await redis.get(keys.cdcEpoch())).toBeNull();
    expect(await startStream(redis, keys, keys.cdcState('a', 's'), '0/10', ['bronze.y', 'bronze.x'])).toBe(5);
    expect(await startStream(redis, keys, keys.cdcState('b', 's'), '0/10', ['bronze.z'])).toBe(6);
  });

  it('records the newest epoch per target, and refuses a stream older than what a target holds, recording nothing', async () => {
    await claimTargets(redis, keys, 'a', 2, ['bronze.x', 'bronze.y']);
    await claimTargets(redis, keys, 'b', 3, ['bronze.y']);
    expect(await redis.hgetall(keys.cdcTargetEpochs())).toEqual({ 'bronze.x': '2', 'bronze.y': '3' });
    await expect(claimTargets(redis, keys, 'c', 2, ['bronze.z', 'bronze.y'])).rejects.toThrow(
      /^bronze\.y holds records of a later change stream \(ordering epoch 3\) than source c's \(epoch 2\).*pushsync cdc reset --source c/,
    );
    expect(await redis.hget(keys.cdcTargetEpochs(), 'bronze.z')).toBeNull();
    // The same epoch again, or an empty list: nothing to refuse.
    await claimTargets(redis, keys, 'a', 2, ['bronze.x']);
    await claimTargets(redis, keys, 'a', 2, []);
  });

  it('refuses orderings without an epoch to a target that holds records of a later epoch than the first', async () => {
    await claimTargets(redis, keys, 'a', 0, ['bronze.first']);
    await claimTargets(redis, keys, 'a', 1, ['bronze.later']);
    await refuseLaterEpochs(redis, keys, 'Debezium source d', ['bronze.first', 'bronze.never']);
    await expect(refuseLaterEpochs(redis, keys, 'Debezium source d', ['bronze.first', 'bronze.later'])).rejects.toThrow(
      /^bronze\.later holds records of pushsync's change data capture in ordering epoch 1, which sort after every ordering Debezium source d sends/,
    );
  });
});
