import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { tableSpec, type SourceConfig, type TableConfig } from '../config.js';
import type { ChangeEvent, RelationKeys } from '../core/changes.js';
import { SNAPSHOT_START_CURSOR, rangeId, type KeyRange } from '../core/cursor.js';
import { AppError } from '../core/errors.js';
import { extractTable } from '../core/extract.js';
import type { ChangeSource, ChangeStream, ChangeStreamEvent, TableReader } from '../core/ports.js';
import type { PipelineContext } from './context.js';
import { findChangeSource, findSource } from './context.js';
import { RedisCursorStore } from './cursor-store.js';
import { EXTRACT_QUEUE, rangeJobId, type PushJob } from './jobs.js';
import { enqueueChangeJobs } from './change-jobs.js';
import { enqueuePushJob, waitForCapacity } from './push-jobs.js';
import { TableLock } from './table-lock.js';
import { resetTable } from './table-admin.js';
import { failJob } from './job-errors.js';
import { RelationTracker, type TrackedRelation } from './cdc-relations.js';
import { IncrementalSnapshots, requestSnapshot } from './cdc-snapshots.js';
import { streamDescribedChange } from './cdc-announce.js';
import { clearReaderFailure, recordReaderFailure } from './cdc-health.js';
import { TableProgress } from './table-progress.js';
import { connectionEpoch, pipelineValues, replicaWait, waitForReplicas } from './redis.js';
import { recordMode, startCdcOver, storedMode } from './table-mode.js';
import { restartGeneration } from './generations.js';
import { claimTargets, keepEpoch, recordedEpoch, startStream } from './cdc-epoch.js';
import { withOrderingEpoch } from '../core/ordering-epoch.js';

/**
 * The change data capture reader of one source: exactly one per durable stream (replication slot) across all
 * workers, by a Redis lease. Each run makes sure the stream exists, enqueues the initial snapshot of tables that have
 * none, then streams committed transactions into push jobs and acknowledges the stream only up to what is durably
 * enqueued. It drives the source through the `ChangeSource` port only.
 */
export interface CdcOutcome {
  skipped?: 'locked';
  changes: number;
  snapshotRows: number;
  ackedPosition: string | null;
}

interface Watched {
  table: TableConfig;
  reader: TableReader;
}

function cdcTables(source: SourceConfig): TableConfig[] {
  return source.tables.filter((t) => t.mode === 'cdc');
}

