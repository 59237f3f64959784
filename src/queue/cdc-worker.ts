import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { tableSpec, type SourceConfig, type TableConfig } from '../config.js';
import { ChangeCollector, type ChangeEvent, type RelationKeys } from '../core/changes.js';
import { SNAPSHOT_START_CURSOR, rangeId, type KeyRange } from '../core/cursor.js';
import { AppError, toAppError } from '../core/errors.js';
import { extractTable } from '../core/extract.js';
import { bigIntToLsn, compareLsn, lsnToBigInt, snapshotOrdering } from '../core/lsn.js';
import type { TableReader } from '../core/ports.js';
import { PostgresCdc, type ChangeStream, type StreamMessage } from '../sources/postgres-cdc.js';
import type { PipelineContext } from './context.js';
import { findSource } from './context.js';
import { RedisCursorStore } from './cursor-store.js';
import { EXTRACT_QUEUE, pushJobName, pushJobOptions, rangeJobId, type PushJob } from './jobs.js';
import { enqueueChangeJobs } from './change-jobs.js';
import { PendingSet } from './pending.js';
import { TableLock } from './table-lock.js';
import { resetTable } from './table-admin.js';
import { toJobError } from './backoff-strategy.js';

/**
 * The change data capture reader of one source: exactly one per replication slot across all workers (a Redis
 * lease). Each run makes sure the publication and slot exist, enqueues the initial snapshot of tables that have
 * none, then streams changes into push jobs and acknowledges the slot only up to what is durably enqueued.
 */
export interface CdcOutcome {
  skipped?: 'locked';
  changes: number;
  snapshotRows: number;
  ackedLsn: string | null;
}

interface Watched {
  table: TableConfig;
  reader: TableReader;
}

function cdcTables(source: SourceConfig): TableConfig[] {
  return source.tables.filter((t) => t.mode === 'cdc');
}

export async function runCdc(ctx: PipelineContext, job: Job, sourceName: string, untilCurrent: boolean, stopping: () => boolean): Promise<CdcOutcome> {
  const sourceCfg = ctx.config.sources.find((s) => s.name === sourceName);
  if (!sourceCfg) throw toJobError(new AppError('JOB_INVALID', `cdc job names source ${sourceName}, which is not in the configuration`));
  const settings = sourceCfg.cdc;
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName, slot: settings.slot });
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, `cdc:${settings.slot}`), ctx.config.extract.leaseTtl);
  if (!(await lock.acquire())) return { skipped: 'locked', changes: 0, snapshotRows: 0, ackedLsn: null };
  const cdc = new PostgresCdc(sourceName, sourceCfg.url, settings.publication, settings.slot);
  const stateKey = ctx.keys.cdcState(sourceName, settings.slot);
  let stream: ChangeStream | undefined;
  try {
    const problems = await cdc.prerequisites();
    if (problems.length > 0) throw new AppError('SOURCE_SCHEMA', problems.join('; '));
    const source = findSource(ctx, sourceName);
    const watched: Watched[] = [];
    for (const table of cdcTables(sourceCfg)) watched.push({ table, reader: await source.table(tableSpec(table)) });
    const identity = await cdc.replicaIdentityProblems(watched.map((w) => w.reader.shape));
    if (identity.length > 0) throw new AppError('SOURCE_SCHEMA', identity.join('; '));
    await cdc.ensurePublication(watched.map((w) => w.reader.shape));

    const slotStart = await ensureSlot(ctx, cdc, stateKey, watched, sourceName);
    let snapshotRows = 0;
    for (const w of watched) snapshotRows += await snapshotTable(ctx, w, sourceName, slotStart, stateKey, () => stopping() || lock.isLost);

    const info = await cdc.slotInfo();
    if (info.lagBytes !== null) {
      ctx.metrics.slotLag.set({ source: sourceName, slot: settings.slot }, info.lagBytes);
      if (info.lagBytes > settings.lagWarningBytes) {
        log.warn({ lagBytes: info.lagBytes }, 'replication slot holds back more WAL than cdc.lagWarningBytes; see max_slot_wal_keep_size');
      }
    }
    const target = untilCurrent ? await cdc.currentLsn() : null;
    const relations = new Map<string, RelationKeys & Watched>(
      watched.map((w) => [`${w.reader.shape.schema}.${w.reader.shape.relname}`, { primaryKey: w.reader.shape.primaryKey, ...w }]),
    );
    const result = await streamChanges(ctx, cdc, relations, {
      sourceName,
      stateKey,
      target,
      deadline: Date.now() + settings.maxRunTime,
      batchKeys: settings.batchKeys,
      flushIntervalMs: settings.flushInterval,
      shouldStop: () => stopping() || lock.isLost,
      onStream: (s) => {
        stream = s;
      },
      log,
    });
    return { changes: result.changes, snapshotRows, ackedLsn: result.ackedLsn };
  } catch (err) {
    const e = toAppError(err, 'SOURCE_QUERY_FAILED');
    ctx.metrics.errors.inc({ source: sourceName, table: `cdc:${settings.slot}`, code: e.code });
    log.warn({ code: e.code, err: e.message }, 'cdc run failed');
    throw toJobError(e);
  } finally {
    await stream?.stop().catch(() => {});
    await cdc.close().catch(() => {});
    await lock.release().catch(() => {});
  }
}

