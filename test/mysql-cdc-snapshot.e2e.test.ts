import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { parseConfig } from '../src/config.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';
import { eventually, sleep } from './helpers/wait.js';

type Rec = { _op: string; _ordering: string; _extracted_at: string; id: number; v: number; w: string };

/**
 * The first run of a binlog stream reads its start position and snapshots the table while writers commit all the
 * time: inserts, updates and deletes before, during and after the position is read and the ranges are cut. Every
 * row must arrive with its final value, and no deleted row may stay: a change committed between reading the
 * position and reading the snapshot is neither missed nor overtaken by an older row.
 */
describe('the initial snapshot of a binlog stream under concurrent writers', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  let runtime: Runtime | undefined;
  const writers: mysql.Connection[] = [];
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, w varchar(20) NOT NULL)`);
    await db.client.query(`INSERT INTO t SELECT seq, 0, CONCAT('w', seq) FROM seq_1_to_3000`);
    const u = new URL(db.url);
    for (let i = 0; i < 3; i++) {
      writers.push(
        await mysql.createConnection({
          host: u.hostname,
          port: Number(u.port),
          user: decodeURIComponent(u.username),
          password: decodeURIComponent(u.password),
          database: db.database,
        }),
      );
    }
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await runtime?.stop();
    for (const w of writers) await w.end();
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('delivers every row with its final value though writers commit while the snapshot starts', async () => {
    let writing = true;
    let writes = 0;
    // Each writer its own key stream: small transactions over the whole key space and past it (new keys).
    const load = writers.map(async (w, i) => {
      let seed = 11 + i;
      const next = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return 1 + (seed % n);
      };
      while (writing) {
        const id = next(3600);
        const op = next(10);
        if (op <= 6) await w.query(`UPDATE t SET v = v + 1, w = CONCAT('u', v + 1) WHERE id = ?`, [id]);
        else if (op === 7) await w.query(`DELETE FROM t WHERE id = ?`, [id]);
        else if (op === 8) {
          await w.query('BEGIN');
          await w.query(`INSERT INTO t VALUES (?, 100, 'ins') ON DUPLICATE KEY UPDATE v = v + 1`, [id]);
          await w.query(`UPDATE t SET v = v + 1 WHERE id = ?`, [next(3600)]);
          await w.query('COMMIT');
        } else await w.query(`INSERT INTO t VALUES (?, 100, 'ins') ON DUPLICATE KEY UPDATE v = v + 1, w = 'dup'`, [id]);
        writes += 1;
      }
    });
    // The writers are under way before the stream exists.
    await eventually(() => writes > 50, 10, 30_000);
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            mode: 'cdc',
            cdc: { slot, every: '200ms', maxRunTime: '3s', batchKeys: 100, flushInterval: '50ms' },
            tables: [{ name: 't', batchRows: 100 }],
          },
        ],
      },
      {},
    );
    runtime = await startRuntime(createPipeline(config, createLogger('silent')), { roles: ['scheduler', 'extract', 'push'] });
    const stateKey = runtime.ctx.keys.cdcState('shop', slot);
    await eventually(async () => (await runtime!.ctx.redis.hget(stateKey, 'snapshot:t')) !== null, 50, 60_000);
    // Writes go on after the last range was cut.
    await sleep(500);
    writing = false;
    await Promise.all(load);
    expect(writes).toBeGreaterThan(300);

    const records = (): Rec[] => (receiver.stored.get('bronze.shop_t') ?? []).map((r) => JSON.parse(r) as Rec);
    let diff: string[] = [];
    await eventually(
      async () => {
        const rows = await textRows(db.client, `SELECT id, v, w FROM t ORDER BY id`);
        const state = currentState(records());
        const ids = new Set(rows.map((r) => Number(r[0])));
        diff = [...state.keys()].filter((id) => !ids.has(id)).map((id) => `${id}: deleted in the source, present downstream`);
        for (const [id, v, w] of rows) {
          const got = state.get(Number(id));
          if (!got) diff.push(`${id}: missing downstream`);
          else if (String(got.v) !== v || got.w !== w) diff.push(`${id}: ${got.v}/${got.w} downstream, ${v}/${w} in the source`);
        }
        return diff.length === 0;
      },
      200,
      60_000,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${diff.slice(0, 5).join('; ')}`, { cause: err });
    });
    expect(records().filter((r) => r._op === 'snapshot').length).toBeGreaterThan(2000);
    const failed = [...(await runtime.ctx.pushQueue.getFailed()), ...(await runtime.ctx.extractQueue.getFailed())];
    expect(failed.map((j) => `${j.name}: ${j.failedReason}`)).toEqual([]);
    // The stream's start was read with its GTID, from the consistent snapshot.
    const stream = await runtime.ctx.redis.hgetall(`${prefix}:binlog:shop:${slot}`);
    expect(stream.gtid).toMatch(/^\d+-\d+-\d+/);
  });
});
