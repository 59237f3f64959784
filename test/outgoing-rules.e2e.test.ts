import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { eventId } from '../src/core/record.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { retryDeadLetters } from '../src/queue/dlq.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const PSEUDONYM_KEY = 'pseudonym-key-for-the-e2e-tests';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

interface Rec {
  _op: string;
  _event_id: string;
  _ordering: string | null;
  [column: string]: unknown;
}

describe('what leaves: columns, masks, filters and transforms through the pipeline (watermark mode)', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let dir: string;
  const prefix = uniqueName('ps');
  let config: Config;

  const records = (table: string): Rec[] => (receiver.stored.get(`bronze.app_${table}`) ?? []).map((r) => JSON.parse(r) as Rec);
  const raw = (table: string): string[] => receiver.stored.get(`bronze.app_${table}`) ?? [];

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    dir = mkdtempSync(join(tmpdir(), 'pushsync-rules-'));
    await db.client.query(
      `CREATE TABLE customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL, email text, ssn text, born_at date, card text, region text)`,
    );
    await db.client.query(
      `INSERT INTO customers SELECT g, '2024-01-01'::timestamptz + g * interval '1 s', 'c' || g || '@x.org', 'ssn-' || g, '1990-05-17'::date + g, '411111111111' || (1000 + g),
              CASE WHEN g % 3 = 0 THEN 'EU' ELSE 'US' END FROM generate_series(1, 12) g`,
    );
    await db.client.query(`CREATE TABLE members (id int PRIMARY KEY, updated_at timestamptz NOT NULL, region text)`);
    await db.client.query(
      `INSERT INTO members SELECT g, '2024-01-01'::timestamptz + g * interval '1 s', CASE WHEN g % 3 = 0 THEN 'EU' ELSE 'US' END FROM generate_series(1, 6) g`,
    );
    await db.client.query(`CREATE TABLE notes (id int PRIMARY KEY, updated_at timestamptz NOT NULL, body text, status text)`);
    await db.client.query(
      `INSERT INTO notes SELECT g, '2024-01-01'::timestamptz + g * interval '1 s', 'body ' || g, 'ok' FROM generate_series(1, 6) g`,
    );
    writeFileSync(
      join(dir, 'notes.mjs'),
      `export default function (r) {
        if (r.status === 'boom') throw new Error('cannot transform body ' + r.body);
        if (r.status === 'hidden') return null;
        return { ...r, body: r.body.toUpperCase(), words: r.body.split(' ').length };
      }`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
        masking: { key: '${PSEUDONYM_KEY}' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              {
                name: `${db.schema}.customers`,
                watermark: 'updated_at',
                batchRows: 5,
                columns: { exclude: ['ssn', 'region'] },
                masks: { id: 'hash', email: 'hash', born_at: { truncate: 'month' }, card: { replace: { pattern: '\\d(?=\\d{4})', with: '*' } } },
                where: "region <> 'EU'",
              },
              { name: `${db.schema}.notes`, watermark: 'updated_at', batchRows: 10, transform: join(dir, 'notes.mjs') },
              { name: `${db.schema}.members`, watermark: 'updated_at', where: "region <> 'EU'", onFilteredOut: 'skip' },
            ],
          },
        ],
      },
      { PSEUDONYM_KEY },
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('sends only the leaving columns, masked, of matching rows, with event ids over the outgoing record', async () => {
    const summary = await syncPass(config);
    expect(summary.failed).toEqual([]);
    const sent = records('customers');
    const matching = [1, 2, 4, 5, 7, 8, 10, 11];
    // Push jobs run in parallel: records of different ranges arrive in no fixed order.
    expect(sent.map((r) => r.id).sort()).toEqual(matching.map((g) => hmac(String(g))).sort());
    expect(sent.find((r) => r.id === hmac('1'))).toEqual({
      _op: 'upsert',
      _event_id: expect.any(String),
      _ordering: '2024-01-01T00:00:01.000000Z',
      _generation: 0,
      _extracted_at: expect.any(String),
      _source: 'app',
      _table: `${db.schema}.customers`,
      id: hmac('1'),
      updated_at: '2024-01-01T00:00:01+00:00',
      email: hmac('c1@x.org'),
      born_at: '1990-05-01',
      card: '************1001',
    });
    for (const text of raw('customers')) {
      const r = JSON.parse(text) as Rec;
      const row = `{${text.slice(text.indexOf('"id"'))}`;
      expect(r._event_id).toBe(eventId('app', `${db.schema}.customers`, 'upsert', row, r._ordering));
    }
  });

  it('sends a key-only delete for a row that stops matching, and nothing for a row that never matched', async () => {
    await db.client.query(`UPDATE customers SET region = 'EU', updated_at = '2024-02-01' WHERE id = 2`);
    await db.client.query(`UPDATE customers SET email = 'still-eu@x.org', updated_at = '2024-02-01' WHERE id = 3`);
    await db.client.query(`DELETE FROM customers WHERE id = 6`);
    await db.client.query(`UPDATE members SET region = 'EU', updated_at = '2024-02-01' WHERE id = 2`);
    const before = records('customers').length;
    const membersBefore = records('members').length;
    expect((await syncPass(config)).failed).toEqual([]);
    const fresh = records('customers').slice(before);
    expect(fresh).toEqual([
      {
        _op: 'delete',
        _event_id: expect.any(String),
        _ordering: '2024-02-01T00:00:00.000000Z',
        _generation: 0,
        _extracted_at: expect.any(String),
        _source: 'app',
        _table: `${db.schema}.customers`,
        id: hmac('2'),
      },
    ]);
    expect(JSON.stringify(receiver.requests.map((r) => r.body))).not.toContain(hmac('3'));
    // Under onFilteredOut: skip, a row leaving the filter sends nothing.
    expect(membersBefore).toBe(4);
    expect(records('members')).toHaveLength(4);
  });

  it('holds masked keys in Redis sealed: no push job, cursor or ledger entry carries a raw key', async () => {
    const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
    const redis = new Redis(REDIS_URL);
    try {
      const jobs = (await queue.getCompleted()).filter((j) => (j.data as { table: string }).table.endsWith('customers'));
      expect(jobs.length).toBeGreaterThan(0);
      for (const j of jobs) for (const k of [...j.data.range.hi.pk, ...(j.data.range.lo?.pk ?? [])]) expect(k).toMatch(/^~k1\./);
      const cursor = await redis.get(`${prefix}:cursor:app:${db.schema}.customers`);
      expect(JSON.parse(cursor!).after.pk[0]).toMatch(/^~k1\./);
      expect(await redis.hlen(`${prefix}:filter:app:${db.schema}.customers`)).toBe(12);
    } finally {
      await queue.close();
      await redis.quit();
    }
  });

  it('transforms rows; a row the transform drops is treated like a row outside the filter', async () => {
    const notes = records('notes');
    expect(notes.map((r) => [r.id, r.body, r.words])).toEqual([1, 2, 3, 4, 5, 6].map((g) => [g, `BODY ${g}`, 2]));
    await db.client.query(`UPDATE notes SET status = 'hidden', updated_at = '2024-02-01' WHERE id = 2`);
    const before = notes.length;
    expect((await syncPass(config)).failed).toEqual([]);
    expect(
      records('notes')
        .slice(before)
        .map((r) => [r._op, r.id, r.body]),
    ).toEqual([['delete', 2, undefined]]);
  });

  it('fails only the row a transform throws on: the rest is delivered, the job rests in the dead-letter queue with the key and message', async () => {
    await db.client.query(`UPDATE notes SET status = 'boom', body = 'b3', updated_at = '2024-03-01 00:00:01' WHERE id = 3`);
    await db.client.query(`UPDATE notes SET body = 'four here', updated_at = '2024-03-01 00:00:02' WHERE id = 4`);
    const before = records('notes').length;
    const summary = await syncPass(config);
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toBe(
      '[TRANSFORM_FAILED] 1 part(s) were not delivered (1 rows were): transform threw: cannot transform body b3 [keys [["3"]]]',
    );
    expect(
      records('notes')
        .slice(before)
        .map((r) => [r.id, r.body]),
    ).toEqual([[4, 'FOUR HERE']]);
    await db.client.query(`UPDATE notes SET status = 'ok' WHERE id = 3`);
    const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
    try {
      expect(await retryDeadLetters(queue, 'all')).toHaveLength(1);
    } finally {
      await queue.close();
    }
    expect((await syncPass(config)).failed).toEqual([]);
    expect(
      records('notes')
        .slice(before + 1)
        .map((r) => [r.id, r.body]),
    ).toEqual([
      [3, 'B3'],
      [4, 'FOUR HERE'],
    ]);
  });
});
