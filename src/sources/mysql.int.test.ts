import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { AppError } from '../core/errors.js';
import { nextPhase, type Cursor, type KeyRange } from '../core/cursor.js';
import type { SourceRow, TableReader, TableSpec } from '../core/ports.js';
import { MysqlSource } from './mysql.js';
import { createMysqlDatabase, matchesServerForm as matches, MYSQL_URL, serverForm, textRows, type MysqlDatabase } from '../../test/helpers/mysql.js';

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
    if (guard > 1000) throw new Error('the cursor stopped advancing');
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

async function refusal(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return err;
  }
  throw new Error('expected a refusal');
}

describe('MysqlSource against a real MariaDB', () => {
  let db: MysqlDatabase;
  let source: MysqlSource;
  const spec = (name: string, fields: Partial<TableSpec> = {}): TableSpec => ({ source: 's', name, watermark: 'updated_at', ...fields });

  beforeAll(async () => {
    db = await createMysqlDatabase();
    source = new MysqlSource({ name: 's', url: db.url, poolSize: 2 });
  });

  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  describe('JSON encoding of every column type', () => {
    let rows: Map<number, string>;
    const columns = new Map<string, { dataType: string; columnType: string }>();

    beforeAll(async () => {
      await db.client.query(`
        CREATE TABLE types (
          id int PRIMARY KEY, updated_at datetime(6),
          ti tinyint, si smallint unsigned, mi mediumint, i int unsigned, bi bigint, bu bigint unsigned, flag tinyint(1),
          d decimal(65,30), dm decimal(12,2), fl float, db double, bits bit(10), b1 bit(1), b64 bit(64),
          y year, dt date, dt0 datetime, dt3 datetime(3), ts timestamp NULL, ts6 timestamp(6) NULL, tm time, tm6 time(6),
          e enum('a','b','sad "quoted"'), s set('x','y','z'), j json,
          bin binary(4), vb varbinary(10), bl blob, lb longblob,
          c char(5), vc varchar(50), tx text, l1 varchar(20) CHARACTER SET latin1,
          u uuid, ip inet6, gen varchar(60) AS (CONCAT(vc, '/', id)) VIRTUAL, gst bigint unsigned AS (bu DIV 2) STORED
        )`);
      // Zero dates and zero-in-date values are only accepted outside the strict modes.
      await db.client.query(`SET SESSION sql_mode = ''`);
      await db.client.query(`
        INSERT INTO types (id, updated_at, ti, si, mi, i, bi, bu, flag, d, dm, fl, db, bits, b1, b64, y, dt, dt0, dt3, ts, ts6, tm, tm6,
                           e, s, j, bin, vb, bl, lb, c, vc, tx, l1, u, ip) VALUES
        (1, '2024-01-01 00:00:00.000001', -128, 65535, -8388608, 4294967295, -9223372036854775808, 18446744073709551615, 1,
         12345678901234567890123456789012345.123456789012345678901234567890, -0.01, 1.2345678, 0.1, b'0000000101', b'1',
         b'1111111111111111111111111111111111111111111111111111111111111111',
         2024, '2024-02-29', '2024-03-01 12:34:56', '2024-03-01 12:34:56.120', '2038-01-19 03:14:07', '2024-03-01 12:34:56.123456',
         '-838:59:59', '25:00:00.500001', 'sad "quoted"', 'x,z', '{"a": [1, 2.50, "x"], "big": 123456789012345678901234567890}',
         x'00ff1000', x'deadbeef', x'00', repeat(x'ab', 100000), 'ab', 'h\u00e9llo ☃ 😀 "q" \\\\ \t', repeat('long ', 1000), 'caf\u00e9',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1'),
        (2, '2024-01-02 00:00:00', 127, 0, 8388607, 0, 9223372036854775807, 9223372036854775808, 0,
         0, 99999999.99, 3.4028234e38, 1.7976931348623157e308, b'0', b'0', b'0',
         0, '0000-00-00', '0000-00-00 00:00:00', '2024-00-00 00:00:00', '0000-00-00 00:00:00', '1970-01-01 00:00:01', '00:00:00', '-00:00:00.000001',
         '', '', '[]', x'', '', '', '', '', '', '', '', NULL, '::'),
        (3, '2024-01-03 00:00:00', NULL, NULL, NULL, NULL, NULL, 9007199254740993, 5, 1e-30, NULL, 1.17549435e-38, 5e-324, NULL, NULL, NULL,
         1901, '2024-00-00', '9999-12-31 23:59:59', '2024-01-00 00:00:00', NULL, NULL, '838:59:59', NULL,
         'a', 'x,y,z', '{"n": -0.0e0, "s": "\\\\u00e9"}', NULL, NULL, NULL, NULL, 'abcde', 'trailing  ', NULL, NULL, NULL, NULL),
        (4, '2024-01-04 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
      await db.client.query(`SET SESSION sql_mode = DEFAULT`);
      for (const [name, dataType, columnType] of await textRows(
        db.client,
        `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'types' ORDER BY ORDINAL_POSITION`,
      )) {
        columns.set(name!, { dataType: dataType!, columnType: columnType! });
      }
      const reader = await source.table(spec('types'));
      const { rows: read } = await readAll(reader, 100);
      rows = new Map(read.map((r) => [Number(r.position.pk[0]), r.json]));
    });

    const row = (id: number): Record<string, unknown> => JSON.parse(rows.get(id)!) as Record<string, unknown>;

    it('reads every row as one JSON object whose keys are the columns in table order, generated columns included', () => {
      expect([...rows.keys()]).toEqual([1, 2, 3, 4]);
      expect(Object.keys(row(1))).toEqual([...columns.keys()]);
      expect(row(1)).toMatchObject({ gen: `${row(1).vc as string}/1`, gst: '9223372036854775807' });
    });

    it('sends every value of every column as the form of the text the server computes for it', async () => {
      const names = [...columns.keys()];
      const server = await textRows(
        db.client,
        `SELECT t.id, ${names.map((n) => serverForm(n, columns.get(n)!.dataType, columns.get(n)!.columnType)).join(', ')} FROM types t ORDER BY t.id`,
      );
      const mismatches: string[] = [];
      for (const s of server) {
        const got = row(Number(s[0]));
        names.forEach((n, i) => {
          if (n === 'j') return; // embedded JSON is compared as text below
          if (!matches(columns.get(n)!.dataType, got[n], s[i + 1]!))
            mismatches.push(`row ${s[0]} ${n}: server ${s[i + 1]} received ${JSON.stringify(got[n])}`);
        });
      }
      expect(mismatches).toEqual([]);
      const json = await textRows(db.client, `SELECT id, CAST(j AS CHAR) FROM types WHERE j IS NOT NULL ORDER BY id`);
      for (const [id, text] of json) expect(rows.get(Number(id))).toContain(`"j":${text},`);
    });

    it('sends TINYINT to INT and YEAR as JSON numbers, BIGINT signed and unsigned as strings with every digit', () => {
      expect(row(1)).toMatchObject({ ti: -128, si: 65535, mi: -8388608, i: 4294967295, flag: 1, y: 2024 });
      expect(rows.get(1)).toContain('"bi":"-9223372036854775808","bu":"18446744073709551615"');
      expect(rows.get(2)).toContain('"bi":"9223372036854775807","bu":"9223372036854775808"');
      // 2^53 + 1 is the first integer a double cannot hold.
      expect(rows.get(3)).toContain('"bu":"9007199254740993"');
      expect(row(3)).toMatchObject({ flag: 5 });
      expect(row(2)).toMatchObject({ y: 0 });
    });

    it('sends DECIMAL as a string with every digit and its scale', () => {
      expect(row(1)).toMatchObject({ d: '12345678901234567890123456789012345.123456789012345678901234567890', dm: '-0.01' });
      expect(row(3).d).toBe('0.000000000000000000000000000001');
    });

    it('sends FLOAT as the shortest decimal of the stored float and DOUBLE as the shortest of the stored double', () => {
      expect(rows.get(1)).toContain('"fl":1.2345678,"db":0.1,');
      expect(rows.get(2)).toContain('"fl":3.4028235e+38,"db":1.7976931348623157e+308,');
      expect(rows.get(3)).toContain('"fl":1.1754944e-38,"db":5e-324,');
    });

    it('sends BIT(n) as n binary digits', () => {
      expect(row(1)).toMatchObject({ bits: '0000000101', b1: '1', b64: '1'.repeat(64) });
      expect(row(2)).toMatchObject({ bits: '0000000000', b1: '0', b64: '0'.repeat(64) });
    });

    it('sends DATE, DATETIME, TIMESTAMP and TIME as the server prints them, with the column precision', () => {
      expect(row(1)).toMatchObject({
        updated_at: '2024-01-01T00:00:00.000001',
        dt: '2024-02-29',
        dt0: '2024-03-01T12:34:56',
        dt3: '2024-03-01T12:34:56.120',
        ts: '2038-01-19T03:14:07+00:00',
        ts6: '2024-03-01T12:34:56.123456+00:00',
        tm: '-838:59:59',
        tm6: '25:00:00.500001',
      });
      expect(row(2)).toMatchObject({ tm6: '-00:00:00.000001', ts6: '1970-01-01T00:00:01.000000+00:00' });
    });

    it('sends zero dates and dates with zero parts as the server prints them, without failing', () => {
      expect(row(2)).toMatchObject({ dt: '0000-00-00', dt0: '0000-00-00T00:00:00', dt3: '2024-00-00T00:00:00.000', ts: '0000-00-00T00:00:00+00:00' });
      expect(row(3)).toMatchObject({ dt: '2024-00-00', dt3: '2024-01-00T00:00:00.000' });
    });

    it('sends ENUM as its label and SET as an array of its members', () => {
      expect(row(1)).toMatchObject({ e: 'sad "quoted"', s: ['x', 'z'] });
      expect(row(2)).toMatchObject({ e: '', s: [] });
      expect(row(3)).toMatchObject({ e: 'a', s: ['x', 'y', 'z'] });
    });

    it('embeds JSON as stored, numbers as written', () => {
      expect(rows.get(1)).toContain('"j":{"a": [1, 2.50, "x"], "big": 123456789012345678901234567890}');
      expect(rows.get(3)).toContain('"j":{"n": -0.0e0, "s": "\\u00e9"}');
      expect(row(2).j).toEqual([]);
    });

    it('sends binary strings as base64, BINARY(n) with its padding', () => {
      expect(row(1)).toMatchObject({ bin: 'AP8QAA==', vb: '3q2+7w==', bl: 'AA==' });
      expect(Buffer.from(row(1).lb as string, 'base64')).toEqual(Buffer.alloc(100_000, 0xab));
      expect(row(2)).toMatchObject({ bin: 'AAAAAA==', vb: '', bl: '' });
    });

    it('sends utf8mb4 text with emoji, latin1 text, CHAR without its padding (as MySQL returns it) and other types as text', () => {
      expect(row(1)).toMatchObject({
        vc: 'h\u00e9llo ☃ 😀 "q" \\ \t',
        l1: 'caf\u00e9',
        c: 'ab',
        u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        ip: '2001:db8::1',
      });
      expect(row(3)).toMatchObject({ c: 'abcde', vc: 'trailing  ' });
      expect((row(1).tx as string).length).toBe(5000);
    });

    it('sends NULL in every column as JSON null', () => {
      const nulls = row(4);
      for (const [key, value] of Object.entries(nulls))
        if (key !== 'id' && key !== 'updated_at' && key !== 'gen' && key !== 'gst') expect(value, key).toBeNull();
      expect(Object.keys(nulls)).toHaveLength(columns.size);
    });

    it('describes the table with declared types and marks JSON columns for the depth check', async () => {
      const reader = await source.table(spec('types'));
      expect(reader.shape).toMatchObject({
        primaryKey: ['id'],
        watermark: 'updated_at',
        watermarkKind: 'timestamp',
        mayNest: true,
        schema: db.database,
        relname: 'types',
      });
      const types = new Map(reader.shape.columns.map((c) => [c.name, c.type]));
      expect(types.get('bu')).toBe('bigint(20) unsigned');
      expect(types.get('e')).toBe(`enum('a','b','sad "quoted"')`);
    });
  });

  describe('exact floating point, integers and decimals', () => {
    it('reads back random doubles, floats, unsigned BIGINTs and DECIMALs exactly as inserted', async () => {
      await db.client.query(
        `CREATE TABLE numbers (id int PRIMARY KEY, updated_at datetime, db double, fl float, bu bigint unsigned, d decimal(40,20))`,
      );
      let seed = 42;
      const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
      const values: Array<{ db: number; fl: number; bu: string; d: string }> = [];
      for (let i = 0; i < 300; i++) {
        const bits = new DataView(new ArrayBuffer(8));
        bits.setUint32(0, next() * 2 + (next() & 1));
        bits.setUint32(4, next() * 2 + (next() & 1));
        let x = bits.getFloat64(0);
        if (!Number.isFinite(x)) x = i;
        const f = Math.fround(next() / (next() + 1)) * 10 ** ((next() % 60) - 30);
        const bu = ((BigInt(next()) << 33n) ^ BigInt(next()) ^ (BigInt(next()) << 62n)) % 18446744073709551616n;
        values.push({
          db: x,
          fl: Math.fround(f),
          bu: bu.toString(),
          d: `${next()}${next()}.${String(next()).padStart(10, '0')}${String(next()).padStart(10, '0')}`,
        });
      }
      const literals = values.map((v, i) => `(${i}, '2024-01-01', ${v.db.toPrecision(17)}, ${v.fl.toPrecision(9)}, ${v.bu}, ${v.d})`);
      await db.client.query(`INSERT INTO numbers VALUES ${literals.join(', ')}`);
      const { rows } = await readAll(await source.table(spec('numbers')), 1000);
      expect(rows).toHaveLength(300);
      const normal = (d: string): string => d.replace(/^0+(?=\d)/, '');
      rows.forEach((r, i) => {
        const got = JSON.parse(r.json) as { db: number; fl: number; bu: string; d: string };
        expect(got.db, `double ${i}`).toBe(values[i]!.db);
        // The shortest decimal of the float: it reads back as the same 32-bit float.
        expect(Math.fround(got.fl), `float ${i}`).toBe(values[i]!.fl);
        expect(got.fl.toExponential().split('e')[0]!.replace(/[-.]/g, '').length).toBeLessThanOrEqual(9);
        expect(got.bu).toBe(values[i]!.bu);
        expect(got.d).toBe(normal(values[i]!.d));
      });
    });
  });

  describe('keyset paging', () => {
    const TIE = '2024-03-01 12:00:00.123456';
    const PAGE = 25;

    beforeAll(async () => {
      await db.client.query(`CREATE TABLE paging (id bigint PRIMARY KEY, updated_at datetime(6), v text, KEY (updated_at, id))`);
      const tied = Array.from({ length: 3 * PAGE + 3 }, (_, i) => `(${i + 1}, '${TIE}', 'tie')`);
      const before = Array.from({ length: 5 }, (_, i) => `(${1001 + i}, '${TIE}' - INTERVAL ${i + 1} MICROSECOND, 'before')`);
      const after = Array.from({ length: 5 }, (_, i) => `(${2001 + i}, '${TIE}' + INTERVAL ${(i + 1) * 500000} MICROSECOND, 'after')`);
      await db.client.query(
        `INSERT INTO paging VALUES ${[...tied, ...before, ...after, "(900, NULL, 'n')", "(3000, NULL, 'n')", "(7000, NULL, 'n')"].join(', ')}`,
      );
    });

    it('returns every row exactly once, NULL watermarks first by primary key, then by watermark and key', async () => {
      const { rows } = await readAll(await source.table(spec('paging')), PAGE);
      const ids = rows.map((r) => r.position.pk[0]!);
      const expected = await textRows(db.client, `SELECT id FROM paging ORDER BY updated_at IS NOT NULL, updated_at, id`);
      expect(ids).toEqual(expected.map((r) => r[0]));
      expect(ids.slice(0, 3)).toEqual(['900', '3000', '7000']);
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('pages through rows sharing one microsecond without skipping or repeating', async () => {
      const { ranges, rows } = await readAll(await source.table(spec('paging')), PAGE, PAGE, { phase: 'wm', after: null });
      const tied = rows.filter((r) => r.position.wm === TIE).map((r) => Number(r.position.pk[0]));
      expect(tied).toEqual(Array.from({ length: 3 * PAGE + 3 }, (_, i) => i + 1));
      expect(ranges.filter((r) => r.lo?.wm === TIE && r.hi.wm === TIE).length).toBeGreaterThanOrEqual(2);
    });

    it('reads a range in smaller chunks, resuming after the last row read, with the same rows', async () => {
      const reader = await source.table(spec('paging'));
      const whole = await readAll(reader, PAGE);
      const chunked = await readAll(reader, PAGE, 7);
      expect(chunked.rows.map((r) => r.json)).toEqual(whole.rows.map((r) => r.json));
    });

    it('keeps watermark positions as the exact text of DATETIME(6), microseconds included', async () => {
      const reader = await source.table(spec('paging'));
      const first = await reader.nextRange({ phase: 'wm', after: null }, 1);
      expect(first!.range.hi).toEqual({ wm: '2024-03-01 12:00:00.123451', pk: ['1005'] });
      const tieStart = await reader.nextRange({ phase: 'wm', after: { wm: '2024-03-01 12:00:00.123455', pk: ['1001'] } }, 1);
      expect(tieStart!.range.hi).toEqual({ wm: TIE, pk: ['1'] });
      expect(await reader.nextRange({ phase: 'wm', after: { wm: '2024-03-01 12:00:02.623456', pk: ['2005'] } }, PAGE)).toBeNull();
    });

    it('stops below an upper bound, so rows at or above it wait for a later run', async () => {
      const reader = await source.table(spec('paging'));
      const next = await reader.nextRange({ phase: 'wm', after: null }, 1000, TIE);
      expect(next!.rows).toBe(5);
      expect(next!.range.hi.wm).toBe('2024-03-01 12:00:00.123455');
    });

    it('pages second-precision TIMESTAMP ties of a composite key in key order', async () => {
      await db.client.query(
        `CREATE TABLE film_actor (actor_id smallint unsigned, film_id smallint unsigned, updated_at timestamp NOT NULL, PRIMARY KEY (actor_id, film_id))`,
      );
      const values = Array.from({ length: 120 }, (_, g) => `(${g % 7}, ${200 - g}, '2006-02-15 05:05:03')`);
      await db.client.query(`INSERT INTO film_actor VALUES ${values.join(', ')}`);
      const { rows } = await readAll(await source.table(spec('film_actor')), 8, 3);
      const keys = rows.map((r) => r.position.pk.join('/'));
      const expected = await textRows(db.client, `SELECT CONCAT(actor_id, '/', film_id) FROM film_actor ORDER BY updated_at, actor_id, film_id`);
      expect(keys).toEqual(expected.map((r) => r[0]));
      expect(rows[0]!.position.wm).toBe('2006-02-15 05:05:03');
    });

    it.each([
      ['a case-insensitive PAD SPACE collation', 'utf8mb4', 'utf8mb4_general_ci', ['a', 'B', 'b!', 'c ', 'C\t', 'c!', 'Zz', 'z\u00e9', '😀']],
      ['a latin1 case-insensitive collation', 'latin1', 'latin1_swedish_ci', ['A', 'b', 'B!', 'b\t', 'caf\u00e9', 'CAFE!']],
      ['a NO PAD binary collation', 'utf8mb4', 'utf8mb4_nopad_bin', ['a', 'a ', 'a  ', 'A', 'a\t', 'b']],
      ['a case-sensitive PAD SPACE collation', 'utf8mb4', 'utf8mb4_bin', ['a', 'A', 'b', 'B', 'a!', 'a\t']],
    ])('pages string keys in %s exactly once each, in the server order', async (_what, charset, collation, keys) => {
      const table = `keys_${collation}`;
      await db.client.query(
        `CREATE TABLE ${table} (code varchar(20) CHARACTER SET ${charset} COLLATE ${collation} PRIMARY KEY, updated_at datetime NOT NULL)`,
      );
      await db.client.query(`INSERT INTO ${table} VALUES ${keys.map((k) => `(${db.client.escape(k)}, '2024-01-01 00:00:00')`).join(', ')}`);
      const expected = (await textRows(db.client, `SELECT HEX(CONVERT(code USING utf8mb4)) FROM ${table} ORDER BY updated_at, code`)).map(
        (r) => r[0],
      );
      expect(expected).toHaveLength(keys.length);
      const reader = await source.table(spec(table));
      for (const page of [1, 2, 100]) {
        const { rows } = await readAll(reader, page);
        const got = rows.map((r) => Buffer.from(r.position.pk[0]!, 'utf8').toString('hex').toUpperCase());
        expect(got, `page ${page}`).toEqual(expected);
        expect(rows.map((r) => (JSON.parse(r.json) as { code: string }).code)).toEqual(rows.map((r) => r.position.pk[0]));
      }
      // A cursor compares by the collation: a key spelled in another case or with trailing spaces is that key.
      const wm = '2024-01-01 00:00:00';
      const equal = collation.endsWith('_ci') ? 0 : -1;
      expect(await reader.comparePositions('wm', { wm, pk: ['b'] }, { wm, pk: ['B  '] })).toBe(
        collation === 'utf8mb4_nopad_bin' || collation === 'utf8mb4_bin' ? 1 : equal,
      );
    });

    it('pages BINARY, UUID and BIT keys in the server order', async () => {
      await db.client.query(`
        CREATE TABLE odd_keys (b varbinary(4), u uuid, f bit(12), updated_at datetime NOT NULL, PRIMARY KEY (b, u, f))`);
      const rows = Array.from(
        { length: 30 },
        (_, i) =>
          `(x'${(i % 3 === 0 ? '00' : 'ff').padEnd(2 + (i % 4) * 2, '0a')}', '${i % 5}0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1${i % 2}', b'${(i * 37).toString(2)}', '2024-01-01')`,
      );
      await db.client.query(`INSERT IGNORE INTO odd_keys VALUES ${rows.join(', ')}`);
      const expected = await textRows(
        db.client,
        `SELECT CONCAT(HEX(b), '/', u, '/', LPAD(BIN(f), 12, '0')) FROM odd_keys ORDER BY updated_at, b, u, f`,
      );
      const { rows: read } = await readAll(await source.table(spec('odd_keys')), 4, 3);
      const keys = read.map(
        (r) => `${Buffer.from(r.position.pk[0]!, 'base64').toString('hex').toUpperCase()}/${r.position.pk[1]}/${r.position.pk[2]}`,
      );
      expect(keys).toEqual(expected.map((r) => r[0]));
    });

    it('re-reads rows by key, each only under its own spelling, and encodes keys of deleted rows like rows', async () => {
      const reader = await source.table(spec('keys_utf8mb4_general_ci'));
      // 'A' and 'C' are keys of the collation's rows 'a' and 'c ', but other keys downstream: not found.
      const found = await reader.readKeys([['A'], ['nope'], ['b!'], ['C'], ['a'], ['c '], ['c']]);
      expect(found.map((r) => [r.index, (JSON.parse(r.json) as { code: string }).code]).sort()).toEqual([
        [2, 'b!'],
        [4, 'a'],
        [5, 'c '],
      ]);
      const latin1 = await source.table(spec('keys_latin1_swedish_ci'));
      expect((await latin1.readKeys([['CAFÉ'], ['café'], ['a'], ['A']])).map((r) => r.index).sort()).toEqual([1, 3]);
      // CHAR keys are read without their padding, and found so.
      await db.client.query(`CREATE TABLE keys_char (code char(5) PRIMARY KEY, updated_at datetime NOT NULL)`);
      await db.client.query(`INSERT INTO keys_char VALUES ('ab', '2024-01-01 00:00:00'), (' x', '2024-01-01 00:00:00')`);
      const padded = await source.table(spec('keys_char'));
      expect((await padded.readKeys([['ab'], ['AB'], [' x'], ['ab ']])).map((r) => r.index).sort()).toEqual([0, 2]);
      const ids = await source.table(spec('paging'));
      expect(await ids.keyJson([['18446744073709551615'], ['5']])).toEqual(['{"id":"18446744073709551615"}', '{"id":"5"}']);
      const many = Array.from({ length: 2500 }, (_, i) => [String(i)]);
      expect((await ids.readKeys(many)).map((r) => r.index).sort((a, b) => a - b)).toEqual([
        ...Array.from({ length: 78 }, (_, i) => i + 1),
        900,
        1001,
        1002,
        1003,
        1004,
        1005,
        2001,
        2002,
        2003,
        2004,
        2005,
      ]);
    });

    it('reads a changed row only once the transaction holding it is committed, as the binary log may hand it over before', async () => {
      await db.client.query(`CREATE TABLE held (id int PRIMARY KEY, v text, updated_at datetime NOT NULL DEFAULT '2024-01-01 00:00:00')`);
      await db.client.query(`INSERT INTO held (id, v) VALUES (1, 'before')`);
      const reader = await source.table(spec('held'));
      // A transaction written to the binary log, not yet committed in the engine (with semi-synchronous replication:
      // waiting for a replica's answer).
      const writer = await mysql.createConnection(db.url);
      try {
        await writer.query(`BEGIN`);
        await writer.query(`INSERT INTO held (id, v) VALUES (2, 'inserted')`);
        await writer.query(`UPDATE held SET v = 'updated' WHERE id = 1`);
        // A plain read (reconciliation's, which only asks whether keys still exist) does not wait, and sees neither.
        expect((await reader.readKeys([['1'], ['2']])).map((r) => JSON.parse(r.json).v as string)).toEqual(['before']);
        let read: string[] | undefined;
        const reading = reader
          .readKeys([['1'], ['2']], { awaitWriters: true })
          .then((rows) => (read = rows.map((r) => JSON.parse(r.json).v as string).sort()));
        await new Promise((resolve) => setTimeout(resolve, 500));
        // A plain read would have found the insert missing and the update as it was.
        expect(read).toBeUndefined();
        await writer.query(`COMMIT`);
        await reading;
        expect(read).toEqual(['inserted', 'updated']);
      } finally {
        await writer.end();
      }
      // An incremental snapshot's range, whose rows sort after the changes streamed so far, waits the same way.
      const ranged = await mysql.createConnection(db.url);
      try {
        await ranged.query(`BEGIN`);
        await ranged.query(`UPDATE held SET v = 'ranged' WHERE id = 1`);
        const range: KeyRange = { phase: 'pk', lo: null, hi: { wm: null, pk: ['2'] } };
        expect((await reader.readRange(range, null, 10)).map((r) => JSON.parse(r.json).v as string)).toEqual(['updated', 'inserted']);
        let seen: string[] | undefined;
        const waiting = reader
          .readRange(range, null, 10, { awaitWriters: true })
          .then((rows) => (seen = rows.map((r) => JSON.parse(r.json).v as string)));
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(seen).toBeUndefined();
        await ranged.query(`COMMIT`);
        await waiting;
        expect(seen).toEqual(['ranged', 'inserted']);
      } finally {
        await ranged.end();
      }
      // A lock held past the wait fails the read, retryably: it may be the changed row's own transaction, still
      // waiting for a replica, and reading past it would lose the change.
      const impatient = new MysqlSource({ name: 's', url: db.url, poolSize: 1, lockWaitMs: 1000 });
      const open = await mysql.createConnection(db.url);
      try {
        await open.query(`BEGIN`);
        await open.query(`UPDATE held SET v = 'open' WHERE id = 2`);
        const refused = await refusal((await impatient.table(spec('held'))).readKeys([['2']], { awaitWriters: true }));
        expect(refused.retryable).toBe(true);
        expect(refused.message).toMatch(/read changed rows of s\.held: .*Lock wait timeout/);
        await open.query(`ROLLBACK`);
      } finally {
        await open.end();
        await impatient.close();
      }
    });

    it('counts NULL watermarks and tells an empty table', async () => {
      const reader = await source.table(spec('paging'));
      expect(await reader.countNullWatermark()).toBe(3);
      expect(await reader.isEmpty()).toBe(false);
      await db.client.query(`CREATE TABLE empty_t (id int PRIMARY KEY, updated_at datetime)`);
      expect(await (await source.table(spec('empty_t'))).isEmpty()).toBe(true);
    });

    it('compares cursor positions in the server order', async () => {
      const reader = await source.table(spec('paging'));
      const p = (wm: string, id: string): { wm: string; pk: string[] } => ({ wm, pk: [id] });
      expect(await reader.comparePositions('wm', p(TIE, '9'), p(TIE, '10'))).toBe(-1);
      expect(await reader.comparePositions('wm', p('2024-03-01 12:00:00.123457', '1'), p(TIE, '10'))).toBe(1);
      expect(await reader.comparePositions('wm', p(TIE, '10'), p(TIE, '10'))).toBe(0);
    });
  });

  describe('the late-commit read boundary', () => {
    it('is no later than the start of another session open transaction, and cut to the watermark precision', async () => {
      await db.client.query(`CREATE TABLE late (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), s0 datetime)`);
      const reader = await source.table(spec('late'));
      const seconds = await source.table(spec('late', { watermark: 's0' }));
      const writer = await mysql.createConnection({ uri: db.url });
      try {
        await writer.query(`SET time_zone = '+00:00'`);
        await writer.query('BEGIN');
        await writer.query('INSERT INTO late (id) VALUES (1)');
        const [[started]] = (await writer.query({
          sql: 'SELECT DATE_FORMAT(updated_at, "%Y-%m-%d %H:%i:%s.%f") FROM late WHERE id = 1',
          rowsAsArray: true,
        })) as unknown as [[string[]]];
        const boundary = (await reader.readBoundary(0))!;
        // The open transaction's row is at or above the boundary, so it is not read before it commits.
        expect(boundary <= started![0]!).toBe(true);
        await writer.query('COMMIT');
      } finally {
        await writer.end();
      }
      const lagged = (await reader.readBoundary(3_600_000))!;
      const now = (await reader.now())!;
      expect(lagged < now).toBe(true);
      expect(now).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
      expect(await seconds.readBoundary(0)).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    });

    it('sees a transaction opened while something polls information_schema.INNODB_TRX (whose cache then never refreshes)', async () => {
      await db.client.query(`CREATE TABLE polled (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`);
      const poller = await mysql.createConnection({ uri: db.url });
      const writer = await mysql.createConnection({ uri: db.url });
      let polling = true;
      const polls = (async () => {
        while (polling) {
          await poller.query('SELECT COUNT(*) FROM information_schema.INNODB_TRX');
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      try {
        await new Promise((r) => setTimeout(r, 200));
        const fresh = new MysqlSource({ name: 'fresh', url: db.url, poolSize: 1 });
        try {
          const reader = await fresh.table(spec('polled'));
          await writer.query(`SET time_zone = '+00:00'`);
          for (let i = 1; i <= 3; i++) {
            await writer.query('BEGIN');
            await writer.query(`INSERT INTO polled (id) VALUES (${i})`);
            const [[row]] = (await writer.query({
              sql: `SELECT DATE_FORMAT(updated_at, "%Y-%m-%d %H:%i:%s.%f") FROM polled WHERE id = ${i}`,
              rowsAsArray: true,
            })) as unknown as [[string[]]];
            // Past the reuse of the last list, so this boundary is placed on a list printed after the INSERT.
            await new Promise((r) => setTimeout(r, 1100));
            const boundary = (await reader.readBoundary(0))!;
            expect(boundary <= row![0]!, `boundary ${boundary} above the open transaction's row ${row![0]}`).toBe(true);
            await writer.query('COMMIT');
          }
        } finally {
          await fresh.close();
        }
      } finally {
        polling = false;
        await polls;
        await poller.end();
        await writer.end();
      }
    });

    it('stays below the row of a statement that took its NOW() before its transaction was registered', async () => {
      await db.client.query(`CREATE TABLE waited (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`);
      const locker = await mysql.createConnection({ uri: db.url });
      const writer = await mysql.createConnection({ uri: db.url });
      // A source of its own: a list printed before the INSERT began, reused, would be lower and prove nothing.
      const fresh = new MysqlSource({ name: 'fresh', url: db.url, poolSize: 1 });
      try {
        const reader = await fresh.table(spec('waited'));
        await writer.query(`SET time_zone = '+00:00'`);
        // The INSERT takes its NOW() when it begins, then waits for the table: InnoDB lists no transaction of it yet.
        await locker.query('LOCK TABLES waited READ');
        const inserted = writer.query('INSERT INTO waited (id) VALUES (1)');
        await new Promise((r) => setTimeout(r, 300));
        const boundary = (await reader.readBoundary(0))!;
        await locker.query('UNLOCK TABLES');
        await inserted;
        const [[row]] = (await writer.query({
          sql: 'SELECT DATE_FORMAT(updated_at, "%Y-%m-%d %H:%i:%s.%f") FROM waited WHERE id = 1',
          rowsAsArray: true,
        })) as unknown as [[string[]]];
        expect(boundary <= row![0]!, `boundary ${boundary} above the late row ${row![0]}`).toBe(true);
      } finally {
        await fresh.close();
        await locker.end();
        await writer.end();
      }
    });

    it('is null for watermarks that are not timestamps', async () => {
      await db.client.query(`CREATE TABLE ver (id int PRIMARY KEY, updated_at bigint, d date)`);
      expect(await (await source.table(spec('ver'))).readBoundary(0)).toBeNull();
      expect(await (await source.table(spec('ver', { watermark: 'd' }))).readBoundary(0)).toBeNull();
    });
  });

  describe('privileges', () => {
    it('warns when the user lacks PROCESS, and a timestamp boundary then fails instead of reading past open transactions', async () => {
      const user = `np_${db.database.slice(-8)}`;
      await db.client.query(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY 'pw'`);
      try {
        await db.client.query(`GRANT SELECT ON \`${db.database}\`.* TO '${user}'@'127.0.0.1'`);
        const url = new URL(db.url);
        url.username = user;
        url.password = 'pw';
        const limited = new MysqlSource({ name: 'limited', url: url.toString(), poolSize: 1 });
        try {
          const warnings = await limited.warnings();
          expect(warnings).toHaveLength(1);
          expect(warnings[0]).toContain('GRANT PROCESS ON *.* TO');
          const err = await refusal((await limited.table(spec('paging'))).readBoundary(0));
          expect(err.code).toBe('SOURCE_UNAVAILABLE');
          expect(err.retryable).toBe(false);
          expect(err.message).toContain('GRANT PROCESS');
        } finally {
          await limited.close();
        }
      } finally {
        await db.client.query(`DROP USER '${user}'@'127.0.0.1'`);
      }
      expect(await source.warnings()).toEqual([]);
    });
  });

  describe('table validation', () => {
    beforeAll(async () => {
      await db.client.query(`
        CREATE TABLE plain (id int PRIMARY KEY, updated_at datetime, UpdatedAt datetime, price float, e enum('a'), j json);
        CREATE TABLE keyless (id int NOT NULL, updated_at datetime);
        CREATE TABLE clash (id int PRIMARY KEY, updated_at datetime, _op text);`);
    });

    it('refuses a missing table with SOURCE_SCHEMA naming it', async () => {
      const err = await refusal(source.table(spec('no_such_table')));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('table no_such_table not found in source s');
    });

    it('finds a table by database.table and resolves column names without regard to case', async () => {
      const reader = await source.table(spec(`${db.database}.plain`, { watermark: 'UPDATED_AT' }));
      expect(reader.shape.watermark).toBe('updated_at');
    });

    it('refuses a missing watermark column listing the columns', async () => {
      const err = await refusal(source.table(spec('plain', { watermark: 'modified_at' })));
      expect(err.message).toContain('watermark column modified_at not found');
      expect(err.message).toContain('columns: id, updated_at, UpdatedAt');
    });

    it('refuses a table without a primary key when none is configured, and uses a configured one', async () => {
      expect((await refusal(source.table(spec('keyless')))).message).toContain('has no primary key; set primaryKey');
      expect((await source.table(spec('keyless', { primaryKey: ['id'] }))).shape.primaryKey).toEqual(['id']);
    });

    it('refuses a column named like a metadata field', async () => {
      expect((await refusal(source.table(spec('clash')))).message).toContain('"_op"');
    });

    it('refuses FLOAT, ENUM and JSON key columns, whose cursors could skip or repeat rows', async () => {
      for (const watermark of ['price', 'e', 'j']) {
        const err = await refusal(source.table(spec('plain', { watermark })));
        expect(err.code).toBe('SOURCE_SCHEMA');
        expect(err.message).toContain('cannot order a keyset');
      }
    });

    it('refuses text keys in a character set whose values do not convert to Unicode and back, which a page of one row skipped keys of', async () => {
      // sjis 0x5C and 0x815F both read as U+005C, which converts back to 0x815F: a cursor at key 0x615C became
      // 0x61815F, which sorts after 'a]' and 'a^', and the next page started past them.
      await db.client.query(`
        CREATE TABLE jis_keys (k varchar(5) CHARACTER SET sjis PRIMARY KEY, updated_at datetime NOT NULL);
        INSERT INTO jis_keys VALUES (X'615B', '2024-01-01'), (X'615C', '2024-01-01'), (X'615D', '2024-01-01'),
          (X'615E', '2024-01-01'), (X'615F', '2024-01-01');
        CREATE TABLE jis_watermark (id int PRIMARY KEY, code varchar(5) CHARACTER SET sjis NOT NULL, note varchar(5) CHARACTER SET sjis);`);
      const err = await refusal(
        source.table(spec('jis_keys')).then(async (reader) => {
          // Reached only by a reader that takes the key: it must then read every row once.
          const { rows } = await readAll(reader, 1);
          expect(rows.map((r) => r.position.pk[0])).toEqual(['a[', 'a\\', 'a]', 'a^', 'a_']);
        }),
      );
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect(err.message).toContain('s.jis_keys: primary-key column k is text in character set sjis');
      expect(err.message).toContain('convert the column to utf8mb4');
      const wm = await refusal(source.table(spec('jis_watermark', { watermark: 'code' })));
      expect(wm.message).toContain('s.jis_watermark: watermark column code is text in character set sjis');
      // Text columns that are not keys are only read and sent.
      expect((await source.table({ source: 's', name: 'jis_watermark' })).shape.primaryKey).toEqual(['id']);
    });

    it('pages text keys in a character set that converts to Unicode and back, one row a page, without skipping', async () => {
      await db.client.query(`
        CREATE TABLE koi_keys (k varchar(5) CHARACTER SET koi8r COLLATE koi8r_bin PRIMARY KEY, updated_at datetime NOT NULL);
        INSERT INTO koi_keys SELECT CHAR(0x61, seq), '2024-01-01' FROM seq_32_to_255;`);
      const { rows } = await readAll(await source.table(spec('koi_keys')), 1);
      expect(rows).toHaveLength(224);
      expect(new Set(rows.map((r) => r.position.pk[0])).size).toBe(224);
    });

    it('refuses a watermark that is also part of the primary key', async () => {
      expect((await refusal(source.table(spec('plain', { watermark: 'id' })))).code).toBe('SOURCE_SCHEMA');
    });
  });

  describe('safety of the SQL sent', () => {
    beforeAll(async () => {
      await db.client.query(`
        CREATE TABLE items (id int PRIMARY KEY, updated_at datetime NOT NULL, status varchar(10), gone tinyint(1) NOT NULL DEFAULT 0);
        CREATE TABLE audit (at datetime(6));
        CREATE TABLE y (a int);`);
      await db.client.query(
        `INSERT INTO items (id, updated_at, status) VALUES (1, '2024-01-01 00:00:01', 'live'), (2, '2024-01-01 00:00:02', 'gone'), (3, '2024-01-01 00:00:03', 'live')`,
      );
      await db.client.query(`CREATE FUNCTION noisy() RETURNS int MODIFIES SQL DATA BEGIN INSERT INTO audit VALUES (NOW(6)); RETURN 0; END`);
    });

    const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '2024-01-01 00:00:03', pk: ['3'] } };
    const audited = async (): Promise<string> => (await textRows(db.client, 'SELECT COUNT(*) FROM audit'))[0]![0]!;
    const exists = async (table: string): Promise<boolean> =>
      (
        await textRows(db.client, `SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '${table}'`)
      )[0]![0] === '1';

    it('refuses a second statement (multi-statements are off), and runs neither', async () => {
      const err = await refusal(source.query(`SELECT 1; DROP TABLE \`${db.database}\`.y`, 'probe'));
      expect(err.details?.errno).toBe(1064);
      expect(await exists('y')).toBe(true);
    });

    it('runs every statement in a read-only session, so a write is refused (1792)', async () => {
      const err = await refusal(source.query(`INSERT INTO \`${db.database}\`.y VALUES (1)`, 'probe'));
      expect(err.details?.errno).toBe(1792);
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect((await textRows(db.client, 'SELECT COUNT(*) FROM y'))[0]![0]).toBe('0');
    });

    it('refuses a soft-delete condition that closes its parenthesis or hides text in a MySQL comment', async () => {
      for (const condition of ['1) OR (1', 'status = 1 # )', "status = 'x\\' OR 1 = 1"]) {
        const err = await refusal(source.table(spec('items', { softDelete: { condition } })));
        expect(err.code).toBe('SOURCE_SCHEMA');
        expect(err.message).toContain('must be one SQL condition');
      }
    });

    it('refuses a soft-delete condition that calls a writing function when the table is read first (1792), and nothing is written', async () => {
      const err = await refusal(source.table(spec('items', { softDelete: { condition: 'noisy() = 1' } })));
      expect(err.code).toBe('SOURCE_SCHEMA');
      expect((err.cause as AppError).details?.errno).toBe(1792);
      expect(await audited()).toBe('0');
    });

    it('reads soft deletes by a condition (strings in single quotes, as the scanner reads them) and by a TINYINT(1) column', async () => {
      const byCondition = await source.table(spec('items', { softDelete: { condition: `status = 'gone'` } }));
      expect((await byCondition.readRange(range, null, 10)).map((r) => r.deleted)).toEqual([false, true, false]);
      const byKey = (await byCondition.readKeys([['3'], ['2']])).map((r) => [r.index, r.deleted]);
      expect(byKey.sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
        [0, false],
        [1, true],
      ]);
      await db.client.query('UPDATE items SET gone = 1 WHERE id = 3');
      const byColumn = await source.table(spec('items', { softDelete: { column: 'gone' } }));
      expect((await byColumn.readRange(range, null, 10)).map((r) => r.deleted)).toEqual([false, false, true]);
      const err = await refusal(source.table(spec('items', { softDelete: { condition: `status = "deleted"` } })));
      expect(err.message).toContain('softDelete condition is not valid SQL');
    });
  });

  it('reaches the server with the URL MYSQL_URL points at', () => {
    expect(MYSQL_URL).toMatch(/^mysql:\/\//);
  });
});
