import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startDevSink, type DevSink } from './dev-sink.js';
import { runPushsync } from '../../test/helpers/cli.js';

/** The running dev sink answers read-only SQL and exports Parquet; everything else is refused. */
describe('dev sink query and export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-devsink-query-'));
  let sink: DevSink;
  let base: string;

  beforeAll(async () => {
    sink = await startDevSink({ port: 0, dbPath: join(dir, 'sink.duckdb'), apiKey: 'k' });
    base = sink.url.replace(/\/v2\/stream$/, '');
    await sink.store.append('bronze.orders', [
      '{"id":"9007199254740993","amount":"12.50","status":"open"}',
      '{"id":"2","amount":"0.10","status":null}',
    ]);
  });
  afterAll(async () => {
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = async (path: string, body: string, key = 'k'): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await request(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  };
  const refusal = async (sql: string): Promise<string> => {
    const r = await post('/query', sql);
    expect(r.status).toBe(400);
    return (r.json.errors as Array<{ code: string; message: string }>)[0]!.code + ' ' + (r.json.errors as Array<{ message: string }>)[0]!.message;
  };

  it('pushsync dev-sink query takes the key from --api-key, wherever it is written, or from DEFINITE_API_KEY', async () => {
    const sql = 'SELECT count(*)::INT AS n FROM bronze.orders';
    for (const args of [
      ['dev-sink', 'query', sql, '--url', base, '--api-key', 'k', '--json'],
      ['dev-sink', 'query', '--api-key', 'k', '--url', base, '--json', sql],
    ]) {
      const run = await runPushsync(args);
      expect(run.stderr).toBe('');
      expect(JSON.parse(run.stdout)).toMatchObject({ rows: [{ n: 2 }] });
    }
    const byEnv = await runPushsync(['dev-sink', 'query', sql, '--url', base, '--json'], { DEFINITE_API_KEY: 'k' });
    expect(JSON.parse(byEnv.stdout)).toMatchObject({ rows: [{ n: 2 }] });
    const none = await runPushsync(['dev-sink', 'query', sql, '--url', base]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('pass --api-key <key> or set DEFINITE_API_KEY');
    const wrong = await runPushsync(['dev-sink', 'query', sql, '--url', base, '--api-key', 'nope']);
    expect(wrong.code).not.toBe(0);
  }, 120_000);

  it('answers one SELECT while the sink runs, with bigint and numeric as text until cast', async () => {
    const r = await post(
      '/query',
      'SELECT id::BIGINT AS id, amount::DECIMAL(12,2) AS amount, amount AS raw FROM bronze.orders ORDER BY id::BIGINT DESC',
    );
    expect(r.status).toBe(200);
    expect(r.json.columns).toEqual(['id', 'amount', 'raw']);
    expect(r.json.rows).toEqual([
      { id: '9007199254740993', amount: '12.50', raw: '12.50' },
      { id: '2', amount: '0.10', raw: '0.10' },
    ]);
    const types = await post('/query', "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'orders' ORDER BY 1");
    // information_schema is not the sink's own: refused like any other outside relation.
    expect(types.status).toBe(400);
    const cte = await post('/query', 'WITH o AS (SELECT * FROM bronze.orders) SELECT count(*) AS n FROM o');
    expect(cte.json.rows).toEqual([{ n: '2' }]);
  });

  it('refuses writes, file access, other catalogs, several statements and a wrong key', async () => {
    const cases: Array<[string, RegExp]> = [
      ["COPY bronze.orders TO '/tmp/pushsync-leak.csv'", /only a single SELECT/],
      ['DELETE FROM bronze.orders', /only a single SELECT/],
      ['CREATE TABLE bronze.x AS SELECT 1', /only a single SELECT/],
      ["ATTACH '/tmp/pushsync-other.duckdb' AS o", /only a single SELECT/],
      ['INSTALL httpfs', /only a single SELECT/],
      ['SET enable_external_access = true', /only a single SELECT/],
      ['PRAGMA version', /only a single SELECT/],
      ["SELECT * FROM read_csv('/etc/passwd')", /table function read_csv/],
      ["SELECT * FROM '/etc/passwd'", /\/etc\/passwd is not a table or view/],
      ["SELECT * FROM glob('/*')", /table function glob/],
      ["SELECT getenv('HOME')", /function getenv/],
      ['SELECT 1; SELECT 2', /exactly one statement|syntax error/],
      ['SELECT * FROM bronze.orders; DELETE FROM bronze.orders', /exactly one statement|only a single SELECT|syntax error/],
      ['SELECT * FROM other.main.t', /catalog other/],
      ['SELECT * FROM duckdb_settings()', /table function duckdb_settings/],
      ["SELECT * FROM (SELECT 1) s, (SELECT * FROM read_parquet('/x')) t", /table function read_parquet/],
    ];
    for (const [sql, why] of cases) expect(await refusal(sql), sql).toMatch(why);
    expect(existsSync('/tmp/pushsync-leak.csv')).toBe(false);
    // Nothing was changed.
    expect((await post('/query', 'SELECT count(*) AS n FROM bronze.orders')).json.rows).toEqual([{ n: '2' }]);
    expect((await post('/query', 'SELECT 1', 'wrong')).status).toBe(401);
  });

  it('exports every table to Parquet that DuckDB reads back', async () => {
    const out = join(dir, 'parquet');
    const r = await post('/export', JSON.stringify({ parquet: out }));
    expect(r.status).toBe(200);
    expect(r.json.files).toEqual([{ table: 'bronze.orders', file: join(out, 'bronze.orders.parquet'), rows: 2 }]);
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const rows = (
      await conn.runAndReadAll(`SELECT id, amount FROM read_parquet('${join(out, 'bronze.orders.parquet')}') ORDER BY id`)
    ).getRowObjectsJson();
    conn.closeSync();
    db.closeSync();
    expect(rows).toEqual([
      { id: '2', amount: '0.10' },
      { id: '9007199254740993', amount: '12.50' },
    ]);
    expect((await post('/export', JSON.stringify({ parquet: 'relative/dir' }))).status).toBe(400);
  });
});
