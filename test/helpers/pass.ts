import type { Config } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { createPipeline, startRuntime } from '../../src/main.js';
import { runOnce, type OnceSummary } from '../../src/queue/run-once.js';

export interface PassOptions {
  logger?: Logger;
  timeoutMs?: number;
  reconcile?: boolean;
}

/** One `sync --once` pass in this process: extract and push workers, until the queues drain. */
export async function syncPass(config: Config, options: PassOptions = {}): Promise<OnceSummary> {
  const ctx = createPipeline(config, options.logger ?? createLogger('silent'));
  const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
  try {
    return await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
      timeoutMs: options.timeoutMs ?? 60_000,
      pollMs: 50,
      reconcile: options.reconcile === true,
    });
  } finally {
    await runtime.stop();
  }
}
