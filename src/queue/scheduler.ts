import type { Queue } from 'bullmq';
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';
import { extractJobOptions } from './jobs.js';
import { planRuns } from './job-plan.js';

/**
 * Registers one BullMQ job scheduler per planned run (interval or cron) and removes schedulers of runs no longer
 * configured. Job schedulers live in Redis, so any number of scheduler roles agree. A run that outlasts its interval
 * does not pile up runs: the next one finds the table's lease taken and ends at once.
 */
export async function syncSchedules(queue: Queue, config: Config, logger: Logger): Promise<void> {
  const runs = planRuns(config, 'schedule', { reconcile: true });
  const { attempts, backoff, removeOnComplete, removeOnFail } = extractJobOptions(config.extract.attempts);
  for (const run of runs) {
    await queue.upsertJobScheduler(run.id, run.repeat, {
      name: run.name,
      data: run.data,
      opts: { attempts, backoff, removeOnComplete, removeOnFail },
    });
  }
  const wanted = new Set(runs.map((r) => r.id));
  for (const s of await queue.getJobSchedulers(0, -1)) {
    if (!wanted.has(s.key)) {
      await queue.removeJobScheduler(s.key);
      logger.info({ scheduler: s.key }, 'removed the schedule of a table no longer configured');
    }
  }
}
