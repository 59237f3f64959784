import type { TableConfig } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { pushJobName, pushJobOptions, type PushJob } from './jobs.js';
import { PendingSet } from './pending.js';

/**
 * The one way a push job enters Redis. Ids are derived from what the job carries, so the same range or the same
 * changes enqueued again after a crash find their job instead of adding a second one; a job that already completed
 * is not counted as pending again.
 */
export async function enqueuePushJob(ctx: PipelineContext, jobId: string, data: PushJob, o: { countRows?: boolean } = {}): Promise<void> {
  const pending = new PendingSet(ctx.redis, ctx.keys.pending(data.source, data.table));
  const cutAt = Date.parse(data.cutAt);
  const job = await ctx.pushQueue.add(pushJobName(data), data, pushJobOptions(ctx.config.destination.attempts, jobId));
  if ((await job.getState()) !== 'completed') await pending.add(jobId, cutAt);
  if (o.countRows !== false) ctx.metrics.rowsExtracted.inc({ source: data.source, table: data.table }, data.rows);
}

/** Polls backpressure at this interval while a table's backlog is full. */
const CAPACITY_POLL_MS = 500;

/**
 * While a backlog stays full, its entries are checked against the queue again this often: failed jobs removed by
 * hand in the dashboard meanwhile would otherwise hold the wait until the run stops. A check costs one round trip per
 * entry (up to `extract.maxPendingBatches`), so not every poll.
 */
export const RECONCILE_WHILE_WAITING_MS = 60_000;

/** Whether a table's extraction is held by backpressure, across the pages of one run. */
export interface BackpressureState {
  paused: boolean;
}

/**
 * Backpressure: resolves once the table has fewer than `extract.maxPendingBatches` undelivered push jobs, or when
 * the caller should stop (shutdown, or its lease was lost: another reader owns the table now). Entries of jobs that
 * no longer exist (removed from the dashboard, purged) are dropped first, so they cannot hold extraction forever.
 *
 * The state is reported once per change, at info (it is the design working, not a fault), with the pending count
 * and the bound: "paused" when a page first has to wait, "released" when a later page of the run finds room without
 * waiting. A backlog hovering at its bound (each page waits for one delivery) stays paused: one line, not one per
 * page. `state` carries the state across the calls of one run. Resolves to the room left under the bound (at least 1
 * unless the caller should stop).
 */
export async function waitForCapacity(
  ctx: PipelineContext,
  table: Pick<TableConfig, 'source' | 'name'>,
  o: {
    shouldStop: () => boolean;
    log: Logger;
    state?: BackpressureState;
    /** The backlog count, when just read. */
    count?: number;
    /** @defaultValue RECONCILE_WHILE_WAITING_MS */
    reconcileEveryMs?: number;
  },
): Promise<number> {
  const pending = new PendingSet(ctx.redis, ctx.keys.pending(table.source, table.name));
  const bound = ctx.config.extract.maxPendingBatches;
  const state = o.state ?? { paused: false };
  const fields = { source: table.source, table: table.name, bound };
  const every = o.reconcileEveryMs ?? RECONCILE_WHILE_WAITING_MS;
  let reconciledAt: number | undefined;
  let waited = false;
  let count = o.count ?? (await pending.count());
  while (!o.shouldStop() && count >= bound) {
    if (reconciledAt === undefined || Date.now() - reconciledAt >= every) {
      reconciledAt = Date.now();
      if ((await pending.reconcile(ctx.pushQueue)) > 0) {
        count = await pending.count();
        continue;
      }
    }
    waited = true;
    if (!state.paused) {
      state.paused = true;
      o.log.info(
        { ...fields, pending: count },
        `backpressure: ${count} undelivered push jobs reached the bound of ${bound} (extract.maxPendingBatches); extraction paused until they drain`,
      );
    }
    await new Promise((r) => setTimeout(r, CAPACITY_POLL_MS));
    count = await pending.count();
  }
  if (state.paused && !waited && !o.shouldStop()) {
    state.paused = false;
    o.log.info(
      { ...fields, pending: count },
      `backpressure released: ${count} undelivered push jobs, below the bound of ${bound}; extraction goes on`,
    );
  }
  return bound - count;
}
