import { tableSpec, type TableConfig } from '../config.js';
import { isAppError } from '../core/errors.js';
import { SNAPSHOT_START_CURSOR, cursorAfterRange, nextPhase, rangeId } from '../core/cursor.js';
import type { PipelineContext } from './context.js';
import { findSource } from './context.js';
import { RedisCursorStore } from './cursor-store.js';
import { rangeJobId, type PushJob } from './jobs.js';
import { PendingSet } from './pending.js';
import { enqueuePushJob } from './push-jobs.js';

/**
 * Incremental snapshots of CDC tables: one table read again in key ranges while its change stream keeps flowing,
 * one range per turn of the stream loop (`pushsync backfill --table`, and a table dropped and created again).
 *
 * Why no change is lost and no snapshot row overwrites a newer change: the snapshot starts at a stream position
 * `B` before which the reader has received every transaction, and all its rows carry `snapshotOrdering(B)`, which
 * sorts after every change committed before `B` and before every change committed from `B` on. Rows are read by the
 * push workers when a range is sent, like every change: a read is later than every transaction the stream delivered
 * before `B` (the same premise that lets a change be read by key after it streamed), so a snapshot row that wins
 * against an older change holds that change. A change from `B` on wins against the snapshot row, and its own record
 * is read after it committed. Ranges are cut by key after `B`; a row inserted into a range already cut is a change
 * from `B` on and travels as one. No watermark writes into the source: pushsync only reads there.
 *
 * State, in the source's CDC state hash: `resnap:<table>` holds the request, then the ordering once started.
 */
interface Pending {
  reason: string;
  requestedAt: string;
  /** Set once started: the `_ordering` of every row of this snapshot. */
  ordering?: string;
  startedAt?: string;
}

export interface SnapshotTable {
  table: TableConfig;
}

const FIELD = 'resnap:';

/**
 * Deletes the request field only if it still holds exactly the request that ran, in one step with the comparison: a
 * backfill asked for between a separate read and delete would be deleted unseen and never run.
 */
