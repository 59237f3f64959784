import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { runOnce } from '../src/queue/run-once.js';
import { deletePrefix } from '../src/queue/redis.js';
import { startReceiverChild } from './receiver-child.js';

/**
 * Backfill throughput of the whole pipeline from a MySQL/MariaDB table against the fastest plain keyset read of the
 * same table from Node (mysql2, rows as arrays, dates as strings), measured side by side: `npm run bench:mysql`,
 * and the MySQL part of `npm run bench`. See bench/README.md.
 */
const URL_BASE = process.env.BENCH_MYSQL_URL ?? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3306';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROWS = Number(process.env.BENCH_MYSQL_ROWS ?? 300_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const BATCH_ROWS = Number(process.env.BENCH_BATCH_ROWS ?? 5000);
const DATABASE = 'pushsync_bench';
const TABLE = `rows_${ROWS}`;
if (!Number.isInteger(ROWS) || ROWS < 1 || !Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error('BENCH_MYSQL_ROWS and BENCH_ROUNDS must be positive integers');

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function connect(database?: string): Promise<mysql.Connection> {
  return mysql.createConnection({
    uri: `${URL_BASE}${database ? `/${database}` : ''}`,
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
}

/** A 12-column table of `ROWS` rows, generated once with MariaDB's sequence engine. */
async function ensureDataset(): Promise<void> {
  const c = await connect();
  try {
    await c.query(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    await c.query(`USE ${DATABASE}`);
    const [found] = (await c.query(`SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, [
      DATABASE,
      TABLE,
    ])) as unknown as [Array<{ n: number }>];
    if (Number(found[0]!.n) > 0 && process.env.BENCH_REGENERATE !== '1') return;
    console.log(`  generating ${DATABASE}.${TABLE}`);
    await c.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await c.query(`
      CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, updated_at datetime(6) NOT NULL, customer_id int, amount decimal(12,2), score double,
        status varchar(16), note varchar(200), active tinyint(1), due date, ref bigint unsigned, payload json, tag varbinary(16),
        KEY by_wm (updated_at, id))`);
    await c.query(`
      INSERT INTO ${TABLE} SELECT seq, '2024-01-01 00:00:00' + INTERVAL (seq DIV 3) * 1001 MICROSECOND, seq % 10007, seq * 0.37, seq / 7,
        ELT(1 + seq % 4, 'open', 'paid', 'shipped', 'void'), CONCAT('note for row ', seq, ' with some text'), seq % 2,
        '2024-01-01' + INTERVAL seq % 365 DAY, 18446744073709551615 - seq, CONCAT('{"n": ', seq, ', "tags": ["a", "b"]}'), UNHEX(MD5(seq))
      FROM seq_1_to_${ROWS}`);
  } finally {
    await c.end();
  }
}

async function rawKeysetRead(): Promise<number> {
  const c = await connect(DATABASE);
  try {
    const started = performance.now();
    let rows = 0;
    let after: [string, string] | undefined;
    for (;;) {
      const where = after
        ? `WHERE t.updated_at >= '${after[0]}' AND (t.updated_at > '${after[0]}' OR (t.updated_at = '${after[0]}' AND t.id > ${after[1]}))`
        : '';
      const [page] = (await c.query({
        sql: `SELECT * FROM ${TABLE} t ${where} ORDER BY t.updated_at, t.id LIMIT ${BATCH_ROWS}`,
        rowsAsArray: true,
      })) as unknown as [unknown[][]];
      rows += page.length;
      const last = page[page.length - 1];
      if (!last || page.length < BATCH_ROWS) break;
      after = [String(last[1]), String(last[0])];
    }
    if (rows !== ROWS) throw new Error(`raw read returned ${rows} rows, the table holds ${ROWS}`);
    return rows / ((performance.now() - started) / 1000);
  } finally {
    await c.end();
  }
}

async function pipelineBackfill(receiverUrl: string, monitor: Redis): Promise<{ rate: number; rows: number }> {
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const config = parseConfig(
    {
      redis: { url: REDIS_URL, prefix },
      destination: { url: receiverUrl, apiKey: 'bench' },
      sources: [
        { name: 'bench', kind: 'mysql', url: `${URL_BASE}/${DATABASE}`, tables: [{ name: TABLE, watermark: 'updated_at', batchRows: BATCH_ROWS }] },
      ],
    },
    {},
  );
  const ctx = createPipeline(config, createLogger('warn'));
  const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
  try {
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: 30 * 60_000,
      pollMs: 50,
    });
    const seconds = (performance.now() - started) / 1000;
    if (summary.failed.length > 0 || summary.timedOut) throw new Error(`the run failed: ${JSON.stringify(summary.failed)}`);
    return { rate: ROWS / seconds, rows: ROWS };
  } finally {
    await runtime.stop();
    await deletePrefix(monitor, prefix);
  }
}

export interface MysqlBackfillResult {
  raw: number;
  pipeline: number;
  ratio: number;
}

/** Runs the rounds, printing each, and the best of them with the ratio. */
export async function mysqlBackfillBench(): Promise<MysqlBackfillResult> {
  console.log(`dataset: ${DATABASE}.${TABLE}, ${fmt(ROWS)} rows, 12 columns (MySQL/MariaDB)`);
  await ensureDataset();
  const receiver = await startReceiverChild();
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const raws: number[] = [];
  const pipes: number[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      raws.push(await rawKeysetRead());
      console.log(`round ${round}: raw keyset read (mysql2, rows as arrays): ${fmt(raws[raws.length - 1]!)} rows/s`);
      await receiver.reset();
      pipes.push((await pipelineBackfill(receiver.url, monitor)).rate);
      const { rows } = await receiver.counts();
      if (rows !== ROWS) throw new Error(`the receiver counted ${rows} rows, the table holds ${ROWS}`);
      console.log(`round ${round}: pipeline backfill: ${fmt(pipes[pipes.length - 1]!)} rows/s`);
    }
  } finally {
    monitor.disconnect();
    await receiver.close();
  }
  const raw = Math.max(...raws);
  const pipe = Math.max(...pipes);
  console.log(
    `\nMySQL/MariaDB, best of ${ROUNDS}: raw keyset read ${fmt(raw)} rows/s, pipeline backfill ${fmt(pipe)} rows/s, ratio pipeline/raw = ${(pipe / raw).toFixed(2)}`,
  );
  return { raw, pipeline: pipe, ratio: pipe / raw };
}
