/**
 * `npm run bench:cdc`: change data capture throughput and latency. A table on the wal_level=logical cluster is
 * snapshotted, then changed (updates in large and small transactions, inserts, deletes); the time from the start of
 * the pass that streams those changes until every one was delivered gives changes/s. Prints the time the plain
 * `pg_logical_slot_peek_binary_changes` of the same WAL takes next to it, for scale.
 *
 * Then latency: pushsync runs as a service (scheduler, extract and push roles) while this process inserts rows at a
 * steady rate in small transactions, each row stamped with `clock_timestamp()` by the source as it is written (the
 * commit follows within the same statement); the receiver notes, per record, the time from that stamp to its
 * acceptance, and the percentiles are printed.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { runOnce } from '../src/queue/run-once.js';
import { deletePrefix } from '../src/queue/redis.js';
import { startReceiverChild } from './receiver-child.js';
import { binlogChangesBench } from './mysql-binlog.js';
import { startProfile } from './backfill.js';
import { cpuSecondsByCommand, cpuSecondsOfProcessTree, diffCpu } from './cpu.js';

const PG_URL = process.env.BENCH_LOGICAL_PG_URL ?? 'postgres://postgres@127.0.0.1:5433/test';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROWS = Number(process.env.BENCH_CDC_ROWS ?? 200_000);
const LATENCY_RATE = Number(process.env.BENCH_CDC_RATE ?? 5000);
const LATENCY_SECONDS = Number(process.env.BENCH_CDC_SECONDS ?? 20);
// Names of this run only: slots are cluster-wide, and two runs at once must not drop each other's.
const SLOT = `pushsync_bench_cdc_${process.pid}`;
const SCHEMA = `bench_cdc_${process.pid}`;
const PREFIX = `pushsync_bench_cdc_${process.pid}`;
const PROFILE_DIR = process.env.BENCH_CPU_PROF;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  await client.query(`DROP PUBLICATION IF EXISTS ${SLOT}`);
  await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; CREATE SCHEMA ${SCHEMA}`);
  await client.query(
    `CREATE TABLE ${SCHEMA}.events (id bigint PRIMARY KEY, account int, amount numeric(12,2), status text, payload jsonb, updated_at timestamptz DEFAULT now(), written_at timestamptz)`,
  );
  await client.query(
    `INSERT INTO ${SCHEMA}.events SELECT g, g % 1000, g / 7.0, 'new', jsonb_build_object('k', g) FROM generate_series(1, $1::int) g`,
    [ROWS],
  );
  // The cluster's own processes: the machine's other Postgres work is not this run's.
  const {
    rows: [{ pid: postmaster }],
  } = await client.query(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`);
  const clusterPid = Number(
    readFileSync(`/proc/${Number(postmaster)}/stat`, 'utf8')
      .split(') ')[1]
      ?.split(' ')[1],
  );
  const receiver = await startReceiverChild();
  const redis = new Redis(REDIS_URL);
  const config = parseConfig(
    {
      redis: { url: REDIS_URL, prefix: PREFIX },
      destination: {
        url: receiver.url,
        apiKey: 'bench',
        ...(process.env.BENCH_PUSH_CONCURRENCY ? { concurrency: Number(process.env.BENCH_PUSH_CONCURRENCY) } : {}),
      },
      sources: [
        {
          name: 'bench',
          kind: 'postgres',
          url: PG_URL,
          mode: 'cdc',
          cdc: {
            slot: SLOT,
            publication: SLOT,
            maxRunTime: '10m',
            ...(process.env.BENCH_CDC_FLUSH ? { flushInterval: process.env.BENCH_CDC_FLUSH } : {}),
            ...(process.env.BENCH_CDC_BATCH_KEYS ? { batchKeys: Number(process.env.BENCH_CDC_BATCH_KEYS) } : {}),
          },
          tables: [{ name: `${SCHEMA}.events` }],
        },
      ],
    },
    {},
  );
  /** One one-shot run; `profile` names the CPU profile of it written to BENCH_CPU_PROF. */
  const pass = async (profile?: string): Promise<{ seconds: number; cpu: string }> => {
    const ctx = createPipeline(config, createLogger('warn'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const profiler = PROFILE_DIR !== undefined && profile !== undefined ? await startProfile() : undefined;
    const services = cpuSecondsByCommand(['redis-server']);
    const cluster = cpuSecondsOfProcessTree(clusterPid);
    const receiverCpu = (await receiver.counts()).cpuSeconds;
    const own = process.cpuUsage();
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 600_000 });
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(own);
    const other = diffCpu(services, cpuSecondsByCommand(['redis-server']));
    const clusterUsed = cpuSecondsOfProcessTree(clusterPid) - cluster;
    const receiverUsed = (await receiver.counts()).cpuSeconds - receiverCpu;
    await profiler?.stop(`${PROFILE_DIR}/${profile}.cpuprofile`);
    await runtime.stop();
    if (summary.failed.length > 0 || summary.timedOut) throw new Error(`pass failed: ${JSON.stringify(summary)}`);
    const s = (n: number): string => `${n.toFixed(2)} s`;
    const cpu =
      `CPU: pipeline ${s((used.user + used.system) / 1e6)}, postgres ${s(clusterUsed)}, ` +
      `redis ${s(other.get('redis-server') ?? 0)}, receiver ${s(receiverUsed)}`;
    return { seconds, cpu };
  };
  /** Steady inserts while pushsync runs as a service; returns the printed summary. */
  const latency = async (): Promise<string> => {
    const ctx = createPipeline(config, createLogger('warn'));
    const runtime = await startRuntime(ctx, { roles: ['scheduler', 'extract', 'push'] });
    const writer = new pg.Client({ connectionString: PG_URL });
    await writer.connect();
    try {
      // The stream is open once a first transaction arrives; rows before that would measure the start-up.
      const warm = ROWS + 100_000;
      await writer.query(`INSERT INTO ${SCHEMA}.events (id, account, amount, status) VALUES ($1, 0, 0, 'warm')`, [warm]);
      await receiver.reset();
      for (let i = 0; (await receiver.counts()).rows === 0; i++) {
        if (i > 600) throw new Error('latency: the warm-up row never arrived');
        await new Promise((r) => setTimeout(r, 100));
      }
      await receiver.trackLatency('written_at');
      await receiver.reset();
      const total = LATENCY_RATE * LATENCY_SECONDS;
      const first = warm + 1;
      const started = performance.now();
      let sent = 0;
      // 100 transactions a second; a tick that comes late writes what is due, so the rate holds on average.
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * LATENCY_RATE));
        if (due > sent) {
          await writer.query(
            `INSERT INTO ${SCHEMA}.events (id, account, amount, status, written_at) SELECT g, 2, 2, 'steady', clock_timestamp() FROM generate_series($1::bigint, $2::bigint) g`,
            [first + sent, first + due - 1],
          );
          sent = due;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      const writeSeconds = (performance.now() - started) / 1000;
      for (let i = 0; (await receiver.counts()).rows < total; i++) {
        if (i > 1200) throw new Error(`latency: ${(await receiver.counts()).rows} of ${total} rows arrived`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const ms = (await receiver.latencies()).sort((a, b) => a - b);
      const f = (p: number): string => `${percentile(ms, p).toFixed(0)} ms`;
      return (
        `${total} inserts at ${Math.round(total / writeSeconds).toLocaleString('en-US')}/s for ${writeSeconds.toFixed(1)} s, ` +
        `commit to acceptance p50 ${f(50)}, p90 ${f(90)}, p99 ${f(99)}, max ${f(100)} (${ms.length} records; goal p99 <= 500 ms: ${percentile(ms, 99) <= 500 ? 'met' : 'MISSED'})`
      );
    } finally {
      await writer.end();
      await runtime.stop();
    }
  };
  try {
    const { seconds: snapshotSeconds } = await pass();
    const snapshotRows = (await receiver.counts()).rows;
    console.log(
      `snapshot: ${snapshotRows} rows in ${snapshotSeconds.toFixed(2)} s = ${Math.round(snapshotRows / snapshotSeconds).toLocaleString('en-US')} rows/s`,
    );
    await receiver.reset();
    // One large transaction, many small ones, inserts and deletes.
    await client.query(`UPDATE ${SCHEMA}.events SET status = 'paid', amount = amount + 1, updated_at = now() WHERE id % 2 = 0`);
    for (let i = 0; i < 200; i++)
      await client.query(`UPDATE ${SCHEMA}.events SET status = 'shipped' WHERE id BETWEEN $1::bigint AND $1::bigint + 99`, [i * 100 + 1]);
    await client.query(
      `INSERT INTO ${SCHEMA}.events (id, account, amount, status) SELECT g, 1, 1, 'new' FROM generate_series($1::int + 1, $2::int) g`,
      [ROWS, ROWS + 20000],
    );
    await client.query(`DELETE FROM ${SCHEMA}.events WHERE id % 10 = 1`);
    const {
      rows: [peek],
    } = await client.query(
      `SELECT count(*)::int AS n FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
      [SLOT, SLOT],
    );
    const expected = ROWS / 2 + 200 * 100 + 20_000 + ROWS / 10;
    const { seconds, cpu } = await pass('changes');
    const { rows: delivered, requests } = await receiver.counts();
    console.log(
      `changes: ${delivered} records for ${expected} changes (${peek.n} pgoutput messages) in ${seconds.toFixed(2)} s = ${Math.round(expected / seconds).toLocaleString('en-US')} changes/s`,
    );
    console.log(`changes: ${requests} requests; ${cpu}`);
    if (delivered < expected - ROWS / 10 / 2)
      console.log('WARNING: fewer records than changes (rows changed and deleted between reads are skipped by design)');
    console.log(`latency: ${await latency()}`);
  } finally {
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${SLOT}`).catch(() => {});
    await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
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