const DELETE_IF_SAME = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`;

/** Asks the CDC reader of the table's source to snapshot it again while the stream flows. Durable; idempotent. */
export async function requestSnapshot(ctx: PipelineContext, stateKey: string, table: Pick<TableConfig, 'name'>, reason: string): Promise<void> {
  const request: Pending = { reason, requestedAt: new Date().toISOString() };
  await ctx.redis.hset(stateKey, `${FIELD}${table.name}`, JSON.stringify(request));
}

/** The incremental snapshot of a table that is requested or under way, if any (for status). */
export async function snapshotRequest(ctx: PipelineContext, stateKey: string, table: Pick<TableConfig, 'name'>): Promise<Pending | null> {
  const text = await ctx.redis.hget(stateKey, `${FIELD}${table.name}`);
  return text ? (JSON.parse(text) as Pending) : null;
}

/**
 * While a snapshot's backlog stays at its bound, how often its entries are checked against the queue. A check costs
 * one Redis round trip per entry (up to `extract.maxPendingBatches`); the stream loop turns every 50 ms.
 */
const RECONCILE_MS = 5000;

export class IncrementalSnapshots {
  private pending = new Map<string, Pending>();
  private lastLoad = 0;
  /** When each table's backlog was last reconciled (it is, when found at its bound, at most every RECONCILE_MS). */
  private readonly reconciledAt = new Map<string, number>();
  /** Tables whose snapshot is held by backpressure: said once when it starts waiting and once when it goes on. */
  private readonly held = new Set<string>();

  constructor(
    private readonly ctx: PipelineContext,
    private readonly stateKey: string,
    private readonly tables: ReadonlyMap<string, SnapshotTable>,
    private readonly ordering: (position: string) => string,
    private readonly log: PipelineContext['logger'],
  ) {}

  /** True while a snapshot is requested or under way. */
  get active(): boolean {
    return this.pending.size > 0;
  }

  /** Reads the requests from Redis (at most once a second unless `force`): a backfill can be asked for at any time. */
  async load(force = false): Promise<void> {
    if (!force && Date.now() - this.lastLoad < 1000) return;
    this.lastLoad = Date.now();
    const state = await this.ctx.redis.hgetall(this.stateKey);
    this.pending.clear();
    for (const [field, value] of Object.entries(state)) {
      if (!field.startsWith(FIELD)) continue;
      const name = field.slice(FIELD.length);
      if (this.tables.has(name)) this.pending.set(name, JSON.parse(value) as Pending);
    }
  }

  /**
   * Starts every requested snapshot at `position` and enqueues the next key range of each started one that has room
   * (the table's undelivered backlog under `extract.maxPendingBatches`). Returns the rows enqueued.
   * Invariant: `position` is a stream position before which every transaction was received.
   */
  async step(position: string): Promise<number> {
    await this.load();
    let rows = 0;
    for (const [name, p] of this.pending) {
      const t = this.tables.get(name)!;
      if (p.ordering === undefined) await this.start(t, p, position);
      try {
        rows += await this.nextRange(t, p);
      } catch (err) {
        // The table is being dropped and created again, or changed under the read: the next turn tries again, and
        // the stream goes on meanwhile.
        if (!isAppError(err) || err.code !== 'SOURCE_SCHEMA') throw err;
      }
    }
    return rows;
  }

  private field(t: SnapshotTable): string {
    return `${FIELD}${t.table.name}`;
  }

  private cursors(t: SnapshotTable): RedisCursorStore {
    const { source, name } = t.table;
    return new RedisCursorStore(
      this.ctx.redis,
      this.ctx.keys.cursor(source, name),
      this.ctx.keys.generation(source, name),
      `${source}.${name}`,
      SNAPSHOT_START_CURSOR,
    );
  }

  private async start(t: SnapshotTable, p: Pending, position: string): Promise<void> {
    const { source, name } = t.table;
    // A crash between these steps finds the request not yet started and starts it again: nothing was enqueued yet.
    // Ranges read again get new job ids: completed jobs of earlier snapshots would otherwise absorb them.
    await RedisCursorStore.startOver(this.ctx.redis, this.ctx.keys.cursor(source, name), this.ctx.keys.generation(source, name));
    p.ordering = this.ordering(position);
    p.startedAt = new Date().toISOString();
    // The table's initial snapshot, if unfinished, is replaced by this one (same cursor): it must not run too.
    await this.ctx.redis.hset(this.stateKey, this.field(t), JSON.stringify(p), `snapshot:${name}`, p.startedAt);
    this.log.info(
      { table: name, reason: p.reason, position, ordering: p.ordering },
      `incremental snapshot of ${source}.${name} started (${p.reason}); the change stream keeps flowing`,
    );
  }

  /**
   * Whether the table's undelivered backlog is under `extract.maxPendingBatches`, as `waitForCapacity` decides it for
   * extraction: entries of jobs that no longer exist or already completed (removed from the dashboard, purged, or
   * recorded just after a fast delivery) are dropped before the backlog is taken as full, or they would hold the
   * snapshot forever, silently; dead-lettered jobs count, their rows are undelivered.
   */
  private async hasRoom(t: SnapshotTable): Promise<boolean> {
    const { source, name } = t.table;
    const pending = new PendingSet(this.ctx.redis, this.ctx.keys.pending(source, name));
    const bound = this.ctx.config.extract.maxPendingBatches;
    let count = await pending.count();
    if (count >= bound && Date.now() - (this.reconciledAt.get(name) ?? 0) >= RECONCILE_MS) {
      this.reconciledAt.set(name, Date.now());
      if ((await pending.reconcile(this.ctx.pushQueue)) > 0) count = await pending.count();
    }
    const fields = { source, table: name, pending: count, bound };
    if (count >= bound) {
      if (!this.held.has(name)) {
        this.held.add(name);
        this.log.info(
          fields,
          `backpressure: incremental snapshot of ${source}.${name} waits, ${count} undelivered push jobs reached the bound of ${bound} (extract.maxPendingBatches); the change stream keeps flowing`,
        );
      }
      return false;
    }
    if (this.held.delete(name))
      this.log.info(fields, `backpressure released: incremental snapshot of ${source}.${name} goes on, ${count} undelivered push jobs`);
    return true;
  }

  private async nextRange(t: SnapshotTable, p: Pending): Promise<number> {
    const { source, name } = t.table;
    if (!(await this.hasRoom(t))) return 0;
    const store = this.cursors(t);
    const stored = await store.load();
    // The reader as the table is now (one catalog query): its key may have been renamed since the run started.
    const reader = await findSource(this.ctx, source).table(tableSpec(t.table));
    const next = await reader.nextRange(stored.cursor, t.table.batchRows, null);
    if (!next) {
      const following = nextPhase(stored.cursor);
      if (following) {
        await store.save(stored, following);
        return 0;
      }
      // Done only if the request was not renewed meanwhile (a second backfill asked for while this one ran).
      await this.ctx.redis.eval(DELETE_IF_SAME, 1, this.stateKey, this.field(t), JSON.stringify(p));
      this.pending.delete(name);
      this.lastLoad = 0;
      this.log.info({ table: name, reason: p.reason }, `incremental snapshot of ${source}.${name} done`);
      return 0;
    }
    // The generation read with the cursor: the one this range belongs to.
    const generation = store.generation;
    const data: PushJob = {
      v: 1,
      source,
      table: name,
      target: t.table.target,
      range: next.range,
      rows: next.rows,
      cutAt: new Date().toISOString(),
      op: 'snapshot',
      ordering: p.ordering!,
      // Its rows sort after the changes streamed before `position`: one still held back is waited for.
      awaitWriters: true,
    };
    // Invariant: the cursor moves past a range only after the job that delivers it is in Redis.
    await enqueuePushJob(this.ctx, rangeJobId(rangeId(source, name, next.range), generation), data);
    await store.save(stored, cursorAfterRange(next.range));
    return next.rows;
  }
}
