import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue, Worker } from 'bullmq';
import type { Config } from '../config.js';
import { allTables } from '../config.js';
import { extractJobOptions } from './jobs.js';
import { planRuns } from './job-plan.js';

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
  options: {
    timeoutMs: number;
    /**
     * How often the queues are looked at: the pass ends two looks after its last job, so a short run does not wait a
     * large share of its length for its end. A look costs one command, plus one per extract run still going.
     * @defaultValue 50
     */
    pollMs?: number;
    reconcile?: boolean;
    /** Push jobs that wait, delayed, for an operator (tables frozen by a schema change): they do not keep the pass going. */
    parked?: () => Promise<number>;
  },
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
  // Queue order is start order: change streams, tables, then reconciliations (deletes after this pass's upserts).
  const ids: string[] = [];
  for (const [i, run] of planRuns(config, 'once', { reconcile: options.reconcile === true }).entries()) {
    const id = `once-${runTag}-${i}`;
    ids.push(id);
    await queues.extract.add(run.name, run.data, { ...extractJobOptions(config.extract.attempts), jobId: id });
  }
  const deadline = Date.now() + options.timeoutMs;
  const poll = options.pollMs ?? 50;
  // Idle must be seen twice in a row: an extract job can finish between the two queue reads while enqueueing.
  let idleSeen = 0;
  let running = ids;
  while (idleSeen < 2) {
    if (Date.now() > deadline) return { tables: tables.length, failed, timedOut: true };
    await sleep(poll);
    // Only this run's extract jobs count: a long-running scheduler may keep delayed runs in the same queue. A run once
    // finished stays finished (its id is this pass's alone), so it is not looked up again.
    const states = await Promise.all(running.map((id) => queues.extract.getJobState(id)));
    running = running.filter((_id, i) => states[i] !== 'completed' && states[i] !== 'failed' && states[i] !== 'unknown');
    const parked = options.parked ? await options.parked() : 0;
    const remaining = running.length + (await busy(queues.push)) - parked;
    idleSeen = remaining === 0 ? idleSeen + 1 : 0;
  }
  return { tables: tables.length, failed, timedOut: false };
}
