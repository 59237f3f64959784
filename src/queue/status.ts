import { allTables, type TableConfig } from '../config.js';
import { parseCursor, type Cursor } from '../core/cursor.js';
import { progress } from '../core/progress.js';
import type { TableStatus } from '../core/table-status.js';
import type { PipelineContext } from './context.js';
import { PendingSet } from './pending.js';
import { pausedState } from './table-admin.js';
import { recentSchemaChanges } from './schema-watch.js';
import { readerFailure } from './cdc-health.js';

/** Every configured table's status, from Redis alone (no source is queried), and the dead-letter count. */
export async function pipelineStatus(ctx: PipelineContext, now = Date.now()): Promise<{ tables: TableStatus[]; deadLetters: number }> {
  const failed = await ctx.pushQueue.getFailed();
  const failedBy = new Map<string, number>();
  for (const job of failed) {
    const data = job?.data as { source?: string; table?: string } | undefined;
    const key = `${data?.source}.${data?.table}`;
    failedBy.set(key, (failedBy.get(key) ?? 0) + 1);
  }
  const tables = await Promise.all(allTables(ctx.config).map((t) => tableStatus(ctx, t, failedBy.get(`${t.source}.${t.name}`) ?? 0, now)));
  return { tables, deadLetters: failed.length };
}

const iso = (ms: string | undefined): string | null => (ms === undefined ? null : new Date(Number(ms)).toISOString());

async function tableStatus(ctx: PipelineContext, t: TableConfig, failedBatches: number, now: number): Promise<TableStatus> {
  const pendingSet = new PendingSet(ctx.redis, ctx.keys.pending(t.source, t.name));
  const source = ctx.config.sources.find((s) => s.name === t.source)!;
  const [state, rawCursor, pendingBatches, oldest, cdc, paused, schemaChanges] = await Promise.all([
    ctx.redis.hgetall(ctx.keys.state(t.source, t.name)),
    ctx.redis.get(ctx.keys.cursor(t.source, t.name)),
    pendingSet.count(),
    pendingSet.oldest(),
    t.mode === 'cdc' ? ctx.redis.hgetall(ctx.keys.cdcState(source.name, source.cdc.slot)) : Promise.resolve(undefined),
    pausedState(ctx, t),
    recentSchemaChanges(ctx, t),
  ]);
  const lagSince = oldest ?? (state.caughtUpAt !== undefined ? Number(state.caughtUpAt) : undefined);
  const lastRun =
    state.lastRunAt === undefined
      ? null
      : {
          at: iso(state.lastRunAt)!,
          rows: Number(state.lastRunRows ?? 0),
          seconds: Number(state.lastRunMs ?? 0) / 1000,
          rowsPerSecond: Number(state.lastRunMs) > 0 ? Math.round((Number(state.lastRunRows ?? 0) / Number(state.lastRunMs)) * 1000) : 0,
        };
  const backfill =
    state.backfillStartedAt === undefined
      ? null
      : {
          ...progress(
            Number(state.backfillRows ?? 0),
            state.backfillTotal !== undefined ? { rows: Number(state.backfillTotal), exact: state.backfillExact === 'true' } : null,
            lastRun?.rows ?? 0,
            (lastRun?.seconds ?? 0) * 1000,
          ),
          startedAt: iso(state.backfillStartedAt)!,
          // A CDC table's backfill is its initial snapshot, done once the snapshot has been read to its end.
          done: state.caughtUpAt !== undefined || (t.mode === 'cdc' && cdc?.[`snapshot:${t.name}`] !== undefined),
        };
  const position = t.mode === 'cdc' ? cdcPosition(t, cdc ?? {}) : watermarkPosition(t, parseCursor(rawCursor, `${t.source}.${t.name}`));
  const reader = t.mode === 'cdc' ? readerFailure(cdc ?? {}) : null;
  return {
    source: t.source,
    table: t.name,
    target: t.target,
    mode: t.mode,
    state: paused
      ? 'paused'
      : reader
        ? 'failing'
        : (state.caughtUpAt === undefined && t.mode === 'watermark') || (t.mode === 'cdc' && cdc?.[`snapshot:${t.name}`] === undefined)
          ? 'backfilling'
          : failedBatches > 0
            ? 'failing'
            : pendingBatches > 0
              ? 'behind'
              : 'current',
    position,
    lastRun,
    lagSeconds: lagSince === undefined ? null : Math.max(0, Math.round((now - lagSince) / 100) / 10),
    pendingBatches,
    failedBatches,
    // A CDC table's last success: when its reader last recorded the stream as taken up to a position.
    lastSuccessAt: t.mode === 'cdc' ? iso(cdc?.ackedAt) : iso(state.caughtUpAt),
    backfill: backfill && backfill.done ? { ...backfill, total: backfill.rows, percent: 100, etaSeconds: 0 } : backfill,
    paused,
    schemaChanges,
    reader,
  };
}

function watermarkPosition(t: TableConfig, cursor: Cursor): string {
  if (cursor.after === null)
    return cursor.phase === 'null'
      ? 'not started: the next run reads the table from its start'
      : `every row with a NULL ${t.watermark} read; next: rows by ${t.watermark}`;
  const key = `(${cursor.after.pk.join(', ')})`;
  return cursor.phase === 'null'
    ? `reading rows whose ${t.watermark} is NULL, past key ${key}`
    : `read up to ${t.watermark} ${cursor.after.wm}, key ${key}`;
}

function cdcPosition(t: TableConfig, cdc: Record<string, string>): string {
  const snapshot = cdc[`snapshot:${t.name}`];
  const acked = cdc.ackedLsn ? `, changes acknowledged up to ${cdc.ackedLsn}` : '';
  const again = cdc[`resnap:${t.name}`];
  if (again) {
    const r = JSON.parse(again) as { reason: string; requestedAt: string; startedAt?: string };
    const when = r.startedAt ? `under way since ${r.startedAt}` : `requested ${r.requestedAt}`;
    return `snapshot again (${r.reason}) ${when}, interleaved with the stream${acked}`;
  }
  return `${snapshot ? `snapshot done ${snapshot}` : 'snapshot pending'}${acked}`;
}
