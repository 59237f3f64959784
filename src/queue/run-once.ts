import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue, Worker } from 'bullmq';
import type { Config } from '../config.js';
import { allTables } from '../config.js';
import { extractJobOptions, type ExtractJob } from './jobs.js';

export interface OnceSummary {
  tables: number;
  /** Jobs that failed for good during the run (now in the failed set). */
  failed: Array<{ queue: string; id: string | undefined; name: string; reason: string }>;
  timedOut: boolean;
}

const BUSY_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

async function busy(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...BUSY_STATES);
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/**
 * One pass for cron, scheduled containers and Lambda-style runs: enqueue an extract run for every table, let the
 * given workers work until both queues are idle, and report every job that failed for good on the way.
 */
export async function runOnce(
  config: Config,
  queues: { extract: Queue; push: Queue },
  workers: Worker[],
  options: { timeoutMs: number; pollMs?: number; reconcile?: boolean },
): Promise<OnceSummary> {
  const failed: OnceSummary['failed'] = [];
  for (const w of workers) {
    w.on('failed', (job, err) => {
      if (!job) return;
      const final = err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) failed.push({ queue: w.name, id: job.id, name: job.name, reason: err.message });
    });
  }
  const runTag = Date.now().toString(36);
  const tables = allTables(config);
  const ids: string[] = [];
  for (const s of config.sources.filter((x) => x.tables.some((t) => t.mode === 'cdc'))) {
    // Reads the stream up to the position current now, then ends.
    const data: ExtractJob = { v: 1, kind: 'cdc', source: s.name, table: '', reason: 'once' };
    const id = `once-${runTag}-cdc-${s.name}`;
    ids.push(id);
    await queues.extract.add(`${s.name} (cdc)`, data, { ...extractJobOptions(config.extract.attempts), jobId: id });
  }
  for (const [i, t] of tables.filter((x) => x.mode === 'watermark').entries()) {
    const data: ExtractJob = { v: 1, source: t.source, table: t.name, reason: 'once' };
    const id = `once-${runTag}-${i}`;
    ids.push(id);
    await queues.extract.add(`${t.source}.${t.name}`, data, { ...extractJobOptions(config.extract.attempts), jobId: id });
  }
  if (options.reconcile) {
    // After the extract runs in queue order: deletes are then ordered after the upserts of this pass.
    for (const t of tables.filter((x) => x.mode === 'watermark' && x.reconcile)) {
      const data: ExtractJob = { v: 1, kind: 'reconcile', source: t.source, table: t.name, reason: 'once' };
      const id = `once-${runTag}-reconcile-${ids.length}`;
      ids.push(id);
      await queues.extract.add(`${t.source}.${t.name} (reconcile)`, data, { ...extractJobOptions(config.extract.attempts), jobId: id });
    }
  }
  const deadline = Date.now() + options.timeoutMs;
  const poll = options.pollMs ?? 200;
  // Idle must be seen twice in a row: an extract job can finish between the two queue reads while enqueueing.
  let idleSeen = 0;
  while (idleSeen < 2) {
    if (Date.now() > deadline) return { tables: tables.length, failed, timedOut: true };
    await sleep(poll);
    // Only this run's extract jobs count: a long-running scheduler may keep delayed runs in the same queue.
    const extracting = await Promise.all(ids.map((id) => queues.extract.getJobState(id)));
    const remaining = extracting.filter((s) => s !== 'completed' && s !== 'failed' && s !== 'unknown').length + (await busy(queues.push));
    idleSeen = remaining === 0 ? idleSeen + 1 : 0;
  }
  return { tables: tables.length, failed, timedOut: false };
}
