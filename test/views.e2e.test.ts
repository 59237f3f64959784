import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { silverViewSql, pointInTimeSql, silverName } from '../src/core/views.js';
import { startDevSink, type DevSink } from '../src/destinations/dev-sink.js';
import { syncPass } from './helpers/pass.js';
import { dropRedisPrefix, LOGICAL_PG_URL, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';

/**
 * The current-state SQL that `pushsync views` prints, run in real DuckDB over what the dev sink stored after a
 * workload of inserts, updates, soft and hard deletes, compared row for row with the source table.
 */
interface Row {
  id: string;
  status: string | null;
  amount: string | null;
}

async function sync(config: Config, reconcile = false): Promise<void> {
  const summary = await syncPass(config, { reconcile });
  expect(summary.failed).toEqual([]);
  expect(summary.timedOut).toBe(false);
}

async function silver(sink: DevSink, target: string, sql: string): Promise<Row[]> {
  for (const statement of sql
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean))
    await sink.store.query(statement);
  const rows = await sink.store.query(`SELECT id::VARCHAR AS id, status, amount FROM ${silverName(target)} ORDER BY id::BIGINT`);
  return rows.map((r) => ({ id: String(r.id), status: (r.status as string | null) ?? null, amount: (r.amount as string | null) ?? null }));
}

async function sourceRows(client: pg.Client, where = 'TRUE'): Promise<Row[]> {
  const { rows } = await client.query<Row>(`SELECT id::text, status, amount::text FROM items WHERE ${where} ORDER BY items.id`);
  return rows;
}

async function workload(client: pg.Client): Promise<void> {
  await client.query(`UPDATE items SET status = 'shipped', amount = amount * 3, updated_at = clock_timestamp() WHERE id % 4 = 0`);
  await client.query(`DELETE FROM items WHERE id % 7 = 0`);
  await client.query(`INSERT INTO items (id, status, amount) SELECT g, 'new', g / 3.0 FROM generate_series(1001, 1020) g`);
  await client.query(`UPDATE items SET deleted_at = now(), updated_at = clock_timestamp() WHERE id % 9 = 0`);
  await client.query(`UPDATE items SET status = 'back', deleted_at = NULL, updated_at = clock_timestamp() WHERE id = 18`);
}

describe.each([
  { mode: 'watermark' as const, url: PG_URL },
  { mode: 'cdc' as const, url: LOGICAL_PG_URL },
])('the silver view equals the source after a workload ($mode mode)', ({ mode, url }) => {
  const schema = uniqueName('views');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-views-'));
  let client: pg.Client;
  let sink: DevSink;
  let config: Config;
  const target = 'bronze.app_items';

  beforeAll(async () => {
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(
      `CREATE TABLE items (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), status text, amount numeric, deleted_at timestamptz)`,
    );
    await client.query(`INSERT INTO items (id, status, amount) SELECT g, 'open', g * 1.5 FROM generate_series(1, 200) g`);
    sink = await startDevSink({ port: 0, dbPath: join(dir, 'sink.duckdb'), apiKey: 'k' });
    const table =
      mode === 'cdc'
        ? { name: `${schema}.items`, batchRows: 50, softDelete: { column: 'deleted_at' } }
        : { name: `${schema}.items`, watermark: 'updated_at', batchRows: 50, softDelete: { column: 'deleted_at' }, reconcile: { every: '1h' } };
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: sink.url, apiKey: 'k' },
        sources: [{ name: 'app', kind: 'postgres', url, mode, cdc: { slot, publication: slot, flushInterval: '50ms' }, tables: [table] }],
      },
      {},
    );
  });
  afterAll(async () => {
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`).catch(() => {});
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
    await dropRedisPrefix(prefix);
  });

  it('after inserts, updates, soft deletes and hard deletes, and as of a point in time', async () => {
    await sync(config, true);
    const before = await sourceRows(client, 'deleted_at IS NULL');
    const [first] = (await sink.store.query(`SELECT max(_ordering) AS max FROM ${target}`)) as Array<{ max: string }>;
    const maxOrdering = first!.max;

    await workload(client);
    await sync(config, true);

    const expected = await sourceRows(client, 'deleted_at IS NULL');
    const actual = await silver(sink, target, silverViewSql({ label: 'items', target, primaryKey: ['id'] }));
    expect(actual.length).toBe(expected.length);
    expect(actual).toEqual(expected);

    // The state as of the end of the first sync is the source as it was then.
    const past = await sink.store.query(
      pointInTimeSql({ label: 'items', target, primaryKey: ['id'] }, maxOrdering)
        .replace('SELECT * EXCLUDE', 'SELECT id::VARCHAR AS id, status, amount, * EXCLUDE')
        .replace(/;\s*$/, '') + ' ORDER BY id::BIGINT',
    );
    expect(past.map((r) => ({ id: String(r.id), status: r.status as string, amount: r.amount as string }))).toEqual(before);
  });
});
