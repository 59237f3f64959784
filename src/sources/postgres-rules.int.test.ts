import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import { OutgoingSource } from '../core/outgoing.js';
import type { Cursor, KeyRange } from '../core/cursor.js';
import type { SourceRow, TableReader, TableSpec } from '../core/ports.js';
import { PostgresSource } from './postgres.js';
import { createSchema, PG_URL, uniqueName } from '../../test/helpers/services.js';

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

describe('what the Postgres source reads and sends under column rules', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let source: PostgresSource;
  let masked: OutgoingSource;
  const spec = (name: string, fields: Partial<TableSpec> = {}): TableSpec => ({
    source: 's',
    name: `${db.schema}.${name}`,
    watermark: 'updated_at',
    ...fields,
  });

  beforeAll(async () => {
    db = await createSchema();
    source = new PostgresSource({ name: 's', url: PG_URL, poolSize: 2 });
    masked = new OutgoingSource(source, { maskingKey: KEY });
    await db.client.query(
      `CREATE TABLE customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL, email text, ssn text, notes text, region text)`,
    );
    await db.client.query(
      `INSERT INTO customers SELECT g, '2024-01-01'::timestamptz + g * interval '1 s', 'c' || g || '@x.org', 'ssn-' || g, 'note ' || g, CASE WHEN g % 3 = 0 THEN 'EU' ELSE 'US' END FROM generate_series(1, 9) g`,
    );
    await db.client.query(
      `CREATE TABLE kinds (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, ts timestamptz, tsn timestamp, d date, t text, v varchar(20), c char(6), n int, b bigint, j jsonb)`,
    );
    await db.client.query(
      `INSERT INTO kinds VALUES (1, '2024-01-01', '2024-03-17 13:14:15.123456+00', '2024-03-17 13:14:15.5', '2024-03-17', 'héllo', 'secret', 'ab', 7, 9223372036854775807, '{"a":1}'),
                               (2, '2024-01-02', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    );
  });
  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  it('reads only the columns that leave: a role granted SELECT on those columns alone syncs the table, filter column included', async () => {
    const role = uniqueName('pushsync_reader');
    await db.client.query(`CREATE ROLE ${role} LOGIN`);
    await db.client.query(`GRANT USAGE ON SCHEMA ${db.schema} TO ${role}`);
    await db.client.query(`GRANT SELECT (id, updated_at, email, region) ON ${db.schema}.customers TO ${role}`);
    const url = new URL(PG_URL);
    url.username = role;
    const limited = new PostgresSource({ name: 's', url: url.toString(), poolSize: 1 });
    try {
      const reader = await limited.table(spec('customers', { columns: { exclude: ['ssn', 'notes', 'region'] }, where: "region <> 'EU'" }));
      const rows = await readAll(reader);
      expect(rows).toHaveLength(9);
      expect(rows.filter((r) => r.matched !== false).map((r) => JSON.parse(r.json) as unknown)).toEqual(
        [1, 2, 4, 5, 7, 8].map((g) => ({ id: g, updated_at: `2024-01-01T00:00:${String(g).padStart(2, '0')}+00:00`, email: `c${g}@x.org` })),
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
      // The grants really are column grants: the same role cannot read the table with every column.
      const all = await limited.table(spec('customers'));
      const err = await refusal(readAll(all));
      expect(err.details?.sqlstate).toBe('42501');
    } finally {
      await limited.close();
      await db.client.query(`REVOKE ALL ON ${db.schema}.customers FROM ${role}; REVOKE ALL ON SCHEMA ${db.schema} FROM ${role}; DROP ROLE ${role}`);
    }
  });

  it('computes masks in SQL where an exact built-in exists, encoded as pushsync sends unmasked values, and the rest once per value', async () => {
    const reader = await masked.table(
      spec('kinds', {
        masks: {
          ts: { kind: 'truncateTime', unit: 'month' },
          tsn: { kind: 'truncateTime', unit: 'day' },
          d: { kind: 'truncateTime', unit: 'year' },
          t: { kind: 'truncate', chars: 2 },
          v: { kind: 'redact', text: "it's ***" },
          c: { kind: 'truncate', chars: 3 },
          n: { kind: 'null' },
          b: { kind: 'hash' },
          j: { kind: 'hash' },
        },
      }),
    );
    const applied = Object.fromEntries(reader.shape.outgoing!.map((c) => [c.name, c.appliedIn]));
    expect(applied).toEqual({
      id: null,
      updated_at: null,
      ts: 'source',
      tsn: 'source',
      d: 'source',
      t: 'source',
      v: 'source',
      c: 'pipeline',
      n: 'source',
      b: 'pipeline',
      j: 'pipeline',
    });
    const rows = await readAll(reader);
    expect(rows.map((r) => r.json)).toEqual([
      `{"id":"1","updated_at":"2024-01-01T00:00:00+00:00","ts":"2024-03-01T00:00:00+00:00","tsn":"2024-03-17T00:00:00","d":"2024-01-01","t":"hé","v":"it's ***","c":"ab ","n":null,"b":"${hmac('9223372036854775807')}","j":"${hmac('{"a": 1}')}"}`,
      `{"id":"2","updated_at":"2024-01-02T00:00:00+00:00","ts":null,"tsn":null,"d":null,"t":null,"v":null,"c":null,"n":null,"b":null,"j":null}`,
    ]);
    expect(reader.shape.mayNest).toBe(false);
  });

  it('refuses, when the table is opened, a mask of a type it cannot apply to and a name the table does not have', async () => {
    const err = await refusal(masked.table(spec('customers', { masks: { email: { kind: 'truncateTime', unit: 'month' } } })));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toBe(`s.${db.schema}.customers: masks.email: truncate: month applies to timestamp and date columns; email is text`);
    const unknown = await refusal(masked.table(spec('customers', { columns: { include: ['id', 'mail'] } })));
    expect(unknown.message).toBe(
      `s.${db.schema}.customers: columns.include: no column mail; the columns of s.${db.schema}.customers are: id, updated_at, email, ssn, notes, region`,
    );
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
    expect(rows.map((r) => r.position)).toEqual(next.keys.map((pk, i) => ({ wm: `2024-01-01 00:00:0${i + 1}+00`, pk })));
    const range: KeyRange = { phase: 'wm', lo: rows[1]!.position, hi: next.range.hi };
    expect((await reader.readRange(range, null, 10)).map((r) => r.position.pk)).toEqual(next.keys.slice(2));
    expect(await reader.comparePositions('wm', rows[0]!.position, rows[1]!.position)).toBe(-1);
    expect((await reader.readKeys([next.keys[2]!])).map((r) => r.json)).toEqual([`{"id":"${hmac('3')}","email":"${hmac('c3@x.org')}"}`]);
    expect(await reader.keyJson([next.keys[0]!, reader.storedKey!(['77'])])).toEqual([`{"id":"${hmac('1')}"}`, `{"id":"${hmac('77')}"}`]);
    // Found by their end alone, ranges are the same and just as sealed, from a sealed cursor on.
    const after = { phase: 'wm' as const, after: next.range.hi };
    const byEnd = (await reader.nextRangeEnd!(after, 4))!;
    const byKeys = (await reader.nextRange(after, 4))!;
    expect(byEnd).toEqual({ range: byKeys.range, rows: 4 });
    expect(byEnd.range.hi.pk[0]).toMatch(/^~k1\./);
    expect(await reader.nextRangeEnd!({ phase: 'wm', after: byEnd.range.hi }, 4)).toEqual({
      range: (await reader.nextRange({ phase: 'wm', after: byEnd.range.hi }, 4))!.range,
      rows: 1,
    });
    // So are ranges planned several per statement.
    const planned = await reader.nextRangeEnds!(after, 4, 5);
    expect(planned).toEqual([
      { range: byKeys.range, rows: 4 },
      { range: (await reader.nextRange({ phase: 'wm', after: byEnd.range.hi }, 4))!.range, rows: 1 },
    ]);
    expect(planned.flatMap((e) => [...(e.range.lo?.pk ?? []), ...e.range.hi.pk]).every((k) => k.startsWith('~k1.'))).toBe(true);
  });
});
