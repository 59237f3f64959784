import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/**
 * A transaction stamps its rows with now() — its start time — but commits later. Rows committed by others in the
 * meantime must not move the cursor past the open transaction's watermark. This file uses a database of its own:
 * the read boundary looks at every open transaction of the database, and other test files' transactions would
 * hold it back.
 */
describe('rows of a long transaction that commits late still arrive', () => {
  const dbName = uniqueName('late');
  const url = PG_URL.replace(/\/[^/]*$/, `/${dbName}`);
  let admin: pg.Client;
  let client: pg.Client;
  let receiver: Receiver;
  let prefix: string;
  let config: Config;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), v text)`);
    receiver = await startReceiver('k');
    prefix = uniqueName('ps');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [{ name: 'app', kind: 'postgres', url, tables: [{ name: 'events', watermark: 'updated_at', batchRows: 10 }] }],
      },
      {},
    );
  });
  afterAll(async () => {
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
    await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
    await admin.end();
  });

  async function syncOnce(): Promise<void> {
    expect((await syncPass(config)).failed).toEqual([]);
  }

  const arrived = (): number[] =>
    (receiver.stored.get('bronze.app_events') ?? []).map((r) => (JSON.parse(r) as { id: number }).id).sort((a, b) => a - b);

  it('holds the read boundary at the oldest open transaction and delivers its rows after it commits', async () => {
    await client.query(`INSERT INTO events (id, v) SELECT g, 'early' FROM generate_series(1, 5) g`);
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO events (id, v) VALUES (100, 'late')`); // updated_at = this transaction's start
      // Committed after the slow transaction started, so their watermarks are above its row's.
      await client.query(`INSERT INTO events (id, v) SELECT g, 'meanwhile' FROM generate_series(6, 30) g`);

      await syncOnce();
      // Everything below the open transaction's start arrived; what is above waits, nothing is skipped.
      expect(arrived()).toEqual([1, 2, 3, 4, 5]);

      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    await syncOnce();
    expect(arrived()).toEqual([...Array.from({ length: 30 }, (_, i) => i + 1), 100]);
  });

  it('holds the same boundary for a custom SQL table, whose watermark is an output column of its query', async () => {
    await client.query(`CREATE TABLE tags (id int PRIMARY KEY, label text)`);
    await client.query(`INSERT INTO tags VALUES (1, 'one')`);
    const queryPrefix = uniqueName('ps');
    const queryConfig = parseConfig(
      {
        redis: { url: REDIS_URL, prefix: queryPrefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url,
            tables: [
              {
                name: 'tagged',
                query: 'SELECT e.id, e.updated_at, t.label FROM events e LEFT JOIN tags t ON t.id = 1',
                primaryKey: ['id'],
                watermark: 'updated_at',
                batchRows: 7,
              },
            ],
          },
        ],
      },
      {},
    );
    const tagged = (): number[] =>
      (receiver.stored.get('bronze.app_tagged') ?? []).map((r) => (JSON.parse(r) as { id: number }).id).sort((a, b) => a - b);
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO events (id, v) VALUES (200, 'late')`);
      await client.query(`INSERT INTO events (id, v) SELECT g, 'meanwhile' FROM generate_series(201, 210) g`);
      expect((await syncPass(queryConfig)).failed).toEqual([]);
      expect(tagged()).toEqual([...Array.from({ length: 30 }, (_, i) => i + 1), 100]);
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    expect((await syncPass(queryConfig)).failed).toEqual([]);
    expect(tagged()).toEqual([...Array.from({ length: 30 }, (_, i) => i + 1), 100, 200, ...Array.from({ length: 10 }, (_, i) => 201 + i)]);
    await dropRedisPrefix(queryPrefix);
  });
});
