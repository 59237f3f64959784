import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { deletePrefix } from '../src/queue/redis.js';
import { runOnce } from '../src/queue/run-once.js';
import { redisUsedMemory } from './backfill.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { startReceiverChild } from './receiver-child.js';
import { positiveInt, PG_URL, REDIS_URL, SCHEMA } from './settings.js';

/**
 * A backfill that starts while the destination is down (every request answered 503) and stays down for
 * `BENCH_OUTAGE_SECONDS`: extraction must stop at the backlog bound (`extract.maxPendingBatches`), the process's RSS
 * and Redis must stay bounded, and once the destination is back the run must complete with every row delivered.
 * Default configuration; the failed attempts' warnings are not logged (errors are). See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 10_000_000);
const OUTAGE_SECONDS = positiveInt('BENCH_OUTAGE_SECONDS', 60);
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;
const GOAL_RSS = 200 * 1024 * 1024;
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<number> {
  console.log(`dataset: ${TABLE}, ${fmtInt(ROWS)} rows; destination down for the first ${OUTAGE_SECONDS} s`);
  const t0 = performance.now();
  if (await ensureDataset(PG_URL, SCHEMA, ROWS, false)) console.log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const expected = await countRows(PG_URL, SCHEMA, benchTable(ROWS));
  const receiver = await startReceiverChild();
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const prefix = `pushsync_bench_${randomBytes(4).toString('hex')}`;
  const config = parseConfig(
    {
      redis: { url: REDIS_URL, prefix },
      destination: { url: receiver.url, apiKey: 'bench' },
      sources: [{ name: 'bench', kind: 'postgres', url: PG_URL, tables: [{ name: TABLE, watermark: 'updated_at' }] }],
    },
    {},
  );
  const ctx = createPipeline(config, createLogger('error'));
  const pendingKey = ctx.keys.pending('bench', TABLE);
  const bound = config.extract.maxPendingBatches;
  let failed = false;
  try {
    await receiver.setDown(true);
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const redisBefore = await redisUsedMemory(monitor);
    const peaks = { rss: process.memoryUsage.rss(), redis: redisBefore, pending: 0 };
    const sample = setInterval(() => {
      peaks.rss = Math.max(peaks.rss, process.memoryUsage.rss());
      void Promise.all([redisUsedMemory(monitor), monitor.zcard(pendingKey)]).then(
        ([m, p]) => {
          peaks.redis = Math.max(peaks.redis, m);
          peaks.pending = Math.max(peaks.pending, p);
        },
        () => undefined,
      );
    }, 250);
    const started = performance.now();
    const run = runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 4 * 3600_000, pollMs: 200 });
    await new Promise((r) => setTimeout(r, OUTAGE_SECONDS * 1000));
    const during = { ...peaks };
    const extracted = await monitor.zcard(pendingKey);
    console.log(
      `outage of ${OUTAGE_SECONDS} s: peak ${fmtInt(during.pending)} undelivered push jobs (bound ${bound}), ${fmtInt(extracted * config.sources[0]!.tables[0]!.batchRows)} rows ` +
        `extracted and waiting, peak RSS ${mb(during.rss)}, Redis used_memory ${mb(redisBefore)} → peak ${mb(during.redis)}`,
    );
    await receiver.setDown(false);
    const back = performance.now();
    const summary = await run;
    clearInterval(sample);
    const seconds = (performance.now() - back) / 1000;
    const { rows } = await receiver.counts();
    console.log(
      `destination back: ${fmtInt(rows)} rows delivered ${seconds.toFixed(1)} s later (${fmtInt(rows / seconds)} rows/s), ` +
        `whole run ${((performance.now() - started) / 1000).toFixed(1)} s; peak RSS ${mb(peaks.rss)}, Redis peak ${mb(peaks.redis)}, ` +
        `peak pending ${fmtInt(peaks.pending)}`,
    );
    await runtime.stop();
    for (const f of summary.failed) console.log(`  FAILED: job ${f.queue}/${f.id}: ${f.reason}`);
    if (summary.timedOut || summary.failed.length > 0 || rows !== expected) {
      console.log(`RESULT INVALID: ${rows} rows delivered of ${expected}${summary.timedOut ? ', the run timed out' : ''}`);
      failed = true;
    }
    console.log(`pending bound held: ${peaks.pending <= bound ? 'MET' : 'MISSED'} (peak ${peaks.pending}, bound ${bound})`);
    console.log(`peak RSS ${mb(peaks.rss)} (goal <= ${mb(GOAL_RSS)}) ${peaks.rss <= GOAL_RSS ? 'MET' : 'MISSED'}`);
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
