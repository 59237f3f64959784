import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { retryDeadLetters } from '../src/queue/dlq.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, MYSQL_URL, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { bullBoardDump, capturingLogger, hits, redisDump } from './helpers/leak-scan.js';

/**
 * The sentinel scan of test/nothing-else-leaves.e2e.test.ts, on MySQL/MariaDB: sentinel values in excluded columns,
 * masked columns (raw), a masked primary key (raw) and every column of rows outside the filter; the table is
 * backfilled (or snapshotted and streamed from the binlog), updated and deleted from, batches fail into the
 * dead-letter queue and are retried. Request bodies, every Redis key under the prefix, every log line and the
 * dashboard API's answers are scanned: no sentinel may occur anywhere.
 */
const PSEUDONYM_KEY = 'sentinel-pseudonym-key-0123456789';
/** Secrets, which must not be found either. */
const API_KEY = 'SENTINEL-API-KEY-5f1e9a77c3';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

const ROWS = 12;
const id = (g: number): string => String(831_415_927_100 + g);
const eu = (g: number): boolean => g % 3 === 0;

function sentinels(): string[] {
  const out: string[] = [API_KEY, PSEUDONYM_KEY];
  for (let g = 1; g <= ROWS + 1; g++) {
    out.push(
      id(g),
      `SENTINEL-SSN-${g}-Q`,
      `SENTINEL-SSN-NEW-${g}-Q`,
      `987654.3${String(g).padStart(2, '0')}7`,
      `sentinel.mail.${g}@example.org`,
      `SENTINELNOTE-${g}`,
      `49291234567812${String(g).padStart(2, '0')}`,
    );
    if (eu(g)) out.push(`SENTINEL-EU-NAME-${g}`, hmac(id(g)), hmac(`sentinel.mail.${g}@example.org`));
  }
  // The raw values as MySQL literals spell them in pushsync's statements (hex of their bytes).
  return [...out, ...out.map((s) => Buffer.from(s, 'utf8').toString('hex').toUpperCase())];
}

const SEED = (g: number): string =>
  `(${id(g)}, ${eu(g) ? `'SENTINEL-EU-NAME-${g}'` : g === 5 ? "'boom'" : `'name ${g}'`}, 'sentinel.mail.${g}@example.org', 'SENTINEL-SSN-${g}-Q', 987654.3${String(g).padStart(2, '0')}7,
    'SENTINELNOTE-${g}', '49291234567812${String(g).padStart(2, '0')}', '${eu(g) ? 'EU' : 'US'}')`;

const CREATE = `CREATE TABLE people (id bigint PRIMARY KEY, name varchar(64), email varchar(64), ssn varchar(64), salary decimal(12,4), note varchar(64),
  card varchar(32), region varchar(4), updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`;

function transformFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-sentinel-'));
  const path = join(dir, 'people.mjs');
  writeFileSync(
    path,
    `export default (r) => { if (r.name === 'boom') throw new Error('cannot handle ' + r.email); return { ...r, name: r.name.toUpperCase() }; };`,
  );
  return path;
}

const TABLE_RULES = (transform: string): Record<string, unknown> => ({
  columns: { exclude: ['ssn', 'salary'] },
  masks: { id: 'hash', email: 'hash', note: { truncate: 3 }, card: { replace: { pattern: '\\d(?=\\d{4})', with: '*' } } },
  where: "region <> 'EU'",
  transform,
});

async function retryAll(prefix: string): Promise<number> {
  const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
  try {
    return (await retryDeadLetters(queue, 'all')).length;
  } finally {
    await queue.close();
  }
}

