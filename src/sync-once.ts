import type { Config } from './config.js';
import { allTables } from './config.js';
import type { Logger } from './observability/logger.js';
import { checkRulesAtStart, closePipeline, createPipeline, startRuntime } from './main.js';
import { probeRedis } from './queue/redis.js';
import { runOnce, type OnceSummary } from './queue/run-once.js';
import { frozenPushJobs } from './queue/schema-watch.js';

export interface SyncOnceResult extends OnceSummary {
  counts: Array<{ table: string; target: string; extracted: number; pushed: number }>;
}

/**
 * One `sync --once` pass: extract and push workers in this process until the queues drain, then stop. Shared by
 * the `sync` command and the AWS Lambda handler. `onStoppable` receives the stop (signals, fatal errors).
 */
export async function syncOnce(
  config: Config,
  logger: Logger,
  options: { timeoutMs: number; reconcile?: boolean; onStoppable?: (stop: () => Promise<void>) => void },
): Promise<SyncOnceResult> {
  await probeRedis(config.redis, config.redis.connectTimeout);
  const ctx = createPipeline(config, logger);
  try {
    await checkRulesAtStart(ctx);
  } catch (err) {
    await closePipeline(ctx);
    throw err;
  }
  const runtime = await startRuntime(ctx, { roles: ['extract', 'push'], ...(options.onStoppable ? { onStoppable: options.onStoppable } : {}) });
  try {
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: options.timeoutMs,
      reconcile: options.reconcile === true,
      parked: () => frozenPushJobs(ctx),
    });
    const [extracted, pushed] = await Promise.all([ctx.metrics.rowsExtracted.get(), ctx.metrics.rowsPushed.get()]);
    const count = (m: typeof extracted, t: { source: string; name: string }): number =>
      m.values.filter((v) => v.labels.source === t.source && v.labels.table === t.name).reduce((a, v) => a + v.value, 0);
    const counts = allTables(config).map((t) => ({
      table: `${t.source}.${t.name}`,
      target: t.target,
      extracted: count(extracted, t),
      pushed: count(pushed, t),
    }));
    return { ...summary, counts };
  } finally {
    await runtime.stop();
  }
}
