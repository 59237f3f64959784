import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import { OutgoingSource } from '../core/outgoing.js';
import type { Cursor } from '../core/cursor.js';
import type { SourceRow, TableReader, TableSpec } from '../core/ports.js';
import { PostgresSource } from './postgres.js';
import { createSchema, PG_URL } from '../../test/helpers/services.js';

async function readAll(reader: TableReader): Promise<SourceRow[]> {
  const cursor: Cursor = { phase: 'wm', after: null };
  const next = await reader.nextRange(cursor, 1000);
  return next ? reader.readRange(next.range, null, 1000) : [];
}

/** The Postgres source reads the table's shape on every reader request and describes the table again when it changed. */
describe('Postgres readers follow the table shape', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let source: PostgresSource;
  const spec = (name: string, fields: Partial<TableSpec> = {}): TableSpec => ({
    source: 'app',
    name: `${db.schema}.${name}`,
    watermark: 'updated_at',
    ...fields,
  });

  beforeAll(async () => {
    db = await createSchema();
    source = new PostgresSource({ name: 'app', url: PG_URL, poolSize: 2 });
    for (const t of ['a', 'b', 'c'])
      await db.client.query(
        `CREATE TABLE ${t} (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT '2020-01-01'); INSERT INTO ${t} (id, v) VALUES (1, 'one')`,
      );
  });
  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  it('keeps the reader while the table is unchanged, and gives one with the new columns after a change', async () => {
    const first = await source.table(spec('a'));
    expect(await source.table(spec('a'))).toBe(first);
    expect(first.shape.relation?.columns.map((c) => [c.name, c.type])).toEqual([
      ['id', 'integer'],
      ['v', 'text'],
      ['updated_at', 'timestamp with time zone'],
    ]);
    await db.client.query(`ALTER TABLE a ADD COLUMN extra numeric(12,2) DEFAULT 1.5, ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED`);
    const second = await source.table(spec('a'));
    expect(second).not.toBe(first);
    expect(second.shape.relation?.columns.slice(3)).toMatchObject([
      { name: 'extra', type: 'numeric(12,2)', generated: false },
      { name: 'g', type: 'integer', generated: true },
    ]);
    expect(JSON.parse((await readAll(second))[0]!.json)).toMatchObject({ id: 1, v: 'one', extra: '1.50', g: 2 });
    await db.client.query(`ALTER TABLE a DROP COLUMN v`);
    const third = await source.table(spec('a'));
    expect(Object.keys(JSON.parse((await readAll(third))[0]!.json))).toEqual(['id', 'updated_at', 'extra', 'g']);
  });

  it('leaves out a listed column that was dropped while running, and wraps the new reader through the rules', async () => {
    const masked = new OutgoingSource(source, { maskingKey: null });
    const s = spec('b', { columns: { include: ['id', 'v', 'updated_at'] } });
    const before = await masked.table(s);
    await db.client.query(`ALTER TABLE b DROP COLUMN v, ADD COLUMN secret text DEFAULT 's'`);
    const after = await masked.table(s);
    expect(after).not.toBe(before);
    // The allow-list keeps the new column in; the dropped one is no longer read.
    expect(JSON.parse((await readAll(after))[0]!.json)).toEqual({ id: 1, updated_at: '2020-01-01T00:00:00+00:00' });
    // A fresh process refuses the stale name: the config names a column the table does not have.
    const fresh = new PostgresSource({ name: 'app', url: PG_URL, poolSize: 1 });
    try {
      await expect(fresh.table(s)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    } finally {
      await fresh.close();
    }
  });

  it('sees a table dropped and created again as a new identity; while it is gone, the error is retryable', async () => {
    const first = await source.table(spec('c'));
    await db.client.query(`DROP TABLE c`);
    const gone = await source.table(spec('c')).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(AppError);
    expect(gone).toMatchObject({ code: 'SOURCE_SCHEMA', retryable: true });
    await db.client.query(`CREATE TABLE c (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT '2020-01-01')`);
    const second = await source.table(spec('c'));
    expect(second).not.toBe(first);
    expect(second.shape.relation?.identity).not.toBe(first.shape.relation?.identity);
  });
});
