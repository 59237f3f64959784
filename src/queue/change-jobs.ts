import { createHash } from 'node:crypto';
import type { TableConfig } from '../config.js';
import type { KeyChange } from '../core/deliver-changes.js';
import type { PipelineContext } from './context.js';
import type { PushJob } from './jobs.js';
import { enqueuePushJob } from './push-jobs.js';

/**
 * Enqueues key-level changes of one table as push jobs of at most `batchKeys` changes, each with an id derived from
 * its content, so enqueueing the same changes again after a crash finds the job already there.
 */
export async function enqueueChangeJobs(
  ctx: PipelineContext,
  table: TableConfig,
  changes: readonly KeyChange[],
  batchKeys: number,
  generation?: number,
): Promise<void> {
  const added: Array<Promise<void>> = [];
  for (let i = 0; i < changes.length; i += batchKeys) {
    const chunk = changes.slice(i, i + batchKeys);
    // What identifies a change is its operation, key and ordering; the table is named once, not with every change.
    const content = chunk.map((c) => [c.op, c.pk, c.ordering]);
    const jobId = `c-${createHash('sha256')
      .update(JSON.stringify(generation === undefined ? [table.source, table.name, content] : [table.source, table.name, content, generation]))
      .digest('hex')
      .slice(0, 32)}`;
    const data: PushJob = {
      v: 1,
      source: table.source,
      table: table.name,
      target: table.target,
      changes: chunk.map((c) => ({ op: c.op, pk: c.pk, ordering: c.ordering })),
      rows: chunk.length,
      cutAt: new Date().toISOString(),
      ...(generation === undefined ? {} : { generation }),
    };
    // The jobs of a large transaction go to Redis together rather than one round trip after another: push workers
    // take them in any order anyway, and the caller acknowledges the stream only once every one of them is there.
    added.push(enqueuePushJob(ctx, jobId, data));
  }
  await Promise.all(added);
}
