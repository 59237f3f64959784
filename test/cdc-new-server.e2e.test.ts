import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { lsnToBigInt } from '../src/core/lsn.js';
import type { Config } from '../src/config.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { cdcReset, cdcStatus } from '../src/queue/cdc-admin.js';
import { Keys } from '../src/queue/redis.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';
import { currentRows, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, LOGICAL_PG_URL, SECOND_LOGICAL_PG_URL, uniqueName } from './helpers/services.js';

/**
 * A CDC source moved to another server (a restore, a migration, a binlog started over): the new server's positions
 * can be lower than every position the old one reached. After `pushsync cdc reset`, the new stream's records must
 * still sort after every record of the old one, or the current state downstream keeps the old server's versions.
 */
describe('a CDC source moved to a server whose positions are lower', () => {
  const schema = uniqueName('moved');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let first: pg.Client;
  let second: pg.Client;
  let receiver: Receiver;

  const lsn = async (c: pg.Client): Promise<bigint> =>
    lsnToBigInt((await c.query<{ l: string }>(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0]!.l);
  const records = (): VersionedRow[] => storedRecords(receiver, `bronze.app_items`);
  const config = (url: string): Config =>
    cdcConfig({ prefix, receiverUrl: receiver.url, slot, url, tables: [{ name: `${schema}.items`, batchRows: 4 }] });

  beforeAll(async () => {
    first = new pg.Client({ connectionString: LOGICAL_PG_URL });
    second = new pg.Client({ connectionString: SECOND_LOGICAL_PG_URL });
    await first.connect();
    await second.connect();
    for (const c of [first, second]) {
      await c.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
      await c.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)`);
    }
    // The first server's positions end well past where the second one's start: WAL segments are switched on it (a
    // write, then a switch, moves it 16 MB) until it is 64 MB ahead.
    await first.query(`CREATE TABLE wal_filler (n int)`);
    for (let i = 0; i < 40 && (await lsn(first)) < (await lsn(second)) + 64n * 1024n * 1024n; i++) {
      await first.query(`INSERT INTO wal_filler VALUES (1)`);
      await first.query(`SELECT pg_switch_wal()`);
    }
    receiver = await startReceiver('k');
  });

  afterAll(async () => {
    await dropCdcFixtures(first, slot, schema);
    await dropCdcFixtures(second, slot, schema);
    await first.end();
    await second.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('keeps the new server’s rows as the current state after cdc reset', async () => {
    expect(await lsn(first)).toBeGreaterThan((await lsn(second)) + 64n * 1024n * 1024n);
    await first.query(`INSERT INTO items SELECT g, 'v0' FROM generate_series(1, 10) g`);
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    await first.query(`UPDATE items SET v = 'old server' WHERE id <= 5`);
    await first.query(`DELETE FROM items WHERE id = 10`);
    expect((await syncPass(config(LOGICAL_PG_URL), { timeoutMs: 20_000 })).failed).toEqual([]);
    const before = records();
    expect(before.some((r) => r.id === 10 && r._op === 'delete')).toBe(true);

    // The table restored on the second server, then changed there before pushsync reads it.
    const { rows } = await first.query<{ id: number; v: string }>(`SELECT id, v FROM items ORDER BY id`);
    for (const r of rows) await second.query(`INSERT INTO items VALUES ($1, $2)`, [r.id, r.v]);
    await second.query(`UPDATE items SET v = 'new server' WHERE id <= 3`);
    await second.query(`INSERT INTO items VALUES (10, 'back again')`);

    // The slot pushsync streamed from is not on the new server: refused until a reset takes a new snapshot.
    const moved = config(SECOND_LOGICAL_PG_URL);
    const refused = await syncPass(moved, { timeoutMs: 20_000 });
    expect(refused.failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[CURSOR_INVALID\] replication slot .* was dropped after/)]);
    const ctx = createPipeline(moved, createLogger('silent'));
    try {
      // The first stream was epoch 0. Recorded as a version before epochs would have recorded it (no epoch field, no
      // epoch key), the reset still makes the next stream a later epoch.
      const keys = new Keys(prefix);
      expect(await ctx.redis.hget(keys.cdcState('app', slot), 'epoch')).toBe('0');
      expect(await ctx.redis.get(keys.cdcEpoch())).toBe('0');
      await ctx.redis.hdel(keys.cdcState('app', slot), 'epoch');
      await ctx.redis.del(keys.cdcEpoch());
      await cdcReset(ctx, moved.sources[0]!, false);
      expect(await ctx.redis.get(keys.cdcEpoch())).toBe('0');
    } finally {
      await closePipeline(ctx);
    }
    expect((await syncPass(moved, { timeoutMs: 20_000 })).failed).toEqual([]);
    const check = createPipeline(moved, createLogger('silent'));
    try {
      expect((await cdcStatus(check, moved.sources[0]!)).epoch).toBe(1);
    } finally {
      await closePipeline(check);
    }
    await second.query(`UPDATE items SET v = 'changed later' WHERE id = 4`);
    expect((await syncPass(moved, { timeoutMs: 20_000 })).failed).toEqual([]);

    const all = records();
    const after = all.slice(before.length);
    expect(after.length).toBeGreaterThanOrEqual(11);
    const state = currentRows(all);
    const { rows: source } = await second.query<{ id: number; v: string }>(`SELECT id, v FROM items ORDER BY id`);
    expect(state).toEqual(source);
    // Every row record of the new stream sorts after every record of the old one: its orderings carry epoch 1.
    const orderings = (rs: VersionedRow[]): string[] => rs.filter((r) => r._op !== 'table_recreated').map((r) => r._ordering);
    expect(orderings(after).every((o) => o.startsWith('~~000001~'))).toBe(true);
    expect(orderings(before).every((o) => /^~[0-9a-f]{16}/.test(o))).toBe(true);
    expect(orderings(after).sort()[0]! > orderings(before).sort().at(-1)!).toBe(true);
  });
});
