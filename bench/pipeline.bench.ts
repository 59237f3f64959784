import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { cpuSecondsByCommand, diffCpu } from './cpu.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { cliBackfill, pipelineBackfill, type BackfillOptions, type PipelineResult } from './backfill.js';
import { buildCli, cliStartup, dockerNodeOptions } from './cli-child.js';
import { rawKeysetRead } from './raw-read.js';
import { RECEIVER_PARSE, startReceiverChild, type ReceiverChild } from './receiver-child.js';
import { mysqlBackfillBench } from './mysql-backfill.js';
import { positiveInt, PG_URL, REDIS_URL, SCHEMA } from './settings.js';

/**
 * Backfill throughput of the whole pipeline (extract + push workers over BullMQ, into a Stream API stand-in) against
 * the fastest plain keyset read of the same table from Node. The pipeline runs as users run it: the built CLI,
 * `node dist/cli.js sync --once`, in a child process; its CPU and peak RSS are that process's. See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 1_000_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const BATCH_ROWS = positiveInt('BENCH_BATCH_ROWS', 5000);
const PUSH_CONCURRENCY = positiveInt('BENCH_PUSH_CONCURRENCY', 8);
const REGENERATE = process.env.BENCH_REGENERATE === '1';
/** Goals of the backfill (see bench/README.md): ratios to the two raw reads, CPU of the pipeline process, its RSS. */
const GOAL_OBJECT = 1.0;
const GOAL_ARRAY = 0.55;
const GOAL_CPU_PER_MILLION = 4.5;
const GOAL_RSS = 200 * 1024 * 1024;
/** `0` skips the rounds with masks, a filter and a transform. */
const RULES_VARIANTS = process.env.BENCH_RULES !== '0';
/** `0` leaves out the rounds that run the pipeline inside this process (under tsx), printed beside the CLI's. */
const IN_PROCESS = process.env.BENCH_IN_PROCESS !== '0';
/** A directory: the first in-process pipeline round writes a CPU profile of this process there (the raw reads are not in it). */
const PROFILE_DIR = process.env.BENCH_CPU_PROF;
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

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