export async function runCdc(
  ctx: PipelineContext,
  job: Job,
  sourceName: string,
  untilCurrent: boolean,
  stopping: () => boolean,
): Promise<CdcOutcome> {
  const sourceCfg = ctx.config.sources.find((s) => s.name === sourceName);
  if (!sourceCfg)
    throw failJob(new AppError('JOB_INVALID', `cdc job names source ${sourceName}, which is not in the configuration`), {
      ctx,
      job,
      what: 'cdc run rejected',
    });
  const settings = sourceCfg.cdc;
  const log = ctx.logger.child({ queue: EXTRACT_QUEUE, jobId: job.id, source: sourceName, slot: settings.slot });
  const lock = new TableLock(ctx.redis, ctx.keys.lock(sourceName, `cdc:${settings.slot}`), ctx.config.extract.leaseTtl);
  if (!(await lock.acquire())) return { skipped: 'locked', changes: 0, snapshotRows: 0, ackedPosition: null };
  const stateKey = ctx.keys.cdcState(sourceName, settings.slot);
  let stream: ChangeStream | undefined;
  try {
    const stored = findChangeSource(ctx, sourceName);
    const problems = await stored.prerequisites();
    if (problems.length > 0) throw new AppError('SOURCE_SCHEMA', problems.join('; '));
    const source = findSource(ctx, sourceName);
    const watched: Watched[] = [];
    for (const table of cdcTables(sourceCfg)) watched.push({ table, reader: await source.table(tableSpec(table)) });
    const identity = await stored.keyProblems(watched.map((w) => w.reader.shape));
    if (identity.length > 0) throw new AppError('SOURCE_SCHEMA', identity.join('; '));
    await stored.prepare(watched.map((w) => w.reader.shape));

    const { start: streamStart, epoch } = await ensureStream(ctx, stored, stateKey, watched, sourceName);
    await claimTargets(
      ctx.redis,
      ctx.keys,
      sourceName,
      epoch,
      watched.map((w) => w.table.target),
    );
    await takeOverFromWatermark(ctx, stored, watched, log);
    // From here on every ordering the stream hands out carries its epoch: a later stream's sort after this one's.
    const cdc = withOrderingEpoch(stored, epoch);
    const shouldStop = (): boolean => stopping() || lock.isLost;
    const relations = new Map<string, TrackedRelation>(
      watched.map((w) => [`${w.reader.shape.schema}.${w.reader.shape.relname}`, { primaryKey: w.reader.shape.primaryKey, ...w }]),
    );
    const tracker = new RelationTracker(
      ctx,
      cdc,
      stateKey,
      relations,
      (t, from, recreated) => streamDescribedChange(ctx, t, from, log, recreated),
      (position) => cdc.snapshotOrdering(position),
      log,
    );
    // Before any snapshot: a table created again under its name is snapshotted again as a new table, in the stream.
    const recreated = new Set((await tracker.checkIdentities(await ctx.redis.hget(stateKey, 'ackedLsn'))).map((t) => t.name));
    let snapshotRows = 0;
    for (const w of watched) {
      if (!recreated.has(w.table.name))
        snapshotRows += await snapshotTable(ctx, w, cdc.snapshotOrdering(streamStart), stateKey, shouldStop, { job, log });
    }

    const info = await cdc.status();
    if (info.lagSeconds != null) ctx.metrics.cdcLagSeconds.set({ source: sourceName, slot: settings.slot }, info.lagSeconds);
    if (info.lagBytes !== null) {
      ctx.metrics.slotLag.set({ source: sourceName, slot: settings.slot }, info.lagBytes);
      if (info.lagBytes > settings.lagWarningBytes) {
        log.warn({ lagBytes: info.lagBytes }, `${cdc.stream} holds back more than cdc.lagWarningBytes; see max_slot_wal_keep_size`);
      }
    }
    const target = untilCurrent ? await cdc.currentPosition() : null;
    const runDeadline = Date.now() + settings.maxRunTime;
    const snapshots = new IncrementalSnapshots(
      ctx,
      stateKey,
      new Map(watched.map((w) => [w.table.name, w])),
      (position) => cdc.snapshotOrdering(position),
      log,
    );
    const result = await streamChanges(ctx, cdc, relations, {
      tracker,
      snapshots,
      sourceName,
      stateKey,
      target,
      deadline: runDeadline,
      batchKeys: settings.batchKeys,
      flushIntervalMs: settings.flushInterval,
      shouldStop,
      lock,
      onStream: (s) => {
        stream = s;
      },
      log,
    });
    // Why the run ended: a stall shows as a stream that stopped and was not opened again.
    const why = stopping() ? 'stopping' : lock.isLost ? 'lease lost' : Date.now() >= runDeadline ? 'cdc.maxRunTime reached' : 'caught up';
    log.info({ changes: result.changes, acked: result.acked }, `${cdc.stream}: stream ended (${why}); the next scheduled run continues it`);
    await clearReaderFailure(ctx, stateKey);
    return { changes: result.changes, snapshotRows: snapshotRows + result.snapshotRows, ackedPosition: result.acked };
  } catch (err) {
    await recordReaderFailure(ctx, stateKey, err);
    throw failJob(err, { ctx, job, labels: { source: sourceName, table: `cdc:${settings.slot}` }, log, what: 'cdc run failed' });
  } finally {
    await stream?.stop().catch(() => {});
    await lock.release().catch(() => {});
  }
}

/**
 * Makes sure the durable stream exists and still continues what pushsync last acknowledged. A stream that is
 * missing after pushsync read from it, or whose position is past pushsync's, means changes went by unseen: that is
 * an error which asks for a new snapshot, never a silent gap.
 */