/**
 * Makes sure the slot exists and still continues what pushsync last acknowledged. A slot that is missing after
 * pushsync streamed from it, or whose position is ahead of pushsync's, means changes went by unseen: that is an
 * error which asks for a new snapshot, never a silent gap.
 */
async function ensureSlot(ctx: PipelineContext, cdc: PostgresCdc, stateKey: string, watched: Watched[], sourceName: string): Promise<string> {
  const [savedStart, savedAck] = await ctx.redis.hmget(stateKey, 'slotStart', 'ackedLsn');
  const info = await cdc.slotInfo();
  const remedy = `run "pushsync cdc reset --source ${sourceName}" to drop the slot and take a new snapshot`;
  if (!info.exists) {
    if (savedStart) {
      throw new AppError('CURSOR_INVALID', `replication slot ${cdc.slot} was dropped after pushsync streamed from it (acknowledged up to ${savedAck ?? savedStart}); changes since then cannot be recovered from it; ${remedy}`);
    }
    const start = await cdc.createSlot();
    await resetSnapshots(ctx, watched);
    await ctx.redis.hset(stateKey, 'slotStart', start, 'ackedLsn', start, 'ackExact', '1');
    return start;
  }
  if (info.lost) {
    throw new AppError('CURSOR_INVALID', `replication slot ${cdc.slot} was invalidated: PostgreSQL removed WAL it still needed (max_slot_wal_keep_size); ${remedy}`);
  }
  if (!savedStart) {
    // The slot exists but pushsync has no memory of it (Redis lost its data): snapshot every table again from here.
    // Snapshot rows lose against every streamed change, so re-reading the tables can only re-send, never skip.
    const start = info.confirmedFlushLsn ?? (await cdc.currentLsn());
    await resetSnapshots(ctx, watched);
    await ctx.redis.hset(stateKey, 'slotStart', start, 'ackedLsn', start, 'ackExact', '1');
    return start;
  }
  // The slot confirms exactly what pushsync acknowledged. State written before acknowledgements were exact (no
  // `ackExact` field) may stand one byte behind its slot; that one byte is tolerated for such state only.
  const tolerance = (await ctx.redis.hget(stateKey, 'ackExact')) ? 0n : 1n;
  if (savedAck && info.confirmedFlushLsn && lsnToBigInt(info.confirmedFlushLsn) > lsnToBigInt(savedAck) + tolerance) {
    throw new AppError('CURSOR_INVALID', `replication slot ${cdc.slot} is at ${info.confirmedFlushLsn}, ahead of the ${savedAck} pushsync acknowledged: another consumer used it or it was recreated; ${remedy}`);
  }
  return savedStart;
}

