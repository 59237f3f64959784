import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { runOnce } from '../src/queue/run-once.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, type MysqlDatabase } from './helpers/mysql.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/**
 * Schema changes of a MariaDB watermark table between passes of one running pipeline (its readers cached): an added
 * column is sent from the next read, a dropped one stops being sent without failing a job, and both are announced.
 * Watermarks are fixed past times, so other tests' transactions never hold these rows back.
 */
describe('schema changes of a MariaDB watermark table', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('mysch');
  let config: Config;
  let ctx: ReturnType<typeof createPipeline>;
  let runtime: Awaited<ReturnType<typeof startRuntime>>;

  const records = (target: string): Array<Record<string, unknown>> =>
    (receiver.stored.get(target) ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);
  const pass = async (): Promise<void> => {
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: 60_000,
      pollMs: 50,
      reconcile: false,
    });
    expect(summary.failed).toEqual([]);
  };

  beforeAll(async () => {
    db = await createMysqlDatabase();
    receiver = await startReceiver('k');
    await db.client.query(`CREATE TABLE t (id int PRIMARY KEY, v text, n int, updated_at datetime(6) NOT NULL, KEY (updated_at, id))`);
    await db.client.query(
      `INSERT INTO t (id, v, n, updated_at) SELECT seq, CONCAT('v', seq), seq, '2020-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_20`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 10, cap: 50 } },
        sources: [{ name: 'shop', kind: 'mysql', url: db.url, tables: [{ name: 't', watermark: 'updated_at', batchRows: 8 }] }],
      },
      {},
    );
    ctx = createPipeline(config, createLogger('silent'));
    runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    await pass();
    expect(records('bronze.shop_t')).toHaveLength(20);
  });
  afterAll(async () => {
    await runtime?.stop();
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('ADD COLUMN then UPDATE: the rows arrive with the new column, and the change is announced', async () => {
    await db.client.query(`ALTER TABLE t ADD COLUMN extra varchar(10)`);
    await db.client.query(`UPDATE t SET extra = CONCAT('E', id), updated_at = '2021-01-01 00:00:00' + INTERVAL id SECOND WHERE id <= 5`);
    await pass();
    const sent = records('bronze.shop_t').slice(20);
    expect(sent.map((r) => [r.id, r.extra])).toEqual([1, 2, 3, 4, 5].map((id) => [id, `E${id}`]));
    expect(records('bronze.pushsync_schema_changes')).toMatchObject([
      { _source: 'shop', _table: 't', kind: 'column_added', column: 'extra', old_type: null, new_type: 'varchar(10)', sent: true },
    ]);
  });

  it('DROP COLUMN and a widening ALTER, then UPDATE: no job fails, v is no longer sent, n arrives as bigint', async () => {
    await db.client.query(`ALTER TABLE t DROP COLUMN v, MODIFY n bigint`);
    await db.client.query(`UPDATE t SET updated_at = '2022-01-01 00:00:00' + INTERVAL id SECOND WHERE id BETWEEN 6 AND 10`);
    await pass();
    const sent = records('bronze.shop_t').slice(25);
    expect(sent.map((r) => r.id)).toEqual([6, 7, 8, 9, 10]);
    expect(sent.every((r) => !('v' in r) && 'extra' in r)).toBe(true);
    expect(records('bronze.pushsync_schema_changes').slice(1)).toMatchObject([
      { kind: 'column_dropped', column: 'v', old_type: 'text', sent: false },
      { kind: 'type_changed', column: 'n', old_type: 'int(11)', new_type: 'bigint(20)', verdict: 'widening' },
    ]);
  });
});
