import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { tableSpec, type TableConfig } from '../config.js';
import { SNAPSHOT_START_CURSOR, cursorAfterRange, type Cursor } from '../core/cursor.js';
import { AppError } from '../core/errors.js';
import { sortableWatermark } from '../core/ordering.js';
import type { KeyChange } from '../core/deliver-changes.js';
import type { PipelineContext } from './context.js';
import { findSource, findTable } from './context.js';
import { enqueueChangeJobs } from './change-jobs.js';
import { EXTRACT_QUEUE, type RunReason } from './jobs.js';
import { TableLock } from './table-lock.js';
import { failJob } from './job-errors.js';

/**
 * Hard deletes in watermark mode. Extraction remembers every primary key it hands to a push job (a Redis set per
 * table); a reconciliation scans the table's keys (key columns only, an index-only scan), and sends a delete
 * record for each remembered key that is gone.
 *
 * A key missing from the scan is only a candidate: it is checked again after every transaction that was open when
 * the candidates were found has ended, so a row re-inserted by such a transaction is not deleted. The delete's
 * `_ordering` is the database time when the candidates were found: later than the deleted row's last version, and
 * earlier than any version written by a transaction that starts afterwards.
 */
export interface ReconcileOutcome {
  skipped?: 'locked' | 'busy';
  scanned: number;
  deleted: number;
}

const SCAN_PAGE = 10_000;
const POLL_MS = 250;

export async function runReconcile(
  ctx: PipelineContext,
  job: Job,
  sourceName: string,
  tableName: string,
  stopping: () => boolean,
  reason: RunReason,
): Promise<ReconcileOutcome> {
  let table: TableConfig;
  try {
    table = findTable(ctx.config, sourceName, tableName);
  } catch (err) {
    throw failJob(err, { ctx, job, what: 'reconciliation rejected' });
  }
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName, table: tableName, task: 'reconcile' });
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, tableName), ctx.config.extract.leaseTtl);
  // A one-shot run waits its turn behind the table's extraction; a scheduled one tries again next time.
  if (!(await lock.acquireFor(reason, () => !stopping()))) return { skipped: 'locked', scanned: 0, deleted: 0 };
  const known = ctx.keys.knownKeys(sourceName, tableName);
  const scan = `${known}:scan`;
  try {
    if (!table.reconcile) throw new AppError('JOB_INVALID', `${sourceName}.${tableName} has no reconcile setting`);
    const reader = await findSource(ctx, sourceName).table(tableSpec(table));
    if (reader.shape.watermarkKind !== 'timestamp') {
      throw new AppError('SOURCE_SCHEMA', `${sourceName}.${tableName}: reconcile needs a timestamp watermark to order its delete records`);
    }
    await ctx.redis.del(scan);
    let cursor: Cursor = SNAPSHOT_START_CURSOR;
    let scanned = 0;
    for (;;) {
      if (stopping() || lock.isLost) return { skipped: 'busy', scanned, deleted: 0 };
      const next = await reader.nextRange(cursor, SCAN_PAGE);
      if (!next) break;
      await ctx.redis.sadd(scan, ...next.keys.map((k) => JSON.stringify(k)));
      scanned += next.rows;
      cursor = cursorAfterRange(next.range);
    }
    const candidates = (await ctx.redis.sdiff(known, scan)).map((k) => JSON.parse(k) as string[]);
    if (candidates.length === 0) return { scanned, deleted: 0 };

    const foundAt = (await reader.now())!;
    const deadline = Date.now() + table.reconcile.maxWait;
    // Wait out every transaction that was open when the candidates were found.
    while (sortableWatermark((await reader.readBoundary(0))!, 'timestamp')! < sortableWatermark(foundAt, 'timestamp')!) {
      if (Date.now() > deadline || stopping() || lock.isLost) {
        log.warn({ candidates: candidates.length }, 'a transaction stayed open longer than reconcile.maxWait; deletes are sent on a later run');
        return { skipped: 'busy', scanned, deleted: 0 };
      }
      await sleep(POLL_MS);
    }
    const stillThere = new Set((await reader.readKeys(candidates)).map((r) => r.index));
    const gone = candidates.filter((_k, i) => !stillThere.has(i));
    const ordering = sortableWatermark(foundAt, 'timestamp')!;
    const changes: KeyChange[] = gone.map((pk) => ({ op: 'delete', pk, ordering }));
    await enqueueChangeJobs(ctx, table, changes, table.batchRows);
    // Forgotten only while the lease is held: after it lapsed, a run of the table may have read a key inserted again
    // meanwhile and remembered it, and removing it here would leave that row's later delete unsent for ever.
    const forgotten = await lock.sremWhileHeld(
      known,
      gone.map((k) => JSON.stringify(k)),
    );
    if (!forgotten) {
      log.warn(
        { deleted: gone.length },
        'the table lease lapsed during reconciliation: its deletes are sent, and the keys are checked again next time',
      );
      return { skipped: 'busy', scanned, deleted: gone.length };
    }
    log.info({ scanned, deleted: gone.length }, 'reconciliation sent deletes for keys gone from the source');
    return { scanned, deleted: gone.length };
  } catch (err) {
    throw failJob(err, { ctx, job, labels: { source: sourceName, table: tableName }, log, what: 'reconciliation failed' });
  } finally {
    await ctx.redis.del(scan).catch(() => {});
    await lock.release().catch(() => {});
  }
}
