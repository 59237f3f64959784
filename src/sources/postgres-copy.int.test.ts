import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextPhase, type Cursor, type KeyRange, type Position } from '../core/cursor.js';
import type { TableReader, TableSpec } from '../core/ports.js';
import { PostgresSource } from './postgres.js';
import type { AppError } from '../core/errors.js';
import { createSchema, PG_URL } from '../../test/helpers/services.js';

type Db = Awaited<ReturnType<typeof createSchema>>;

interface Read {
  position: Position;
  json: string;
  deleted: boolean;
}

/** Every range of every phase, read once as Postgres's JSON (readRange) and once through COPY (readRangeBytes). */
async function readBothWays(reader: TableReader, pageRows: number): Promise<{ json: Read[]; copy: Read[]; ranges: KeyRange[] }> {
  const json: Read[] = [];
  const copy: Read[] = [];
  const ranges: KeyRange[] = [];
  let cursor: Cursor | null = { phase: reader.shape.watermark === null ? 'pk' : 'null', after: null };
  for (let guard = 0; cursor !== null; guard++) {
    if (guard > 200) throw new Error('the cursor stopped advancing');
    const next = await reader.nextRange(cursor, pageRows);
    if (!next) {
      cursor = nextPhase(cursor);
      continue;
    }
    ranges.push(next.range);
    for (const r of await reader.readRange(next.range, null, pageRows)) json.push({ position: r.position, json: r.json, deleted: r.deleted });
    const count = await reader.readRangeBytes!(next.range, null, pageRows, (r) => {
      copy.push({ position: r.position, json: r.json.toString('utf8', r.start, r.start + r.length), deleted: r.deleted });
    });
    expect(count).toBe(next.rows);
    cursor = { phase: next.range.phase, after: next.range.hi };
  }
  return { json, copy, ranges };
}

