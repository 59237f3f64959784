import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { runOnce } from '../src/queue/run-once.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

describe('soft deletes are sent as delete records', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  const prefix = uniqueName('ps');

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    await db.client.query(`CREATE TABLE a (id int PRIMARY KEY, updated_at timestamptz NOT NULL, deleted_at timestamptz)`);
    await db.client.query(`CREATE TABLE b (id int PRIMARY KEY, updated_at timestamptz NOT NULL, status text, is_gone boolean)`);
    await db.client.query(
      `INSERT INTO a SELECT g, '2024-01-01'::timestamptz + g * interval '1s', CASE WHEN g % 3 = 0 THEN now() END FROM generate_series(1, 9) g`,
    );
    await db.client.query(
      `INSERT INTO b SELECT g, '2024-01-01'::timestamptz + g * interval '1s', CASE WHEN g % 2 = 0 THEN 'deleted' ELSE 'live' END, false FROM generate_series(1, 6) g`,
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('marks rows by a soft-delete column or a SQL condition', async () => {
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              { name: `${db.schema}.a`, watermark: 'updated_at', softDelete: { column: 'deleted_at' } },
              { name: `${db.schema}.b`, watermark: 'updated_at', softDelete: { condition: "status = 'deleted' OR is_gone" } },
            ],
          },
        ],
      },
      {},
    );
    const ctx = createPipeline(config, createLogger('silent'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    try {
      const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 30_000, pollMs: 50 });
      expect(summary.failed).toEqual([]);
    } finally {
      await runtime.stop();
    }
    const ops = (target: string): Record<number, string> =>
      Object.fromEntries((receiver.stored.get(target) ?? []).map((r) => JSON.parse(r) as { id: number; _op: string }).map((r) => [r.id, r._op]));
    expect(ops('bronze.app_a')).toEqual({
      1: 'upsert',
      2: 'upsert',
      3: 'delete',
      4: 'upsert',
      5: 'upsert',
      6: 'delete',
      7: 'upsert',
      8: 'upsert',
      9: 'delete',
    });
    expect(ops('bronze.app_b')).toEqual({ 1: 'upsert', 2: 'delete', 3: 'upsert', 4: 'delete', 5: 'upsert', 6: 'delete' });
  });

  it('refuses a soft-delete condition that is not valid SQL for the table, before reading', async () => {
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [{ name: `${db.schema}.b`, watermark: 'updated_at', softDelete: { condition: 'no_such_column = 1' } }],
          },
        ],
      },
      {},
    );
    const ctx = createPipeline(config, createLogger('silent'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    try {
      const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 30_000, pollMs: 50 });
      expect(summary.failed).toHaveLength(1);
      expect(summary.failed[0]!.reason).toMatch(/^\[SOURCE_SCHEMA\] .*softDelete condition is not valid SQL.*no_such_column/);
    } finally {
      await runtime.stop();
    }
  });
});