async function ensureStream(
  ctx: PipelineContext,
  cdc: ChangeSource,
  stateKey: string,
  watched: Watched[],
  sourceName: string,
): Promise<{ start: string; epoch: number }> {
  const [savedStart, savedAck, ackExact, savedEpoch] = await ctx.redis.hmget(stateKey, 'slotStart', 'ackedLsn', 'ackExact', 'epoch');
  const info = await cdc.status();
  const remedy = `run "pushsync cdc reset --source ${sourceName}" to drop it and take a new snapshot`;
  // A new stream is a new ordering epoch (core/ordering-epoch.ts): its positions say nothing about the last one's.
  const startOver = async (start: string): Promise<{ start: string; epoch: number }> => {
    await resetSnapshots(ctx, watched);
    await restartGenerations(ctx, cdc, watched);
    const targets = watched.map((w) => w.table.target);
    return { start, epoch: await startStream(ctx.redis, ctx.keys, stateKey, start, targets) };
  };
  if (!info.exists) {
    if (savedStart) {
      throw new AppError(
        'CURSOR_INVALID',
        `${cdc.stream} was dropped after pushsync streamed from it (acknowledged up to ${savedAck ?? savedStart}); changes since then cannot be recovered from it; ${remedy}`,
      );
    }
    return startOver(await cdc.create());
  }
  if (info.lost) {
    throw new AppError(
      'CURSOR_INVALID',
      `${cdc.stream} was invalidated: ${info.lostReason ?? 'the source removed changes it still needed (max_slot_wal_keep_size)'}; ${remedy}`,
    );
  }
  // The stream exists but pushsync has no memory of it (Redis lost its data): snapshot every table again from here.
  // Snapshot rows lose against every streamed change, so re-reading the tables can only re-send, never skip.
  if (!savedStart) return startOver(info.confirmed ?? (await cdc.currentPosition()));
  // Invariant: the stream confirms exactly what pushsync acknowledged. State recorded before acknowledgements were
  // exact carries no `ackExact` and may stand a source-defined margin behind its stream.
  if (savedAck && info.confirmed && cdc.confirmedPast(info.confirmed, savedAck, !ackExact)) {
    throw new AppError(
      'CURSOR_INVALID',
      `${cdc.stream} is at ${info.confirmed}, ahead of the ${savedAck} pushsync acknowledged: another consumer used it, it was recreated, or a Redis failover lost pushsync's last writes (set redis.waitReplicas); ${remedy}`,
    );
  }
  const epoch = recordedEpoch(savedEpoch, stateKey);
  // A stream recorded before epochs existed (or an epoch key lost): the next stream must still start a later epoch.
  await keepEpoch(ctx.redis, ctx.keys, epoch);
  return { start: savedStart, epoch };
}

/** Tables a watermark run synced until now are snapshotted from the start (table-mode.ts). */
async function takeOverFromWatermark(ctx: PipelineContext, cdc: ChangeSource, watched: Watched[], log: PipelineContext['logger']): Promise<void> {
  const p = ctx.redis.pipeline();
  for (const w of watched) p.get(ctx.keys.tableMode(w.table.source, w.table.name)).get(ctx.keys.cursor(w.table.source, w.table.name));
  const replies = pipelineValues(await p.exec()) as Array<string | null>;
  for (const [i, w] of watched.entries()) {
    const [recorded, cursor] = [replies[2 * i] ?? null, replies[2 * i + 1] ?? null];
    const mode = storedMode(recorded, cursor, `${w.table.source}.${w.table.name}`);
    if (mode === 'watermark') await startCdcOver(ctx, w.table, (await streamIdentities(cdc, [w]))[0], log);
    else if (recorded !== 'cdc') await recordMode(ctx, w.table, 'cdc');
  }
}

/**
 * A new stream snapshots its tables again, and a snapshot cannot see the keys deleted while no stream ran (a slot
 * lost, a source moved to a server restored from an older backup): a table that an earlier stream sent starts a
 * new table generation, which the snapshot fills. Before the stream is recorded, so a crash in between starts
 * another one (once more) rather than none.
 */
async function restartGenerations(ctx: PipelineContext, cdc: ChangeSource, watched: Watched[]): Promise<void> {
  if (watched.length === 0) return;
  const claimed = await ctx.redis.hmget(ctx.keys.cdcTargetEpochs(), ...watched.map((w) => w.table.target));
  const sent = watched.filter((_, i) => claimed[i] !== null);
  if (sent.length === 0) return;
  // The identities the stream tags changes with, so that the tracker finds the new generation.
  const identities = await streamIdentities(cdc, sent);
  for (const [i, w] of sent.entries()) await restartGeneration(ctx, w.table, identities[i]);
}

/** The identities the stream tags the tables' changes with (relationIds), else the readers', in the tables' order. */
async function streamIdentities(cdc: ChangeSource, ws: Watched[]): Promise<Array<string | null | undefined>> {
  const ids = await cdc.relationIds?.(ws.map((w) => w.reader.shape));
  return ws.map((w) => ids?.get(`${w.reader.shape.schema}.${w.reader.shape.relname}`) ?? w.reader.shape.relation?.identity);
}

/** A new stream means new snapshots: every table starts over, under a new generation of job ids. */
async function resetSnapshots(ctx: PipelineContext, watched: Watched[]): Promise<void> {
  for (const w of watched) await resetTable(ctx, w.table);
}

