import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { deletePrefix } from '../src/queue/redis.js';
import { runOnce } from '../src/queue/run-once.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { startReceiverChild, type ReceiverChild } from './receiver-child.js';
import { BACKFILL_READ } from './backfill.js';
import { cpuLimitUnavailable, createCpuLimit, type CpuLimit } from './cpu-limit.js';
import { positiveInt, wholeNumber, PG_URL, REDIS_URL, SCHEMA } from './settings.js';

/**
 * Scale-out: the same backfill by one pushsync process and by two on one Redis (each with the extract and push
 * roles and the default configuration), into a receiver that waits 50 ms per request. Prints both rates, their ratio,
 * and how the push jobs of the one table spread over the processes. Each process runs under a CPU quota of
 * `BENCH_SCALE_CPU` cores, as a worker container with a CPU limit would: unlimited, one process already takes every
 * core that Postgres and the receiver leave idle on a small machine, and a second one could only share them. The
 * same pair also runs unlimited, printed beside it. See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 1_000_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const LATENCY_MS = positiveInt('BENCH_LATENCY_MS', 50);
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;
const GOAL = 1.8;

/**
 * Rows each process syncs from a table of its own before the clock starts (`0`: none). A deployment's workers run
 * for days and run compiled code; a process started for one run would otherwise spend part of it warming up (the
 * JIT compiling the hot paths), once per process, so two processes paid it twice for the same rows: at 1,000,000
 * rows and a quarter core each, 10.4 CPU-s for one process against 12.4 for two.
 */
const WARMUP_ROWS = wholeNumber('BENCH_SCALE_WARMUP_ROWS', 100_000);

/** Cores per pushsync process; `0` runs them unlimited only. */
function cpuPerProcess(): number {
  const text = process.env.BENCH_SCALE_CPU ?? '0.25';
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`BENCH_SCALE_CPU must be a number of cores (0: no limit), got ${text}`);
  return n;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

interface ChildCounts {
  pushJobs: number;
  rows: number;
  cpuSeconds: number;
  peakRss: number;
}

function reply<T>(child: ChildProcess, accept: (m: Record<string, unknown>) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && accept(m as Record<string, unknown>)) {
        child.off('message', onMessage);
        resolve(m as T);
      }
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`pushsync process exited with code ${code}`)));
  });
}

interface ScaleResult {
  seconds: number;
  rows: number;
  children: ChildCounts[];
  problems: string[];
}

/** The raw config of a backfill of `table` under `prefix`. */
function rawConfig(prefix: string, receiverUrl: string, table: string): Record<string, unknown> {
  return {
    redis: { url: REDIS_URL, prefix },
    destination: { url: receiverUrl, apiKey: 'bench' },
    sources: [{ name: 'bench', kind: 'postgres', url: PG_URL, ...BACKFILL_READ, tables: [{ name: table, watermark: 'updated_at' }] }],
  };
}

async function backfill(processes: number, receiver: ReceiverChild, expected: number, monitor: Redis, cores: number): Promise<ScaleResult> {
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const raw = rawConfig(prefix, receiver.url, TABLE);
  const config = parseConfig(raw, {});
  const script = fileURLToPath(new URL('./worker-child.ts', import.meta.url));
  const warmups = Array.from({ length: processes }, (_, i) => `${prefix}_warmup_${i}`);
  const children = warmups.map((warmupPrefix) =>
    fork(script, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: {
        ...process.env,
        BENCH_CONFIG: JSON.stringify(raw),
        ...(WARMUP_ROWS > 0
          ? { BENCH_WARMUP_CONFIG: JSON.stringify(rawConfig(warmupPrefix, receiver.url, `${SCHEMA}.${benchTable(WARMUP_ROWS)}`)) }
          : {}),
      },
    }),
  );
  const limits: CpuLimit[] = [];
  const ctx = createPipeline(config, createLogger('warn'));
  const problems: string[] = [];
  try {
    if (cores > 0) {
      children.forEach((child, i) => {
        const limit = createCpuLimit(`${prefix}-${i}`, cores);
        limits.push(limit);
        limit.add(child.pid!);
      });
    }
    await Promise.all(children.map((c) => reply(c, (m) => m.ready === true)));
    // The warm-up's requests are not the run's.
    await receiver.reset();
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, [], { timeoutMs: 30 * 60_000, pollMs: 50 });
    const seconds = (performance.now() - started) / 1000;
    if (summary.timedOut) problems.push('the run timed out');
    const counts = await Promise.all(
      children.map((c) => {
        const r = reply<ChildCounts>(c, (m) => typeof m.pushJobs === 'number');
        c.send({ type: 'count' });
        return r;
      }),
    );
    const rows = counts.reduce((n, c) => n + c.rows, 0);
    if (rows !== expected) problems.push(`the processes delivered ${rows} rows, the table holds ${expected}`);
    return { seconds, rows, children: counts, problems };
  } finally {
    for (const c of children) {
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.send({ type: 'stop' });
      await exited;
    }
    for (const limit of limits) limit.remove();
    await closePipeline(ctx);
    await deletePrefix(monitor, prefix);
    for (const p of warmups) await deletePrefix(monitor, p);
  }
}

