import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { retryDeadLetters } from '../src/queue/dlq.js';
import { dropRedisPrefix, LOGICAL_PG_URL, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { bullBoardDump, capturingLogger, hits, redisDump } from './helpers/leak-scan.js';

/**
 * The proof that nothing else leaves. Sentinel values sit in excluded columns, in masked columns (as their raw
 * values) and in every column of rows outside the filter; the table is backfilled, updated and deleted from, a
 * batch fails into the dead-letter queue (the destination rejects rows, a transform throws) and is retried. Then
 * every request body the destination received, every Redis key under the prefix with its value, every log line
 * (all levels) and the dashboard API's answers are scanned: no sentinel may occur anywhere.
 */
const PSEUDONYM_KEY = 'sentinel-pseudonym-key-0123456789';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

const ROWS = 12;
const id = (g: number): string => String(831_415_927_100 + g);
const eu = (g: number): boolean => g % 3 === 0;

/** Raw values that must never be found outside the database. */
function sentinels(): string[] {
  const out: string[] = [];
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
    // Rows outside the filter: not even the masked forms of their values may leave.
    if (eu(g)) out.push(`SENTINEL-EU-NAME-${g}`, hmac(id(g)), hmac(`sentinel.mail.${g}@example.org`));
  }
  return out;
}

const SEED = (g: number): string =>
  `(${id(g)}, ${eu(g) ? `'SENTINEL-EU-NAME-${g}'` : g === 5 ? "'boom'" : `'name ${g}'`}, 'sentinel.mail.${g}@example.org', 'SENTINEL-SSN-${g}-Q', 987654.3${String(g).padStart(2, '0')}7,
    'SENTINELNOTE-${g}', '49291234567812${String(g).padStart(2, '0')}', '${eu(g) ? 'EU' : 'US'}')`;

interface Scan {
  bodies: number;
  keys: number;
  logLines: number;
  boardAnswers: number;
  sentinels: number;
  hits: Array<[string, string]>;
}

async function scanEverything(prefix: string, receiver: Receiver, logLines: string[], boardEarlier: Array<[string, string]>): Promise<Scan> {
  const needles = sentinels();
  const redis = await redisDump(prefix);
  const board = [...boardEarlier, ...(await bullBoardDump(prefix))];
  const bodies = receiver.requests.map((r, i): [string, string] => [`request ${i}`, r.body]);
  const logs = logLines.map((l, i): [string, string] => [`log line ${i}`, l]);
  return {
    bodies: bodies.length,
    keys: redis.length,
    logLines: logs.length,
    boardAnswers: board.length,
    sentinels: needles.length,
    hits: hits(needles, [...bodies, ...redis, ...logs, ...board]),
  };
}

function report(mode: string, s: Scan): void {
  console.log(
    `sentinel scan (${mode}): ${s.bodies} request bodies, ${s.keys} Redis keys, ${s.logLines} log lines, ${s.boardAnswers} dashboard API answers scanned ` +
      `for ${s.sentinels} sentinels: ${s.hits.length} hits`,
  );
}

/**
 * The destination rejected a row of the first request and the transform threw on row 5: one job or two in the
 * dead-letter queue, depending on which job's request arrived first; each names its rows by their hashed key.
 */
function expectBothFailures(reasons: string[]): void {
  expect(reasons.length).toBeGreaterThanOrEqual(1);
  const all = reasons.join('\n');
  expect(all).toMatch(/destination rejected 1 of \d+ rows/);
  expect(all).toContain(`transform threw: cannot handle ${hmac('sentinel.mail.5@example.org')} [keys [{"id":"${hmac(id(5))}"}]]`);
}

async function retryAll(prefix: string): Promise<number> {
  const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
  try {
    return (await retryDeadLetters(queue, 'all')).length;
  } finally {
    await queue.close();
  }
}

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

const CREATE = `CREATE TABLE people (id bigint PRIMARY KEY, name text, email text, ssn text, salary numeric, note text, card text, region text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`;

