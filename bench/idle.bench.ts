/**
 * `npm run bench:idle`: what pushsync costs when nothing changes.
 *
 * 1. Idle cost against table size: two tables of the same layout, `BENCH_IDLE_SMALL` (10k) and `BENCH_IDLE_LARGE`
 *    (10M) rows, both caught up (cursor at their last row, as after a backfill). Incremental runs that find nothing
 *    new alternate between them; per run it prints the extract job's time and the shared buffers Postgres touched
 *    (`pg_stat_database` of the bench's own database), and the large/small ratio (goal <= 2).
 * 2. Many tables: `BENCH_IDLE_TABLES` (500) caught-up tables every `BENCH_IDLE_EVERY` (30 s), nothing changing, the
 *    whole pipeline (scheduler, extract and push roles) in this process against a private `redis-server` it starts.
 *    Over `BENCH_IDLE_SECONDS` of wall time it prints this process's CPU as a share of one core (goal <= 5 %) and the
 *    Redis commands per second (`INFO commandstats`, reset after a warm-up) in all and per table (goal <= 50).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { Job } from 'bullmq';
import { parseConfig, tableSpec, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { closePipeline, createPipeline, startRuntime } from '../src/main.js';
import { runOnce } from '../src/queue/run-once.js';
import { RedisCursorStore } from '../src/queue/cursor-store.js';
import { findSource } from '../src/queue/context.js';
import { startReceiverChild } from './receiver-child.js';

const ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const DB = process.env.BENCH_IDLE_DB ?? 'pushsync_bench_idle';
const PG_URL = ADMIN_URL.replace(/\/[^/?]*(\?|$)/, `/${DB}$1`);
const SMALL = Number(process.env.BENCH_IDLE_SMALL ?? 10_000);
const LARGE = Number(process.env.BENCH_IDLE_LARGE ?? 10_000_000);
const ROUNDS = Number(process.env.BENCH_IDLE_ROUNDS ?? 10);
const TABLES = Number(process.env.BENCH_IDLE_TABLES ?? 500);
const EVERY = process.env.BENCH_IDLE_EVERY ?? '30s';
const SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 120);
const REDIS_BIN = process.env.BENCH_REDIS_SERVER ?? 'redis-server';

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function startRedis(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      await r.quit();
      return { url, proc };
    } catch {
      r.disconnect();
      await sleep(100);
    }
  }
  throw new Error('private redis-server did not start');
}

async function ensureDatabase(): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const { rows } = await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [DB]);
  if (rows.length === 0) await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
}

/** A table of `rows` rows with an index on (updated_at, id), kept between runs when already there. */
async function ensureTable(client: pg.Client, name: string, rows: number): Promise<void> {
  const { rows: have } = await client.query(`SELECT reltuples::float8 AS n FROM pg_class WHERE oid = to_regclass($1)`, [name]);
  if (have[0] && Math.abs(Number(have[0].n) - rows) <= rows * 0.01) return;
  const started = performance.now();
  await client.query(`DROP TABLE IF EXISTS ${name}`);
  await client.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, account int, note text)`);
  await client.query(
    `INSERT INTO ${name} SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 millisecond', g % 1000, 'n' || g FROM generate_series(1, $1::bigint) g`,
    [rows],
  );
  await client.query(`CREATE INDEX ON ${name} (updated_at, id)`);
  await client.query(`VACUUM ANALYZE ${name}`);
  if (rows >= 100_000) console.log(`created ${name} (${fmt(rows)} rows) in ${fmt((performance.now() - started) / 1000, 1)} s`);
}

function configFor(redisUrl: string, prefix: string, receiverUrl: string, tables: string[], every: string): Config {
  return parseConfig(
    {
      redis: { url: redisUrl, prefix },
      destination: { url: receiverUrl, apiKey: 'bench' },
      sources: [{ name: 'bench', kind: 'postgres', url: PG_URL, tables: tables.map((name) => ({ name, watermark: 'updated_at', every })) }],
    },
    {},
  );
}

