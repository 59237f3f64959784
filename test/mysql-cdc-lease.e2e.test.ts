import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import type { ChangeSource, ChangeStream, ChangeStreamEvent } from '../src/core/ports.js';
import { createChangeSources } from '../src/main.js';
import { Keys } from '../src/queue/redis.js';
import { TableLock } from '../src/queue/table-lock.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, type MysqlDatabase } from './helpers/mysql.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { eventually } from './helpers/wait.js';

/**
 * The binlog reader keeps its stream's confirmed position in Redis, where the reader writes it after recording its
 * acknowledged position and waiting for replicas. A reader whose lease lapsed in between must not write it: after
 * its successor's writes, a confirmed position past the successor's acknowledged one makes every later run refuse
 * the stream as ahead of what pushsync acknowledged, until `pushsync cdc reset`.
 */
describe('the binlog position of a reader whose lease was taken', () => {
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  const keys = new Keys(prefix);
  let db: MysqlDatabase;
  let redis: Redis;
  let config: Config;
  let cdc: ChangeSource;
  let stream: ChangeStream | undefined;

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    redis = new Redis(REDIS_URL);
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, v varchar(100))`);
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: 'http://127.0.0.1:9/v2/stream', apiKey: 'k' },
        sources: [{ name: 'shop', kind: 'mysql', url: db.url, mode: 'cdc', cdc: { slot }, tables: [{ name: 'items' }] }],
      },
      {},
    );
    // The change source as the workers build it: its position store is pushsync's Redis.
    cdc = createChangeSources(config, redis).get('shop')!;
  });
  afterAll(async () => {
    await stream?.stop().catch(() => {});
    await cdc.close();
    await redis.quit();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('is written while the lease is held, and not once another reader holds it', async () => {
    const confirmed = async (): Promise<string | null> => (await cdc.status()).confirmed;
    const start = await cdc.create();
    const lockKey = keys.lock('shop', `cdc:${slot}`);
    const lock = new TableLock(redis, lockKey, 60_000);
    expect(await lock.acquire()).toBe(true);
    const ends: string[] = [];
    const events: ChangeStreamEvent[] = [];
    stream = await cdc.open(
      new Map([[`${db.database}.items`, { primaryKey: ['id'] }]]),
      (e) => {
        events.push(e);
        if (e.kind === 'transaction') ends.push(e.end);
      },
      (err) => {
        throw err;
      },
      { lease: lock },
    );

    await db.client.query(`INSERT INTO items VALUES (1, 'a')`);
    await eventually(() => ends.length === 1);
    await stream.acknowledge(ends[0]!);
    expect(await confirmed()).toBe(ends[0]);
    expect(cdc.comparePositions(ends[0]!, start)).toBe(1);

    // The lease lapsed (a Redis failover, a long pause) and another reader took it; this one has not noticed yet.
    await redis.set(lockKey, 'another-reader', 'PX', 60_000);
    await db.client.query(`INSERT INTO items VALUES (2, 'b')`);
    await eventually(() => ends.length === 2);
    await stream.acknowledge(ends[1]!);
    await stream.requestPosition(ends[1]!);
    expect(await confirmed()).toBe(ends[0]);
    expect(lock.isLost).toBe(true);
    await lock.release();
  });
});
