import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../config.js';
import { SENTINEL_MASTER, TestSentinelGroup, until } from '../../test/helpers/redis-ha.js';
import { closeRedis, connectionEpoch, createRedis, waitForReplicas, type RedisClient } from './redis.js';

describe('a Redis connection through Sentinel', () => {
  let group: TestSentinelGroup;
  const clients: RedisClient[] = [];

  beforeAll(async () => {
    group = await TestSentinelGroup.start(1, 3);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await closeRedis(c);
    await group?.stop();
  });

  const config = (): ReturnType<typeof parseConfig>['redis'] =>
    parseConfig(
      {
        redis: { sentinel: { nodes: group.nodes, masterName: SENTINEL_MASTER }, prefix: 'sentinel-test' },
        destination: { url: 'http://127.0.0.1:9', apiKey: 'k' },
        sources: [{ name: 'app', kind: 'postgres', url: 'postgres://u@127.0.0.1/db', tables: [{ name: 't', watermark: 'u' }] }],
      },
      {},
    ).redis;

  it('survives a failover announced while it is asking a sentinel where the master went (it does not end for good)', async () => {
    const redis = createRedis(config(), { connectTimeoutMs: 10_000 });
    // BullMQ makes its workers' blocking connections by duplicating the one it is given.
    const duplicate = redis.duplicate();
    clients.push(redis, duplicate);
    const ended: string[] = [];
    for (const c of [redis, duplicate]) {
      c.on('error', () => {});
      c.on('end', () => ended.push(c.status));
    }
    await redis.set('sentinel-test:k', 'before');
    await duplicate.get('sentinel-test:k');
    // The sentinel it asked first is asked first again after a disconnect: make it hang, so the reconnect that
    // follows the master's death is still waiting for its answer when the other two announce +switch-master.
    group.pauseSentinel(0);
    try {
      const { killed } = await group.killMaster();
      // The announcement reaches the client's failover detector shortly after the promotion.
      await sleep(2000);
      group.resumeSentinel(0);
      await group.revive(killed);
    } finally {
      group.resumeSentinel(0);
    }
    await until('the connection to serve commands again', async () => (await redis.set('sentinel-test:k', 'after')) === 'OK').catch((err: Error) => {
      throw new Error(`${err.message} (status ${redis.status}; ended ${ended.length} time(s))`);
    });
    await until('its duplicate to serve commands again', async () => (await duplicate.get('sentinel-test:k')) === 'after').catch((err: Error) => {
      throw new Error(`${err.message} (status ${duplicate.status}; ended ${ended.length} time(s))`);
    });
    expect(redis.status).toBe('ready');
    expect(duplicate.status).toBe('ready');
    expect(await redis.get('sentinel-test:k')).toBe('after');
  }, 90_000);

  it('does not let a WAIT answered after a failover confirm writes made before it', async () => {
    const redis = createRedis(config(), { connectTimeoutMs: 10_000 });
    clients.push(redis);
    redis.on('error', () => {});
    const wait = { replicas: 1, timeoutMs: 3000 };
    const before = connectionEpoch(redis);
    await redis.set('sentinel-test:w', 'acknowledged by the old master');
    await waitForReplicas(redis, wait, 'sentinel-test:w', before);
    const since = connectionEpoch(redis);
    await redis.set('sentinel-test:w', 'maybe lost with it');
    const { killed } = await group.killMaster();
    await group.revive(killed);
    // The new master's replica holds everything the new master has: WAIT says 1, about other writes than these.
    expect(await redis.wait(1, 3000)).toBe(1);
    await expect(waitForReplicas(redis, wait, 'sentinel-test:w', since)).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE', retryable: true });
    // Writes made on the connection as it is now are confirmed as before.
    const now = connectionEpoch(redis);
    await redis.set('sentinel-test:w', 'on the new master');
    await waitForReplicas(redis, wait, 'sentinel-test:w', now);
  }, 90_000);

  it('ends for good when it is closed, and a duplicate too', async () => {
    const redis = createRedis(config(), { connectTimeoutMs: 10_000 });
    redis.on('error', () => {});
    await redis.ping();
    const copy = redis.duplicate();
    copy.on('error', () => {});
    await copy.ping();
    await closeRedis(copy);
    await closeRedis(redis);
    await sleep(500);
    expect([redis.status, copy.status]).toEqual(['end', 'end']);
  }, 30_000);
});