interface Mode {
  label: string;
  cores: number;
  rates: Record<number, number[]>;
}

async function main(): Promise<number> {
  const cores = cpuPerProcess();
  const unavailable = cores > 0 ? cpuLimitUnavailable() : undefined;
  const modes: Mode[] = [];
  if (cores > 0 && unavailable === undefined) modes.push({ label: `each process limited to ${cores} cores`, cores, rates: { 1: [], 2: [] } });
  modes.push({ label: 'unlimited', cores: 0, rates: { 1: [], 2: [] } });
  console.log(`dataset: ${TABLE}, ${fmtInt(ROWS)} rows; receiver waits ${LATENCY_MS} ms per request`);
  if (unavailable !== undefined) console.log(`CPU limit of ${cores} cores per process not available (${unavailable}): unlimited runs only`);
  await ensureDataset(PG_URL, SCHEMA, ROWS, false);
  if (WARMUP_ROWS > 0) {
    await ensureDataset(PG_URL, SCHEMA, WARMUP_ROWS, false);
    console.log(
      `each process first syncs the ${fmtInt(WARMUP_ROWS)} rows of ${SCHEMA}.${benchTable(WARMUP_ROWS)} (a Redis prefix of its own, under its CPU limit) before the clock starts, as a long-running worker is warm (BENCH_SCALE_WARMUP_ROWS=0: none)`,
    );
  }
  const expected = await countRows(PG_URL, SCHEMA, benchTable(ROWS));
  const receiver = await startReceiverChild({ latencyMs: LATENCY_MS });
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  let failed = false;
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const mode of modes) {
        for (const n of [1, 2]) {
          const r = await backfill(n, receiver, expected, monitor, mode.cores);
          mode.rates[n]!.push(r.rows / r.seconds);
          const spread = r.children
            .map(
              (c, i) =>
                `process ${i + 1}: ${c.pushJobs} push jobs, ${fmtInt(c.rows)} rows, CPU ${c.cpuSeconds.toFixed(1)} s, peak RSS ${(c.peakRss / 1048576).toFixed(0)} MB`,
            )
            .join('; ');
          console.log(
            `round ${round}, ${mode.label}: ${n} process${n > 1 ? 'es' : ''}: ${fmtInt(r.rows)} rows in ${r.seconds.toFixed(2)} s = ${fmtInt(r.rows / r.seconds)} rows/s (${spread})`,
          );
          for (const problem of r.problems) console.log(`  FAILED: ${problem}`);
          if (r.problems.length > 0) failed = true;
        }
      }
    }
  } finally {
    monitor.disconnect();
    await receiver.close();
  }
  if (failed) {
    console.log('RESULT INVALID: the processes did not deliver exactly the table');
    return 1;
  }
  console.log('');
  modes.forEach((mode, i) => {
    const one = Math.max(...mode.rates[1]!);
    const two = Math.max(...mode.rates[2]!);
    console.log(`best of ${ROUNDS}, ${mode.label}: one process ${fmtInt(one)} rows/s, two processes ${fmtInt(two)} rows/s`);
    // The first mode is the one the goal is judged on: limited when a limit could be set.
    const verdict = i === 0 ? `(goal >= ${GOAL}) ${two / one >= GOAL ? 'MET' : 'MISSED'}` : '(for reference: the cores the processes share bound it)';
    console.log(`ratio two/one, ${mode.label} = ${(two / one).toFixed(2)} ${verdict}`);
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
