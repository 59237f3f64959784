import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { AppError } from '../core/errors.js';
import { nextPhase, type Cursor, type KeyRange } from '../core/cursor.js';
import type { SourceRow, TableReader, TableSpec } from '../core/ports.js';
import { PostgresSource } from './postgres.js';
import { createSchema, PG_URL } from '../../test/helpers/services.js';

type Db = Awaited<ReturnType<typeof createSchema>>;

interface ReadResult {
  ranges: KeyRange[];
  rows: SourceRow[];
}

/**
 * Reads a table the way the pipeline does: nextRange from the cursor, readRange of that range in chunks of
 * `readLimit`, cursor moved to the range's end, next phase when a phase runs dry. Bounded, so a cursor that stops
 * advancing fails the test instead of hanging it.
 */
async function readAll(
  reader: TableReader,
  pageRows: number,
  readLimit = pageRows,
  start: Cursor = { phase: 'null', after: null },
): Promise<ReadResult> {
  const ranges: KeyRange[] = [];
  const rows: SourceRow[] = [];
  let cursor: Cursor | null = start;
  for (let guard = 0; cursor !== null; guard++) {
    if (guard > 500) throw new Error('the cursor stopped advancing');
    const next = await reader.nextRange(cursor, pageRows);
    if (!next) {
      cursor = nextPhase(cursor);
      continue;
    }
    ranges.push(next.range);
    const inRange: SourceRow[] = [];
    for (;;) {
      const chunk = await reader.readRange(next.range, inRange[inRange.length - 1]?.position ?? null, readLimit);
      inRange.push(...chunk);
      if (chunk.length < readLimit) break;
    }
    expect(inRange).toHaveLength(next.rows);
    expect(inRange[inRange.length - 1]!.position).toEqual(next.range.hi);
    rows.push(...inRange);
    cursor = { phase: next.range.phase, after: next.range.hi };
  }
  return { ranges, rows };
}

async function schemaError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected the table to be refused');
}

