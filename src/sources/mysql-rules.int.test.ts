import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import { OutgoingSource } from '../core/outgoing.js';
import type { Cursor, KeyRange } from '../core/cursor.js';
import type { SourceRow, TableReader, TableSpec } from '../core/ports.js';
import type { Mask } from '../core/rules.js';
import { MysqlSource } from './mysql.js';
import { createMysqlDatabase, mysqlUrl, MYSQL_URL, textRows, type MysqlDatabase } from '../../test/helpers/mysql.js';
import { uniqueName } from '../../test/helpers/services.js';

const KEY = Buffer.from('a pseudonym key for these tests');
const hmac = (text: string): string => createHmac('sha256', KEY).update(text, 'utf8').digest('hex');

/** Every row of the table in keyset order, the way the pipeline reads it (one range per phase here). */
async function readAll(reader: TableReader): Promise<SourceRow[]> {
  const rows: SourceRow[] = [];
  for (const start of [
    { phase: 'null', after: null },
    { phase: 'wm', after: null },
  ] as Cursor[]) {
    const next = await reader.nextRange(start, 1000);
    if (next) rows.push(...(await reader.readRange(next.range, null, 1000)));
  }
  return rows;
}

async function refusal(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a refusal');
}

const MASKS: Record<string, Mask> = {
  ts: { kind: 'truncateTime', unit: 'month' },
  dt: { kind: 'truncateTime', unit: 'day' },
  d: { kind: 'truncateTime', unit: 'year' },
  t: { kind: 'truncate', chars: 2 },
  v: { kind: 'redact', text: "it's ***" },
  c: { kind: 'truncate', chars: 3 },
  n: { kind: 'null' },
  b: { kind: 'hash' },
  j: { kind: 'hash' },
  e: { kind: 'truncate', chars: 1 },
  s: { kind: 'hash' },
  z: { kind: 'replace', pattern: '\\.', with: ',' },
};