/** A new slot means new snapshots: every table starts over, under a new generation of job ids. */
async function resetSnapshots(ctx: PipelineContext, watched: Watched[]): Promise<void> {
  for (const w of watched) await resetTable(ctx, w.table);
}

/** Enqueues the initial snapshot of a table (key ranges, read by push workers) unless it is done. */
async function snapshotTable(ctx: PipelineContext, w: Watched, sourceName: string, slotStart: string, stateKey: string, shouldStop: () => boolean): Promise<number> {
  if (await ctx.redis.hget(stateKey, `snapshot:${w.table.name}`)) return 0;
  const pending = new PendingSet(ctx.redis, ctx.keys.pending(sourceName, w.table.name));
  const ordering = snapshotOrdering(slotStart);
  const generation = await ctx.redis.get(ctx.keys.generation(sourceName, w.table.name));
  const enqueue = async (range: KeyRange, rows: number): Promise<void> => {
    const jobId = rangeJobId(rangeId(sourceName, w.table.name, range), generation);
    const data: PushJob = {
      v: 1,
      source: sourceName,
      table: w.table.name,
      target: w.table.target,
      range,
      rows,
      cutAt: new Date().toISOString(),
      op: 'snapshot',
      ordering,
    };
    const job = await ctx.pushQueue.add(pushJobName(sourceName, w.table.name), data, pushJobOptions(ctx.config.destination.attempts, jobId));
    if ((await job.getState()) !== 'completed') await pending.add(jobId, Date.now());
    ctx.metrics.rowsExtracted.inc({ source: sourceName, table: w.table.name }, rows);
  };
  const result = await extractTable({
    reader: w.reader,
    cursors: new RedisCursorStore(ctx.redis, ctx.keys.cursor(sourceName, w.table.name), `${sourceName}.${w.table.name}`, SNAPSHOT_START_CURSOR),
    batchRows: w.table.batchRows,
    where: `${sourceName}.${w.table.name}`,
    safetyLagMs: 0,
    enqueue,
    waitForCapacity: async () => {
      while (!shouldStop() && (await pending.count()) >= ctx.config.extract.maxPendingBatches) await sleep(500);
    },
    shouldStop,
  });
  if (result.caughtUp) await ctx.redis.hset(stateKey, `snapshot:${w.table.name}`, new Date().toISOString());
  return result.rows;
}

interface StreamOptions {
  sourceName: string;
  stateKey: string;
  /** Stop once everything up to this position is enqueued (one-shot runs); null streams until the deadline. */
  target: string | null;
  deadline: number;
  batchKeys: number;
  flushIntervalMs: number;
  shouldStop: () => boolean;
  onStream: (s: ChangeStream) => void;
  log: PipelineContext['logger'];
}

const POLL_MS = 50;

