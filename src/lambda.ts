import { loadConfig } from './config.js';
import { AppError } from './core/errors.js';
import { loggerFor } from './observability/logger.js';
import { syncOnce, type SyncOnceResult } from './sync-once.js';

/**
 * AWS Lambda (Node.js runtime): `handler` runs one `sync --once` pass per invocation, with the config file at
 * `PUSHSYNC_CONFIG` (default `./pushsync.yaml` in the function's directory) and secrets from the environment.
 * The pass stops before the invocation's deadline (what is left continues on the next one). A pass that left a
 * batch in the dead-letter queue or ran out of time fails the invocation with RUN_INCOMPLETE, so Lambda's error
 * metrics and retries see it. Nothing of the process is kept between invocations but the module: every pass opens
 * and closes its own connections, and no signal handler is installed.
 */
export interface LambdaEvent {
  /** Also run the hard-delete reconciliation of tables that configure one. */
  reconcile?: boolean;
}

export interface LambdaContext {
  getRemainingTimeInMillis?: () => number;
}

/** Time kept back from the invocation's deadline for stopping the workers and answering. */
const DEADLINE_MARGIN_MS = 20_000;
/** The pass's limit when the runtime gives no deadline: Lambda's longest timeout less the margin. */
const DEFAULT_TIMEOUT_MS = 15 * 60_000 - DEADLINE_MARGIN_MS;

export async function handler(event: LambdaEvent | null = {}, context: LambdaContext = {}): Promise<SyncOnceResult> {
  const config = loadConfig(process.env.PUSHSYNC_CONFIG ?? './pushsync.yaml', process.env, {
    needs: ['redis.url', 'sources.url', 'destination.apiKey'],
  });
  const logger = loggerFor(config.log, { isTty: false });
  const remaining = context.getRemainingTimeInMillis?.();
  const timeoutMs = remaining === undefined ? DEFAULT_TIMEOUT_MS : Math.max(1_000, remaining - DEADLINE_MARGIN_MS);
  const result = await syncOnce(config, logger, { timeoutMs, reconcile: event?.reconcile === true });
  logger.info({ tables: result.counts, failed: result.failed.length, timedOut: result.timedOut }, 'pushsync pass finished');
  if (result.failed.length > 0 || result.timedOut) {
    const what = [
      ...(result.failed.length > 0
        ? [`${result.failed.length} job(s) failed: ${result.failed.map((f) => `${f.name}: ${f.reason}`).join('; ')}`]
        : []),
      ...(result.timedOut ? [`timed out after ${timeoutMs} ms; work continues on the next run`] : []),
    ];
    throw new AppError('RUN_INCOMPLETE', `pushsync pass incomplete: ${what.join('; ')}`, { details: { counts: result.counts } });
  }
  return result;
}
