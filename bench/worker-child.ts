import { parseConfig } from '../src/config.js';
import { createPipeline, startRuntime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { runOnce } from '../src/queue/run-once.js';

/**
 * One pushsync process with the extract and push roles, for the scale-out benchmark. The config comes as JSON in
 * `BENCH_CONFIG`; with `BENCH_WARMUP_CONFIG` it first runs that backfill to its end. IPC: sends `{ ready: true }`
 * once its workers run; answers `{ type: 'count' }` with the push jobs and rows this process delivered, its CPU
 * seconds since it was ready and its peak RSS; `{ type: 'stop' }` stops it.
 */
// A warm-up backfill of a table of its own (BENCH_WARMUP_CONFIG), in this process, before it says it is ready.
if (process.env.BENCH_WARMUP_CONFIG) {
  const warmup = parseConfig(JSON.parse(process.env.BENCH_WARMUP_CONFIG) as unknown, {});
  const warm = createPipeline(warmup, createLogger('warn'));
  const warming = await startRuntime(warm, { roles: ['extract', 'push'] });
  const summary = await runOnce(warmup, { extract: warm.extractQueue, push: warm.pushQueue }, warming.workers, {
    timeoutMs: 10 * 60_000,
    pollMs: 50,
  });
  await warming.stop();
  if (summary.failed.length > 0 || summary.timedOut) throw new Error('the warm-up backfill did not complete');
}

const config = parseConfig(JSON.parse(process.env.BENCH_CONFIG ?? '{}') as unknown, {});
const ctx = createPipeline(config, createLogger('warn'));
const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
let pushJobs = 0;
let rows = 0;
let peakRss = process.memoryUsage.rss();
const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 100);
for (const worker of runtime.workers) {
  if (worker.name !== PUSH_QUEUE) continue;
  worker.on('completed', (_job, result: { rows?: number } | undefined) => {
    pushJobs += 1;
    rows += result?.rows ?? 0;
  });
}
// CPU from here on: starting up (loading and compiling modules) is not part of the backfill.
const readyCpu = process.cpuUsage();
process.on('message', (msg: { type: string }) => {
  if (msg.type === 'count') {
    const cpu = process.cpuUsage(readyCpu);
    process.send?.({ pushJobs, rows, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRss });
  }
  if (msg.type === 'stop') {
    clearInterval(rssTimer);
    void runtime.stop().then(() => process.exit(0));
  }
});
process.send?.({ ready: true });
