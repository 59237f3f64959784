/**
 * `npm run bench:cdc`: change data capture throughput. A table on the wal_level=logical cluster is snapshotted,
 * then changed (updates in large and small transactions, inserts, deletes); the time from the start of the pass that
 * streams those changes until every one was delivered gives changes/s. Prints the time the plain
 * `pg_logical_slot_peek_binary_changes` of the same WAL takes next to it, for scale.
 */
import pg from 'pg';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { runOnce } from '../src/queue/run-once.js';
import { deletePrefix } from '../src/queue/redis.js';
import { startReceiverChild } from './receiver-child.js';
import { binlogChangesBench } from './mysql-binlog.js';

const PG_URL = process.env.BENCH_LOGICAL_PG_URL ?? 'postgres://postgres@127.0.0.1:5433/test';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROWS = Number(process.env.BENCH_CDC_ROWS ?? 200_000);
const SLOT = 'pushsync_bench_cdc';
const PREFIX = `pushsync_bench_cdc_${process.pid}`;

async function main(): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  await client.query(`DROP PUBLICATION IF EXISTS ${SLOT}`);
  await client.query(`DROP SCHEMA IF EXISTS bench_cdc CASCADE; CREATE SCHEMA bench_cdc`);
  await client.query(
    `CREATE TABLE bench_cdc.events (id bigint PRIMARY KEY, account int, amount numeric(12,2), status text, payload jsonb, updated_at timestamptz DEFAULT now())`,
  );
  await client.query(
    `INSERT INTO bench_cdc.events SELECT g, g % 1000, g / 7.0, 'new', jsonb_build_object('k', g) FROM generate_series(1, $1::int) g`,
    [ROWS],
  );
  const receiver = await startReceiverChild();
  const redis = new Redis(REDIS_URL);
  const config = parseConfig(
    {
      redis: { url: REDIS_URL, prefix: PREFIX },
      destination: { url: receiver.url, apiKey: 'bench' },
      sources: [
        {
          name: 'bench',
          kind: 'postgres',
          url: PG_URL,
          mode: 'cdc',
          cdc: { slot: SLOT, publication: SLOT, maxRunTime: '10m' },
          tables: [{ name: 'bench_cdc.events' }],
        },
      ],
    },
    {},
  );
  const pass = async (): Promise<number> => {
    const ctx = createPipeline(config, createLogger('warn'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 600_000 });
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
    await client.query(`UPDATE bench_cdc.events SET status = 'paid', amount = amount + 1, updated_at = now() WHERE id % 2 = 0`);
    for (let i = 0; i < 200; i++)
      await client.query(`UPDATE bench_cdc.events SET status = 'shipped' WHERE id BETWEEN $1::bigint AND $1::bigint + 99`, [i * 100 + 1]);
    await client.query(
      `INSERT INTO bench_cdc.events (id, account, amount, status) SELECT g, 1, 1, 'new' FROM generate_series($1::int + 1, $2::int) g`,
      [ROWS, ROWS + 20000],
    );
    await client.query(`DELETE FROM bench_cdc.events WHERE id % 10 = 1`);
    const {
      rows: [peek],
    } = await client.query(
      `SELECT count(*)::int AS n FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
      [SLOT, SLOT],
    );
    const expected = ROWS / 2 + 200 * 100 + 20_000 + ROWS / 10;
    const seconds = await pass();
    const delivered = (await receiver.counts()).rows;
    console.log(
      `changes: ${delivered} records for ${expected} changes (${peek.n} pgoutput messages) in ${seconds.toFixed(2)} s = ${Math.round(expected / seconds).toLocaleString('en-US')} changes/s`,
    );
    if (delivered < expected - ROWS / 10 / 2)
      console.log('WARNING: fewer records than changes (rows changed and deleted between reads are skipped by design)');
  } finally {
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${SLOT}`).catch(() => {});
    await client.query(`DROP SCHEMA IF EXISTS bench_cdc CASCADE`);
    await client.end();
    await deletePrefix(redis, PREFIX);
    await redis.quit();
    await receiver.close();
  }
}

// Then binlog capture from MariaDB (bench/mysql-binlog.ts); BENCH_MYSQL=0 leaves it out. A pipeline pass leaves Redis
// connections open, hence the explicit exit.
main()
  .then(async () => {
    if (process.env.BENCH_MYSQL !== '0') await binlogChangesBench();
    process.exit(0);
  })
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
