import { createHmac } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { createChangeSources, createSources } from '../src/main.js';
import { previewTable } from '../src/preview.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const PSEUDONYM_KEY = 'pseudonym-key-for-the-mysql-tests';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

interface Rec {
  _op: string;
  _ordering: string;
  id: number | string;
  email?: string;
  secret?: string;
  region?: string;
}

/** Every request body the receiver saw, as one text: nothing withheld may appear in it. */
const everything = (receiver: Receiver): string => JSON.stringify(receiver.requests.map((r) => r.body));

/** Watermarks are fixed past times, so transactions of other tests on the server never hold these rows back. */
describe('what leaves a MariaDB table in watermark mode: included columns, a hashed column, a row filter, a query table', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  let config: Config;

  const records = (table: string): Rec[] => (receiver.stored.get(`bronze.shop_${table}`) ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);

  beforeAll(async () => {
    db = await createMysqlDatabase();
    receiver = await startReceiver('k');
    await db.client.query(
      `CREATE TABLE people (id int PRIMARY KEY, updated_at datetime(6) NOT NULL, email varchar(50), secret varchar(50), region varchar(5))`,
    );
    await db.client.query(
      `INSERT INTO people SELECT seq, '2024-01-01' + INTERVAL seq SECOND, CONCAT('p', seq, '@x.org'), CONCAT('secret ', seq), IF(seq % 2 = 0, 'EU', 'US')
       FROM seq_1_to_6`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 10, cap: 50 }, attempts: 5 },
        masking: { key: PSEUDONYM_KEY },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            tables: [
              {
                name: 'people',
                watermark: 'updated_at',
                columns: { include: ['id', 'updated_at', 'email'] },
                masks: { email: 'hash' },
                where: "region <> 'EU'",
              },
              {
                name: 'eu',
                query: `SELECT p.id, p.updated_at, p.region FROM people p WHERE p.region = 'EU'`,
                primaryKey: ['id'],
                watermark: 'updated_at',
              },
            ],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('sends only the matching rows of the table, with the included columns and the email hashed, and every row of the query', async () => {
    await sync();
    expect(records('people').map((r) => [r._op, r.id, r.email, r.secret, r.region])).toEqual(
      [1, 3, 5].map((g) => ['upsert', g, hmac(`p${g}@x.org`), undefined, undefined]),
    );
    expect(records('eu').map((r) => [r.id, r.region])).toEqual([
      [2, 'EU'],
      [4, 'EU'],
      [6, 'EU'],
    ]);
    for (const g of [1, 2, 3, 4, 5, 6]) expect(everything(receiver)).not.toContain(`secret ${g}`);
  });

  it('previews the table as the records a first sync sends', async () => {
    const sources = createSources(config);
    const changeSources = createChangeSources(config);
    try {
      const preview = await previewTable(config, 'shop.people', 10, sources, changeSources);
      const same = (r: string): string => r.replace(/"_extracted_at":"[^"]*"/, '');
      expect(preview.records.map(same)).toEqual((receiver.stored.get('bronze.shop_people') ?? []).map(same));
    } finally {
      await Promise.all([...sources.values(), ...changeSources.values()].map((s) => s.close()));
    }
  });

  it('sends a key-only delete for a row that moved out of the filter, the row that moved in, and nothing of a row that never matched', async () => {
    const before = records('people').length;
    await db.client.query(`UPDATE people SET region = 'EU', updated_at = '2024-01-02 00:00:01' WHERE id = 1`);
    await db.client.query(`UPDATE people SET region = 'US', updated_at = '2024-01-02 00:00:02' WHERE id = 2`);
    await db.client.query(`UPDATE people SET email = 'new@x.org', updated_at = '2024-01-02 00:00:04' WHERE id = 4`);
    await sync();
    const fresh = records('people').slice(before);
    expect(fresh.map((r) => [r._op, r.id, r.email ?? null])).toEqual([
      ['delete', 1, null],
      ['upsert', 2, hmac('p2@x.org')],
    ]);
    expect(everything(receiver)).not.toContain(hmac('new@x.org'));
    expect(
      records('eu')
        .slice(3)
        .map((r) => [r.id, r.region]),
    ).toEqual([
      [1, 'EU'],
      [4, 'EU'],
    ]);
  });
});