function common(receiver: ReceiverChild, monitor: Redis, expected: number): BackfillOptions {
  return {
    receiver,
    monitor,
    expected,
    pgUrl: PG_URL,
    redisUrl: REDIS_URL,
    table: TABLE,
    batchRows: BATCH_ROWS,
    destination: { concurrency: PUSH_CONCURRENCY },
  };
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
  if (process.env.BENCH_BUILD !== '0') buildCli();
  const startup = await cliStartup();
  console.log(`compiled CLI start-up alone (node dist/cli.js --version): CPU ${startup.cpuSeconds.toFixed(2)} s, peak RSS ${mb(startup.peakRss)}`);
  console.log(`the CLI runs with NODE_OPTIONS=${dockerNodeOptions() || '(none)'}, as the Dockerfile sets it`);
  console.log(
    RECEIVER_PARSE === 'all'
      ? 'the receiver parses every request body (BENCH_RECEIVER_PARSE=all)'
      : 'the receiver parses every 8th request body and counts the records of the others by a byte search (BENCH_RECEIVER_PARSE=all parses all)',
  );
  const receiver = await startReceiverChild();
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const raws = { array: [] as number[], object: [] as number[] };
  const pipelines: PipelineResult[] = [];
  const inProcess: PipelineResult[] = [];
  const ruled: Array<{ variant: Variant; best: PipelineResult }> = [];
  let failed = false;
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const mode of ['array', 'object'] as const) {
        const rawCpuBefore = cpuSecondsByCommand(['postgres']);
        const rawOwnBefore = process.cpuUsage();
        const raw = await rawKeysetRead(PG_URL, TABLE, BATCH_ROWS, mode);
        const rawOwn = process.cpuUsage(rawOwnBefore);
        const rawPostgres = diffCpu(rawCpuBefore, cpuSecondsByCommand(['postgres'])).get('postgres') ?? 0;
        if (raw.rows !== expected) {
          console.log(`raw keyset read returned ${raw.rows} rows, the table holds ${expected}`);
          failed = true;
        }
        raws[mode].push(raw.rows / raw.seconds);
        console.log(
          `round ${round}: raw keyset read, ${mode} rows: ${fmtInt(raw.rows)} rows in ${raw.seconds.toFixed(2)} s = ${fmtInt(raw.rows / raw.seconds)} rows/s`,
        );
        console.log(`  CPU during the read: node ${((rawOwn.user + rawOwn.system) / 1e6).toFixed(1)} s, postgres ${rawPostgres.toFixed(1)} s`);
      }
      const p = await cliBackfill(common(receiver, monitor, expected));
      pipelines.push(p);
      console.log(
        `round ${round}: pipeline backfill, compiled CLI: ${fmtInt(p.rows)} rows in ${p.seconds.toFixed(2)} s = ${fmtInt(p.rows / p.seconds)} rows/s ` +
          `(${p.requests} requests, peak RSS ${mb(p.peakRss)}, Redis used_memory ${mb(p.redisBefore)} → peak ${mb(p.redisPeak)} → ${mb(p.redisAfter)})`,
      );
      console.log(
        `  CPU during the run: pushsync process ${p.cpu.pipeline.toFixed(1)} s with start-up (event loop ${(p.eventLoopBusy * 100).toFixed(0)}% busy), ` +
          `postgres ${p.cpu.postgres.toFixed(1)} s, receiver ${p.cpu.receiver.toFixed(1)} s, redis ${p.cpu.redis.toFixed(1)} s`,
      );
      if (p.memory !== '') console.log(p.memory);
      for (const problem of p.problems) console.log(`  FAILED: ${problem}`);
      if (p.problems.length > 0) failed = true;
      if (!IN_PROCESS) continue;
      const q = await pipelineBackfill({
        ...common(receiver, monitor, expected),
        profileFile: PROFILE_DIR !== undefined && round === 1 ? join(PROFILE_DIR, 'pipeline-round-1.cpuprofile') : undefined,
      });
      inProcess.push(q);
      console.log(
        `round ${round}: pipeline backfill, in-process (tsx): ${fmtInt(q.rows)} rows in ${q.seconds.toFixed(2)} s = ${fmtInt(q.rows / q.seconds)} rows/s ` +
          `(RSS ${mb(q.startRss)} → peak ${mb(q.peakRss)}, CPU ${q.cpu.pipeline.toFixed(1)} s without start-up)`,
      );
      for (const problem of q.problems) console.log(`  FAILED: ${problem}`);
      if (q.problems.length > 0) failed = true;
    }
    for (const variant of RULES_VARIANTS ? VARIANTS.slice(1) : []) {
      const arriving = await countRows(PG_URL, SCHEMA, benchTable(ROWS), variant.arriving);
      const runs: PipelineResult[] = [];
      for (let round = 1; round <= ROUNDS; round += 1) {
        const p = await cliBackfill({ ...common(receiver, monitor, arriving), rules: variant.rules });
        runs.push(p);
        console.log(
          `round ${round}: pipeline backfill, compiled CLI, ${variant.label}: ${fmtInt(expected)} rows read, ${fmtInt(p.rows)} sent in ${p.seconds.toFixed(2)} s = ` +
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
  const bestArray = Math.max(...raws.array);
  const bestObject = Math.max(...raws.object);
  const best = pipelines.reduce((a, b) => (b.rows / b.seconds > a.rows / a.seconds ? b : a));
  const bestPipe = best.rows / best.seconds;
  const verdict = (ok: boolean): string => (ok ? 'MET' : 'MISSED');
  const vsObject = bestPipe / bestObject;
  const vsArray = bestPipe / bestArray;
  const cpuPerMillion = Math.min(...pipelines.map((p) => (p.cpu.pipeline / p.rows) * 1e6));
  const peakRss = Math.max(...pipelines.map((p) => p.peakRss));
  console.log('');
  console.log(`best of ${ROUNDS}:`);
  console.log(`raw keyset read, array rows: ${fmtInt(expected)} rows in ${(expected / bestArray).toFixed(2)} s = ${fmtInt(bestArray)} rows/s`);
  console.log(`raw keyset read, object rows: ${fmtInt(expected)} rows in ${(expected / bestObject).toFixed(2)} s = ${fmtInt(bestObject)} rows/s`);
  console.log(
    `pipeline backfill, compiled CLI (spawn to exit): ${fmtInt(best.rows)} rows in ${best.seconds.toFixed(2)} s = ${fmtInt(bestPipe)} rows/s ` +
      `(batchRows=${BATCH_ROWS}, push concurrency=${PUSH_CONCURRENCY})`,
  );
  console.log(`ratio pipeline/object-row read = ${vsObject.toFixed(2)} (goal >= ${GOAL_OBJECT}) ${verdict(vsObject >= GOAL_OBJECT)}`);
  console.log(`ratio pipeline/array-row read = ${vsArray.toFixed(2)} (goal >= ${GOAL_ARRAY}) ${verdict(vsArray >= GOAL_ARRAY)}`);
  console.log(
    `pushsync process (compiled CLI) CPU per 1M rows: ${cpuPerMillion.toFixed(2)} s, start-up included ` +
      `(goal <= ${GOAL_CPU_PER_MILLION}) ${verdict(cpuPerMillion <= GOAL_CPU_PER_MILLION)}`,
  );
  console.log(`pushsync process (compiled CLI) peak RSS: ${mb(peakRss)} (goal <= ${mb(GOAL_RSS)}) ${verdict(peakRss <= GOAL_RSS)}`);
  if (inProcess.length > 0) {
    const q = inProcess.reduce((a, b) => (b.rows / b.seconds > a.rows / a.seconds ? b : a));
    const qCpu = Math.min(...inProcess.map((r) => (r.cpu.pipeline / r.rows) * 1e6));
    console.log(
      `for comparison, in-process under tsx (not the goal's measure): ${fmtInt(q.rows / q.seconds)} rows/s, ` +
        `CPU per 1M rows ${qCpu.toFixed(2)} s without start-up, peak RSS of the bench process ${mb(Math.max(...inProcess.map((r) => r.peakRss)))}`,
    );
  }
  for (const { variant, best: r } of ruled) {
    console.log(
      `pipeline backfill, compiled CLI, ${variant.label}: ${fmtInt(expected / r.seconds)} rows/s read (${fmtInt(r.rows)} of ${fmtInt(expected)} rows sent), ` +
        `${((expected / r.seconds / bestPipe) * 100).toFixed(0)}% of the plain table's rate`,
    );
  }
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