describe('what the MySQL/MariaDB source reads and sends under column rules', () => {
  let db: MysqlDatabase;
  let source: MysqlSource;
  let masked: OutgoingSource;
  const spec = (name: string, fields: Partial<TableSpec> = {}): TableSpec => ({ source: 's', name, watermark: 'updated_at', ...fields });
  const count = async (table: string): Promise<number> => Number((await textRows(db.client, `SELECT COUNT(*) FROM ${table}`))[0]![0]);

  beforeAll(async () => {
    db = await createMysqlDatabase();
    source = new MysqlSource({ name: 's', url: db.url, poolSize: 2 });
    masked = new OutgoingSource(source, { maskingKey: KEY });
    await db.client.query(
      `CREATE TABLE customers (id int PRIMARY KEY, updated_at datetime NOT NULL, email varchar(50), ssn varchar(20), notes text, region varchar(5))`,
    );
    await db.client.query(
      `INSERT INTO customers SELECT seq, '2024-01-01' + INTERVAL seq SECOND, CONCAT('c', seq, '@x.org'), CONCAT('ssn-', seq), CONCAT('note ', seq),
              IF(seq % 3 = 0, 'EU', 'US') FROM seq_1_to_9`,
    );
    await db.client.query(
      `CREATE TABLE kinds (id bigint PRIMARY KEY, updated_at datetime NOT NULL, ts timestamp(6) NULL, dt datetime(3), d date, t text, v varchar(20),
              c char(6), n int, b bigint, j json, bt bit(3), e enum('a', 'b'), s set('x', 'y'), z decimal(10, 2))`,
    );
    await db.client.query(
      `INSERT INTO kinds VALUES (1, '2024-01-01', '2024-03-17 13:14:15.123456', '2024-03-17 13:14:15.5', '2024-03-17', 'héllo', 'secret', 'ab', 7,
              9223372036854775807, '{"a": 1}', b'101', 'b', 'x,y', 12.5),
              (2, '2024-01-02', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    );
    await db.client.query(
      `CREATE TABLE orders (id int PRIMARY KEY, updated_at datetime NOT NULL, customer_id int, total decimal(10, 2), status varchar(10))`,
    );
    await db.client.query(
      `INSERT INTO orders SELECT seq, '2024-02-01' + INTERVAL seq SECOND, seq, seq * 10.25, IF(seq = 2, 'cancelled', 'ok') FROM seq_1_to_4`,
    );
    await db.client.query(`CREATE FUNCTION wipe() RETURNS int MODIFIES SQL DATA BEGIN DELETE FROM orders; RETURN 1; END`);
  });
  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  it('reads only the columns that leave: a user granted SELECT on those columns alone syncs the table, filter column included', async () => {
    const user = uniqueName('psr');
    await db.client.query(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY 'pw'`);
    try {
      await db.client.query(`GRANT SELECT (id, updated_at, email, region) ON \`${db.database}\`.customers TO '${user}'@'127.0.0.1'`);
      const url = new URL(mysqlUrl(db.database, MYSQL_URL));
      url.username = user;
      url.password = 'pw';
      const limited = new MysqlSource({ name: 's', url: url.toString(), poolSize: 1 });
      try {
        // The catalog shows this user only the granted columns: the rest are not there to exclude, so list what leaves.
        const reader = await limited.table(spec('customers', { columns: { include: ['id', 'updated_at', 'email'] }, where: "region <> 'EU'" }));
        expect(reader.shape.withheld?.map((c) => c.name)).toEqual(['region']);
        const rows = await readAll(reader);
        expect(rows).toHaveLength(9);
        expect(rows.filter((r) => r.matched !== false).map((r) => JSON.parse(r.json) as unknown)).toEqual(
          [1, 2, 4, 5, 7, 8].map((g) => ({ id: g, updated_at: `2024-01-01T00:00:0${g}`, email: `c${g}@x.org` })),
        );
        expect(rows.filter((r) => r.matched === false).map((r) => [r.position.pk, r.json])).toEqual([
          [['3'], ''],
          [['6'], ''],
          [['9'], ''],
        ]);
        expect((await reader.readKeys([['3'], ['4']])).map((r) => [r.index, r.matched])).toEqual([
          [0, false],
          [1, undefined],
        ]);
        // The grants really are column grants: the same user cannot read a withheld column.
        const err = await refusal(limited.query(`SELECT ssn FROM customers`, 'read a withheld column'));
        expect((err.details as { errno?: number }).errno).toBe(1143);
      } finally {
        await limited.close();
      }
    } finally {
      await db.client.query(`DROP USER '${user}'@'127.0.0.1'`);
    }
  });

  it('computes masks on the server where it has an exact built-in, encoded as unmasked values are, and the rest once per value', async () => {
    const reader = await masked.table(spec('kinds', { masks: MASKS }));
    const applied = Object.fromEntries(reader.shape.outgoing!.map((c) => [c.name, c.appliedIn]));
    expect(applied).toEqual({
      id: null,
      updated_at: null,
      ts: 'source',
      dt: 'source',
      d: 'source',
      t: 'source',
      v: 'source',
      c: 'pipeline',
      n: 'source',
      b: 'pipeline',
      j: 'pipeline',
      bt: null,
      e: 'pipeline',
      s: 'pipeline',
      z: 'pipeline',
    });
    const expected = [
      `{"id":"1","updated_at":"2024-01-01T00:00:00","ts":"2024-03-01T00:00:00.000000+00:00","dt":"2024-03-17T00:00:00.000","d":"2024-01-01","t":"hé",` +
        `"v":"it's ***","c":"ab","n":null,"b":"${hmac('9223372036854775807')}","j":"${hmac('{"a": 1}')}","bt":"101","e":"b","s":"${hmac('["x","y"]')}","z":"12,50"}`,
      `{"id":"2","updated_at":"2024-01-02T00:00:00","ts":null,"dt":null,"d":null,"t":null,"v":null,"c":null,"n":null,"b":null,"j":null,"bt":null,"e":null,"s":null,"z":null}`,
    ];
    expect((await readAll(reader)).map((r) => r.json)).toEqual(expected);
    expect((await reader.readKeys([['2'], ['1']])).map((r) => [r.index, r.json]).sort()).toEqual([
      [0, expected[1]],
      [1, expected[0]],
    ]);
    expect(reader.shape.mayNest).toBe(false);
    // A filtered table reads its values through CASE, which prints BIT as a number: the records are the same.
    const filtered = await masked.table(spec('kinds', { masks: MASKS, where: 'id > 0' }));
    expect((await readAll(filtered)).map((r) => r.json)).toEqual(expected);
    expect((await filtered.readKeys([['1']])).map((r) => r.json)).toEqual([expected[0]]);
  });

  it('refuses, when the table is opened, a mask of a type it cannot apply to, a name the table does not have and a where that does not compile', async () => {
    const err = await refusal(masked.table(spec('customers', { masks: { email: { kind: 'truncateTime', unit: 'month' } } })));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toBe('s.customers: masks.email: truncate: month applies to timestamp and date columns; email is varchar(50)');
    const unknown = await refusal(masked.table(spec('customers', { columns: { include: ['id', 'mail'] } })));
    expect(unknown.message).toBe(
      's.customers: columns.include: no column mail; the columns of s.customers are: id, updated_at, email, ssn, notes, region',
    );
    const where = await refusal(masked.table(spec('customers', { where: 'nosuch = 1' })));
    expect(where.message).toContain('s.customers: where is not valid SQL for this table');
    const lexer = await refusal(masked.table(spec('customers', { where: "`region` = 'EU'" })));
    expect(lexer.message).toContain("where of s.customers must be one SQL condition: found '`' at position 1");
  });

  it('withholds a primary key that is not included, and leaves it out of delete records', async () => {
    const reader = await masked.table(spec('customers', { columns: { include: ['email'] } }));
    const rows = await readAll(reader);
    expect(rows.map((r) => r.position.pk)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((g) => [String(g)]));
    expect(rows[0]!.json).toBe('{"email":"c1@x.org"}');
    expect(await reader.keyJson([['1']])).toEqual(['{}']);
  });

  it('seals a hashed primary key in every position and key it hands out, and reads by sealed keys', async () => {
    const reader = await masked.table(
      spec('customers', { columns: { include: ['id', 'email'] }, masks: { id: { kind: 'hash' }, email: { kind: 'hash' } } }),
    );
    const next = (await reader.nextRange({ phase: 'wm', after: null }, 4))!;
    expect(next.keys).toHaveLength(4);
    for (const k of [...next.keys.flat(), ...next.range.hi.pk]) expect(k).toMatch(/^~k1\./);
    expect(JSON.stringify(next)).not.toMatch(/"[1-4]"/);
    const rows = await reader.readRange(next.range, null, 10);
    expect(rows.map((r) => r.json)).toEqual([1, 2, 3, 4].map((g) => `{"id":"${hmac(String(g))}","email":"${hmac(`c${g}@x.org`)}"}`));
    expect(rows.map((r) => r.position)).toEqual(next.keys.map((pk, i) => ({ wm: `2024-01-01 00:00:0${i + 1}`, pk })));
    const range: KeyRange = { phase: 'wm', lo: rows[1]!.position, hi: next.range.hi };
    expect((await reader.readRange(range, null, 10)).map((r) => r.position.pk)).toEqual(next.keys.slice(2));
    expect(await reader.comparePositions('wm', rows[0]!.position, rows[1]!.position)).toBe(-1);
    expect((await reader.readKeys([next.keys[2]!])).map((r) => r.json)).toEqual([`{"id":"${hmac('3')}","email":"${hmac('c3@x.org')}"}`]);
    expect(await reader.keyJson([next.keys[0]!, reader.storedKey!(['77'])])).toEqual([`{"id":"${hmac('1')}"}`, `{"id":"${hmac('77')}"}`]);
  });

  it('sees a row move out of the filter and back in by key, with nothing of it read while it is out', async () => {
    const reader = await source.table(spec('customers', { columns: { include: ['id', 'email'] }, where: "region = 'US'" }));
    expect((await reader.readKeys([['1'], ['3']])).map((r) => [r.index, r.matched, r.json])).toEqual([
      [0, undefined, '{"id":1,"email":"c1@x.org"}'],
      [1, false, ''],
    ]);
    await db.client.query(`UPDATE customers SET region = 'EU' WHERE id = 1`);
    await db.client.query(`UPDATE customers SET region = 'US' WHERE id = 3`);
    try {
      expect((await reader.readKeys([['1'], ['3']])).map((r) => [r.index, r.matched, r.json])).toEqual([
        [0, false, ''],
        [1, undefined, '{"id":3,"email":"c3@x.org"}'],
      ]);
    } finally {
      await db.client.query(`UPDATE customers SET region = IF(id % 3 = 0, 'EU', 'US') WHERE id IN (1, 3)`);
    }
  });

  it('never sends a column added later to a table with include, and tolerates an excluded column that was dropped', async () => {
    await db.client.query(`CREATE TABLE evolving (id int PRIMARY KEY, updated_at datetime NOT NULL, a varchar(5), gone varchar(5))`);
    await db.client.query(`INSERT INTO evolving VALUES (1, '2024-01-01', 'x', 'y')`);
    const included = spec('evolving', { columns: { include: ['id', 'a'] } });
    const excluded = spec('evolving', { columns: { exclude: ['gone'] } });
    const before = [await source.table(included), await source.table(excluded)];
    await db.client.query(`ALTER TABLE evolving ADD COLUMN secret varchar(10) DEFAULT 's3cret', DROP COLUMN gone`);
    const [inc, exc] = [await source.table(included), await source.table(excluded)];
    expect(inc).not.toBe(before[0]);
    expect((await readAll(inc)).map((r) => r.json)).toEqual(['{"id":1,"a":"x"}']);
    expect((await readAll(exc)).map((r) => r.json)).toEqual(['{"id":1,"updated_at":"2024-01-01T00:00:00","a":"x","secret":"s3cret"}']);
  });

  it('reads a custom SQL table: a join, described from its result, with column rules, read by key, in a read-only transaction', async () => {
    const query =
      "SELECT o.id, o.updated_at, o.total, c.region, CONCAT(c.email, '!') AS tag, c.ssn FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status <> 'cancelled'";
    const reader = await masked.table(
      spec('paid', { query, primaryKey: ['id'], columns: { exclude: ['ssn'] }, masks: { tag: { kind: 'truncate', chars: 3 } } }),
    );
    expect(reader.shape.relation).toBeUndefined();
    expect(reader.shape.columns.map((c) => `${c.name} ${c.type}`)).toEqual([
      'id int',
      'updated_at datetime',
      'total decimal',
      'region varchar',
      'tag varchar',
      'ssn varchar',
    ]);
    const rows = await readAll(reader);
    expect(rows.map((r) => r.json)).toEqual(
      [1, 3, 4].map(
        (g) =>
          `{"id":${g},"updated_at":"2024-02-01T00:00:0${g}","total":"${(g * 10.25).toFixed(2)}","region":"${g === 3 ? 'EU' : 'US'}","tag":"c${g}@"}`,
      ),
    );
    expect((await reader.readKeys([['4'], ['2']])).map((r) => r.index)).toEqual([0]);
    expect(await reader.isEmpty()).toBe(false);
    expect(await reader.countNullWatermark()).toBe(0);
  });

  it('pages a custom SQL table by a text key in its collation, and embeds JSON columns and JSON expressions as a table read embeds JSON', async () => {
    await db.client.query(`CREATE TABLE docs (code varchar(10) COLLATE utf8mb4_general_ci PRIMARY KEY, updated_at datetime NOT NULL, body json)`);
    await db.client.query(`INSERT INTO docs VALUES ('b', '2024-01-01', '{"n": 2}'), ('A', '2024-01-01', '{"n": 1}'), ('c', '2024-01-01', NULL)`);
    const reader = await source.table(
      spec('docs_q', { query: "SELECT d.code, d.updated_at, d.body, JSON_OBJECT('c', d.code) AS built FROM docs d", primaryKey: ['code'] }),
    );
    const first = (await reader.nextRange({ phase: 'wm', after: null }, 2))!;
    expect(first.keys).toEqual([['A'], ['b']]);
    // 'a' sorts equal to 'A' in the column's collation (case-insensitive), before 'b'.
    expect(await reader.comparePositions('wm', { wm: '2024-01-01 00:00:00', pk: ['a'] }, first.range.hi)).toBe(-1);
    expect(await reader.comparePositions('wm', { wm: '2024-01-01 00:00:00', pk: ['a'] }, { wm: '2024-01-01 00:00:00', pk: ['A'] })).toBe(0);
    const rest = (await reader.nextRange({ phase: 'wm', after: first.range.hi }, 2))!;
    expect(rest.keys).toEqual([['c']]);
    expect((await readAll(reader)).map((r) => r.json)).toEqual([
      '{"code":"A","updated_at":"2024-01-01T00:00:00","body":{"n": 1},"built":{"c": "A"}}',
      '{"code":"b","updated_at":"2024-01-01T00:00:00","body":{"n": 2},"built":{"c": "b"}}',
      '{"code":"c","updated_at":"2024-01-01T00:00:00","body":null,"built":{"c": "c"}}',
    ]);
  });

  it('refuses a query of more than one statement, before and at the server, and runs nothing of it', async () => {
    const err = await refusal(source.table(spec('q', { query: 'SELECT id, updated_at FROM orders; DELETE FROM orders', primaryKey: ['id'] })));
    expect(err.message).toBe("query of s.q must be one SELECT statement: found ';' at position 34; the query must be one statement");
    // The server itself runs one statement per query: a second one is a syntax error before the first runs.
    const server = await refusal(source.query('SELECT 1; DELETE FROM orders', 'two statements', true));
    expect((server.details as { errno?: number }).errno).toBe(1064);
    expect(await count('orders')).toBe(4);
  });

  it('refuses a write attempted through a query or a where: the statement runs in a read-only transaction', async () => {
    // Describing the query runs it (with LIMIT 0), and the server refuses the write already there.
    const err = await refusal(source.table(spec('w', { query: 'SELECT o.id, o.updated_at, wipe() AS w FROM orders o', primaryKey: ['id'] })));
    expect(err.message).toBe('s.w: the query is not valid SQL: s: describe the query of w: Cannot execute statement in a READ ONLY transaction');
    const viaWhere = await refusal(source.table(spec('orders', { where: 'wipe() = 1' })));
    expect(viaWhere.message).toBe(
      's.orders: where is not valid SQL for this table: s: conditions of orders: Cannot execute statement in a READ ONLY transaction',
    );
    expect(await count('orders')).toBe(4);
  });
});
