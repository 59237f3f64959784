import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSchema, PG_URL } from '../../test/helpers/services.js';
import { PostgresSource } from './postgres.js';

/**
 * A source URL may carry startup options of its own (`?options=-c search_path=app`, or a pooler's `endpoint=…`).
 * node-postgres lets the URL's `options` replace the ones pushsync sets, which left the session in the server's time
 * zone and writable.
 */
describe('a Postgres source URL with startup options of its own', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let source: PostgresSource;

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE ${db.schema}.t (id int PRIMARY KEY, at timestamptz)`);
    await db.client.query(`INSERT INTO ${db.schema}.t VALUES (1, '2024-03-01 10:00:00.5+00')`);
    const url = new URL(PG_URL);
    url.searchParams.set('options', `-c search_path=${db.schema} -c TimeZone=Asia/Kolkata`);
    source = new PostgresSource({ name: 'p', url: url.toString() });
  });
  afterAll(async () => {
    await source.close();
    await db.drop();
  });

  it("keeps the URL's settings and pushsync's: UTC, read only", async () => {
    const [row] = await source.query(
      { text: "SELECT current_setting('search_path'), current_setting('TimeZone'), current_setting('default_transaction_read_only')", values: [] },
      'settings',
    );
    expect(row).toEqual([db.schema, 'UTC', 'on']);
  });

  it('reads timestamps in UTC, so watermarks and records keep their fixed form', async () => {
    const reader = await source.table({ source: 'p', name: 't', watermark: 'at' });
    const range = await reader.nextRange({ phase: 'wm', after: null }, 10);
    expect(range!.range.hi.wm).toBe('2024-03-01 10:00:00.5+00');
    const [row] = await reader.readRange(range!.range, null, 10);
    expect(row!.json).toBe('{"id":1,"at":"2024-03-01T10:00:00.5+00:00"}');
  });
});