/**
 * Enqueues the initial snapshot of a table (key ranges, read by push workers) unless it is done. Its progress (rows,
 * estimate, rate, ETA) is reported as a watermark backfill's is: log lines, the job's progress, `status`.
 */
async function snapshotTable(
  ctx: PipelineContext,
  w: Watched,
  ordering: string,
  stateKey: string,
  shouldStop: () => boolean,
  run: { job: Job; log: PipelineContext['logger'] },
): Promise<number> {
  const { source, name } = w.table;
  if (await ctx.redis.hget(stateKey, `snapshot:${name}`)) return 0;
  const tracker = await TableProgress.start(ctx, w.table, w.reader, run.job, run.log.child({ table: name }));
  const cursors = new RedisCursorStore(
    ctx.redis,
    ctx.keys.cursor(source, name),
    ctx.keys.generation(source, name),
    `${source}.${name}`,
    SNAPSHOT_START_CURSOR,
  );
  const enqueue = async (range: KeyRange, rows: number): Promise<void> => {
    const data: PushJob = {
      v: 1,
      source,
      table: name,
      target: w.table.target,
      range,
      rows,
      cutAt: new Date().toISOString(),
      op: 'snapshot',
      ordering,
    };
    // The generation read with the cursor the range was cut from.
    await enqueuePushJob(ctx, rangeJobId(rangeId(source, name, range), cursors.generation), data);
    await tracker.add(rows);
  };
  let result;
  try {
    result = await extractTable({
      reader: w.reader,
      cursors,
      batchRows: w.table.batchRows,
      keys: false,
      where: `${source}.${name}`,
      safetyLagMs: 0,
      enqueue,
      waitForCapacity: () => waitForCapacity(ctx, w.table, { shouldStop, log: ctx.logger }),
      shouldStop,
    });
  } finally {
    tracker.stop();
  }
  // The snapshot is done only under the generation it read: a reset during it asks for another.
  await tracker.finish(
    result.caughtUp,
    result.caughtUp ? (p) => cursors.queueUnlessReset(p, stateKey, { [`snapshot:${name}`]: new Date().toISOString() }) : undefined,
  );
  return result.rows;
}

interface StreamOptions {
  tracker: RelationTracker;
  snapshots: IncrementalSnapshots;
  sourceName: string;
  stateKey: string;
  /** Stop once everything up to this position is acknowledged (one-shot runs); null streams until the deadline. */
  target: string | null;
  deadline: number;
  batchKeys: number;
  flushIntervalMs: number;
  shouldStop: () => boolean;
  /** The reader's lease: positions are recorded only while it is held. */
  lock: TableLock;
  onStream: (s: ChangeStream) => void;
  log: PipelineContext['logger'];
}

const POLL_MS = 50;
/** How often streamed transactions not yet visible on the source are looked at again, and when that is worth a warning. */
const VISIBLE_POLL_MS = 20;
const VISIBLE_WARN_MS = 2000;
const POSITION_REQUEST_MS = 200;
/** How often a streaming reader looks up its tables' identities: a table dropped and created again leaves the publication. */
const IDENTITY_CHECK_MS = 5000;

