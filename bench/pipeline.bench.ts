import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { runOnce } from '../src/queue/run-once.js';
import { cpuSecondsByCommand, diffCpu } from './cpu.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { rawKeysetRead } from './raw-read.js';
import { startReceiverChild, type ReceiverChild } from './receiver-child.js';
import { deletePrefix } from '../src/queue/redis.js';
import { mysqlBackfillBench } from './mysql-backfill.js';

/**
 * Backfill throughput of the whole pipeline (extract + push workers over BullMQ, into a Stream API stand-in) against
 * the fastest plain keyset read of the same table from Node. See bench/README.md.
 */
function positiveInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${text}`);
  return n;
}

const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SCHEMA = process.env.BENCH_SCHEMA ?? 'pushsync_bench';
const ROWS = positiveInt('BENCH_ROWS', 1_000_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const BATCH_ROWS = positiveInt('BENCH_BATCH_ROWS', 5000);
const PUSH_CONCURRENCY = positiveInt('BENCH_PUSH_CONCURRENCY', 4);
if (!/^[a-z_][a-z0-9_]*$/.test(SCHEMA)) throw new Error(`BENCH_SCHEMA must be a plain lower-case identifier, got ${SCHEMA}`);
const REGENERATE = process.env.BENCH_REGENERATE === '1';
const GOAL = 0.25;
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;

interface PipelineResult {
  rows: number;
  requests: number;
  seconds: number;
  /** RSS when the run started (modules loaded, previous runs collected as far as GC got). */
  startRss: number;
  peakRss: number;
  redisBefore: number;
  redisPeak: number;
  redisAfter: number;
  /** CPU seconds during the run, by process. */
  cpu: { pipeline: number; receiver: number; postgres: number; redis: number };
  /** Share of the run the pipeline's event loop was busy. */
  eventLoopBusy: number;
  problems: string[];
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function redisUsedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}

/**
 * What the backfill runs with: the plain table, then the same table with rules of what leaves (three masks, one in
 * pushsync and two in SQL, and a filter that drops one row in ten), then the same with a transform as well.
 */
interface Variant {
  label: string;
  rules: Record<string, unknown>;
  /** The SQL condition of the rows that arrive. */
  arriving: string;
}

const FILTER = 'quantity % 10 <> 0';
const RULES = { masks: { ref: 'hash', title: { truncate: 8 }, day: { truncate: 'month' } }, where: FILTER };
const VARIANTS: Variant[] = [
  { label: 'plain table', rules: {}, arriving: 'true' },
  { label: 'three masks and one filter', rules: RULES, arriving: FILTER },
  {
    label: 'three masks, one filter and a transform',
    rules: { ...RULES, transform: fileURLToPath(new URL('./transform.mjs', import.meta.url)) },
    arriving: FILTER,
  },
];

function benchConfig(prefix: string, receiverUrl: string, variant: Variant): Config {
  return parseConfig(
    {
      redis: { url: REDIS_URL, prefix },
      destination: { url: receiverUrl, apiKey: 'bench', concurrency: PUSH_CONCURRENCY },
      masking: { key: 'bench-pseudonym-key-0123456789' },
      sources: [
        { name: 'bench', kind: 'postgres', url: PG_URL, tables: [{ name: TABLE, watermark: 'updated_at', batchRows: BATCH_ROWS, ...variant.rules }] },
      ],
    },
    {},
  );
}

/** One backfill from a fresh prefix (so a fresh cursor): wall time from enqueueing the run to both queues drained. */
async function pipelineBackfill(receiver: ReceiverChild, monitor: Redis, expected: number, variant: Variant = VARIANTS[0]!): Promise<PipelineResult> {
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const config = benchConfig(prefix, receiver.url, variant);
  await receiver.reset();
  const redisBefore = await redisUsedMemory(monitor);
  let redisPeak = redisBefore;
  const startRss = process.memoryUsage.rss();
  let peakRss = startRss;
  const ctx = createPipeline(config, createLogger('warn'));
  const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
  const rssTimer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 100);
  const redisTimer = setInterval(() => {
    redisUsedMemory(monitor).then(
      (m) => (redisPeak = Math.max(redisPeak, m)),
      () => undefined,
    );
  }, 250);
  const problems: string[] = [];
  let seconds = 0;
  let redisAfter = 0;
  let eventLoopBusy = 0;
  const cpu = { pipeline: 0, receiver: 0, postgres: 0, redis: 0 };
  try {
    const receiverCpu = (await receiver.counts()).cpuSeconds;
    const servicesCpu = cpuSecondsByCommand(['postgres', 'redis-server']);
    const ownCpu = process.cpuUsage();
    const elu = performance.eventLoopUtilization();
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: 30 * 60_000,
      pollMs: 50,
    });
    seconds = (performance.now() - started) / 1000;
    eventLoopBusy = performance.eventLoopUtilization(elu).utilization;
    const own = process.cpuUsage(ownCpu);
    const services = diffCpu(servicesCpu, cpuSecondsByCommand(['postgres', 'redis-server']));
    cpu.pipeline = (own.user + own.system) / 1e6;
    cpu.receiver = (await receiver.counts()).cpuSeconds - receiverCpu;
    cpu.postgres = services.get('postgres') ?? 0;
    cpu.redis = services.get('redis-server') ?? 0;
    redisAfter = await redisUsedMemory(monitor);
    if (summary.timedOut) problems.push('the run timed out');
    for (const f of summary.failed) problems.push(`job ${f.queue}/${f.id} failed: ${f.reason}`);
  } finally {
    clearInterval(rssTimer);
    clearInterval(redisTimer);
    await runtime.stop();
    await deletePrefix(monitor, prefix);
  }
  const { rows, requests } = await receiver.counts();
  if (rows !== expected) problems.push(`the receiver counted ${rows} rows, the table holds ${expected}`);
  return { rows, requests, seconds, startRss, peakRss, redisBefore, redisPeak, redisAfter, cpu, eventLoopBusy, problems };
}

async function main(): Promise<number> {
  console.log(`dataset: ${TABLE}, ${fmtInt(ROWS)} rows, 12 columns`);
  const t0 = performance.now();
  if (await ensureDataset(PG_URL, SCHEMA, ROWS, REGENERATE)) {
    console.log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    console.log('  present (BENCH_REGENERATE=1 rebuilds it)');
  }
  const expected = await countRows(PG_URL, SCHEMA, benchTable(ROWS));
  const receiver = await startReceiverChild();
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const raws: number[] = [];
  const pipelines: PipelineResult[] = [];
  const ruled: Array<{ variant: Variant; best: PipelineResult }> = [];
  let failed = false;
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const rawCpuBefore = cpuSecondsByCommand(['postgres']);
      const rawOwnBefore = process.cpuUsage();
      const raw = await rawKeysetRead(PG_URL, TABLE, BATCH_ROWS);
      const rawOwn = process.cpuUsage(rawOwnBefore);
      const rawPostgres = diffCpu(rawCpuBefore, cpuSecondsByCommand(['postgres'])).get('postgres') ?? 0;
      if (raw.rows !== expected) {
        console.log(`raw keyset read returned ${raw.rows} rows, the table holds ${expected}`);
        failed = true;
      }
      raws.push(raw.rows / raw.seconds);
      console.log(
        `round ${round}: raw keyset read: ${fmtInt(raw.rows)} rows in ${raw.seconds.toFixed(2)} s = ${fmtInt(raw.rows / raw.seconds)} rows/s`,
      );
      console.log(`  CPU during the read: node ${((rawOwn.user + rawOwn.system) / 1e6).toFixed(1)} s, postgres ${rawPostgres.toFixed(1)} s`);
      const p = await pipelineBackfill(receiver, monitor, expected);
      pipelines.push(p);
      console.log(
        `round ${round}: pipeline backfill: ${fmtInt(p.rows)} rows in ${p.seconds.toFixed(2)} s = ${fmtInt(p.rows / p.seconds)} rows/s ` +
          `(${p.requests} requests, RSS ${mb(p.startRss)} → peak ${mb(p.peakRss)}, Redis used_memory ${mb(p.redisBefore)} → peak ${mb(p.redisPeak)} → ${mb(p.redisAfter)})`,
      );
      console.log(
        `  CPU during the run: pipeline ${p.cpu.pipeline.toFixed(1)} s (event loop ${(p.eventLoopBusy * 100).toFixed(0)}% busy), ` +
          `postgres ${p.cpu.postgres.toFixed(1)} s, receiver ${p.cpu.receiver.toFixed(1)} s, redis ${p.cpu.redis.toFixed(1)} s`,
      );
      for (const problem of p.problems) console.log(`  FAILED: ${problem}`);
      if (p.problems.length > 0) failed = true;
    }
    for (const variant of VARIANTS.slice(1)) {
      const arriving = await countRows(PG_URL, SCHEMA, benchTable(ROWS), variant.arriving);
      const runs: PipelineResult[] = [];
      for (let round = 1; round <= ROUNDS; round += 1) {
        const p = await pipelineBackfill(receiver, monitor, arriving, variant);
        runs.push(p);
        console.log(
          `round ${round}: pipeline backfill, ${variant.label}: ${fmtInt(expected)} rows read, ${fmtInt(p.rows)} sent in ${p.seconds.toFixed(2)} s = ` +
            `${fmtInt(expected / p.seconds)} rows/s read (CPU: pipeline ${p.cpu.pipeline.toFixed(1)} s, postgres ${p.cpu.postgres.toFixed(1)} s, ` +
            `Redis peak ${mb(p.redisPeak)})`,
        );
        for (const problem of p.problems) console.log(`  FAILED: ${problem}`);
        if (p.problems.length > 0) failed = true;
      }
      ruled.push({ variant, best: runs.reduce((a, b) => (b.seconds < a.seconds ? b : a)) });
    }
  } finally {
    monitor.disconnect();
    await receiver.close();
  }
  if (failed) {
    console.log('RESULT INVALID: the pipeline did not deliver exactly the table');
    return 1;
  }
  const bestRaw = Math.max(...raws);
  const best = pipelines.reduce((a, b) => (b.rows / b.seconds > a.rows / a.seconds ? b : a));
  const bestPipe = best.rows / best.seconds;
  const ratio = bestPipe / bestRaw;
  console.log('');
  console.log(`best of ${ROUNDS}:`);
  console.log(`raw keyset read: ${fmtInt(expected)} rows in ${(expected / bestRaw).toFixed(2)} s = ${fmtInt(bestRaw)} rows/s`);
  console.log(
    `pipeline backfill: ${fmtInt(best.rows)} rows in ${best.seconds.toFixed(2)} s = ${fmtInt(bestPipe)} rows/s ` +
      `(batchRows=${BATCH_ROWS}, push concurrency=${PUSH_CONCURRENCY})`,
  );
  console.log(`ratio pipeline/raw = ${ratio.toFixed(2)} (goal >= ${GOAL}) ${ratio >= GOAL ? 'MET' : 'MISSED'}`);
  for (const { variant, best: r } of ruled) {
    console.log(
      `pipeline backfill, ${variant.label}: ${fmtInt(expected / r.seconds)} rows/s read (${fmtInt(r.rows)} of ${fmtInt(expected)} rows sent), ` +
        `${((expected / r.seconds / bestPipe) * 100).toFixed(0)}% of the plain table's rate`,
    );
  }
  console.log(`pipeline process peak RSS: ${mb(Math.max(...pipelines.map((p) => p.peakRss)))}`);
  console.log(
    `Redis used_memory: before ${mb(best.redisBefore)}, peak ${mb(best.redisPeak)}, after ${mb(best.redisAfter)} (bench keys removed afterwards)`,
  );
  return 0;
}

// The MySQL/MariaDB backfill beside its own raw read (bench/mysql-backfill.ts); BENCH_MYSQL=0 leaves it out.
main()
  .then(async (code) => (code === 0 && process.env.BENCH_MYSQL !== '0' ? (await mysqlBackfillBench(), code) : code))
  .then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
