import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/**
 * citext installed in a schema that is not on the reading connection's search path: `ORDER BY k` sorts by citext's
 * own ordering (its index's), while `k > $1::ext.citext` finds no citext operator by name and compares as text. The
 * two orders disagree ('a' < 'b' < 'Z' for citext, 'Z' < 'a' < 'b' as text): a job's range (…, 'b'] holds Z, a and b,
 * its first page of two is a and b, and the next page, after 'b' as text, is empty. Z was never sent.
 */
/** 'Z' < 'a' < 'b' as text, a < b < Z for citext. */
const CODES = ['a', 'b', 'Z'];

describe('a key whose type keeps its operators in a schema outside the search path', () => {
  const database = uniqueName('pgops');
  const prefix = uniqueName('ps');
  let admin: pg.Client;
  let client: pg.Client;
  let receiver: Receiver;
  let url: string;

  const configFor = (sourceUrl: string): Config =>
    parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        // Rows are read in pages of maxRows within a job's key range: a range larger than a page is read on by key.
        destination: { url: receiver.url, apiKey: 'k', maxRows: 2 },
        sources: [{ name: 'app', kind: 'postgres', url: sourceUrl, tables: [{ name: 'app.codes', watermark: 'updated_at', batchRows: 2 }] }],
      },
      {},
    );

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    const u = new URL(PG_URL);
    u.pathname = `/${database}`;
    url = u.toString();
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext; CREATE SCHEMA app`);
    await client.query(`CREATE TABLE app.codes (code ext.citext PRIMARY KEY, updated_at timestamptz NOT NULL)`);
    await client.query(`INSERT INTO app.codes SELECT c, '2024-01-01' FROM unnest($1::text[]) c`, [CODES]);
    await client.query(`SELECT 1`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await receiver?.close();
    await client?.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.end();
    await dropRedisPrefix(prefix);
  });

  it('is refused, rather than paged by another type’s operators', async () => {
    const summary = await syncPass(configFor(url), { timeoutMs: 30_000 });
    const sent = (receiver.stored.get('bronze.app_codes') ?? []).map((r) => (JSON.parse(r) as { code: string }).code);
    expect(sent).toEqual([]);
    expect(summary.failed.map((f) => f.reason).join('\n')).toMatch(/search_path/);
  });

  it('is read whole once the schema is on the search path', async () => {
    const u = new URL(url);
    u.searchParams.set('options', '-c search_path=public,ext');
    const summary = await syncPass(configFor(u.toString()), { timeoutMs: 30_000 });
    expect(summary.failed).toEqual([]);
    const sent = (receiver.stored.get('bronze.app_codes') ?? []).map((r) => (JSON.parse(r) as { code: string }).code);
    expect(sent).toEqual(CODES);
  });
});
