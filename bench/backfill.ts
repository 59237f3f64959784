import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { dirname } from 'node:path';
import type { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { runOnce } from '../src/queue/run-once.js';
import { deletePrefix } from '../src/queue/redis.js';
import { memoryLine, startCli, type CliExit } from './cli-child.js';
import { cpuSecondsByCommand, diffCpu } from './cpu.js';
import type { ReceiverChild } from './receiver-child.js';

/**
 * One pipeline backfill (extract and push workers in this process, `runOnce`), measured: shared by the backfill
 * and destination benchmarks. See bench/README.md.
 */
export interface PipelineResult {
  rows: number;
  requests: number;
  seconds: number;
  /** RSS when the run started (modules loaded, previous runs collected as far as GC got); 0 for the CLI. */
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
  /** Request bytes as received by the receiver (compressed when gzip), and inflated. */
  wireBytes: number;
  bodyBytes: number;
  /** The CLI's memory breakdown at its peak (BENCH_MEMORY=1), as a line to print; '' otherwise. */
  memory: string;
}

export interface BackfillOptions {
  receiver: ReceiverChild;
  /** A Redis connection for INFO and for deleting the run's keys afterwards. */
  monitor: Redis;
  /** Rows the receiver must count. */
  expected: number;
  pgUrl: string;
  redisUrl: string;
  /** `schema.table` */
  table: string;
  batchRows: number;
  /** `destination` keys beside url and apiKey (concurrency, compression, …); pushsync's defaults otherwise. */
  destination?: Record<string, unknown>;
  /** Table keys beside name, watermark and batchRows (masks, where, transform). */
  rules?: Record<string, unknown>;
  /** Writes a CPU profile of this process during the run to this file. */
  profileFile?: string | undefined;
}

export async function redisUsedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}

/** `BENCH_BACKFILL_READ=copy` runs the pipeline with `backfillRead: copy` (README, "Backfill reads with COPY"). */
export const BACKFILL_READ: Record<string, string> = process.env.BENCH_BACKFILL_READ ? { backfillRead: process.env.BENCH_BACKFILL_READ } : {};

/** The config file of one run: pushsync's defaults beside what the bench sets. */
function rawBenchConfig(prefix: string, o: BackfillOptions): Record<string, unknown> {
  return {
    log: { level: 'warn' },
    redis: { url: o.redisUrl, prefix },
    destination: { url: o.receiver.url, apiKey: 'bench', ...o.destination },
    masking: { key: 'bench-pseudonym-key-0123456789' },
    sources: [
      {
        name: 'bench',
        kind: 'postgres',
        url: o.pgUrl,
        ...BACKFILL_READ,
        tables: [{ name: o.table, watermark: 'updated_at', batchRows: o.batchRows, ...o.rules }],
      },
    ],
  };
}

function benchConfig(prefix: string, o: BackfillOptions): Config {
  return parseConfig(rawBenchConfig(prefix, o), {});
}

/** A CPU profile of this process (main thread) from now until `stop`, written as a `.cpuprofile` file. */
export async function startProfile(): Promise<{ stop: (file: string) => Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return {
    stop: async (file) => {
      const { profile } = await session.post('Profiler.stop');
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

/**
 * One backfill from a fresh prefix (so a fresh cursor) as users run it: `node dist/cli.js sync --once` in a child
 * process (build dist/ first: cli-child.ts). Wall time from spawning the CLI to its exit; CPU and peak RSS are the
 * child's own, over its whole life (start-up included), as it reports them at exit.
 */
export async function cliBackfill(o: BackfillOptions): Promise<PipelineResult> {
  const { receiver, monitor, expected } = o;
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  await receiver.reset();
  const redisBefore = await redisUsedMemory(monitor);
  let redisPeak = redisBefore;
  const redisTimer = setInterval(() => {
    redisUsedMemory(monitor).then(
      (m) => (redisPeak = Math.max(redisPeak, m)),
      () => undefined,
    );
  }, 250);
  const problems: string[] = [];
  const cpu = { pipeline: 0, receiver: 0, postgres: 0, redis: 0 };
  let exit: CliExit;
  let redisAfter = 0;
  try {
    const receiverCpu = (await receiver.counts()).cpuSeconds;
    const servicesCpu = cpuSecondsByCommand(['postgres', 'redis-server']);
    exit = await startCli(rawBenchConfig(prefix, o), ['sync', '--once', '--timeout', '30m']).exited;
    const services = diffCpu(servicesCpu, cpuSecondsByCommand(['postgres', 'redis-server']));
    cpu.pipeline = exit.usage.cpuSeconds;
    cpu.receiver = (await receiver.counts()).cpuSeconds - receiverCpu;
    cpu.postgres = services.get('postgres') ?? 0;
    cpu.redis = services.get('redis-server') ?? 0;
    redisAfter = await redisUsedMemory(monitor);
  } finally {
    clearInterval(redisTimer);
    await deletePrefix(monitor, prefix);
  }
  if (exit.code !== 0) problems.push(`the CLI exited with ${exit.code ?? exit.signal}: ${exit.stdout.trim().split('\n').slice(-5).join(' | ')}`);
  const { rows, requests, wireBytes, bodyBytes } = await receiver.counts();
  if (rows !== expected) problems.push(`the receiver counted ${rows} rows, the table holds ${expected}`);
  return {
    rows,
    requests,
    seconds: exit.seconds,
    startRss: 0,
    peakRss: exit.usage.peakRss,
    redisBefore,
    redisPeak,
    redisAfter,
    cpu,
    eventLoopBusy: exit.usage.eventLoopBusy,
    problems,
    wireBytes,
    bodyBytes,
    memory: memoryLine(exit.usage),
  };
}

/**
 * One backfill from a fresh prefix inside this process (tsx, the bench's modules loaded): wall time from enqueueing
 * the run to both queues drained.
 */
export async function pipelineBackfill(o: BackfillOptions): Promise<PipelineResult> {
  const { receiver, monitor, expected } = o;
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const config = benchConfig(prefix, o);
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
    const profiler = o.profileFile !== undefined ? await startProfile() : undefined;
    const elu = performance.eventLoopUtilization();
    const started = performance.now();
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: 30 * 60_000,
      pollMs: 50,
    });
    seconds = (performance.now() - started) / 1000;
    if (profiler) await profiler.stop(o.profileFile!);
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
  const { rows, requests, wireBytes, bodyBytes } = await receiver.counts();
  if (rows !== expected) problems.push(`the receiver counted ${rows} rows, the table holds ${expected}`);
  return {
    rows,
    requests,
    seconds,
    startRss,
    peakRss,
    redisBefore,
    redisPeak,
    redisAfter,
    cpu,
    eventLoopBusy,
    problems,
    wireBytes,
    bodyBytes,
    memory: '',
  };
}
