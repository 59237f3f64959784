import type { Queue } from 'bullmq';
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { extractJobOptions } from './jobs.js';
import { planRuns, type PlannedRun } from './job-plan.js';

/**
 * Registers one BullMQ job scheduler per planned run (interval or cron) and removes schedulers of runs no longer
 * configured. Job schedulers live in Redis, so any number of scheduler roles agree. A run that outlasts its interval
 * does not pile up runs: the next one finds the table's lease taken and ends at once.
 */
export async function syncSchedules(queue: Queue, config: Config, logger: Logger): Promise<void> {
  const runs = planRuns(config, 'schedule', { reconcile: true });
  for (const run of runs) await upsert(queue, config, run);
  const wanted = new Set(runs.map((r) => r.id));
  for (const s of await queue.getJobSchedulers(0, -1)) {
    if (!wanted.has(s.key)) {
      await queue.removeJobScheduler(s.key);
      logger.info({ scheduler: s.key }, 'removed the schedule of a table no longer configured');
    }
  }
}

async function upsert(queue: Queue, config: Config, run: PlannedRun): Promise<void> {
  const { attempts, backoff, removeOnComplete, removeOnFail } = extractJobOptions(config.extract.attempts);
  await queue.upsertJobScheduler(run.id, run.repeat, {
    name: run.name,
    data: run.data,
    opts: { attempts, backoff, removeOnComplete, removeOnFail },
  });
}

/** A scheduled run this long past due whose job is gone means the schedule's chain broke. */
export const OVERDUE_MS = 10_000;

/** Job states in which a schedule's next run is still on its way. */
const ON_ITS_WAY = new Set(['delayed', 'waiting', 'prioritized', 'active', 'waiting-children']);

/**
 * Finds schedules that will never run again and registers them anew. BullMQ adds a schedule's next job from the
 * worker that starts the current one, in a step of its own: a worker killed at the wrong moment, or a Redis restart
 * then, can leave a schedule whose next run is due but whose job does not exist, and the table would silently stop
 * syncing. A schedule is repaired when its next run is over `OVERDUE_MS` past due and no job for it is waiting,
 * delayed or running, or when the schedule itself is missing. Returns the ids repaired.
 */
export async function repairSchedules(
  queue: Queue,
  config: Config,
  logger: Logger,
  metrics?: Metrics,
  now: () => number = Date.now,
): Promise<string[]> {
  const repaired: string[] = [];
  const nextRuns = await scheduledNextRuns(queue);
  for (const run of planRuns(config, 'schedule', { reconcile: true })) {
    // Most schedules are fine: their next run is in the sorted set of schedules and not yet overdue. Only the
    // others are looked at one by one.
    const next = nextRuns.get(run.id);
    if (next !== undefined && next > now() - OVERDUE_MS) continue;
    const broken = await brokenSince(queue, run.id, now);
    if (broken === null) continue;
    await upsert(queue, config, run);
    repaired.push(run.id);
    const { source, table } = run.data;
    metrics?.errors.inc({ source, table: table || '*', code: 'SCHEDULE_REPAIRED' });
    logger.warn(
      { scheduler: run.id, dueAt: broken === 0 ? null : new Date(broken).toISOString() },
      broken === 0
        ? `the schedule of ${run.name} was missing from Redis: registered it again`
        : `the schedule of ${run.name} stopped: its run due ${new Date(broken).toISOString()} has no job; registered it again`,
    );
  }
  return repaired;
}

/**
 * Every schedule's next run (ms) by id, in one command: BullMQ keeps its job schedulers in a sorted set scored by
 * their next run. Checking 500 schedules one by one every 15 s would cost 500 round trips.
 */
async function scheduledNextRuns(queue: Queue): Promise<Map<string, number>> {
  const client = await queue.getBackend().client;
  const flat = await client.zrange(queue.keys.repeat!, 0, -1, { WITHSCORES: true });
  const next = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) next.set(flat[i]!, Number(flat[i + 1]));
  return next;
}

/** When the schedule's next run was due if that run will never happen (0: the schedule is missing), else null. */
async function brokenSince(queue: Queue, id: string, now: () => number): Promise<number | null> {
  const s = await queue.getJobScheduler(id);
  if (!s) return 0;
  const next = s.next;
  if (next === undefined || next > now() - OVERDUE_MS) return null;
  const state = await queue.getJobState(`repeat:${id}:${next}`);
  if (ON_ITS_WAY.has(state)) return null;
  // The chain may have moved on between the two reads: only a schedule still pointing at the same run is broken.
  const again = await queue.getJobScheduler(id);
  return again?.next === next ? next : null;
}

/** Consecutive failed schedule checks after which the scheduler says so at warn: a failover's few are normal. */
export const PERSISTENT_CHECK_FAILURES = 4;

/**
 * Runs `repairSchedules` every `intervalMs` until stopped; a failed pass (Redis away) is retried at the next tick.
 * Checks that keep failing are logged once at warn (a schedule that stopped meanwhile stays stopped), and once
 * more when they work again.
 */
export function watchSchedules(queue: Queue, config: Config, logger: Logger, metrics: Metrics, intervalMs = 15_000): () => void {
  let running = false;
  let failures = 0;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    repairSchedules(queue, config, logger, metrics)
      .then(() => {
        if (failures >= PERSISTENT_CHECK_FAILURES) logger.info({ failures }, 'schedule checks work again');
        failures = 0;
      })
      .catch((err: unknown) => {
        failures += 1;
        const fields = { err: (err as Error).message, failures };
        if (failures === PERSISTENT_CHECK_FAILURES)
          logger.warn(fields, 'schedule checks keep failing: a schedule that stops is not repaired until they work again');
        else logger.debug(fields, 'schedule check failed; retried at the next tick');
      })
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
