import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { backfillTable, pausedState, tableByName } from '../src/queue/table-admin.js';
import { acceptSchema, recentSchemaChanges } from '../src/queue/schema-watch.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, textRows, type MysqlDatabase } from './helpers/mysql.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';
import { eventually, sleep } from './helpers/wait.js';

type Rec = Record<string, unknown> & { _op: string; _ordering: string; _extracted_at: string; id: number };

/**
 * Schema changes of MariaDB tables while a long-running `pushsync start` streams them from the binlog: every DDL is
 * issued while it runs (or while it is stopped, for the backlog cases), and afterwards the current state over what
 * the destination stored equals the source, column by column, under each column's name, with no failed job.
 *
 * The key column is not the first one, so a row event decoded with a column list of another shape would put the
 * key's value under another name and deliver another row.
 */
describe('schema changes while a binlog CDC stream runs', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  let config: Config;
  let runtime: Runtime | undefined;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');

  const records = (table = 'items'): Rec[] => (receiver.stored.get(`bronze.shop_${table}`) ?? []).map((r) => JSON.parse(r) as Rec);
  const text = (v: unknown): string | null => (v === null || v === undefined ? null : typeof v === 'object' ? JSON.stringify(v) : String(v));

  /** Where the current state differs from the source, over the source's columns now; empty when equal. */
  async function differences(table = 'items'): Promise<string[]> {
    const [columns] = (await db.client.query(
      `SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      [table],
    )) as unknown as [Array<{ c: string }>];
    const names = columns.map((c) => c.c);
    const rows = await textRows(db.client, `SELECT ${names.map((n) => `CAST(\`${n}\` AS CHAR)`).join(', ')} FROM \`${table}\``);
    const idAt = names.indexOf('id');
    const state = currentState(records(table));
    const out: string[] = [];
    const ids = new Set(rows.map((r) => Number(r[idAt])));
    for (const id of state.keys()) if (!ids.has(id)) out.push(`${id}: downstream only`);
    for (const row of rows) {
      const id = Number(row[idAt]);
      const got = state.get(id);
      if (!got) {
        out.push(`${id}: missing downstream`);
        continue;
      }
      names.forEach((n, i) => {
        if (text(got[n]) !== row[i]) out.push(`${id}.${n}: ${text(got[n])} downstream, ${row[i]} in the source`);
      });
    }
    return out;
  }

  async function converged(table = 'items'): Promise<void> {
    let last: string[] = [];
    try {
      await eventually(
        async () => {
          last = await differences(table);
          return last.length === 0;
        },
        200,
        45_000,
      );
    } catch (err) {
      const id = Number(/^(\d+)/.exec(last[0] ?? '')?.[1]);
      const history = records(table)
        .filter((r) => r.id === id)
        .map((r) => `${r._op}@${r._ordering}:${JSON.stringify(r)}`);
      throw new Error(`${(err as Error).message}: ${last.slice(0, 6).join('; ')}; records of ${id}: ${history.join(' | ')}`, { cause: err });
    }
    const failed = [...(await runtime!.ctx.pushQueue.getFailed()), ...(await runtime!.ctx.extractQueue.getFailed())];
    expect(failed.map((j) => `${j.name}: ${j.failedReason}`)).toEqual([]);
  }

  async function start(): Promise<void> {
    const ctx = createPipeline(config, createLogger((process.env.TEST_LOG as 'warn' | undefined) ?? 'silent'));
    runtime = await startRuntime(ctx, { roles: ['scheduler', 'extract', 'push'] });
  }

  async function stop(): Promise<void> {
    await runtime?.stop();
    runtime = undefined;
  }

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE items (code varchar(10) NOT NULL, id int PRIMARY KEY, v text, n decimal(10,2))`);
    await db.client.query(`INSERT INTO items SELECT CONCAT('c', seq), seq, CONCAT('v', seq), seq + 0.25 FROM seq_1_to_60`);
    await db.client.query(`CREATE TABLE frozen (id int PRIMARY KEY, v text)`);
    await db.client.query(`INSERT INTO frozen SELECT seq, CONCAT('v', seq) FROM seq_1_to_10`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: '20ms', cap: '200ms' } },
        extract: { leaseTtl: '2s' },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            mode: 'cdc',
            cdc: { slot, every: '200ms', maxRunTime: '4s', batchKeys: 50, flushInterval: '50ms' },
            tables: [
              { name: 'items', batchRows: 7 },
              { name: 'frozen', schemaChanges: 'freeze' },
            ],
          },
        ],
      },
      {},
    );
    await start();
    await converged();
  });
  afterAll(async () => {
    await stop();
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('ADD COLUMN in the middle (AFTER, FIRST) and DROP COLUMN, then rows: every value arrives under its own name', async () => {
    await db.client.query(`UPDATE items SET v = 'before' WHERE id <= 5`);
    await db.client.query(`ALTER TABLE items ADD COLUMN mid varchar(20) AFTER code`);
    await db.client.query(`UPDATE items SET mid = CONCAT('m', id), v = 'after add' WHERE id BETWEEN 3 AND 12`);
    await db.client.query(`ALTER TABLE items ADD COLUMN head int FIRST`);
    await db.client.query(`INSERT INTO items (head, code, mid, id, v, n) VALUES (1, 'new', 'mnew', 100, 'inserted', 1.5)`);
    await db.client.query(`ALTER TABLE items DROP COLUMN v`);
    await db.client.query(`UPDATE items SET head = id * 10 WHERE id <= 8 OR id = 100`);
    await db.client.query(`DELETE FROM items WHERE id = 9`);
    await converged();
    const state = currentState(records());
    expect(state.get(4)).toMatchObject({ head: 40, code: 'c4', mid: 'm4', id: 4 });
    expect('v' in state.get(4)!).toBe(false);
    const kinds = (await recentSchemaChanges(runtime!.ctx, tableByName(config, 'shop.items'))).map((a) => [a.kind, a.column]);
    expect(kinds).toEqual(
      expect.arrayContaining([
        ['column_added', 'mid'],
        ['column_added', 'head'],
        ['column_dropped', 'v'],
      ]),
    );
    expect(receiver.stored.get('bronze.pushsync_schema_changes')?.some((r) => r.includes('"head"'))).toBe(true);
  });

  it('freeze holds every change of the table from the schema change on until accepted', async () => {
    const frozen = (): Rec[] => records('frozen');
    await eventually(() => frozen().length === 10, 100, 30_000);
    await db.client.query(`ALTER TABLE frozen ADD COLUMN secret text AFTER id`);
    await db.client.query(`UPDATE frozen SET secret = CONCAT('S', id), v = 'after' WHERE id <= 4`);
    await db.client.query(`DELETE FROM frozen WHERE id = 9`);
    const table = tableByName(config, 'shop.frozen');
    await eventually(async () => (await pausedState(runtime!.ctx, table))?.schema === true, 100, 30_000);
    // Another table's change goes through meanwhile.
    await db.client.query(`UPDATE items SET code = 'frozen' WHERE id = 60`);
    await eventually(() => currentState(records()).get(60)?.code === 'frozen', 100, 30_000);
    await sleep(1000);
    expect(frozen()).toHaveLength(10);
    expect(frozen().some((r) => 'secret' in r)).toBe(false);
    const announced = await recentSchemaChanges(runtime!.ctx, table);
    expect(announced.map((a) => [a.kind, a.column])).toEqual([['column_added', 'secret']]);
    expect(await acceptSchema(runtime!.ctx, table, createLogger('silent'))).toBe('accepted');
    await converged('frozen');
    expect(currentState(frozen()).get(2)).toMatchObject({ secret: 'S2', v: 'after' });
  });

  it('a type change rewrote every value without a row event: the table is snapshotted again', async () => {
    await db.client.query(`ALTER TABLE items MODIFY n decimal(10,0)`);
    await db.client.query(`UPDATE items SET code = 'typed' WHERE id = 1`);
    await converged();
    expect(currentState(records()).get(50)!.n).toBe('50');
    const kinds = (await recentSchemaChanges(runtime!.ctx, tableByName(config, 'shop.items'))).map((a) => a.kind);
    expect(kinds).toContain('type_changed');
  });

  it('a backlog read after pushsync was stopped across ADD COLUMN FIRST and DROP COLUMN is decoded with the columns it was written with', async () => {
    await stop();
    // Written with (head, code, mid, id, n): read after the table became (extra, head, code, id, n).
    await db.client.query(`UPDATE items SET mid = 'backlog' WHERE id BETWEEN 20 AND 25`);
    await db.client.query(`DELETE FROM items WHERE id = 26`);
    await db.client.query(`ALTER TABLE items ADD COLUMN extra int FIRST`);
    await db.client.query(`UPDATE items SET extra = id WHERE id BETWEEN 27 AND 30`);
    await start();
    await converged();
    await stop();
    await db.client.query(`UPDATE items SET code = 'pre drop' WHERE id BETWEEN 31 AND 33`);
    await db.client.query(`ALTER TABLE items DROP COLUMN mid`);
    await db.client.query(`UPDATE items SET code = 'post drop' WHERE id = 34`);
    await start();
    await converged();
    expect(currentState(records()).get(31)!.code).toBe('pre drop');
  });

  it('two ALTERs in one backlog: rows between them are not decoded by guess; the table is read again', async () => {
    await stop();
    await db.client.query(`UPDATE items SET code = 'first' WHERE id BETWEEN 40 AND 42`);
    await db.client.query(`ALTER TABLE items ADD COLUMN a1 int FIRST`);
    await db.client.query(`UPDATE items SET code = 'between' WHERE id BETWEEN 43 AND 45`);
    await db.client.query(`ALTER TABLE items ADD COLUMN a2 int AFTER a1`);
    await db.client.query(`UPDATE items SET code = 'last', a2 = 2 WHERE id BETWEEN 46 AND 48`);
    await start();
    await converged();
    expect(currentState(records()).get(44)!.code).toBe('between');
  });

  it('a backfill brings an added column with a default to every row', async () => {
    await db.client.query(`ALTER TABLE items ADD COLUMN d int DEFAULT 7`);
    await backfillTable(runtime!.ctx, tableByName(config, 'shop.items'));
    await converged();
    expect(currentState(records()).get(42)!.d).toBe(7);
  });

  it('a table dropped and created again while the stream runs is read again as a new table', async () => {
    await db.client.query(`DROP TABLE items`);
    await db.client.query(`CREATE TABLE items (w text, id int PRIMARY KEY)`);
    // Every key of the old table again: keys the old table had and the new lacks are not deleted downstream.
    await db.client.query(`INSERT INTO items SELECT CONCAT('new', seq), seq FROM seq_1_to_110`);
    await converged();
    await db.client.query(`UPDATE items SET w = 'changed' WHERE id = 3`);
    await converged();
    const kinds = (await recentSchemaChanges(runtime!.ctx, tableByName(config, 'shop.items'))).map((a) => a.kind);
    expect(kinds).toContain('table_recreated');
  });

  it("a drop and create while pushsync is stopped: the old table's changes never stand over the new table's rows", async () => {
    await stop();
    await db.client.query(`DELETE FROM items WHERE id <= 5`);
    await db.client.query(`UPDATE items SET w = 'old table' WHERE id BETWEEN 6 AND 10`);
    await db.client.query(`DROP TABLE items`);
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, w text, z int)`);
    await db.client.query(`INSERT INTO items SELECT seq, CONCAT('newer', seq), seq FROM seq_1_to_110`);
    await start();
    await converged();
    const state = currentState(records());
    expect(state.get(1)!.w).toBe('newer1');
    expect(state.get(8)!.w).toBe('newer8');
  });
});