/** Puts each table's cursor on its last row, as a finished backfill leaves it, using pushsync's own reader. */
async function catchUp(config: Config, client: pg.Client): Promise<void> {
  const ctx = createPipeline(config, createLogger('warn'));
  try {
    for (const table of config.sources[0]!.tables) {
      const { rows } = await client.query(
        `SELECT updated_at::text AS wm, id::text AS id FROM ${table.name} ORDER BY updated_at DESC, id DESC OFFSET 1 LIMIT 1`,
      );
      const reader = await findSource(ctx, 'bench').table(tableSpec(table));
      const next = await reader.nextRange({ phase: 'wm', after: { wm: rows[0].wm as string, pk: [rows[0].id as string] } }, 10);
      if (!next) throw new Error(`${table.name}: no last row`);
      const store = new RedisCursorStore(
        ctx.redis,
        ctx.keys.cursor('bench', table.name),
        ctx.keys.generation('bench', table.name),
        `bench.${table.name}`,
      );
      await store.save(await store.load(), { phase: 'wm', after: next.range.hi });
      await ctx.redis.hset(ctx.keys.state('bench', table.name), 'caughtUpAt', String(Date.now()));
    }
  } finally {
    await closePipeline(ctx);
  }
}

async function blocks(client: pg.Client): Promise<number> {
  const { rows } = await client.query(`SELECT (blks_hit + blks_read)::float8 AS n FROM pg_stat_database WHERE datname = $1`, [DB]);
  return Number(rows[0].n);
}

/** ROUNDS idle one-shot runs of one table: extract job milliseconds (median) and shared buffers per run. */
async function idleRuns(config: Config, client: pg.Client): Promise<{ ms: number; buffers: number; rows: number }> {
  const ctx = createPipeline(config, createLogger('warn'));
  const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
  // Every one-shot pass adds its own listeners to the workers.
  for (const w of runtime.workers) w.setMaxListeners(ROUNDS + 10);
  const times: number[] = [];
  let rows = 0;
  runtime.workers[0]!.on('completed', (job: Job, result: { rows?: number }) => {
    times.push(job.finishedOn! - job.processedOn!);
    rows += result.rows ?? 0;
  });
  await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 60_000, pollMs: 20 });
  times.length = 0;
  rows = 0;
  // The pools end with the runtime, which makes their backends report their statistics.
  await sleep(1200);
  const before = await blocks(client);
  for (let i = 0; i < ROUNDS; i++) {
    await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 60_000, pollMs: 20 });
  }
  await runtime.stop();
  await sleep(1200);
  const buffers = ((await blocks(client)) - before) / ROUNDS;
  const sorted = [...times].sort((a, b) => a - b);
  return { ms: sorted[Math.floor(sorted.length / 2)] ?? NaN, buffers, rows };
}

async function sizeBench(redisUrl: string, receiverUrl: string, client: pg.Client): Promise<void> {
  const small = `pushsync_bench.idle_${SMALL}`;
  const large = `pushsync_bench.idle_${LARGE}`;
  await ensureTable(client, small, SMALL);
  await ensureTable(client, large, LARGE);
  const results: Record<string, Array<{ ms: number; buffers: number; rows: number }>> = { [small]: [], [large]: [] };
  for (const name of [small, large]) await catchUp(configFor(redisUrl, `idle_size_${name.replace(/\W/g, '_')}`, receiverUrl, [name], '30s'), client);
  // Interleaved, twice each, so a noisy moment on a shared machine does not decide the ratio.
  for (const name of [small, large, small, large])
    results[name]!.push(await idleRuns(configFor(redisUrl, `idle_size_${name.replace(/\W/g, '_')}`, receiverUrl, [name], '30s'), client));
  const best = (name: string): { ms: number; buffers: number; rows: number } => {
    const r = results[name]!;
    return { ms: Math.min(...r.map((x) => x.ms)), buffers: Math.min(...r.map((x) => x.buffers)), rows: r.reduce((a, x) => a + x.rows, 0) };
  };
  const s = best(small);
  const l = best(large);
  for (const [name, r, n] of [
    [small, s, SMALL],
    [large, l, LARGE],
  ] as const)
    console.log(
      `idle run, ${fmt(n)} rows: extract job ${fmt(r.ms)} ms (median of ${ROUNDS}), ${fmt(r.buffers, 1)} shared buffers per run, ${r.rows} rows sent (${name})`,
    );
  const ratio = Math.max(l.ms / Math.max(s.ms, 1), l.buffers / Math.max(s.buffers, 1));
  console.log(
    `idle cost large/small: time ${fmt(l.ms / Math.max(s.ms, 1), 2)}×, buffers ${fmt(l.buffers / Math.max(s.buffers, 1), 2)}× (goal <= 2: ${ratio <= 2 ? 'met' : 'MISSED'})`,
  );
}

