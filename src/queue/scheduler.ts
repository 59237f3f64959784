import type { Queue } from 'bullmq';
import type { Config } from '../config.js';
import { allTables } from '../config.js';
import type { Logger } from '../observability/logger.js';
import { extractJobOptions, type ExtractJob } from './jobs.js';

/** Scheduler ids are `source/table`; BullMQ job schedulers live in Redis, so any number of scheduler roles agree. */
export function schedulerId(source: string, table: string): string {
  return `${source}/${table}`;
}

/**
 * Registers one BullMQ job scheduler per configured table (interval or cron) and removes schedulers of tables
 * no longer configured. A run that outlasts its interval does not pile up runs: the next one finds the table's
 * lock taken and ends at once.
 */
export async function syncSchedules(queue: Queue, config: Config, logger: Logger): Promise<void> {
  const wanted = new Set<string>();
  for (const s of config.sources.filter((x) => x.tables.some((t) => t.mode === 'cdc'))) {
    const id = `${s.name}/cdc`;
    wanted.add(id);
    const data: ExtractJob = { v: 1, kind: 'cdc', source: s.name, table: '', reason: 'schedule' };
    const opts = extractJobOptions(config.extract.attempts);
    await queue.upsertJobScheduler(id, { every: s.cdc.every }, {
      name: `${s.name} (cdc)`,
      data,
      opts: { attempts: opts.attempts, backoff: opts.backoff, removeOnComplete: opts.removeOnComplete, removeOnFail: opts.removeOnFail },
    });
  }
  for (const t of allTables(config).filter((x) => x.mode === 'watermark' && x.reconcile)) {
    const id = `${schedulerId(t.source, t.name)}/reconcile`;
    wanted.add(id);
    const data: ExtractJob = { v: 1, kind: 'reconcile', source: t.source, table: t.name, reason: 'schedule' };
    const opts = extractJobOptions(config.extract.attempts);
    await queue.upsertJobScheduler(id, { every: t.reconcile!.every }, {
      name: `${t.source}.${t.name} (reconcile)`,
      data,
      opts: { attempts: opts.attempts, backoff: opts.backoff, removeOnComplete: opts.removeOnComplete, removeOnFail: opts.removeOnFail },
    });
  }
  for (const t of allTables(config).filter((x) => x.mode === 'watermark')) {
    const id = schedulerId(t.source, t.name);
    wanted.add(id);
    const data: ExtractJob = { v: 1, source: t.source, table: t.name, reason: 'schedule' };
    const opts = extractJobOptions(config.extract.attempts);
    await queue.upsertJobScheduler(id, t.cron !== undefined ? { pattern: t.cron } : { every: t.every! }, {
      name: `${t.source}.${t.name}`,
      data,
      opts: { attempts: opts.attempts, backoff: opts.backoff, removeOnComplete: opts.removeOnComplete, removeOnFail: opts.removeOnFail },
    });
  }
  for (const s of await queue.getJobSchedulers(0, -1)) {
    const id = s.key;
    if (!wanted.has(id)) {
      await queue.removeJobScheduler(id);
      logger.info({ scheduler: id }, 'removed the schedule of a table no longer configured');
    }
  }
}
