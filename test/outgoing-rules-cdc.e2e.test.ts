import { createHmac } from 'node:crypto';
import pg from 'pg';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { createChangeSources, createSources } from '../src/main.js';
import { previewTable } from '../src/preview.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const PSEUDONYM_KEY = 'pseudonym-key-for-the-cdc-tests';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

interface Rec {
  _op: string;
  _ordering: string;
  id: string;
  email?: string;
  secret?: string;
}

describe('what leaves in change data capture: masks, a hashed key and a row filter', () => {
  const schema = uniqueName('cdcrules');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let client: pg.Client;
  let receiver: Receiver;
  let config: Config;

  const records = (): Rec[] => (receiver.stored.get('bronze.app_people') ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 15_000 })).failed).toEqual([]);

  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE people (id int PRIMARY KEY, email text, secret text, region text)`);
    await client.query(
      `INSERT INTO people SELECT g, 'p' || g || '@x.org', 'secret ' || g, CASE WHEN g % 2 = 0 THEN 'EU' ELSE 'US' END FROM generate_series(1, 6) g`,
    );
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        masking: { key: PSEUDONYM_KEY },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot, publication: slot, flushInterval: '50ms' },
            tables: [
              { name: `${schema}.people`, columns: { include: ['id', 'email'] }, masks: { id: 'hash', email: 'hash' }, where: "region <> 'EU'" },
            ],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('snapshots only the matching rows, with the included columns hashed', async () => {
    await sync();
    expect(records().map((r) => [r._op, r.id, r.email, r.secret])).toEqual(
      [1, 3, 5].map((g) => ['snapshot', hmac(String(g)), hmac(`p${g}@x.org`), undefined]),
    );
  });

  it('previews a CDC table as the snapshot records it sent, ordered at the recorded slot start', async () => {
    const sources = createSources(config);
    const changeSources = createChangeSources(config);
    try {
      const preview = await previewTable(config, `app.${schema}.people`, 10, sources, changeSources);
      const same = (r: string): string => r.replace(/"_extracted_at":"[^"]*"/, '');
      expect(preview.records.map(same)).toEqual((receiver.stored.get('bronze.app_people') ?? []).map(same));
    } finally {
      await Promise.all([...sources.values(), ...changeSources.values()].map((s) => s.close()));
    }
  });

  it('streams changes: a row leaving the filter becomes a key-only delete, one entering it an update, never-matching rows send nothing', async () => {
    const before = records().length;
    await client.query(`INSERT INTO people VALUES (7, 'p7@x.org', 's', 'US'), (8, 'p8@x.org', 's', 'EU')`);
    await client.query(`UPDATE people SET region = 'EU' WHERE id = 1`);
    await client.query(`UPDATE people SET region = 'US' WHERE id = 2`);
    await client.query(`UPDATE people SET email = 'x' WHERE id = 4`);
    await client.query(`DELETE FROM people WHERE id IN (3, 6)`);
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
    for (const g of [4, 6, 8]) expect(JSON.stringify(receiver.requests.map((r) => r.body))).not.toContain(hmac(String(g)));
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