describe('nothing but the configured columns leaves: a sentinel scan (watermark mode)', () => {
  const prefix = uniqueName('ps');
  let db: pg.Client;
  const schema = uniqueName('sent');
  let receiver: Receiver;
  let config: Config;
  const { logger, lines } = capturingLogger();
  const board: Array<[string, string]> = [];
  const records = (): Array<Record<string, unknown>> =>
    (receiver.stored.get('bronze.app_people') ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);

  beforeAll(async () => {
    db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    await db.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await db.query(CREATE);
    await db.query(
      `INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${Array.from({ length: ROWS }, (_, i) => SEED(i + 1)).join(', ')}`,
    );
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
        masking: { key: PSEUDONYM_KEY },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              { name: `${schema}.people`, watermark: 'updated_at', batchRows: 4, reconcile: { every: '1h' }, ...TABLE_RULES(transformFile()) },
            ],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await db.query(`DROP SCHEMA ${schema} CASCADE`);
    await db.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('backfills, updates, deletes, fails into the dead-letter queue and retries, and no sentinel is found anywhere', async () => {
    // Backfill: the destination rejects a row of the first batch, the transform throws on row 5.
    receiver.script({ kind: 'reject-rows', count: 1 });
    const first = await syncPass(config, { logger });
    expectBothFailures(first.failed.map((f) => f.reason));
    board.push(...(await bullBoardDump(prefix)));

    // Updates (excluded values change, one row leaves the filter, one EU row stays out), a hard delete.
    await db.query(`UPDATE people SET ssn = 'SENTINEL-SSN-NEW-' || (id - 831415927100) || '-Q', updated_at = clock_timestamp() WHERE id % 2 = 0`);
    await db.query(`UPDATE people SET region = 'EU', updated_at = clock_timestamp() WHERE id = ${id(4)}`);
    await db.query(`UPDATE people SET name = 'SENTINEL-EU-NAME-6', updated_at = clock_timestamp() WHERE id = ${id(6)}`);
    await db.query(`DELETE FROM people WHERE id IN (${id(7)}, ${id(9)})`);
    await db.query(`INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${SEED(ROWS + 1)}`);
    await db.query(`UPDATE people SET name = 'fixed' WHERE id = ${id(5)}`);
    expect(await retryAll(prefix)).toBe(first.failed.length);
    const second = await syncPass(config, { logger, reconcile: true });
    expect(second.failed).toEqual([]);

    const ops = records().map((r) => [r._op, r.id]);
    expect(ops).toContainEqual(['delete', hmac(id(4))]);
    expect(ops).toContainEqual(['delete', hmac(id(7))]);
    expect(ops).not.toContainEqual(['delete', hmac(id(9))]);
    expect(records().find((r) => r.id === hmac(id(5)))).toMatchObject({ name: 'FIXED', note: 'SEN', card: '************1205' });

    const scan = await scanEverything(prefix, receiver, lines, board);
    report('watermark', scan);
    expect(scan.bodies).toBeGreaterThan(3);
    expect(scan.keys).toBeGreaterThan(10);
    expect(scan.logLines).toBeGreaterThan(0);
    expect(scan.hits).toEqual([]);
  });
});

describe('nothing but the configured columns leaves: a sentinel scan (cdc mode)', () => {
  const prefix = uniqueName('ps');
  const schema = uniqueName('sentcdc');
  const slot = uniqueName('slot');
  let db: pg.Client;
  let receiver: Receiver;
  let config: Config;
  const { logger, lines } = capturingLogger();
  const board: Array<[string, string]> = [];
  const records = (): Array<Record<string, unknown>> =>
    (receiver.stored.get('bronze.app_people') ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);

  beforeAll(async () => {
    db = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await db.connect();
    await db.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await db.query(CREATE);
    await db.query(
      `INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${Array.from({ length: ROWS }, (_, i) => SEED(i + 1)).join(', ')}`,
    );
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
        masking: { key: PSEUDONYM_KEY },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot, publication: slot, flushInterval: '50ms', batchKeys: 4 },
            tables: [{ name: `${schema}.people`, batchRows: 4, ...TABLE_RULES(transformFile()) }],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await db.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await db.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await db.query(`DROP SCHEMA ${schema} CASCADE`);
    await db.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('snapshots, streams updates and deletes, fails into the dead-letter queue and retries, and no sentinel is found anywhere', async () => {
    receiver.script({ kind: 'reject-rows', count: 1 });
    const first = await syncPass(config, { logger, timeoutMs: 20_000 });
    expectBothFailures(first.failed.map((f) => f.reason));
    board.push(...(await bullBoardDump(prefix)));

    await db.query(`UPDATE people SET ssn = 'SENTINEL-SSN-NEW-' || (id - 831415927100) || '-Q' WHERE id % 2 = 0`);
    await db.query(`UPDATE people SET region = 'EU' WHERE id = ${id(4)}`);
    await db.query(`UPDATE people SET name = 'SENTINEL-EU-NAME-6' WHERE id = ${id(6)}`);
    await db.query(`DELETE FROM people WHERE id IN (${id(7)}, ${id(9)})`);
    await db.query(`INSERT INTO people (id, name, email, ssn, salary, note, card, region) VALUES ${SEED(ROWS + 1)}`);
    await db.query(`UPDATE people SET name = 'fixed' WHERE id = ${id(5)}`);
    expect(await retryAll(prefix)).toBe(first.failed.length);
    const second = await syncPass(config, { logger, timeoutMs: 20_000 });
    expect(second.failed).toEqual([]);

    const ops = records().map((r) => [r._op, r.id]);
    expect(ops).toContainEqual(['delete', hmac(id(4))]);
    expect(ops).toContainEqual(['delete', hmac(id(7))]);
    expect(ops).toContainEqual(['insert', hmac(id(ROWS + 1))]);
    expect(ops).not.toContainEqual(['delete', hmac(id(9))]);

    const scan = await scanEverything(prefix, receiver, lines, board);
    report('cdc', scan);
    expect(scan.bodies).toBeGreaterThan(3);
    expect(scan.keys).toBeGreaterThan(10);
    expect(scan.hits).toEqual([]);
  });
});