async function manyTablesBench(redisUrl: string, receiverUrl: string, client: pg.Client): Promise<void> {
  const names: string[] = [];
  const { rows: present } = await client.query(
    `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'pushsync_bench' AND tablename LIKE 'many\\_%'`,
  );
  for (let i = 0; i < TABLES; i++) names.push(`pushsync_bench.many_${i}`);
  if (Number(present[0].n) < TABLES) {
    for (const name of names) {
      await client.query(`CREATE TABLE IF NOT EXISTS ${name} (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, note text)`);
      await client.query(`CREATE INDEX IF NOT EXISTS ${name.split('.')[1]}_wm ON ${name} (updated_at, id)`);
      await client.query(
        `INSERT INTO ${name} SELECT g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', 'n' FROM generate_series(1, 10) g ON CONFLICT DO NOTHING`,
      );
    }
    await client.query(`ANALYZE`);
  }
  const config = configFor(redisUrl, 'idle_many', receiverUrl, names, EVERY);
  await catchUp(config, client);
  const ctx = createPipeline(config, createLogger('warn'));
  const runtime = await startRuntime(ctx, { roles: ['scheduler', 'extract', 'push'] });
  let runs = 0;
  let rows = 0;
  runtime.workers[0]!.on('completed', (_job: Job, result: { rows?: number }) => {
    runs += 1;
    rows += result.rows ?? 0;
  });
  const stats = new Redis(redisUrl);
  try {
    // One interval of warm-up: schedules registered, first runs of every table done.
    await sleep(config.sources[0]!.tables[0]!.every! + 2000);
    await stats.config('RESETSTAT');
    runs = 0;
    rows = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const info = await stats.info('commandstats');
    let calls = 0;
    const byCommand: Array<[string, number]> = [];
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      calls += Number(m[2]);
      byCommand.push([m[1]!, Number(m[2])]);
    }
    // The INFO call itself is counted once.
    calls -= 1;
    const share = (cpu.user + cpu.system) / 1e6 / seconds;
    console.log(
      `many tables: ${TABLES} tables every ${EVERY}, nothing changing, ${fmt(seconds, 0)} s: ${runs} runs (${rows} rows), ` +
        `pushsync CPU ${fmt(share * 100, 2)} % of one core (goal <= 5 %: ${share <= 0.05 ? 'met' : 'MISSED'}), ` +
        `Redis ${fmt(calls / seconds, 1)} commands/s = ${fmt(calls / seconds / TABLES, 3)} per table (goal <= 50: ${calls / seconds / TABLES <= 50 ? 'met' : 'MISSED'}), ` +
        `${fmt(calls / Math.max(runs, 1), 1)} commands per run`,
    );
    byCommand.sort((a, b) => b[1] - a[1]);
    console.log(
      `  top commands: ${byCommand
        .slice(0, 8)
        .map(([c, n]) => `${c} ${fmt(n / seconds, 1)}/s`)
        .join(', ')}`,
    );
  } finally {
    await stats.quit();
    await runtime.stop();
  }
}

async function main(): Promise<void> {
  await ensureDatabase();
  const client = new pg.Client({ connectionString: PG_URL, options: '-c TimeZone=UTC' });
  await client.connect();
  await client.query(`CREATE SCHEMA IF NOT EXISTS pushsync_bench`);
  const redis = await startRedis();
  const receiver = await startReceiverChild();
  try {
    if (process.env.BENCH_IDLE_PART !== 'many') await sizeBench(redis.url, receiver.url, client);
    if (process.env.BENCH_IDLE_PART !== 'size') await manyTablesBench(redis.url, receiver.url, client);
  } finally {
    await client.end();
    await receiver.close();
    redis.proc.kill();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