describe('what leaves a MariaDB table in binlog change data capture: masks, a hashed key and a row filter', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const slot = uniqueName('binlog');
  let config: Config;

  const records = (): Rec[] => (receiver.stored.get('bronze.shop_people') ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);

  beforeAll(async () => {
    db = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await db.client.query(`CREATE TABLE people (id int PRIMARY KEY, email varchar(50), secret varchar(50), region varchar(5))`);
    await db.client.query(
      `INSERT INTO people SELECT seq, CONCAT('p', seq, '@x.org'), CONCAT('secret ', seq), IF(seq % 2 = 0, 'EU', 'US') FROM seq_1_to_6`,
    );
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        masking: { key: PSEUDONYM_KEY },
        sources: [
          {
            name: 'shop',
            kind: 'mysql',
            url: db.url,
            mode: 'cdc',
            cdc: { slot, flushInterval: '50ms' },
            tables: [{ name: 'people', columns: { include: ['id', 'email'] }, masks: { id: 'hash', email: 'hash' }, where: "region <> 'EU'" }],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('snapshots only the matching rows, with the included columns hashed', async () => {
    await sync();
    expect(records().map((r) => [r._op, r.id, r.email, r.secret])).toEqual(
      [1, 3, 5].map((g) => ['snapshot', hmac(String(g)), hmac(`p${g}@x.org`), undefined]),
    );
  });

  it('previews a CDC table as the snapshot records it sent, ordered at the recorded stream start', async () => {
    const sources = createSources(config);
    const changeSources = createChangeSources(config);
    try {
      const preview = await previewTable(config, 'shop.people', 10, sources, changeSources);
      const same = (r: string): string => r.replace(/"_extracted_at":"[^"]*"/, '');
      expect(preview.records.map(same)).toEqual((receiver.stored.get('bronze.shop_people') ?? []).map(same));
    } finally {
      await Promise.all([...sources.values(), ...changeSources.values()].map((s) => s.close()));
    }
  });

  it('streams changes: a row leaving the filter becomes a key-only delete, one entering it an update, never-matching rows send nothing', async () => {
    const before = records().length;
    await db.client.query(`INSERT INTO people VALUES (7, 'p7@x.org', 's', 'US'), (8, 'p8@x.org', 's', 'EU')`);
    await db.client.query(`UPDATE people SET region = 'EU' WHERE id = 1`);
    await db.client.query(`UPDATE people SET region = 'US' WHERE id = 2`);
    await db.client.query(`UPDATE people SET email = 'x' WHERE id = 4`);
    await db.client.query(`DELETE FROM people WHERE id IN (3, 6)`);
    await sync();
    // Change jobs of separate flushes may be delivered in parallel: compare without order.
    const fresh = records()
      .slice(before)
      .map((r) => [r._op, r.id, r.email ?? null]);
    expect(fresh.sort()).toEqual(
      [
        ['insert', hmac('7'), hmac('p7@x.org')],
        ['delete', hmac('1'), null],
        ['update', hmac('2'), hmac('p2@x.org')],
        ['delete', hmac('3'), null],
      ].sort(),
    );
    for (const g of [4, 6, 8]) expect(everything(receiver)).not.toContain(hmac(String(g)));
    expect(everything(receiver)).not.toContain('secret');
  });

  it('holds the keys of change jobs sealed', async () => {
    const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
    try {
      const jobs = (await queue.getCompleted()).filter((j) => 'changes' in j.data);
      expect(jobs.length).toBeGreaterThan(0);
      for (const j of jobs) for (const c of j.data.changes as Array<{ pk: string[] }>) expect(c.pk[0]).toMatch(/^~k1\./);
    } finally {
      await queue.close();
    }
  });
});