async function streamChanges(
  ctx: PipelineContext,
  cdc: PostgresCdc,
  relations: Map<string, RelationKeys & Watched>,
  o: StreamOptions,
): Promise<{ changes: number; ackedLsn: string | null }> {
  const inbox: StreamMessage[] = [];
  let streamError: AppError | undefined;
  const stream = await cdc.stream(
    (m) => inbox.push(m),
    (err) => {
      streamError = err;
    },
  );
  o.onStream(stream);
  const collector = new ChangeCollector(relations);
  let buffered: ChangeEvent[] = [];
  let bufferedEnd: string | null = null;
  // What the slot confirms now: never more than pushsync recorded (ensureSlot checked), so re-reporting it is safe.
  let ackedLsn = (await ctx.redis.hget(o.stateKey, 'ackedLsn')) ?? (await cdc.slotInfo()).confirmedFlushLsn;
  let lastFlush = Date.now();
  let lastPing = 0;
  let changes = 0;

  const acknowledge = async (position: string): Promise<void> => {
    const lsn = bigIntToLsn(lsnToBigInt(position));
    // Invariant: the slot is confirmed only up to a commit whose changes are all in Redis. Redis learns the
    // position first, so the slot is never found ahead of what pushsync recorded.
    await ctx.redis.hset(o.stateKey, 'ackedLsn', lsn, 'ackExact', '1');
    await stream.acknowledge(lsn);
    ackedLsn = lsn;
  };

  const flush = async (): Promise<void> => {
    if (buffered.length > 0) {
      await enqueueChanges(relations, ctx, buffered, o.batchKeys);
      changes += buffered.length;
      buffered = [];
    }
    if (bufferedEnd !== null) {
      await acknowledge(bufferedEnd);
      bufferedEnd = null;
    }
    lastFlush = Date.now();
  };

  for (;;) {
    if (streamError) throw streamError;
    while (inbox.length > 0) {
      const m = inbox.shift()!;
      switch (m.tag) {
        case 'begin':
          collector.begin(m.commitLsn);
          break;
        case 'insert':
          collector.insert(m.relation, m.row);
          break;
        case 'update':
          collector.update(m.relation, m.row, m.oldKey);
          break;
        case 'delete':
          collector.delete(m.relation, m.oldKey);
          break;
        case 'truncate':
          if (m.relations.some((r) => relations.has(r))) {
            o.log.warn({ relations: m.relations }, 'TRUNCATE is not replicated as deletes; run a reconciliation or re-snapshot the table');
            ctx.metrics.errors.inc({ source: o.sourceName, table: m.relations.join(','), code: 'TRUNCATE_NOT_REPLICATED' });
          }
          break;
        case 'commit':
          buffered.push(...collector.commit());
          bufferedEnd = m.endLsn;
          if (buffered.length >= o.batchKeys) await flush();
          break;
        case 'keepalive':
          // An idle stream may confirm the server's position: nothing is received but not yet enqueued.
          if (!collector.inTransaction && buffered.length === 0 && bufferedEnd === null && (ackedLsn === null || compareLsn(m.walEnd, ackedLsn) > 0)) {
            await acknowledge(m.walEnd);
          } else if (m.replyRequested && ackedLsn !== null) {
            // A long transaction is being received: answer with the position already confirmed, or the server ends
            // the connection after wal_sender_timeout.
            await stream.acknowledge(ackedLsn);
          }
          break;
      }
    }
    if (!collector.inTransaction && (buffered.length > 0 || bufferedEnd !== null) && Date.now() - lastFlush >= o.flushIntervalMs) await flush();
    const reachedTarget = o.target !== null && ackedLsn !== null && compareLsn(ackedLsn, o.target) >= 0;
    if (!collector.inTransaction && (o.shouldStop() || Date.now() >= o.deadline || reachedTarget)) {
      await flush();
      return { changes, ackedLsn };
    }
    if (o.target !== null && ackedLsn !== null && Date.now() - lastPing > 200) {
      // Ask the server for a keepalive now, so an idle one-shot run learns it has caught up without waiting
      // for the server's own keepalive interval.
      lastPing = Date.now();
      // Only a position already confirmed may be reported: pinging with the target would confirm unread changes.
      await stream.ping(ackedLsn);
    }
    await sleep(POLL_MS);
  }
}

/** Groups stream events by table and enqueues them as change jobs. */
async function enqueueChanges(relations: Map<string, RelationKeys & Watched>, ctx: PipelineContext, events: ChangeEvent[], batchKeys: number): Promise<void> {
  const byRelation = new Map<string, ChangeEvent[]>();
  for (const e of events) {
    const list = byRelation.get(e.relation) ?? [];
    list.push(e);
    byRelation.set(e.relation, list);
  }
  for (const [relation, list] of byRelation) await enqueueChangeJobs(ctx, relations.get(relation)!.table, list, batchKeys);
}
