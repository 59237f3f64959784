import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import type { KeyRange } from '../core/cursor.js';
import type { TableSpec } from '../core/ports.js';
import { PostgresSource } from './postgres.js';
import { createSchema, PG_URL } from '../../test/helpers/services.js';

async function refusal(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a refusal');
}

/** The attack as first written, and the same one fitted to the statement that validates a condition. */
const CLOSING_CONDITIONS = (schema: string): string[] => [
  'true) FROM t LIMIT 0; DROP TABLE y; SELECT (true',
  `true) FROM (SELECT t.*) AS row_), false) FROM ${schema}.items t LIMIT 0; DROP TABLE ${schema}.y; SELECT COALESCE((SELECT (true`,
];

describe('the SQL the Postgres source sends cannot write', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let source: PostgresSource;
  const spec = (condition: string): TableSpec => ({ source: 's', name: `${db.schema}.items`, watermark: 'updated_at', softDelete: { condition } });
  const exists = async (table: string): Promise<boolean> =>
    (await db.client.query<{ r: string | null }>(`SELECT to_regclass($1)::text AS r`, [`${db.schema}.${table}`])).rows[0]!.r !== null;
  const audited = async (): Promise<number> => Number((await db.client.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit`)).rows[0]!.n);

  beforeAll(async () => {
    db = await createSchema();
    // One connection, so a setting one statement changed would be seen by the next.
    source = new PostgresSource({ name: 's', url: PG_URL, poolSize: 1 });
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, updated_at timestamptz NOT NULL, status text)`);
    await db.client.query(`INSERT INTO items SELECT g, '2024-01-01'::timestamptz + g * interval '1 s', 'live' FROM generate_series(1, 5) g`);
    await db.client.query(`CREATE TABLE audit (at timestamptz DEFAULT now())`);
    await db.client.query(
      `CREATE FUNCTION ${db.schema}.noisy() RETURNS boolean LANGUAGE sql VOLATILE AS $$ INSERT INTO ${db.schema}.audit DEFAULT VALUES; SELECT false $$`,
    );
  });
  afterAll(async () => {
    await source.close();
    await db.drop();
  });
  beforeEach(async () => {
    await db.client.query(`CREATE TABLE IF NOT EXISTS y (a int)`);
  });

  it('sends a multi-statement text as one prepared statement, which Postgres refuses (42601), and the table stays', async () => {
    const err = await refusal(source.query({ text: `SELECT 1; DROP TABLE ${db.schema}.y`, values: [] }, 'probe'));
    expect(err.details?.sqlstate).toBe('42601');
    expect(err.message).toContain('cannot insert multiple commands into a prepared statement');
    expect(await exists('y')).toBe(true);
  });

  it('runs every statement in a read-only transaction (25006), so a write is refused', async () => {
    const err = await refusal(source.query({ text: `CREATE TABLE ${db.schema}.z (a int)`, values: [] }, 'probe'));
    expect(err.details?.sqlstate).toBe('25006');
    expect(err.retryable).toBe(false);
    expect(await exists('z')).toBe(false);
  });

  it.each([0, 1])('refuses soft-delete condition %i that closes its parenthesis, naming the key and position, and runs nothing', async (i) => {
    const condition = CLOSING_CONDITIONS(db.schema)[i]!;
    const err = await refusal(source.table(spec(condition)));
    expect(err.code).toBe('SOURCE_SCHEMA');
    expect(err.message).toBe(
      `softDelete.condition of s.${db.schema}.items must be one SQL condition: found ')' at position 5 with no '(' before it; it would close pushsync's own parenthesis`,
    );
    expect(await exists('y')).toBe(true);
  });

  it('refuses a soft-delete condition that calls a writing function when reading a range (25006), and nothing is written', async () => {
    const reader = await source.table(spec(`${db.schema}.noisy()`));
    const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '2024-01-01 00:00:05+00', pk: ['5'] } };
    const err = await refusal(reader.readRange(range, null, 10));
    expect(err.details?.sqlstate).toBe('25006');
    expect(err.code).toBe('SOURCE_SCHEMA');
    expect(await audited()).toBe(0);
  });

  it('refuses a soft-delete condition that calls a writing function when re-reading rows by key (25006), and nothing is written', async () => {
    const reader = await source.table(spec(`${db.schema}.noisy()`));
    const err = await refusal(reader.readKeys([['1'], ['2']]));
    expect(err.details?.sqlstate).toBe('25006');
    expect(await audited()).toBe(0);
  });

  it('does not let a condition take the session out of read-only: set_config is undone with its transaction', async () => {
    const reader = await source.table(spec(`set_config('default_transaction_read_only', 'off', false) = 'off' AND status = 'gone'`));
    const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '2024-01-01 00:00:05+00', pk: ['5'] } };
    const rows = await reader.readRange(range, null, 10);
    expect(rows.map((r) => r.deleted)).toEqual([false, false, false, false, false]);
    const [setting] = await source.query({ text: 'SHOW default_transaction_read_only', values: [] }, 'probe');
    expect(setting).toEqual(['on']);
    const err = await refusal(source.query({ text: `DROP TABLE ${db.schema}.y`, values: [] }, 'probe'));
    expect(err.details?.sqlstate).toBe('25006');
    expect(await exists('y')).toBe(true);
  });

  it('still reads soft deletes by a valid condition', async () => {
    await db.client.query(`UPDATE items SET status = 'gone' WHERE id = 3`);
    const reader = await source.table(spec(`status = 'gone'`));
    const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '2024-01-01 00:00:05+00', pk: ['5'] } };
    expect((await reader.readRange(range, null, 10)).map((r) => r.deleted)).toEqual([false, false, true, false, false]);
    expect((await reader.readKeys([['3'], ['4']])).map((r) => r.deleted)).toEqual([true, false]);
  });
});
