import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createMetrics, type Metrics } from '../src/observability/metrics.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { runOnce, type OnceSummary } from '../src/queue/run-once.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/** Range jobs and change jobs share one sender, so rejected rows are counted the same way for both. */
describe('rows_rejected', () => {
  const schema = uniqueName('rej');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let client: pg.Client;
  let receiver: Receiver;
  let config: Config;

  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}`);
    await client.query(`CREATE TABLE ${schema}.polled (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(`CREATE TABLE ${schema}.streamed (id int PRIMARY KEY, v text)`);
    await client.query(`INSERT INTO ${schema}.polled (id, v) SELECT g, 'p' FROM generate_series(1, 20) g`);
    await client.query(`INSERT INTO ${schema}.streamed SELECT g, 's' FROM generate_series(1, 20) g`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            cdc: { slot, publication: slot, flushInterval: '50ms' },
            tables: [
              { name: `${schema}.polled`, watermark: 'updated_at' },
              { name: `${schema}.streamed`, mode: 'cdc' },
            ],
          },
        ],
      },
      {},
    );
  });

  afterAll(async () => {
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  async function pass(metrics: Metrics): Promise<OnceSummary> {
    const ctx = createPipeline(config, createLogger('silent'), { metrics });
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    try {
      return await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 30_000, pollMs: 50 });
    } finally {
      await runtime.stop();
    }
  }

  async function rejected(metrics: Metrics, table: string): Promise<number> {
    const { values } = await metrics.rowsRejected.get();
    return values.find((v) => v.labels.table === `${schema}.${table}`)?.value ?? 0;
  }

  it('counts the rows a destination rejected from a range job and from a change job', async () => {
    // The first pass: one range job per table (the watermark backfill, the CDC snapshot), the first rejected in part.
    receiver.script({ kind: 'reject-rows', count: 3 });
    const first = createMetrics();
    const summary = await pass(first);
    expect(summary.failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[DEST_ROWS_REJECTED\]/)]);
    expect((await rejected(first, 'polled')) + (await rejected(first, 'streamed'))).toBe(3);

    // Streamed changes travel as change jobs.
    await client.query(`UPDATE ${schema}.streamed SET v = 'changed' WHERE id <= 5`);
    receiver.script({ kind: 'reject-rows', count: 2 });
    const second = createMetrics();
    const again = await pass(second);
    expect(again.failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[DEST_ROWS_REJECTED\]/)]);
    expect(await rejected(second, 'streamed')).toBe(2);
  });
});
