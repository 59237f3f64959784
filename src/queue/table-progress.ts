import type { Job } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import type { TableReader } from '../core/ports.js';
import { progress, progressWords, type Progress } from '../core/progress.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';

/**
 * A table run's progress, kept in the table's state hash so `pushsync status` and `GET /status` see it from any
 * process. A table that never read to its end is backfilling: its rows are counted from the first run on (a reset
 * starts the count again), against an estimate of the table's size taken when the backfill began.
 *
 * State fields: `backfillStartedAt`, `backfillRows`, `backfillTotal`, `backfillExact` while and after a backfill;
 * `lastRunAt`, `lastRunRows`, `lastRunMs` of the last finished run; `caughtUpAt` (written by the extract worker).
 */
export class TableProgress {
  private runRows = 0;
  private readonly startedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly ctx: PipelineContext,
    private readonly key: string,
    private readonly job: Job,
    private readonly log: Logger,
    /** Rows of the backfill before this run, and its estimate; undefined when the table is past its backfill. */
    private readonly backfill: { before: number; estimate: { rows: number; exact: boolean } | null } | undefined,
  ) {}

  static async start(
    ctx: PipelineContext,
    table: { source: string; name: string },
    reader: TableReader,
    job: Job,
    log: Logger,
    /** The state hash when the caller already read it. */
    known?: Record<string, string>,
  ): Promise<TableProgress> {
    const key = ctx.keys.state(table.source, table.name);
    const state = known ?? (await ctx.redis.hgetall(key));
    let backfill: TableProgress['backfill'];
    if (state.caughtUpAt === undefined) {
      if (state.backfillStartedAt === undefined) {
        const estimate = (await reader.estimateRows?.()) ?? null;
        await ctx.redis.hset(key, {
          backfillStartedAt: String(Date.now()),
          backfillRows: '0',
          ...(estimate ? { backfillTotal: String(estimate.rows), backfillExact: String(estimate.exact) } : {}),
        });
        backfill = { before: 0, estimate };
      } else {
        const estimate = state.backfillTotal !== undefined ? { rows: Number(state.backfillTotal), exact: state.backfillExact === 'true' } : null;
        backfill = { before: Number(state.backfillRows ?? 0), estimate };
      }
    }
    const tracker = new TableProgress(ctx, key, job, log, backfill);
    if (backfill) {
      tracker.timer = setInterval(() => void tracker.report().catch(() => undefined), ctx.config.extract.progressInterval);
      tracker.timer.unref();
    }
    return tracker;
  }

  /** After a push job for `rows` rows is stored. */
  async add(rows: number): Promise<void> {
    this.runRows += rows;
    if (this.backfill) await this.ctx.redis.hincrby(this.key, 'backfillRows', rows);
  }

  current(): Progress | undefined {
    if (!this.backfill) return undefined;
    return progress(this.backfill.before + this.runRows, this.backfill.estimate, this.runRows, Date.now() - this.startedAt);
  }

  /** One progress line and the job's progress in the dashboard. */
  async report(): Promise<void> {
    const p = this.current();
    if (!p) return;
    this.log.info({ ...p }, `backfill progress: ${progressWords(p)}`);
    await this.job.updateProgress({ ...p });
  }

  /** The run ended (read to its end or not); `caughtUp`: it reached the end of the table. One round trip. */
  async finish(
    caughtUp: boolean,
    /**
     * What the run records of reaching the table's end, written with the run's own fields (the caller queues it:
     * RedisCursorStore.queueUnlessReset); its reply says whether it was (0: the table was reset during the run).
     */
    reachedEnd?: (p: ChainableCommander, key: string) => ChainableCommander,
    /** Commands to send after those in its round trip (the lease's release). */
    then: (p: ChainableCommander) => ChainableCommander = (p) => p,
  ): Promise<void> {
    clearInterval(this.timer);
    const ms = Date.now() - this.startedAt;
    const state = { lastRunAt: String(this.startedAt), lastRunRows: String(this.runRows), lastRunMs: String(ms) };
    let p = this.ctx.redis.pipeline().hset(this.key, state);
    if (reachedEnd) p = reachedEnd(p, this.key);
    const replies = (await then(p).exec()) ?? [];
    const failed = replies.slice(0, reachedEnd ? 2 : 1).find(([err]) => err);
    if (failed?.[0]) throw failed[0];
    if (reachedEnd && replies[1]?.[1] !== 1) {
      this.log.info('the table was reset during this run: its end is not recorded, and the next run reads it from its start');
      return;
    }
    const done = this.current();
    if (done && caughtUp) {
      const final = { ...done, total: done.rows, percent: 100, etaSeconds: 0 };
      this.log.info({ ...final }, `backfill done: ${final.rows.toLocaleString('en-US')} rows`);
      await this.job.updateProgress(final);
    }
  }

  /** A run that failed: its interval stops; what it stored stays counted. */
  stop(): void {
    clearInterval(this.timer);
  }
}
