import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { resetTable } from '../src/queue/table-admin.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { syncPass } from './helpers/pass.js';

describe('cursor sanity', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let config: Config;
  let redis: Redis;
  const prefix = uniqueName('ps');

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    redis = new Redis(REDIS_URL);
    await db.client.query(`CREATE TABLE t (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
    await db.client.query(`INSERT INTO t SELECT g, '2024-01-01'::timestamptz + g * interval '1 s' FROM generate_series(1, 50) g`);
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.t`, watermark: 'updated_at', batchRows: 10 }] }],
      },
      {},
    );
  });
  afterAll(async () => {
    await redis.quit();
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  const cursorKey = (): string => `${prefix}:cursor:app:${db.schema}.t`;

  it('reports a cursor that moved backwards instead of re-reading silently, and reset starts over on purpose', async () => {
    expect((await syncPass(config)).failed).toEqual([]);
    const saved = JSON.parse((await redis.get(cursorKey()))!) as { after: { wm: string; pk: string[] } };
    expect(saved.after.pk).toEqual(['50']);
    // An older copy of the cursor comes back (a restored backup, a hand edit).
    await redis.set(cursorKey(), JSON.stringify({ ...saved, after: { wm: '2024-01-01 00:00:10+00', pk: ['10'] } }));
    const summary = await syncPass(config);
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(/^\[CURSOR_INVALID\] .*moved backwards.*pushsync reset --table/);

    const ctx = createPipeline(config, createLogger('silent'));
    await resetTable(ctx, config.sources[0]!.tables[0]!);
    await closePipeline(ctx);
    const before = receiver.stored.get('bronze.app_t')!.length;
    expect((await syncPass(config)).failed).toEqual([]);
    expect(receiver.stored.get('bronze.app_t')!.length - before).toBe(50);
  });

  it('reports a table that is suddenly empty after rows were read from it', async () => {
    await db.client.query(`TRUNCATE t`);
    const summary = await syncPass(config);
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(/^\[SOURCE_EMPTY\] .*no rows, but rows were read from it before/);
  });
});
