import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { bigIntToLsn, lsnToBigInt } from '../src/core/lsn.js';
import { Keys } from '../src/queue/redis.js';
import { parseConfig, type Config } from '../src/config.js';
import type { OnceSummary } from '../src/queue/run-once.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { pipelineStatus } from '../src/queue/status.js';
import { statusText } from '../src/core/table-status.js';

interface Rec {
  _op: string;
  _ordering: string;
  _extracted_at: string;
  _event_id: string;
  id: number;
  v: string | null;
  n: string | null;
}

describe('change data capture from a logical replication slot', () => {
  const schema = uniqueName('cdc');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let client: pg.Client;
  let receiver: Receiver;
  let config: Config;

  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text, n numeric, big text)`);
    await client.query(`INSERT INTO items SELECT g, 'v' || g, g * 1.25, NULL FROM generate_series(1, 50) g`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot, publication: slot, flushInterval: '50ms' },
            tables: [{ name: `${schema}.items`, batchRows: 20 }],
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

  async function syncOnce(): Promise<OnceSummary> {
    return syncPass(config, { timeoutMs: 15_000 });
  }

  const records = (): Rec[] => (receiver.stored.get('bronze.app_items') ?? []).map((r) => JSON.parse(r) as Rec);

  async function expectStateEqualsSource(): Promise<void> {
    const { rows } = await client.query<{ id: number; v: string | null; n: string | null }>(`SELECT id, v, n::text FROM items ORDER BY id`);
    const state = currentState(records());
    expect([...state.keys()].sort((a, b) => a - b)).toEqual(rows.map((r) => r.id));
    for (const row of rows) expect({ v: state.get(row.id)!.v, n: state.get(row.id)!.n }).toEqual({ v: row.v, n: row.n });
  }

  it('snapshots the table at the first run', async () => {
    const lines: string[] = [];
    const summary = await syncPass(config, { timeoutMs: 15_000, logger: createLogger('info', {}, { write: (l: string) => void lines.push(l) }) });
    expect(summary.failed).toEqual([]);
    expect(records()).toHaveLength(50);
    expect(new Set(records().map((r) => r._op))).toEqual(new Set(['snapshot']));
    await expectStateEqualsSource();
    // Its progress is reported as a watermark backfill's: a done line with the exact total, and status.
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; table?: string; rows?: number; total?: number; percent?: number });
    expect(logged.find((l) => l.msg.startsWith('backfill done'))).toMatchObject({ table: `${schema}.items`, rows: 50, total: 50, percent: 100 });
    const ctx = createPipeline(config, createLogger('silent'));
    try {
      const [table] = (await pipelineStatus(ctx)).tables;
      expect(table!.backfill).toMatchObject({ rows: 50, total: 50, exact: true, percent: 100, done: true });
      expect(table!.state).not.toBe('backfilling');
    } finally {
      await closePipeline(ctx);
    }
  });

  it('streams inserts, updates, deletes and key changes, and the current state equals the source', async () => {
    await client.query(`INSERT INTO items SELECT g, 'new' || g, g, NULL FROM generate_series(51, 60) g`);
    await client.query(`UPDATE items SET v = 'changed', n = 99999999999999999999.5 WHERE id BETWEEN 1 AND 5`);
    await client.query(`DELETE FROM items WHERE id BETWEEN 6 AND 10`);
    await client.query(`UPDATE items SET id = 1000 WHERE id = 11`);
    // Several changes of one key in one transaction, ending deleted, then re-inserted in another.
    await client.query(
      `BEGIN; UPDATE items SET v = 'a' WHERE id = 12; UPDATE items SET v = 'b' WHERE id = 12; DELETE FROM items WHERE id = 12; COMMIT`,
    );
    await client.query(`INSERT INTO items VALUES (12, 'back', 1, NULL)`);
    // An unchanged TOASTed value must not arrive as null: the row is read when sent.
    await client.query(`UPDATE items SET big = repeat(md5(id::text), 2000) WHERE id = 13`);
    await client.query(`UPDATE items SET v = 'toast kept' WHERE id = 13`);

    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    const changes = records().filter((r) => r._op !== 'snapshot');
    expect(
      changes
        .filter((r) => r._op === 'delete')
        .map((r) => r.id)
        .sort((a, b) => a - b),
    ).toEqual([6, 7, 8, 9, 10, 11, 12]);
    expect(changes.filter((r) => r._op === 'insert').map((r) => r.id)).toEqual(expect.arrayContaining([51, 60, 1000, 12]));
    await expectStateEqualsSource();
    // Its last success in status is when its reader last recorded the stream as taken (a CDC table has no caught-up run).
    const ctx = createPipeline(config, createLogger('silent'));
    try {
      const [table] = (await pipelineStatus(ctx)).tables;
      expect(Date.now() - Date.parse(table!.lastSuccessAt ?? 'none')).toBeLessThan(10 * 60_000);
    } finally {
      await closePipeline(ctx);
    }
    const toasted = currentState(records()).get(13) as Rec & { big: string };
    expect(toasted.big).toHaveLength(64_000);
    expect(toasted.v).toBe('toast kept');
  });

  it('acknowledges the slot only up to what it enqueued, so nothing is streamed twice when idle', async () => {
    const before = records().length;
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(records().length).toBe(before);
    const { rows } = await client.query(`SELECT confirmed_flush_lsn IS NOT NULL AS ok FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    expect(rows[0].ok).toBe(true);
  });

  it('delivers every change of a transaction too large to be handed over at once, acknowledging it once at its end', async () => {
    const before = records().length;
    await client.query(`INSERT INTO items SELECT g, 'bulk', g, NULL FROM generate_series(5001, 7500) g`);
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    const bulk = records()
      .slice(before)
      .filter((r) => r._op === 'insert');
    expect(bulk.map((r) => r.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 2500 }, (_, i) => 5001 + i));
    expect(new Set(bulk.map((r) => r._ordering.slice(0, 18))).size).toBe(1);
    await expectStateEqualsSource();
    // Nothing of it is streamed again: the slot was confirmed past its end.
    const after = records().length;
    expect((await syncOnce()).failed).toEqual([]);
    expect(records().length).toBe(after);
  });

  it('streams a table with a composite primary key and a timestamp in the key', async () => {
    await client.query(`CREATE TABLE lines (order_id bigint, at timestamptz, qty int, PRIMARY KEY (order_id, at))`);
    await client.query(
      `INSERT INTO lines VALUES (1, '2024-01-01 00:00:00.000001+00', 1), (1, '2024-01-01 00:00:00.000002+00', 2), (2, '2024-01-01 00:00:00.000001+00', 3)`,
    );
    const composite = parseConfig(
      {
        redis: { url: REDIS_URL, prefix: `${prefix}c` },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot: `${slot}c`, publication: `${slot}c`, flushInterval: '50ms' },
            tables: [{ name: `${schema}.lines` }],
          },
        ],
      },
      {},
    );
    try {
      expect((await syncPass(composite, { timeoutMs: 15_000 })).failed).toEqual([]);
      await client.query(`UPDATE lines SET qty = 20 WHERE order_id = 1 AND at = '2024-01-01 00:00:00.000002+00'`);
      await client.query(`DELETE FROM lines WHERE order_id = 2`);
      expect((await syncPass(composite, { timeoutMs: 15_000 })).failed).toEqual([]);
      const recs = (receiver.stored.get('bronze.app_lines') ?? []).map(
        (r) => JSON.parse(r) as { _op: string; order_id: string; at: string; qty: number | null },
      );
      expect(recs.filter((r) => r._op !== 'snapshot').map((r) => [r._op, r.order_id, r.at, r.qty ?? null])).toEqual([
        ['update', '1', '2024-01-01T00:00:00.000002+00:00', 20],
        // A delete carries the key columns only.
        ['delete', '2', '2024-01-01T00:00:00.000001+00:00', null],
      ]);
    } finally {
      await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [`${slot}c`]).catch(() => {});
      await client.query(`DROP PUBLICATION IF EXISTS ${slot}c`).catch(() => {});
      await dropRedisPrefix(`${prefix}c`);
    }
  });

  async function recordedAck(): Promise<string | null> {
    const redis = new Redis(REDIS_URL);
    try {
      return await redis.hget(new Keys(prefix).cdcState('app', slot), 'ackedLsn');
    } finally {
      redis.disconnect();
    }
  }

  it('leaves the slot confirmed at exactly the position it recorded as acknowledged', async () => {
    await client.query(`UPDATE items SET v = 'exact' WHERE id = 2`);
    expect((await syncOnce()).failed).toEqual([]);
    const { rows } = await client.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [
      slot,
    ]);
    expect(await recordedAck()).toBe(rows[0]!.lsn);
  });

  it('tolerates a slot one byte ahead only for state recorded before acknowledgements were exact', async () => {
    const redis = new Redis(REDIS_URL);
    try {
      const key = new Keys(prefix).cdcState('app', slot);
      await redis.hdel(key, 'ackExact');
      const acked = (await redis.hget(key, 'ackedLsn'))!;
      await client.query(`UPDATE items SET v = 'legacy' WHERE id = 4`);
      await client.query(`SELECT pg_replication_slot_advance($1, $2::pg_lsn)`, [slot, bigIntToLsn(lsnToBigInt(acked) + 1n)]);
      expect((await syncOnce()).failed).toEqual([]);
      expect(await redis.hget(key, 'ackExact')).toBe('1');
    } finally {
      redis.disconnect();
    }
    await expectStateEqualsSource();
  });

  it('refuses a slot confirmed even one byte past what it acknowledged', async () => {
    const acked = (await recordedAck())!;
    await client.query(`UPDATE items SET v = 'past' WHERE id = 3`);
    await client.query(`SELECT pg_replication_slot_advance($1, $2::pg_lsn)`, [slot, bigIntToLsn(lsnToBigInt(acked) + 1n)]);
    const summary = await syncOnce();
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(/^\[CURSOR_INVALID\] replication slot .* is at .*, ahead of the .* pushsync acknowledged/);
  });

  it('shows in status a reader whose runs keep failing, with its last error and since when, until a run works', async () => {
    // The previous test left the slot one byte past what pushsync recorded: every run fails, and nothing else says so.
    expect((await syncOnce()).failed).toHaveLength(1);
    const ctx = createPipeline(config, createLogger('silent'));
    try {
      const [table] = (await pipelineStatus(ctx)).tables;
      expect(table).toMatchObject({ state: 'failing', pendingBatches: 0, failedBatches: 0 });
      expect(table!.reader).toMatchObject({ lastError: expect.stringMatching(/^\[CURSOR_INVALID\] replication slot .* is at .*, ahead of/) });
      expect(table!.reader!.failures).toBeGreaterThanOrEqual(2);
      expect(Date.parse(table!.reader!.failingSince)).toBeLessThan(Date.parse(table!.reader!.lastErrorAt));
      expect(statusText([table!], 0)).toMatch(/change reader failing since .* ago \(\d+ run\(s\)\), last .* ago: \[CURSOR_INVALID\]/);
      // Consistent again (here the record is moved to the slot's position): the next run works, and status says so.
      const { rows } = await client.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [
        slot,
      ]);
      await ctx.redis.hset(new Keys(prefix).cdcState('app', slot), 'ackedLsn', rows[0]!.lsn);
      expect((await syncOnce()).failed).toEqual([]);
      const [after] = (await pipelineStatus(ctx)).tables;
      expect(after!.reader).toBeNull();
      expect(after!.state).not.toBe('failing');
    } finally {
      await closePipeline(ctx);
    }
  });

  it('refuses a slot recreated behind its back: its position is ahead of what was acknowledged', async () => {
    await client.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
    await client.query(`INSERT INTO items VALUES (9001, 'unseen', 1, NULL)`);
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    const summary = await syncOnce();
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(
      /^\[CURSOR_INVALID\] replication slot .* is at .*, ahead of the .* pushsync acknowledged.*pushsync cdc reset --source app/,
    );
  });

  it('refuses a slot dropped after streaming from it, instead of silently starting a new one', async () => {
    await client.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
    const summary = await syncOnce();
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(/^\[CURSOR_INVALID\] replication slot .* was dropped after pushsync streamed from it/);
  });
});