for (const mode of ['watermark', 'cdc'] as const) {
  describe(`nothing but the configured columns leaves MySQL: a sentinel scan (${mode} mode)`, () => {
    const prefix = uniqueName('ps');
    const slot = uniqueName('binlog');
    let db: MysqlDatabase;
    let receiver: Receiver;
    let config: Config;
    const { logger, lines } = capturingLogger();
    const board: Array<[string, string]> = [];
    const records = (): Array<Record<string, unknown>> =>
      (receiver.stored.get('bronze.shop_people') ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);

    beforeAll(async () => {
      db = await createMysqlDatabase(mode === 'cdc' ? MYSQL_BINLOG_URL : MYSQL_URL);
      await db.client.query(CREATE);
      await db.client.query(
        `INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${Array.from({ length: ROWS }, (_, i) => SEED(i + 1)).join(', ')}`,
      );
      receiver = await startReceiver(API_KEY);
      const table = { name: 'people', batchRows: 4, ...TABLE_RULES(transformFile()) };
      config = parseConfig(
        {
          redis: { url: REDIS_URL, prefix },
          destination: { url: receiver.url, apiKey: API_KEY, attempts: 1 },
          masking: { key: PSEUDONYM_KEY },
          sources: [
            mode === 'cdc'
              ? { name: 'shop', kind: 'mysql', url: db.url, mode: 'cdc', cdc: { slot, flushInterval: '50ms' }, tables: [table] }
              : { name: 'shop', kind: 'mysql', url: db.url, tables: [{ ...table, watermark: 'updated_at', reconcile: { every: '1h' } }] },
          ],
        },
        {},
      );
    });
    afterAll(async () => {
      await receiver?.close();
      await db?.drop();
      await dropRedisPrefix(prefix);
    });

    it('syncs, updates, deletes, fails into the dead-letter queue and retries, and no sentinel is found anywhere', async () => {
      receiver.script({ kind: 'reject-rows', count: 1 });
      // The read boundary keeps a second below the server's clock: rows stamped just now wait for it.
      await new Promise((r) => setTimeout(r, 1200));
      const first = await syncPass(config, { logger, timeoutMs: 30_000 });
      const reasons = first.failed.map((f) => f.reason).join('\n');
      expect(reasons).toContain(`transform threw: cannot handle ${hmac('sentinel.mail.5@example.org')} [keys [{"id":"${hmac(id(5))}"}]]`);
      board.push(...(await bullBoardDump(prefix)));

      await db.client.query(`UPDATE people SET ssn = CONCAT('SENTINEL-SSN-NEW-', id - 831415927100, '-Q') WHERE id % 2 = 0`);
      await db.client.query(`UPDATE people SET region = 'EU' WHERE id = ${id(4)}`);
      await db.client.query(`UPDATE people SET name = 'SENTINEL-EU-NAME-6' WHERE id = ${id(6)}`);
      await db.client.query(`DELETE FROM people WHERE id IN (${id(7)}, ${id(9)})`);
      await db.client.query(`INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${SEED(ROWS + 1)}`);
      await db.client.query(`UPDATE people SET name = 'fixed' WHERE id = ${id(5)}`);
      expect(await retryAll(prefix)).toBe(first.failed.length);
      await new Promise((r) => setTimeout(r, 1200));
      const second = await syncPass(config, { logger, timeoutMs: 30_000, reconcile: mode === 'watermark' });
      expect(second.failed).toEqual([]);

      const ops = records().map((r) => [r._op, r.id]);
      expect(ops).toContainEqual(['delete', hmac(id(4))]);
      expect(ops).toContainEqual(['delete', hmac(id(7))]);
      expect(ops).not.toContainEqual(['delete', hmac(id(9))]);

      // The source URL's password as a URL spells it (the test user's password is also its name).
      const needles = [...sentinels(), `:${new URL(db.url).password}@`];
      const texts: Array<[string, string]> = [
        ...receiver.requests.map((r, i): [string, string] => [`request ${i}`, r.body]),
        ...(await redisDump(prefix)),
        ...lines.map((l, i): [string, string] => [`log line ${i}`, l]),
        ...board,
        ...(await bullBoardDump(prefix)),
      ];
      const found = hits(needles, texts);
      console.log(`MySQL sentinel scan (${mode}): ${texts.length} texts for ${needles.length} sentinels: ${JSON.stringify(found.slice(0, 20))}`);
      expect(texts.length).toBeGreaterThan(10);
      expect(found).toEqual([]);
    });
  });
}
