import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { parseConfig } from '../src/config.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { syncPass } from './helpers/pass.js';

/**
 * The Pagila fixture (a real schema nobody here wrote: partitioned table, enum, domains, text[], tsvector, bytea,
 * composite keys) synced table by table; every value of every row is compared with the source, computed by
 * Postgres independently of the pipeline's own encoding SQL.
 */
const FIXTURE = new URL('../../shared/fixtures/pagila/', import.meta.url).pathname;

interface TableInfo {
  name: string;
  primaryKey: string[];
  watermark: string;
  columns: Array<{ name: string; type: string; category: string }>;
}

describe.runIf(existsSync(`${FIXTURE}pagila-schema.sql`))('the Pagila fixture, synced table by table', () => {
  const dbName = uniqueName('pagila');
  const url = PG_URL.replace(/\/[^/]*$/, `/${dbName}`);
  const prefix = uniqueName('ps');
  let admin: pg.Client;
  let client: pg.Client;
  let receiver: Receiver;
  let tables: TableInfo[];

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    const psql = (args: string[]): void =>
      void execFileSync('psql', [url, '-q', '-v', 'ON_ERROR_STOP=1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    psql(['-c', 'CREATE SCHEMA pagila']);
    psql(['-f', `${FIXTURE}pagila-schema.sql`]);
    psql(['-f', `${FIXTURE}pagila-data.sql`]);
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`SET TimeZone = 'UTC'`);
    // Every base table (partitions are read through their parent) with its key and a timestamp watermark.
    const { rows } = await client.query<{ name: string; pk: string[]; cols: Array<{ name: string; type: string; category: string }> }>(`
      SELECT c.relname AS name,
             ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n ORDER BY k.o)::text[] AS pk,
             (SELECT json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, NULL), 'category', t.typcategory) ORDER BY a.attnum)
              FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = 'pagila' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      ORDER BY c.relname`);
    tables = rows.map((r) => {
      const hasLastUpdate = r.cols.some((c) => c.name === 'last_update');
      // payment has no last_update and its key includes payment_date: payment_id is unique on its own.
      return hasLastUpdate
        ? { name: r.name, primaryKey: r.pk, watermark: 'last_update', columns: r.cols }
        : { name: r.name, primaryKey: r.pk.filter((c) => c !== 'payment_date'), watermark: 'payment_date', columns: r.cols };
    });
    receiver = await startReceiver('k');
  }, 120_000);

  afterAll(async () => {
    await client?.end();
    await receiver?.close();
    await dropRedisPrefix(prefix);
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });

  /** The source value of a column as comparable text, computed without the pipeline's SQL. */
  function expectedExpr(c: { name: string; type: string; category: string }): string {
    const ref = `t."${c.name}"`;
    if (c.type === 'bytea') return `translate(encode(${ref}, 'base64'), E'\\n', '')`;
    if (c.category === 'A') return `array_to_json(${ref})::text`;
    // char(n) keeps its padding in the type's own output; a cast to text would strip it.
    if (c.type === 'character') return `format('%s', ${ref})`;
    return `${ref}::text`;
  }

  /** The received value as the same comparable text. */
  function receivedText(value: unknown): string | null {
    if (value === null || value === undefined) return null;
    if (Array.isArray(value)) return JSON.stringify(value);
    if (typeof value === 'string') {
      const ts = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)\+00:00$/.exec(value);
      return ts ? `${ts[1]} ${ts[2]}+00` : value;
    }
    return String(value);
  }

  it('delivers every row of every table with every value equal to the source', async () => {
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'pagila',
            kind: 'postgres',
            url,
            tables: tables.map((t) => ({ name: `pagila.${t.name}`, watermark: t.watermark, primaryKey: t.primaryKey, batchRows: 2000 })),
          },
        ],
      },
      {},
    );
    const summary = await syncPass(config);
    expect(summary.failed).toEqual([]);

    const report: string[] = [`${'table'.padEnd(16)}${'source_rows'.padStart(12)}${'received_rows'.padStart(15)}`];
    const mismatches: string[] = [];
    for (const t of tables) {
      const keyOf = (values: unknown[]): string => JSON.stringify(values.map((v) => String(v)));
      const { rows } = await client.query({
        text: `SELECT ${t.primaryKey.map((k) => `t."${k}"::text`).join(', ')}, ${t.columns.map(expectedExpr).join(', ')} FROM pagila."${t.name}" t`,
        rowMode: 'array',
      });
      const received = (receiver.stored.get(`bronze.pagila_${t.name}`) ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);
      report.push(`${t.name.padEnd(16)}${String(rows.length).padStart(12)}${String(received.length).padStart(15)}`);
      const byKey = new Map(received.map((r) => [keyOf(t.primaryKey.map((k) => r[k])), r]));
      expect(byKey.size, `${t.name}: duplicate or missing keys`).toBe(received.length);
      for (const row of rows as unknown[][]) {
        const key = keyOf(row.slice(0, t.primaryKey.length));
        const got = byKey.get(key);
        if (!got) {
          mismatches.push(`${t.name} ${key}: missing`);
          continue;
        }
        t.columns.forEach((c, i) => {
          const want = row[t.primaryKey.length + i] as string | null;
          const have = receivedText(got[c.name]);
          if (have !== want) mismatches.push(`${t.name} ${key} ${c.name}: expected ${want} got ${have}`);
        });
      }
      expect(received.length, `${t.name} row count`).toBe(rows.length);
    }
    console.log(report.join('\n'));
    expect(mismatches.slice(0, 20)).toEqual([]);
    expect(tables.length).toBeGreaterThanOrEqual(14);
  }, 120_000);

  it('sends the same records, event ids included, when the rows are read with COPY (backfillRead: copy)', async () => {
    const copyPrefix = uniqueName('ps');
    const copyReceiver = await startReceiver('k');
    try {
      const config = (p: string, destination: string, backfillRead: 'json' | 'copy') =>
        parseConfig(
          {
            redis: { url: REDIS_URL, prefix: p },
            destination: { url: destination, apiKey: 'k' },
            sources: [
              {
                name: 'pagila',
                kind: 'postgres',
                url,
                backfillRead,
                tables: tables.map((t) => ({ name: `pagila.${t.name}`, watermark: t.watermark, primaryKey: t.primaryKey, batchRows: 2000 })),
              },
            ],
          },
          {},
        );
      if (receiver.stored.size === 0) expect((await syncPass(config(prefix, receiver.url, 'json'))).failed).toEqual([]);
      expect((await syncPass(config(copyPrefix, copyReceiver.url, 'copy'))).failed).toEqual([]);
      // Each record's text, but the time it was read: compared byte for byte.
      const texts = (r: Receiver, target: string): string[] =>
        (r.stored.get(target) ?? []).map((record) => record.replace(/"_extracted_at":"[^"]*"/, '')).sort();
      let records = 0;
      for (const t of tables) {
        const target = `bronze.pagila_${t.name}`;
        const json = texts(receiver, target);
        expect(texts(copyReceiver, target), t.name).toEqual(json);
        records += json.length;
      }
      expect(records).toBeGreaterThan(40_000);
    } finally {
      await copyReceiver.close();
      await dropRedisPrefix(copyPrefix);
    }
  }, 120_000);
});
