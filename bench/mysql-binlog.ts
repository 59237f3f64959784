/**
 * Binlog change data capture throughput (`npm run bench:mysql-cdc`, and the MySQL part of `npm run bench:cdc`). A table on the MariaDB with the binary log
 * (scripts/mariadb-binlog.sh) is snapshotted, then changed (one large update, many small ones, inserts, deletes);
 * the time from the start of the pass that streams those changes until every one was delivered gives changes/s.
 */
import mysql from 'mysql2/promise';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { runOnce } from '../src/queue/run-once.js';
import { deletePrefix } from '../src/queue/redis.js';
import { startReceiverChild } from './receiver-child.js';

const URL_BASE = process.env.BENCH_MYSQL_BINLOG_URL ?? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3307';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROWS = Number(process.env.BENCH_CDC_ROWS ?? 100_000);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 600_000);
const DATABASE = 'pushsync_bench_cdc';
const PREFIX = `pushsync_bench_cdc_${process.pid}`;
if (!Number.isInteger(ROWS) || ROWS < 1000) throw new Error('BENCH_CDC_ROWS must be an integer of at least 1000');

/** Prints the snapshot rate and the binlog changes/s; returns the changes/s. */
export async function binlogChangesBench(): Promise<number> {
  const client = await mysql.createConnection({ uri: URL_BASE });
  await client.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await client.query(`CREATE DATABASE ${DATABASE}`);
  await client.query(`USE ${DATABASE}`);
  await client.query(
    `CREATE TABLE events (id bigint PRIMARY KEY, account int, amount decimal(12,2), status varchar(10), payload json, updated_at timestamp(6) DEFAULT CURRENT_TIMESTAMP(6))`,
  );
  await client.query(
    `INSERT INTO events (id, account, amount, status, payload) SELECT seq, seq % 1000, seq / 7, 'new', JSON_OBJECT('k', seq) FROM seq_1_to_${ROWS}`,
  );
  const receiver = await startReceiverChild();
  const redis = new Redis(REDIS_URL);
  const config = parseConfig(
    {
      redis: { url: REDIS_URL, prefix: PREFIX },
      destination: { url: receiver.url, apiKey: 'bench' },
      sources: [
        { name: 'bench', kind: 'mysql', url: `${URL_BASE}/${DATABASE}`, mode: 'cdc', cdc: { maxRunTime: '10m' }, tables: [{ name: 'events' }] },
      ],
    },
    {},
  );
  const pass = async (): Promise<number> => {
    const ctx = createPipeline(config, createLogger('warn'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: TIMEOUT_MS });
    const seconds = (performance.now() - started) / 1000;
    await runtime.stop();
    if (summary.failed.length > 0 || summary.timedOut) throw new Error(`pass failed: ${JSON.stringify(summary)}`);
    return seconds;
  };
  try {
    const snapshotSeconds = await pass();
    const snapshotRows = (await receiver.counts()).rows;
    console.log(
      `snapshot: ${snapshotRows} rows in ${snapshotSeconds.toFixed(2)} s = ${Math.round(snapshotRows / snapshotSeconds).toLocaleString('en-US')} rows/s`,
    );
    await receiver.reset();
    // One large transaction, many small ones, inserts and deletes.
    await client.query(`UPDATE events SET status = 'paid', amount = amount + 1 WHERE id % 2 = 0`);
    for (let i = 0; i < 200; i++) await client.query(`UPDATE events SET status = 'shipped' WHERE id BETWEEN ${i * 100 + 1} AND ${i * 100 + 100}`);
    await client.query(`INSERT INTO events (id, account, amount, status) SELECT seq, 1, 1, 'new' FROM seq_${ROWS + 1}_to_${ROWS + 20000}`);
    await client.query(`DELETE FROM events WHERE id % 10 = 1`);
    const expected = ROWS / 2 + 200 * 100 + 20_000 + (ROWS + 20_000) / 10;
    const seconds = await pass();
    const delivered = (await receiver.counts()).rows;
    console.log(
      `binlog changes: ${delivered} records for ${expected} changes in ${seconds.toFixed(2)} s = ${Math.round(expected / seconds).toLocaleString('en-US')} changes/s`,
    );
    return expected / seconds;
  } finally {
    await client.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
    await client.end();
    await deletePrefix(redis, PREFIX);
    await redis.quit();
    await receiver.close();
  }
}
