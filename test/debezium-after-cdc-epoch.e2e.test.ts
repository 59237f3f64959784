import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { Keys } from '../src/queue/redis.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';

/**
 * Debezium's orderings carry no epoch: a target that pushsync's own CDC wrote in an epoch after the first holds
 * orderings that sort after all of them. A Debezium source sending to it is refused, not left to lose silently.
 */
describe('a Debezium source sending to a target of pushsync CDC in a later epoch', () => {
  const prefix = uniqueName('dbze');
  let receiver: Receiver;
  let redis: Redis;
  let config: Config;

  beforeAll(async () => {
    receiver = await startReceiver('k');
    redis = new Redis(REDIS_URL);
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [{ name: 'legacy', kind: 'debezium', http: {}, tables: [{ name: 'public.items', primaryKey: ['id'], target: 'bronze.items' }] }],
      },
      {},
    );
  });
  afterAll(async () => {
    await redis.quit();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('runs while the target holds only epoch 0, and is refused, saying why, once it holds a later one', async () => {
    await redis.hset(new Keys(prefix).cdcTargetEpochs(), 'bronze.items', '0');
    expect((await syncPass(config, { timeoutMs: 20_000 })).failed).toEqual([]);
    await redis.hset(new Keys(prefix).cdcTargetEpochs(), 'bronze.items', '2');
    const refused = await syncPass(config, { timeoutMs: 20_000 });
    expect(refused.failed.map((f) => f.reason)).toEqual([
      expect.stringMatching(
        /^\[CURSOR_INVALID\] bronze\.items holds records of pushsync's change data capture in ordering epoch 2, .*Debezium source legacy/,
      ),
    ]);
  });
});