describe('PostgresSource against a real database', () => {
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
    source = new PostgresSource({ name: 's', url: PG_URL, poolSize: 2 });
  });

  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  describe('JSON encoding of every column type', () => {
    let rows: Map<number, string>;
    let money: { plain: string; negative: string };

    beforeAll(async () => {
      await db.client.query(`
        CREATE TYPE mood AS ENUM ('happy', 'sad "quoted"');
        CREATE DOMAIN price AS numeric(12,2);
        CREATE DOMAIN big AS numeric;
        CREATE TYPE pair AS (n int8, b bytea);
        CREATE TABLE types (
          id int PRIMARY KEY, updated_at timestamptz,
          i2 int2, i4 int4, i8 int8, num numeric, f8 float8, f4 float4,
          tstz timestamptz, ts timestamp, d date, tm time, tmtz timetz, iv interval,
          ba bytea, js json, jsb jsonb,
          ints int[], texts text[], nums numeric[], grid int[][], bigints int8[], blobs bytea[],
          mood mood, price price, bigs big[], rec pair,
          u uuid, ip inet, net cidr, m money, b boolean, t text, c char(5)
        )`);
      await db.client.query(`
        INSERT INTO types VALUES
        (1, '2024-01-01 00:00:00+00', -32768, 2147483647, 9223372036854775807,
         1234567890123456789012345678901234567890, 0.1, 0.1,
         '2024-03-01 12:34:56.123456+00', '2024-03-01 12:34:56.123456', '2024-02-29',
         '23:59:59.999999', '12:34:56.5+05:30', '1 year 2 mons 3 days 04:05:06.789',
         '\\x00ff10', '{"a": [1, 2.50, "x"], "big": 12345678901234567890}', '{"n": 12345678901234567890, "s": "é"}',
         '{1,-2,3}', ARRAY['a "q"', 'b,c', NULL, 'NULL', ''], '{1.10,NaN,12345678901234567890.5}', '{{1,2},{3,4}}',
         '{{9223372036854775807},{-9223372036854775807}}', ARRAY['\\x00'::bytea, '\\xdeadbeef', NULL],
         'sad "quoted"', 1234.5, '{1.5,123456789012345678901234567890}', ROW(1, '\\x00ff'),
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', 1234.56, true,
         E'h\\u00e9llo \\u2603 \\U0001F600 \\n\\t\\u0001 "q" \\\\ }{][', 'ab'),
        (2, '2024-01-02 00:00:00+00', NULL, NULL, -9223372036854775807, 'NaN', 'NaN', 'NaN',
         'infinity', '-infinity', 'infinity', NULL, NULL, '-1 day -00:00:01',
         decode(repeat('ab', 100), 'hex'), '[]', 'null', '{}', '{}', '{}', '{}', '{}', '{}',
         NULL, NULL, NULL, NULL, NULL, '::1', NULL, -0.01, false, '', NULL),
        (3, '2024-01-03 00:00:00+00', NULL, NULL, NULL, 'Infinity', 'Infinity', '-Infinity',
         '-infinity', 'infinity', '-infinity', NULL, NULL, NULL, NULL, NULL, '"str"', NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (4, '2024-01-04 00:00:00+00', NULL, NULL, NULL, '-Infinity', '-Infinity', NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (5, '2024-01-05 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
      const { rows: m } = await db.client.query<{ plain: string; negative: string }>(
        `SELECT 1234.56::money::text AS plain, (-0.01)::money::text AS negative`,
      );
      money = m[0]!;
      const reader = await source.table(spec('types'));
      const { rows: read } = await readAll(reader, 100);
      rows = new Map(read.map((r) => [Number(r.position.pk[0]), r.json]));
    });

    const row = (id: number): Record<string, unknown> => JSON.parse(rows.get(id)!) as Record<string, unknown>;

    it('reads every row as one JSON object whose keys are the columns in table order', () => {
      expect([...rows.keys()]).toEqual([1, 2, 3, 4, 5]);
      expect(Object.keys(row(1))).toEqual([
        'id',
        'updated_at',
        'i2',
        'i4',
        'i8',
        'num',
        'f8',
        'f4',
        'tstz',
        'ts',
        'd',
        'tm',
        'tmtz',
        'iv',
        'ba',
        'js',
        'jsb',
        'ints',
        'texts',
        'nums',
        'grid',
        'bigints',
        'blobs',
        'mood',
        'price',
        'bigs',
        'rec',
        'u',
        'ip',
        'net',
        'm',
        'b',
        't',
        'c',
      ]);
    });

    it('sends int2 and int4 as JSON numbers', () => {
      expect(row(1)).toMatchObject({ id: 1, i2: -32768, i4: 2147483647 });
    });

    it('sends int8 as a string with every digit, at both extremes', () => {
      expect(rows.get(1)).toContain('"i8":"9223372036854775807"');
      expect(rows.get(2)).toContain('"i8":"-9223372036854775807"');
    });

    it('sends numeric as its exact text, including NaN and the infinities', () => {
      expect(rows.get(1)).toContain('"num":"1234567890123456789012345678901234567890"');
      expect([2, 3, 4].map((id) => row(id).num)).toEqual(['NaN', 'Infinity', '-Infinity']);
    });

    it('sends a domain over numeric like numeric, and an array of such a domain like numeric[]', () => {
      expect(row(1).price).toBe('1234.50');
      expect(row(1).bigs).toEqual(['1.5', '123456789012345678901234567890']);
    });

    it('sends float8 as the shortest exact JSON number, and NaN and the infinities as strings', () => {
      expect(rows.get(1)).toContain('"f8":0.1,');
      expect(rows.get(1)).toContain('"f4":0.1,');
      expect([2, 3, 4].map((id) => row(id).f8)).toEqual(['NaN', 'Infinity', '-Infinity']);
      expect(row(3).f4).toBe('-Infinity');
    });

    it('sends timestamptz as ISO 8601 with a +00:00 offset and every microsecond', () => {
      expect(row(1).tstz).toBe('2024-03-01T12:34:56.123456+00:00');
      expect(row(1).updated_at).toBe('2024-01-01T00:00:00+00:00');
      expect([2, 3].map((id) => row(id).tstz)).toEqual(['infinity', '-infinity']);
    });

    it('sends timestamp, date, time, timetz and interval in their ISO or Postgres text forms', () => {
      expect(row(1)).toMatchObject({
        ts: '2024-03-01T12:34:56.123456',
        d: '2024-02-29',
        tm: '23:59:59.999999',
        tmtz: '12:34:56.5+05:30',
        iv: '1 year 2 mons 3 days 04:05:06.789',
      });
      expect(row(2)).toMatchObject({ ts: '-infinity', d: 'infinity', iv: '-1 days -00:00:01' });
    });

    it('sends bytea as standard base64 on one line', () => {
      expect(row(1).ba).toBe('AP8Q');
      const long = row(2).ba as string;
      expect(long).not.toMatch(/\s/);
      expect(Buffer.from(long, 'base64')).toEqual(Buffer.alloc(100, 0xab));
      expect(row(1).blobs).toEqual(['AA==', '3q2+7w==', null]);
    });

    it('embeds json and jsonb as JSON values, keeping every digit of big numbers', () => {
      expect(rows.get(1)).toContain('"js":{"a": [1, 2.50, "x"], "big": 12345678901234567890}');
      expect(rows.get(1)).toContain('"jsb":{"n": 12345678901234567890, "s": "é"}');
      expect(row(2).js).toEqual([]);
      expect(row(3).jsb).toBe('str');
    });

    it('sends arrays as JSON arrays, with text elements quoted and NULL elements null', () => {
      expect(row(1)).toMatchObject({
        ints: [1, -2, 3],
        texts: ['a "q"', 'b,c', null, 'NULL', ''],
        nums: ['1.10', 'NaN', '12345678901234567890.5'],
        grid: [
          [1, 2],
          [3, 4],
        ],
        bigints: [['9223372036854775807'], ['-9223372036854775807']],
      });
      expect(row(2)).toMatchObject({ ints: [], texts: [], nums: [], grid: [], bigints: [], blobs: null });
    });

    it('sends enum, uuid, inet, cidr, money, boolean and char(n) as Postgres prints them', () => {
      expect(row(1)).toMatchObject({
        mood: 'sad "quoted"',
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        ip: '192.168.0.1/24',
        net: '10.0.0.0/8',
        m: money.plain,
        b: true,
        c: 'ab   ',
      });
      expect(row(2)).toMatchObject({ ip: '::1', m: money.negative, b: false, t: '' });
    });

    it('sends a composite value as a nested object in Postgres default encoding', () => {
      expect(rows.get(1)).toContain('"rec":{"n":1,"b":"\\\\x00ff"}');
    });

    it('escapes unicode text with control characters, quotes and brackets into valid JSON', () => {
      expect(row(1).t).toBe('h\u00e9llo \u2603 \u{1F600} \n\t\u0001 "q" \\ }{][');
    });

    it('sends NULL in every column as JSON null', () => {
      const nulls = row(5);
      for (const [key, value] of Object.entries(nulls)) {
        if (key !== 'id' && key !== 'updated_at') expect(value, key).toBeNull();
      }
      expect(Object.keys(nulls)).toHaveLength(34);
    });

    it('sends the remaining types as the forms docs/encoding.md lists', async () => {
      await db.client.query(`
        CREATE TABLE others (id int PRIMARY KEY, updated_at timestamptz,
          r int4range, bits bit(3), pt point, tv tsvector, x xml, f8 float8, f4s real[], ms money[],
          tstz timestamptz, d date, shifted int[], jnull jsonb, y timestamptz);
        INSERT INTO others VALUES (1, '2024-01-01 00:00:00+00', '[1,5)', B'101', '(1,2)', 'a b', '<x/>', 1e300,
          '{1.5,NaN,-Infinity}', '{1.5}', '0044-03-15 00:00:00+00 BC', '0044-03-15 BC', '[0:1]={1,2}', 'null',
          '10000-01-01 00:00:00+00'),
          (2, '2024-01-02 00:00:00+00', NULL, NULL, NULL, NULL, NULL, 5e-324, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`);
      const { rows: m } = await db.client.query<{ m: string }>(`SELECT 1.5::money::text AS m`);
      const { rows: read } = await readAll(await source.table(spec('others')), 10);
      expect(read.map((r) => r.json)).toEqual([
        '{"id":1,"updated_at":"2024-01-01T00:00:00+00:00","r":"[1,5)","bits":"101","pt":"(1,2)","tv":"\'a\' \'b\'","x":"<x/>",' +
          `"f8":1e+300,"f4s":[1.5,"NaN","-Infinity"],"ms":[${JSON.stringify(m[0]!.m)}],"tstz":"0044-03-15T00:00:00+00:00 BC",` +
          '"d":"0044-03-15 BC","shifted":[1,2],"jnull":null,"y":"10000-01-01T00:00:00+00:00"}',
        '{"id":2,"updated_at":"2024-01-02T00:00:00+00:00","r":null,"bits":null,"pt":null,"tv":null,"x":null,"f8":5e-324,' +
          '"f4s":null,"ms":null,"tstz":null,"d":null,"shifted":null,"jnull":null,"y":null}',
      ]);
    });

    it('describes the table shape with declared types', async () => {
      const reader = await source.table(spec('types'));
      expect(reader.shape).toMatchObject({ primaryKey: ['id'], watermark: 'updated_at', watermarkKind: 'timestamp', mayNest: true });
      const types = new Map(reader.shape.columns.map((c) => [c.name, c.type]));
      expect(types.get('c')).toBe('character(5)');
      expect(types.get('tstz')).toBe('timestamp with time zone');
      expect(types.get('i8')).toBe('bigint');
    });
  });

  describe('keyset paging', () => {
    const TIE = '2024-03-01 12:00:00.123456+00';
    const PAGE = 25;

    beforeAll(async () => {
      await db.client.query(`CREATE TABLE paging (id bigint PRIMARY KEY, updated_at timestamptz, v text)`);
      await db.client.query(`CREATE INDEX ON paging (updated_at, id)`);
      // Three full pages and a bit share one microsecond, between rows with their own watermarks.
      await db.client.query(`
        INSERT INTO paging SELECT g, '${TIE}', 'tie ' || g FROM generate_series(1, ${3 * PAGE + 3}) g;
        INSERT INTO paging SELECT 1000 + g, '${TIE}'::timestamptz - g * interval '1 microsecond', 'before' FROM generate_series(1, 5) g;
        INSERT INTO paging SELECT 2000 + g, '${TIE}'::timestamptz + g * interval '0.5 second', 'after' FROM generate_series(1, 5) g;
        INSERT INTO paging VALUES (900, NULL, 'null a'), (3000, NULL, 'null b'), (7000, NULL, 'null c');`);
    });

    async function expectedOrder(): Promise<string[]> {
      // Aliased: `id::text` keeps the name id, and ORDER BY id would then sort the text.
      const { rows } = await db.client.query<{ k: string }>(`SELECT id::text AS k FROM paging ORDER BY updated_at IS NOT NULL, updated_at, id`);
      return rows.map((r) => r.k);
    }

    it('returns every row exactly once, NULL watermarks first by primary key, then by watermark and key', async () => {
      const reader = await source.table(spec('paging'));
      const { rows } = await readAll(reader, PAGE);
      const ids = rows.map((r) => r.position.pk[0]!);
      expect(ids).toEqual(await expectedOrder());
      expect(ids.slice(0, 3)).toEqual(['900', '3000', '7000']);
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('pages through rows sharing one microsecond watermark without skipping or repeating', async () => {
      const reader = await source.table(spec('paging'));
      const { ranges, rows } = await readAll(reader, PAGE, PAGE, { phase: 'wm', after: null });
      const tied = rows.filter((r) => r.position.wm === TIE).map((r) => Number(r.position.pk[0]));
      expect(tied).toEqual(Array.from({ length: 3 * PAGE + 3 }, (_, i) => i + 1));
      // Some ranges begin and end inside the tie: the primary key, not the watermark, is what moves the cursor.
      expect(ranges.filter((r) => r.lo?.wm === TIE && r.hi.wm === TIE).length).toBeGreaterThanOrEqual(2);
      expect(rows.every((r) => r.position.wm !== null)).toBe(true);
    });

    it('reads a range in smaller chunks, resuming after the last row read, with the same rows', async () => {
      const reader = await source.table(spec('paging'));
      const whole = await readAll(reader, PAGE);
      const chunked = await readAll(reader, PAGE, 7);
      expect(chunked.rows.map((r) => r.json)).toEqual(whole.rows.map((r) => r.json));
    });

    it('keeps watermark positions as exact database text', async () => {
      const reader = await source.table(spec('paging'));
      const first = await reader.nextRange({ phase: 'wm', after: null }, 1);
      expect(first!.range.hi).toEqual({ wm: '2024-03-01 12:00:00.123451+00', pk: ['1005'] });
      const tieStart = await reader.nextRange({ phase: 'wm', after: { wm: '2024-03-01 12:00:00.123455+00', pk: ['1001'] } }, 1);
      expect(tieStart!.range.hi).toEqual({ wm: TIE, pk: ['1'] });
    });

    it('finds the same ranges by their end alone as by their keys, in every phase, up to the last partial page', async () => {
      const reader = await source.table(spec('paging'));
      for (const phase of ['null', 'wm', 'pk'] as const) {
        let cursor: Cursor = { phase, after: null };
        let pages = 0;
        for (;;) {
          const byKeys = await reader.nextRange(cursor, 7, phase === 'wm' ? '2024-03-01 12:00:02+00' : null);
          const byEnd = await reader.nextRangeEnd!(cursor, 7, phase === 'wm' ? '2024-03-01 12:00:02+00' : null);
          expect(byEnd && { range: byEnd.range, rows: byEnd.rows }).toEqual(byKeys && { range: byKeys.range, rows: byKeys.rows });
          if (!byKeys) break;
          pages += 1;
          cursor = { phase, after: byKeys.range.hi };
        }
        expect(pages).toBeGreaterThan(phase === 'null' ? 0 : 10);
      }
    });

    it('plans the same ranges several pages per statement as one page at a time, in every phase, up to the last partial page', async () => {
      const reader = await source.table(spec('paging'));
      for (const phase of ['null', 'wm', 'pk'] as const) {
        const bound = phase === 'wm' ? '2024-03-01 12:00:02+00' : null;
        const one: Array<{ range: KeyRange; rows: number }> = [];
        for (let cursor: Cursor = { phase, after: null }; ;) {
          const next = await reader.nextRange(cursor, 7, bound);
          if (!next) break;
          one.push({ range: next.range, rows: next.rows });
          cursor = { phase, after: next.range.hi };
        }
        for (const pages of [1, 3, 1000]) {
          const many: Array<{ range: KeyRange; rows: number }> = [];
          for (let cursor: Cursor = { phase, after: null }; ;) {
            const ends = await reader.nextRangeEnds!(cursor, 7, pages, bound);
            expect(ends.length).toBeLessThanOrEqual(pages);
            many.push(...ends);
            const last = ends[ends.length - 1];
            if (!last) break;
            cursor = { phase, after: last.range.hi };
          }
          expect(many).toEqual(one);
        }
        expect(one.length).toBeGreaterThan(phase === 'null' ? 0 : 10);
      }
    });

    it('finds no range past the last row', async () => {
      const reader = await source.table(spec('paging'));
      expect(await reader.nextRange({ phase: 'wm', after: { wm: '2024-03-01 12:00:02.623456+00', pk: ['2005'] } }, PAGE)).toBeNull();
      expect(await reader.nextRange({ phase: 'null', after: { wm: null, pk: ['7000'] } }, PAGE)).toBeNull();
    });

    it('counts the rows whose watermark is NULL', async () => {
      const reader = await source.table(spec('paging'));
      expect(await reader.countNullWatermark()).toBe(3);
      await db.client.query(`INSERT INTO paging VALUES (7001, NULL, 'null d')`);
      expect(await reader.countNullWatermark()).toBe(4);
      await db.client.query(`DELETE FROM paging WHERE id = 7001`);
    });

    it('pages a composite primary key in key order within one watermark', async () => {
      await db.client.query(`
        CREATE TABLE composite (a int, b text, updated_at timestamptz, PRIMARY KEY (a, b));
        INSERT INTO composite SELECT g % 4, 'k' || lpad((g / 4)::text, 3, '0'), '${TIE}' FROM generate_series(0, 41) g;
        INSERT INTO composite VALUES (0, 'z', NULL), (0, 'a', NULL);`);
      const reader = await source.table(spec('composite'));
      expect(reader.shape.primaryKey).toEqual(['a', 'b']);
      const { rows } = await readAll(reader, 4, 3);
      const keys = rows.map((r) => r.position.pk.join('/'));
      const { rows: expected } = await db.client.query<{ k: string }>(
        `SELECT a || '/' || b AS k FROM composite ORDER BY updated_at IS NOT NULL, updated_at, a, b`,
      );
      expect(keys).toEqual(expected.map((r) => r.k));
      expect(keys.slice(0, 2)).toEqual(['0/a', '0/z']);
      expect(new Set(keys).size).toBe(44);
    });

    it('pages a char(n) primary key without truncating key values (regression: parameters were cast to char(1))', async () => {
      await db.client.query(`
        CREATE TABLE chars (code char(3) PRIMARY KEY, updated_at timestamptz);
        INSERT INTO chars VALUES ('aaa', '${TIE}'), ('aab', '${TIE}'), ('ab', '${TIE}'), ('b', '${TIE}');`);
      const reader = await source.table(spec('chars'));
      const { rows } = await readAll(reader, 1);
      expect(rows.map((r) => r.position.pk[0])).toEqual(['aaa', 'aab', 'ab', 'b']);
    });

    it('reads a mixed-case table with quoted, quote-containing column names', async () => {
      await db.client.query(`
        CREATE TABLE "Order Items" ("Order Id" int, "Line""No" int, "Updated At" timestamptz, "Note" text,
                                    PRIMARY KEY ("Order Id", "Line""No"));
        INSERT INTO "Order Items" VALUES (1, 2, '${TIE}', 'x'), (1, 1, '${TIE}', 'y'), (0, 9, NULL, 'z');`);
      const reader = await source.table(spec('"Order Items"', { watermark: '"Updated At"' }));
      expect(reader.shape.primaryKey).toEqual(['Order Id', 'Line"No']);
      expect(reader.shape.watermark).toBe('Updated At');
      const { rows } = await readAll(reader, 1);
      expect(rows.map((r) => JSON.parse(r.json) as Record<string, unknown>)).toEqual([
        { 'Order Id': 0, 'Line"No': 9, 'Updated At': null, Note: 'z' },
        { 'Order Id': 1, 'Line"No': 1, 'Updated At': '2024-03-01T12:00:00.123456+00:00', Note: 'y' },
        { 'Order Id': 1, 'Line"No': 2, 'Updated At': '2024-03-01T12:00:00.123456+00:00', Note: 'x' },
      ]);
      expect(await reader.countNullWatermark()).toBe(1);
    });

    it('reads columns named like the query aliases (regression: a column r made to_json(r) ambiguous)', async () => {
      await db.client.query(`
        CREATE TABLE aliases (id int PRIMARY KEY, updated_at timestamptz, t text, r int, "__j" text, "__w" int, "__k0" int);
        INSERT INTO aliases VALUES (1, '${TIE}', 'tee', 2, 'jay', 3, 4);`);
      const { rows } = await readAll(await source.table(spec('aliases')), 10);
      expect(rows.map((r) => r.json)).toEqual([
        '{"id":1,"updated_at":"2024-03-01T12:00:00.123456+00:00","t":"tee","r":2,"__j":"jay","__w":3,"__k0":4}',
      ]);
      expect(rows[0]!.position).toEqual({ wm: TIE, pk: ['1'] });
    });

    it('hands each row of a range over as it arrives, the same rows as readRange, with or without configured SQL', async () => {
      await db.client.query(`
        CREATE TABLE streamed (id int PRIMARY KEY, updated_at timestamptz, v text, gone boolean);
        INSERT INTO streamed SELECT i, '${TIE}'::timestamptz + i * interval '1 microsecond', 'v' || i, i % 3 = 0 FROM generate_series(1, 250) i;`);
      for (const fields of [{}, { softDelete: { column: 'gone' } }]) {
        const reader = await source.table(spec('streamed', fields));
        const next = (await reader.nextRange({ phase: 'wm', after: null }, 200))!;
        const collected = await reader.readRange(next.range, null, 150);
        const streamed: SourceRow[] = [];
        expect(await reader.readRangeEach!(next.range, null, 150, (row) => streamed.push(row))).toBe(150);
        expect(streamed).toEqual(collected);
        expect(streamed.filter((r) => r.deleted)).toHaveLength(Object.keys(fields).length === 0 ? 0 : 50);
      }
    });

    it('rejects with what a row handler threw once the read has ended, and the connection serves the next read', async () => {
      const reader = await source.table(spec('streamed'));
      const next = (await reader.nextRange({ phase: 'wm', after: null }, 100))!;
      let seen = 0;
      const boom = new AppError('ROW_TOO_LARGE', 'thrown by the handler');
      const err = await reader.readRangeEach!(next.range, null, 100, () => {
        seen += 1;
        if (seen === 3) throw boom;
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBe(boom);
      expect(seen).toBe(3);
      // Both connections of the pool still work (a handler's throw does not close one).
      const again = await Promise.all([1, 2].map(() => reader.readRange(next.range, null, 100)));
      expect(again.map((rows) => rows.length)).toEqual([100, 100]);
    });

    it('rejects a streamed read the server fails, naming the read', async () => {
      const short = new PostgresSource({ name: 's', url: PG_URL, poolSize: 1, statementTimeoutMs: 50 });
      try {
        await db.client.query(`CREATE TABLE slow (id int PRIMARY KEY, updated_at timestamptz, v text)`);
        await db.client.query(`INSERT INTO slow VALUES (1, '${TIE}', 'a')`);
        const reader = await short.table(spec('slow', { where: 'pg_sleep(0.3) IS NOT NULL' }));
        const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: TIE, pk: ['1'] } };
        const err = await reader.readRangeEach!(range, null, 10, () => undefined).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).message).toContain('read rows of');
        expect(await reader.isEmpty()).toBe(false);
      } finally {
        await short.close();
      }
    });

    it('places the read boundary at or below an open transaction, and refuses it when track_activities is off', async () => {
      await db.client.query(`CREATE TABLE bounded (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
      const reader = await source.table(spec('bounded'));
      const writer = new pg.Client({ connectionString: PG_URL, options: '-c TimeZone=UTC' });
      await writer.connect();
      try {
        await writer.query('BEGIN');
        await writer.query(`INSERT INTO ${db.schema}.bounded (id) VALUES (1)`);
        const { rows } = await writer.query<{ at: string }>(`SELECT updated_at::text AS at FROM ${db.schema}.bounded`);
        const boundary = (await reader.readBoundary(0))!;
        expect(new Date(boundary.replace(' ', 'T').replace(/\+00$/, 'Z')).getTime()).toBeLessThanOrEqual(
          new Date(rows[0]!.at.replace(' ', 'T').replace(/\+00$/, 'Z')).getTime(),
        );
        await writer.query('COMMIT');
      } finally {
        await writer.end();
      }
      const role = `blind_${db.schema.slice(-8)}`;
      await db.client.query(`CREATE ROLE ${role} LOGIN SUPERUSER`);
      await db.client.query(`ALTER ROLE ${role} SET track_activities = off`);
      const url = new URL(PG_URL);
      url.username = role;
      const blind = new PostgresSource({ name: 'blind', url: url.toString(), poolSize: 1 });
      try {
        const err = await (await blind.table(spec('bounded'))).readBoundary(0).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).code).toBe('SOURCE_UNAVAILABLE');
        expect((err as AppError).message).toMatch(/track_activities is off on the server/);
      } finally {
        await blind.close();
        await db.client.query(`DROP ROLE ${role}`);
      }
    });

    it('reads a page and whether the table is empty in one statement', async () => {
      await db.client.query(`CREATE TABLE probe (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
      await db.client.query(`INSERT INTO probe SELECT g, '${TIE}' FROM generate_series(1, 5) g`);
      const reader = await source.table(spec('probe'));
      const start = { phase: 'wm' as const, after: null };
      // With rows: the same page as nextRange, nothing more.
      expect(await reader.nextRangeOrEmpty!(start, 3, null)).toEqual(await reader.nextRange(start, 3, null));
      const end = { phase: 'wm' as const, after: { wm: TIE, pk: ['5'] } };
      expect(await reader.nextRangeOrEmpty!(end, 3, null)).toBeNull();
      await db.client.query(`TRUNCATE probe`);
      expect(await reader.nextRangeOrEmpty!(end, 3, null)).toBe('empty');
      expect(await reader.nextRangeOrEmpty!(start, 3, null)).toBe('empty');
      // A composite key in the pk phase: the marker row has one NULL per key column.
      await db.client.query(`CREATE TABLE probe2 (a int, b text, PRIMARY KEY (a, b))`);
      const keyed = await source.table(spec('probe2', { watermark: undefined }));
      expect(await keyed.nextRangeOrEmpty!({ phase: 'pk', after: null }, 3, null)).toBe('empty');
      await db.client.query(`INSERT INTO probe2 VALUES (1, 'x'), (2, 'y')`);
      const page = await keyed.nextRangeOrEmpty!({ phase: 'pk', after: null }, 3, null);
      expect(page).toMatchObject({
        rows: 2,
        keys: [
          ['1', 'x'],
          ['2', 'y'],
        ],
      });
    });

    it('uses a configured primary key for a table without one', async () => {
      await db.client.query(`
        CREATE TABLE nokey (id int NOT NULL, updated_at timestamptz);
        INSERT INTO nokey VALUES (2, '${TIE}'), (1, '${TIE}');`);
      const reader = await source.table(spec('nokey', { primaryKey: ['id'] }));
      const { rows } = await readAll(reader, 1);
      expect(rows.map((r) => r.json)).toEqual([
        '{"id":1,"updated_at":"2024-03-01T12:00:00.123456+00:00"}',
        '{"id":2,"updated_at":"2024-03-01T12:00:00.123456+00:00"}',
      ]);
    });
  });

  describe('table validation', () => {
    beforeAll(async () => {
      await db.client.query(`
        CREATE TABLE plain (id int PRIMARY KEY, updated_at timestamptz, "UpdatedAt" timestamptz);
        CREATE TABLE keyless (id int, updated_at timestamptz);
        CREATE TABLE clash (id int PRIMARY KEY, updated_at timestamptz, _op text);`);
    });

    it('refuses a missing table with SOURCE_SCHEMA naming it', async () => {
      const err = await schemaError(source.table(spec('no_such_table')));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain(`${db.schema}.no_such_table not found`);
    });

    it('refuses a missing watermark column with SOURCE_SCHEMA listing the columns', async () => {
      const err = await schemaError(source.table(spec('plain', { watermark: 'modified_at' })));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('watermark column modified_at not found');
      expect(err.message).toContain('columns: id, updated_at, UpdatedAt');
    });

    it('suggests quoting when a watermark differs from a column only in case', async () => {
      const err = await schemaError(source.table(spec('plain', { watermark: 'UpdatedAt' })));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('did you mean "UpdatedAt"');
    });

    it('refuses a table without a primary key when none is configured', async () => {
      const err = await schemaError(source.table(spec('keyless')));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('has no primary key; set primaryKey');
    });

    it('refuses a column named like a metadata field', async () => {
      const err = await schemaError(source.table(spec('clash')));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('"_op"');
    });

    it('refuses a watermark that is also part of the primary key', async () => {
      const err = await schemaError(source.table(spec('plain', { watermark: 'id' })));
      expect(err.code).toBe('SOURCE_SCHEMA');
    });

    it('refuses a dotted column name instead of silently using its first part', async () => {
      const err = await schemaError(source.table(spec('plain', { watermark: 'plain.updated_at' })));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('single column name');
    });

    it('refuses a malformed table name with SOURCE_SCHEMA', async () => {
      const err = await schemaError(source.table({ source: 's', name: `${db.schema}."unterminated`, watermark: 'updated_at' }));
      expect(err.code).toBe('SOURCE_SCHEMA');
    });
  });
});