describe('reading rows with COPY gives the bytes to_json gives', () => {
  let db: Db;
  let source: PostgresSource;
  const spec = (name: string, fields: Partial<TableSpec> = {}): TableSpec => ({
    source: 's',
    name: `${db.schema}.${name}`,
    watermark: 'updated_at',
    ...fields,
  });

  beforeAll(async () => {
    db = await createSchema();
    source = new PostgresSource({ name: 's', url: PG_URL, poolSize: 2, backfillRead: 'copy' });
    await db.client.query(`
      CREATE TYPE mood AS ENUM ('happy', 'sad "quoted"');
      CREATE DOMAIN price AS numeric(12,2);
      CREATE DOMAIN label AS text;
      CREATE DOMAIN small AS int4;
      CREATE DOMAIN moment AS timestamptz;
      CREATE TYPE pair AS (n int8, b bytea);
      CREATE TABLE types (
        id int PRIMARY KEY, updated_at timestamptz,
        i2 int2, i4 int4, i8 int8, num numeric, f8 float8, f4 float4,
        tstz timestamptz, ts timestamp, d date, tm time, tmtz timetz, iv interval,
        ba bytea, js json, jsb jsonb,
        ints int[], texts text[], nums numeric[], grid int[][], bigints int8[], blobs bytea[],
        mood mood, price price, rec pair, lab label, sm small, mo moment,
        u uuid, ip inet, m money, b boolean, t text, vc varchar(20), c char(5), nm name,
        r int4range, bits bit(3), pt point, x xml,
        "quote""col" text, "tab	col" int, "é" text
      )`);
    await db.client.query(`
      INSERT INTO types VALUES
      (1, '2024-01-01 00:00:00.5+00', -32768, 2147483647, 9223372036854775807,
       1234567890123456789012345678901234567890, 0.1, 0.1,
       '2024-03-01 12:34:56.123456+00', '2024-03-01 12:34:56.123456', '2024-02-29',
       '23:59:59.999999', '12:34:56.5+05:30', '1 year 2 mons 3 days 04:05:06.789',
       '\\x00ff10', E'{"a": [1, 2.50, "x"],\\n\\t"big": 12345678901234567890, "e": "\\\\n\\\\\\\\"}',
       E'{"n": 12345678901234567890, "s": "é\\\\t\\\\u0001"}',
       '{1,-2,3}', ARRAY['a "q"', 'b,c', NULL, 'NULL', '', E'tab\\there'], '{1.10,NaN,12345678901234567890.5}', '{{1,2},{3,4}}',
       '{{9223372036854775807},{-9223372036854775807}}', ARRAY['\\x00'::bytea, '\\xdeadbeef', NULL],
       'sad "quoted"', 1234.5, ROW(1, '\\x00ff'), E'la\\\\bel', 7, '2024-05-05 05:05:05.000001+00',
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', 1234.56, true,
       E'h\\u00e9llo \\u2603 \\U0001F600 \\n\\t\\r\\b\\f\\u000b\\u0001\\u001f\\u007f "q" \\\\ }{][ \\\\N', 'v"c\\\\', 'ab', 'nm',
       '[1,5)', B'101', '(1,2)', '<x a="1"/>', 'q"', 1, 'ü'),
      (2, '2024-01-02 00:00:00+00', NULL, NULL, -9223372036854775807, 'NaN', 'NaN', 'NaN',
       'infinity', '-infinity', 'infinity', NULL, NULL, '-1 day -00:00:01',
       decode(repeat('ab', 100), 'hex'), '[]', 'null', '{}', '{}', '{}', '{}', '{}', '{}',
       NULL, NULL, NULL, '', -1, 'infinity', NULL, '::1', -0.01, false, '', '', '', '',
       'empty', NULL, NULL, NULL, '', -2, ''),
      (3, '2024-01-03 00:00:00+00', NULL, NULL, NULL, 'Infinity', 'Infinity', '-Infinity',
       '-infinity', 'infinity', '-infinity', NULL, NULL, NULL, NULL, NULL, '"str"', NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, E'\\\\N', NULL, '-infinity', NULL, NULL, NULL, NULL, E'\\\\N', NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, '2024-01-04 00:00:00+00', NULL, NULL, NULL, '-Infinity', '-Infinity', '-0',
       '0044-03-15 00:00:00+00 BC', '0044-03-15 12:00:00.25 BC', '0044-03-15 BC', NULL, NULL, NULL, NULL, '  {"pad": true}  ', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       'happy', NULL, NULL, NULL, NULL, '0044-03-15 00:00:00+00 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (5, '2024-01-05 00:00:00+00', NULL, NULL, NULL, NULL, 1e300, 3.4028235e38,
       '10000-01-01 00:00:00+00', '10000-01-01 00:00:00', '10000-01-01', NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (6, NULL, NULL, NULL, NULL, NULL, 5e-324, 1e-45, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  });

  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  it('reads every type, edge values and NULLs as the same JSON text, positions and flags, in every phase', async () => {
    const { json, copy, ranges } = await readBothWays(await source.table(spec('types')), 2);
    expect(ranges.map((r) => r.phase)).toEqual(['null', 'wm', 'wm', 'wm']);
    expect(json).toHaveLength(6);
    expect(copy).toEqual(json);
    // The rewrites themselves, spelled out: the comparison above would also pass if both paths changed alike.
    const first = JSON.parse(copy.find((r) => r.position.pk[0] === '1')!.json) as Record<string, unknown>;
    expect(first.updated_at).toBe('2024-01-01T00:00:00.5+00:00');
    expect(first.ts).toBe('2024-03-01T12:34:56.123456');
    expect(first.i8).toBe('9223372036854775807');
    expect(first['tab\tcol']).toBe(1);
    const fourth = copy.find((r) => r.position.pk[0] === '4')!.json;
    expect(fourth).toContain('"tstz":"0044-03-15T00:00:00+00:00 BC","ts":"0044-03-15T12:00:00.25 BC"');
    expect(fourth).toContain('"f4":-0,');
  });

  it('reads masks computed in SQL and a soft-delete flag the same way', async () => {
    const fields: Partial<TableSpec> = {
      masks: {
        t: { kind: 'truncate', chars: 3 },
        tstz: { kind: 'truncateTime', unit: 'month' },
        d: { kind: 'truncateTime', unit: 'year' },
        vc: { kind: 'redact', text: 'x"\\y' },
        i4: { kind: 'null' },
      },
      softDelete: { column: 'b' },
    };
    const reader = await source.table(spec('types', fields));
    const { json, copy } = await readBothWays(reader, 4);
    expect(copy).toEqual(json);
    expect(copy.filter((r) => r.deleted).map((r) => r.position.pk[0])).toEqual(['1']);
  });

  it('reads a table keyed by text in key order alone, with keys that COPY escapes', async () => {
    await db.client.query(`
      CREATE TABLE keyed (k text PRIMARY KEY, v jsonb);
      INSERT INTO keyed VALUES (E'a\\tb', '{"x": 1}'), (E'back\\\\slash', '[1]'), (E'new\\nline', NULL), ('plain', '2');`);
    const { json, copy } = await readBothWays(await source.table({ source: 's', name: `${db.schema}.keyed` }), 3);
    expect(copy.map((r) => r.position.pk[0])).toEqual(['a\tb', 'back\\slash', 'new\nline', 'plain']);
    expect(copy).toEqual(json);
  });

  it('fails the read, never sends invalid JSON, when a column changed its type after the table was described', async () => {
    await db.client.query(`
      CREATE TABLE altered (id int PRIMARY KEY, updated_at timestamptz, n int4, j jsonb);
      INSERT INTO altered VALUES (1, '2024-01-01 00:00:00+00', 1, '{}'), (2, '2024-01-02 00:00:00+00', 2, '[]');`);
    const reader = await source.table(spec('altered'));
    const next = (await reader.nextRange({ phase: 'wm', after: null }, 10))!;
    await db.client.query(`ALTER TABLE altered ALTER COLUMN n TYPE text; UPDATE altered SET n = 'not a number' WHERE id = 2`);
    const read: string[] = [];
    const failed = await reader.readRangeBytes!(next.range, null, 10, (r) => read.push(r.json.toString('utf8', r.start, r.start + r.length))).then(
      () => null,
      (err: unknown) => err as Error,
    );
    expect(failed?.message).toContain('is not in the form its columns');
    expect(failed?.message).not.toContain('not a number');
    expect((failed as AppError).retryable).toBe(true);
    for (const json of read) expect(() => JSON.parse(json) as unknown).not.toThrow();
    await db.client.query(`UPDATE altered SET n = '2' WHERE id = 2; ALTER TABLE altered ALTER COLUMN j TYPE text`);
    await db.client.query(`UPDATE altered SET j = 'not json' WHERE id = 1`);
    await expect(reader.readRangeBytes!(next.range, null, 10, () => undefined)).rejects.toThrow(/invalid input syntax for type json/);
  });

  it('reads columns whose names hold SQL words, quotes and backslashes, whatever their type', async () => {
    await db.client.query(`
      CREATE TABLE named (id int PRIMARY KEY, updated_at timestamptz, "x AS y" interval, "a AS b" int8[], "q'\\" text, "AS" mood);
      INSERT INTO named VALUES (1, '2024-01-01 00:00:00+00', '1 day', '{1,2}', 'v', 'happy'), (2, '2024-01-02 00:00:00+00', NULL, NULL, NULL, NULL);`);
    const { json, copy } = await readBothWays(await source.table(spec('named')), 10);
    expect(copy).toEqual(json);
    expect(JSON.parse(copy[0]!.json)).toMatchObject({ 'x AS y': '1 day', 'a AS b': ['1', '2'], "q'\\": 'v', AS: 'happy' });
  });

  it('rejects a COPY read the server fails, naming the read, and the pool serves the next one', async () => {
    const short = new PostgresSource({ name: 's', url: PG_URL, poolSize: 1, statementTimeoutMs: 50, backfillRead: 'copy' });
    try {
      await db.client.query(`
        CREATE TABLE slow (id int PRIMARY KEY, updated_at timestamptz, v text);
        INSERT INTO slow VALUES (1, '2024-01-01 00:00:00+00', 'a');
        CREATE VIEW slow_view AS SELECT * FROM slow WHERE pg_sleep(0.3) IS NOT NULL;`);
      // A view's rows go through COPY like a table's: its SQL is the database's, not the configuration's.
      const reader = await short.table(spec('slow_view', { primaryKey: ['id'] }));
      expect(reader.readRangeBytes).toBeTypeOf('function');
      const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '2024-01-01 00:00:00+00', pk: ['1'] } };
      const err = await reader.readRangeBytes!(range, null, 10, () => undefined).then(
        () => undefined,
        (e: unknown) => e as AppError,
      );
      expect(err?.message).toContain('read rows of');
      expect(err?.message).toContain('statement timeout');
      expect(await (await short.table(spec('slow'))).isEmpty()).toBe(false);
    } finally {
      await short.close();
    }
  });

  it('is not offered for tables with configured SQL, which keep the JSON Postgres builds', async () => {
    expect((await source.table(spec('types', { where: 'i4 > 0' }))).readRangeBytes).toBeUndefined();
    expect((await source.table(spec('types', { softDelete: { condition: 'b' } }))).readRangeBytes).toBeUndefined();
    expect((await source.table(spec('types'))).readRangeBytes).toBeTypeOf('function');
    // Not unless the source asks for it.
    const plain = new PostgresSource({ name: 's', url: PG_URL, poolSize: 1 });
    try {
      expect((await plain.table(spec('types'))).readRangeBytes).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});
