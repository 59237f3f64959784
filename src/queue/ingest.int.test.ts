import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics } from '../observability/metrics.js';
import { TestSentinelGroup } from '../../test/helpers/redis-ha.js';
import { TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { pgEvent } from '../../test/helpers/debezium-events.js';
import { uniqueName } from '../../test/helpers/services.js';
import { DebeziumIngest } from './ingest.js';
import { closeRedis, createRedis, type RedisClient } from './redis.js';

describe('Debezium ingest behind a replicated Redis', () => {
  let group: TestSentinelGroup;
  let proxy: TcpProxy;
  let redis: RedisClient;

  beforeAll(async () => {
    group = await TestSentinelGroup.start(1, 1);
    proxy = await TcpProxy.start(group.servers[0]!.port);
  }, 60_000);

  afterAll(async () => {
    if (redis) await closeRedis(redis);
    await proxy?.close();
    await group?.stop();
  });

  const event = (id: number): { text: string; keyText: null; topic: string } => ({
    text: pgEvent({ op: 'c', columns: [{ name: 'id', type: 'int32', optional: false }], after: { id: String(id) }, lsn: 1000 + id }),
    keyText: null,
    topic: 'dbserver1.public.orders',
  });

  it('does not report events stored on a WAIT answered after the connection to Redis was lost', async () => {
    const config = parseConfig(
      {
        redis: { url: `redis://127.0.0.1:${proxy.port}`, prefix: uniqueName('ingest-wait') },
        destination: { url: 'http://127.0.0.1:9', apiKey: 'k' },
        sources: [{ name: 'dbz', kind: 'debezium', http: { token: 't' }, tables: [{ name: 'public.orders', primaryKey: ['id'] }] }],
      },
      {},
    );
    redis = createRedis(config.redis, { connectTimeoutMs: 5000 });
    redis.on('error', () => {});
    const source = config.debezium[0]!;
    const ingest = new DebeziumIngest(redis, config.redis.prefix, source, createMetrics(), createLogger('silent'), {
      replicas: 1,
      timeoutMs: 5000,
    });
    await ingest.ingest([event(1)], 'reject');

    // The append reaches the master; the connection is lost as the WAIT goes out. ioredis sends the WAIT again on
    // the new connection, and the replica's answer there says nothing about where the append went.
    proxy.dropOn('\r\nwait\r\n');
    await expect(ingest.ingest([event(2)], 'reject')).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE', retryable: true });
    expect(proxy.dropped).toBe(1);
    expect(await redis.wait(1, 5000)).toBe(1);

    // On the connection as it is now, a request is confirmed as before.
    await expect(ingest.ingest([event(2)], 'reject')).resolves.toMatchObject({ accepted: 1 });
  }, 60_000);
});
