import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import type { DebeziumSourceConfig } from '../config.js';
import { AppError } from '../core/errors.js';
import { defaultTarget } from '../core/identifiers.js';
import type { PipelineContext } from './context.js';
import { IngestBuffer, ingestKeys } from './ingest-buffer.js';
import { EXTRACT_QUEUE, type PushJob, type RunReason } from './jobs.js';
import { enqueuePushJob } from './push-jobs.js';
import { failJob } from './job-errors.js';
import { TableLock } from './table-lock.js';
import { refuseLaterEpochs } from './cdc-epoch.js';

/** A scheduled run cuts for this long, then hands over to the next run (which may start in another process). */
const RUN_MS = 60_000;
const POLL_MS = 100;
/** Rows per push job for events of a table the config does not name (they go to the dead-letter queue). */
const UNCONFIGURED_BATCH = 5000;

export interface CutOutcome {
  skipped?: 'locked';
  jobs: number;
  events: number;
}

export function findDebeziumSource(ctx: PipelineContext, name: string): DebeziumSourceConfig {
  const s = ctx.config.debezium.find((x) => x.name === name);
  if (!s) throw new AppError('JOB_INVALID', `job names Debezium source ${name}, which is not in the configuration`);
  return s;
}

/**
 * Cuts a Debezium source's buffered events into push jobs, one reader per source (a Redis lease): a table's events
 * become a job once `batchRows` wait or the oldest has waited `flushInterval`. A one-shot run cuts what is there and
 * ends. Invariant: a cut is recorded as intended before its job is added and marked done after, so a crash in
 * between re-adds the same job (same id) instead of cutting the events again differently.
 */
export async function runIngestCut(
  ctx: PipelineContext,
  job: Job,
  sourceName: string,
  reason: RunReason,
  stopping: () => boolean,
): Promise<CutOutcome> {
  let source: DebeziumSourceConfig;
  try {
    source = findDebeziumSource(ctx, sourceName);
  } catch (err) {
    throw failJob(err, { ctx, job, what: 'ingest run rejected' });
  }
  const once = reason === 'once';
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, 'ingest'), ctx.config.extract.leaseTtl);
  if (!(await lock.acquireFor(reason, () => !stopping()))) return { skipped: 'locked', jobs: 0, events: 0 };
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName });
  const buffer = new IngestBuffer(ctx.redis, ingestKeys(ctx.config.redis.prefix, sourceName));
  const outcome: CutOutcome = { jobs: 0, events: 0 };
  const deadline = Date.now() + RUN_MS;
  try {
    await refuseLaterEpochs(
      ctx.redis,
      ctx.keys,
      `Debezium source ${sourceName}`,
      source.tables.map((t) => t.target),
    );
    for (;;) {
      let waiting = false;
      for (const table of await buffer.tables()) {
        const config = source.tables.find((t) => t.name === table);
        for (;;) {
          const cut = await buffer.nextCut(table, config?.batchRows ?? UNCONFIGURED_BATCH, source.flushInterval, once);
          if (cut === 'wait') waiting = true;
          if (typeof cut === 'string') break;
          const data: PushJob = {
            v: 1,
            source: sourceName,
            table,
            target: config?.target ?? defaultTarget(sourceName, table.replace(/[()]/g, '')),
            rows: cut.rows,
            cutAt: new Date().toISOString(),
            buffer: { from: cut.from, to: cut.to },
          };
          const id = `d-${createHash('sha256')
            .update(JSON.stringify([sourceName, table, cut.from, cut.to]))
            .digest('hex')
            .slice(0, 32)}`;
          await enqueuePushJob(ctx, id, data);
          await buffer.commitCut(table, cut.to);
          outcome.jobs += 1;
          outcome.events += cut.rows;
        }
      }
      if ((once && !waiting) || stopping() || lock.isLost || Date.now() >= deadline) break;
      await sleep(POLL_MS);
    }
    return outcome;
  } catch (err) {
    throw failJob(err, { ctx, job, labels: { source: sourceName, table: 'ingest' }, log, what: 'ingest run failed' });
  } finally {
    await lock.release().catch(() => {});
  }
}
