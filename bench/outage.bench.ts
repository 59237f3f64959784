import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { deletePrefix, Keys } from '../src/queue/redis.js';
import { redisUsedMemory } from './backfill.js';
import { buildCli, dockerNodeOptions, memoryLine, startCli } from './cli-child.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { startReceiverChild } from './receiver-child.js';
import { positiveInt, PG_URL, REDIS_URL, SCHEMA } from './settings.js';

/**
 * A backfill that starts while the destination is down (every request answered 503) and stays down for
 * `BENCH_OUTAGE_SECONDS`: extraction must stop at the backlog bound (`extract.maxPendingBatches`), the pushsync
 * process's RSS and Redis must stay bounded, and once the destination is back the run must complete with every row
 * delivered. pushsync runs as users run it, the built CLI (`node dist/cli.js sync --once`) in a child process, with
 * the default configuration; the failed attempts' warnings are not logged (errors are). See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 10_000_000);
const OUTAGE_SECONDS = positiveInt('BENCH_OUTAGE_SECONDS', 60);
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;
const GOAL_RSS = 200 * 1024 * 1024;
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<number> {
  console.log(`dataset: ${TABLE}, ${fmtInt(ROWS)} rows; destination down for the first ${OUTAGE_SECONDS} s`);
  console.log(`the CLI runs with NODE_OPTIONS=${dockerNodeOptions() || '(none)'}, as the Dockerfile sets it`);
  const t0 = performance.now();
  if (await ensureDataset(PG_URL, SCHEMA, ROWS, false)) console.log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const expected = await countRows(PG_URL, SCHEMA, benchTable(ROWS));
  if (process.env.BENCH_BUILD !== '0') buildCli();
  const receiver = await startReceiverChild();
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const config = {
    log: { level: 'error' },
    redis: { url: REDIS_URL, prefix },
    destination: { url: receiver.url, apiKey: 'bench' },
    sources: [{ name: 'bench', kind: 'postgres', url: PG_URL, tables: [{ name: TABLE, watermark: 'updated_at' }] }],
  };
  const pendingKey = new Keys(prefix).pending('bench', TABLE);
  // The defaults the CLI runs with, read the way it reads them (the bench only parses the config here).
  const parsed = parseConfig(config, {});
  const bound = parsed.extract.maxPendingBatches;
  const batchRows = parsed.sources[0]!.tables[0]!.batchRows;
  let failed = false;
  try {
    await receiver.setDown(true);
    const redisBefore = await redisUsedMemory(monitor);
    const cli = startCli(config, ['sync', '--once', '--timeout', '4h']);
    const peaks = { rss: 0, redis: redisBefore, pending: 0 };
    const sample = setInterval(() => {
      peaks.rss = Math.max(peaks.rss, cli.peakRssSoFar());
      void Promise.all([redisUsedMemory(monitor), monitor.zcard(pendingKey)]).then(
        ([m, p]) => {
          peaks.redis = Math.max(peaks.redis, m);
          peaks.pending = Math.max(peaks.pending, p);
        },
        () => undefined,
      );
    }, 250);
    const started = performance.now();
    const stillRunning = await Promise.race([
      cli.exited.then(() => false),
      new Promise<true>((r) => setTimeout(() => r(true), OUTAGE_SECONDS * 1000)),
    ]);
    const during = { ...peaks };
    const extracted = await monitor.zcard(pendingKey);
    console.log(
      `outage of ${OUTAGE_SECONDS} s: peak ${fmtInt(during.pending)} undelivered push jobs (bound ${bound}), ${fmtInt(extracted * batchRows)} rows ` +
        `extracted and waiting, peak RSS of the pushsync process ${mb(during.rss)}, Redis used_memory ${mb(redisBefore)} → peak ${mb(during.redis)}`,
    );
    if (!stillRunning) console.log('  the CLI exited during the outage');
    await receiver.setDown(false);
    const back = performance.now();
    const exit = await cli.exited;
    clearInterval(sample);
    const seconds = (performance.now() - back) / 1000;
    const { rows } = await receiver.counts();
    const peakRss = Math.max(peaks.rss, exit.usage.peakRss);
    console.log(
      `destination back: ${fmtInt(rows)} rows delivered ${seconds.toFixed(1)} s later (${fmtInt(rows / seconds)} rows/s), ` +
        `whole run ${((performance.now() - started) / 1000).toFixed(1)} s; peak RSS ${mb(peakRss)}, Redis peak ${mb(peaks.redis)}, ` +
        `peak pending ${fmtInt(peaks.pending)}; pushsync process CPU ${exit.usage.cpuSeconds.toFixed(1)} s ` +
        `(${((exit.usage.cpuSeconds / rows) * 1e6).toFixed(2)} s per 1M rows, outage and start-up included)`,
    );
    if (exit.usage.memoryAtPeak) console.log(memoryLine(exit.usage));
    if (exit.code !== 0 || rows !== expected) {
      console.log(`RESULT INVALID: ${rows} rows delivered of ${expected}; the CLI exited with ${exit.code ?? exit.signal}`);
      console.log(exit.stdout.trim().split('\n').slice(-10).join('\n'));
      failed = true;
    }
    console.log(`pending bound held: ${peaks.pending <= bound ? 'MET' : 'MISSED'} (peak ${peaks.pending}, bound ${bound})`);
    console.log(`peak RSS of the pushsync process (compiled CLI) ${mb(peakRss)} (goal <= ${mb(GOAL_RSS)}) ${peakRss <= GOAL_RSS ? 'MET' : 'MISSED'}`);
  } finally {
    monitor.disconnect();
    await receiver.close();
    const cleanup = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    await deletePrefix(cleanup, prefix);
    cleanup.disconnect();
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