async function streamChanges(
  ctx: PipelineContext,
  cdc: ChangeSource,
  relations: Map<string, RelationKeys & Watched>,
  o: StreamOptions,
): Promise<{ changes: number; acked: string | null; snapshotRows: number }> {
  const inbox: ChangeStreamEvent[] = [];
  let streamError: Error | undefined;
  // Ends the loop's wait as soon as the stream hands something over, so a change does not sit out a poll interval.
  let wake: (() => void) | null = null;
  const stream = await cdc.open(
    relations,
    (e) => {
      inbox.push(e);
      wake?.();
    },
    (err) => {
      streamError = err;
      wake?.();
    },
    // A source that records its confirmed position in Redis (the binlog reader) does so only while the lease is
    // held, like ackedLsn below; a lapsed reader's acknowledgement is dropped and its run ends on the lost lease.
    { lease: o.lock },
  );
  const nap = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      wake = done;
    });
  o.onStream(stream);
  let buffered: ChangeEvent[] = [];
  let bufferedEnd: string | null = null;
  // What the stream confirms now: never more than pushsync recorded (ensureStream checked), so re-reporting it is safe.
  let acked = (await ctx.redis.hget(o.stateKey, 'ackedLsn')) ?? (await cdc.status()).confirmed;
  o.log.info({ from: acked, until: o.target }, `${cdc.stream}: streaming changes`);
  let lastFlush = Date.now();
  let lastRequest = 0;
  let changes = 0;
  // Every transaction before it was received, enqueued and (see untilVisible) visible on the source: where an
  // incremental snapshot may start (cdc-snapshots.ts). A snapshot range read before a transaction it starts after is
  // visible would carry the rows as they were, under an ordering above that transaction's changes.
  let position = acked;
  // The stream's latest position handed over; `position` once what came before it is flushed.
  let received = acked;
  let lastIdentityCheck = Date.now();
  let snapshotRows = 0;
  // The connection epoch before the oldest write not yet confirmed by replicas (waitForReplicas); null: none.
  let unconfirmedSince: number | null = null;
  // Set by the run's first confirmed position: the reader works, whatever its earlier runs did (cdc-health.ts).
  let working = false;

  /**
   * Waits until the rows of these transactions can be read: their change jobs read them by key, and a row not found
   * is taken for deleted since, so an insert read too early would never be sent. A run asked to stop meanwhile fails
   * (retryable) without enqueueing or acknowledging them: the next stream hands them over again.
   */
  const untilVisible = async (pending: string[]): Promise<void> => {
    if (!cdc.visible || pending.length === 0) return;
    const since = Date.now();
    let warned = false;
    while (!(await cdc.visible(pending))) {
      if (o.shouldStop()) {
        throw new AppError(
          'SOURCE_UNAVAILABLE',
          `${cdc.stream}: streamed transactions are still not visible on the source; they are read again next run`,
          {
            retryable: true,
          },
        );
      }
      if (!warned && Date.now() - since >= VISIBLE_WARN_MS) {
        warned = true;
        o.log.warn(
          { transactions: pending.length, waitedMs: Date.now() - since },
          `${cdc.stream}: transactions streamed as committed are not visible on the source yet (a commit held back for a synchronous standby?); their changes wait`,
        );
      }
      await sleep(VISIBLE_POLL_MS);
    }
    if (warned) o.log.info({ waitedMs: Date.now() - since }, `${cdc.stream}: the transactions became visible; their changes go on`);
  };

  const acknowledge = async (position: string): Promise<void> => {
    const since = unconfirmedSince ?? connectionEpoch(ctx.redis);
    // Invariant: the stream is confirmed only up to a transaction whose changes are all in Redis. Redis learns the
    // position first, so the stream is never found ahead of what pushsync recorded. Only the lease holder records:
    // a reader whose lease lapsed unnoticed would write an older position over its successor's, and from then on
    // every run would find the stream ahead of pushsync's record and refuse it. Such a reader stops here.
    const recorded = await o.lock.hsetWhileHeld(o.stateKey, { ackedLsn: position, ackExact: '1', ackedAt: String(Date.now()) });
    if (!recorded) return;
    // A confirmed slot never hands those changes out again: replicas must hold them before a failover could.
    await waitForReplicas(ctx.redis, replicaWait(ctx.config.redis), o.stateKey, since);
    await stream.acknowledge(position);
    acked = position;
    unconfirmedSince = null;
    if (!working) {
      working = true;
      await clearReaderFailure(ctx, o.stateKey);
    }
  };

  // The transactions the buffered changes belong to, as the source names them for `visible`.
  let transactions = new Set<string>();
  const take = (changes: readonly ChangeEvent[], transaction: string | undefined): void => {
    // A loop, not push(...changes): a transaction of a few hundred thousand changes would overflow the stack.
    for (const c of changes) buffered.push(c);
    if (transaction !== undefined && changes.length > 0) transactions.add(transaction);
  };
  const flush = async (): Promise<void> => {
    if (buffered.length > 0) {
      await untilVisible([...transactions]);
      transactions = new Set();
      unconfirmedSince ??= connectionEpoch(ctx.redis);
      await enqueueChanges(relations, ctx, buffered, o.batchKeys);
      changes += buffered.length;
      buffered = [];
    }
    if (bufferedEnd !== null) {
      await acknowledge(bufferedEnd);
      bufferedEnd = null;
    }
    position = received;
    lastFlush = Date.now();
  };

  for (;;) {
    if (streamError) throw streamError;
    while (inbox.length > 0) {
      const e = inbox.shift()!;
      switch (e.kind) {
        case 'transaction':
          take(e.changes, e.transaction);
          bufferedEnd = e.end;
          received = e.end;
          if (e.ignored) ctx.metrics.errors.inc({ source: o.sourceName, table: '*', code: 'CHANGE_OF_DROPPED_TABLE' }, e.ignored);
          if (buffered.length >= o.batchKeys) await flush();
          break;
        case 'changes':
          // Enqueued like a transaction's, but nothing is acknowledged until its transaction event ends it.
          take(e.changes, e.transaction);
          if (buffered.length >= o.batchKeys) await flush();
          break;
        case 'relation':
          await o.tracker.onRelation(e);
          break;
        case 'idle':
          received = e.position;
          if (buffered.length === 0 && bufferedEnd === null) position = e.position;
          // Nothing received is waiting to be enqueued: the source's position may be confirmed.
          if (buffered.length === 0 && bufferedEnd === null && (acked === null || cdc.comparePositions(e.position, acked) > 0))
            await acknowledge(e.position);
          break;
        case 'resnapshot': {
          const r = relations.get(e.relation);
          if (!r) break;
          await requestSnapshot(ctx, o.stateKey, r.table, e.reason);
          o.log.warn(
            { table: r.table.name, reason: e.reason },
            `${r.table.source}.${r.table.name}: ${e.reason}; snapshotting it again while the stream flows`,
          );
          ctx.metrics.errors.inc({ source: o.sourceName, table: r.table.name, code: 'CHANGES_UNDECODABLE' });
          break;
        }
        case 'truncate':
          o.log.warn({ relations: e.relations }, 'TRUNCATE is not replicated as deletes; run a reconciliation or re-snapshot the table');
          ctx.metrics.errors.inc({ source: o.sourceName, table: e.relations.join(','), code: 'TRUNCATE_NOT_REPLICATED' });
          break;
        default:
          // A kind of event this loop does not know would be dropped, and the position after it acknowledged.
          throw new AppError('INTERNAL', `unknown change stream event ${(e satisfies never as { kind: string }).kind}`);
      }
    }
    if ((buffered.length > 0 || bufferedEnd !== null) && Date.now() - lastFlush >= o.flushIntervalMs) await flush();
    if (Date.now() - lastIdentityCheck >= IDENTITY_CHECK_MS) {
      lastIdentityCheck = Date.now();
      await o.tracker.checkIdentities(position);
    }
    if (position !== null) snapshotRows += await o.snapshots.step(position);
    const reachedTarget = o.target !== null && acked !== null && cdc.comparePositions(acked, o.target) >= 0 && !o.snapshots.active;
    if (o.shouldStop() || Date.now() >= o.deadline || reachedTarget) {
      await flush();
      return { changes, acked, snapshotRows };
    }
    if (o.target !== null && acked !== null && Date.now() - lastRequest > POSITION_REQUEST_MS) {
      // An idle one-shot run learns it has caught up without waiting for the source's own keepalive interval. Only a
      // position already confirmed may be reported: reporting the target would confirm unread changes.
      lastRequest = Date.now();
      await stream.requestPosition(acked);
    }
    const untilFlush = buffered.length > 0 || bufferedEnd !== null ? Math.max(0, lastFlush + o.flushIntervalMs - Date.now()) : POLL_MS;
    if (inbox.length === 0 && !streamError) await nap(Math.min(POLL_MS, untilFlush));
  }
}

/** Groups stream events by table and enqueues them as change jobs. */
async function enqueueChanges(
  relations: Map<string, RelationKeys & Watched>,
  ctx: PipelineContext,
  events: ChangeEvent[],
  batchKeys: number,
): Promise<void> {
  const byRelation = new Map<string, ChangeEvent[]>();
  for (const e of events) {
    const list = byRelation.get(e.relation) ?? [];
    list.push(e);
    byRelation.set(e.relation, list);
  }
  for (const [relation, list] of byRelation) {
    const { table, reader } = relations.get(relation)!;
    // Keys of a table whose key is masked enter Redis sealed (core/key-seal.ts), like every position of it.
    const stored = reader.storedKey ? list.map((e) => ({ ...e, pk: reader.storedKey!(e.pk) })) : list;
    // A job holds changes of one generation: a run of changes from before a re-creation, then those after.
    for (let i = 0; i < stored.length;) {
      let end = i + 1;
      while (end < stored.length && stored[end]!.generation === stored[i]!.generation) end++;
      await enqueueChangeJobs(ctx, table, stored.slice(i, end), batchKeys, stored[i]!.generation);
      i = end;
    }
  }
}
