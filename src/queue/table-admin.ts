import { allTables, type Config, type TableConfig } from '../config.js';
import { AppError } from '../core/errors.js';
import type { PipelineContext } from './context.js';
import { RedisCursorStore } from './cursor-store.js';
import { extractJobOptions } from './jobs.js';
import { requestSnapshot } from './cdc-snapshots.js';

/**
 * Forgets where pushsync is in a table: its cursor (and high water) and, for a CDC table, that its snapshot is done.
 * The next run reads the table from its start: everything is sent again, unchanged rows with the same event ids. The
 * keys remembered for reconciliation are kept: the destination still holds them, and a key deleted since the last
 * reconciliation is found gone only by comparing with them (the re-read adds back only keys that still exist).
 */
export async function resetTable(ctx: PipelineContext, table: TableConfig): Promise<void> {
  const source = ctx.config.sources.find((s) => s.name === table.source)!;
  // One transaction: ranges read again get new job ids (the completed jobs of the old ones would otherwise absorb
  // them), and a run under way, which may have loaded the cursor before, can no longer save it.
  await RedisCursorStore.startOver(ctx.redis, ctx.keys.cursor(table.source, table.name), ctx.keys.generation(table.source, table.name), (m) => {
    m.del(ctx.keys.state(table.source, table.name));
    // An incremental snapshot under way would share the cursor with the snapshot that starts over.
    if (table.mode === 'cdc') m.hdel(ctx.keys.cdcState(source.name, source.cdc.slot), `snapshot:${table.name}`, `resnap:${table.name}`);
    return m;
  });
}

/** A configured table by `<source>.<table as configured>`, or CONFIG_INVALID listing the names there are. */
export function tableByName(config: Config, name: string): TableConfig {
  const tables = allTables(config);
  const t = tables.find((x) => `${x.source}.${x.name}` === name);
  if (!t)
    throw new AppError(
      'CONFIG_INVALID',
      `no configured table ${name}; use <source>.<table> as in the config (${tables.map((x) => `${x.source}.${x.name}`).join(', ')})`,
    );
  return t;
}

/** Since when and why a table is paused, or null. */
export async function pausedState(
  ctx: PipelineContext,
  t: Pick<TableConfig, 'source' | 'name'>,
): Promise<{ since: string; reason?: string; schema?: boolean } | null> {
  const state = await ctx.redis.hgetall(ctx.keys.paused(t.source, t.name));
  if (state.at === undefined) return null;
  return {
    since: new Date(Number(state.at)).toISOString(),
    ...(state.reason ? { reason: state.reason } : {}),
    // Paused by a schema change (schemaChanges: freeze), not by an operator.
    ...(state.schema !== undefined ? { schema: true } : {}),
  };
}

/**
 * Pauses a table's extraction: runs that start skip it, a run in progress stops at its next page. Push jobs already
 * enqueued are still delivered, and its position is kept: `resumeTable` goes on from it. The pause lives in a key
 * of its own, so a reset or backfill of the table keeps it paused. A CDC table shares its source's stream with the
 * source's other tables and cannot be paused alone.
 */
export async function pauseTable(ctx: PipelineContext, t: TableConfig, reason?: string): Promise<void> {
  if (t.mode === 'cdc') {
    throw new AppError(
      'CONFIG_INVALID',
      `${t.source}.${t.name} is read by change data capture: its changes come in the stream of source ${t.source}, which cannot be paused for one table`,
    );
  }
  await ctx.redis.hset(ctx.keys.paused(t.source, t.name), { at: String(Date.now()), ...(reason ? { reason } : {}) });
}

/**
 * Ends a pause unless a schema change froze the table: the check and the delete are one script, so a freeze written
 * in between cannot be deleted with the pause (-1: frozen, else how many keys it deleted).
 */
const RESUME = `if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end return redis.call('DEL', KEYS[1])`;

/** Ends an operator's pause. A pause by a schema change (`schemaChanges: freeze`) ends with `pushsync schema accept` only. */
export async function resumeTable(ctx: PipelineContext, t: TableConfig): Promise<boolean> {
  // The field schema-watch.ts names FROZEN_FIELD; not imported, as schema-watch.ts imports this file.
  const deleted = (await ctx.redis.eval(RESUME, 1, ctx.keys.paused(t.source, t.name), 'schema')) as number;
  if (deleted < 0) {
    throw new AppError(
      'CONFIG_INVALID',
      `${t.source}.${t.name} is frozen by a schema change (schemaChanges: freeze): "pushsync schema accept --table ${t.source}.${t.name}" sends it on with its new shape`,
    );
  }
  return deleted > 0;
}

/**
 * Reads one table again from its start while every other table, and every change stream, keeps syncing. A
 * watermark table is read under a new generation (`resetTable`) by a run started now. A CDC table gets an
 * incremental snapshot: its source's CDC reader reads it in key ranges interleaved with its stream, so no change is
 * lost and no snapshot row overwrites a newer change (cdc-snapshots.ts). Rows re-read are sent again (unchanged rows
 * with the same event ids for a watermark table), through the configuration in force now (after a masking rule
 * changed, say). A watermark run of the table in progress fails its next cursor save (CURSOR_CONFLICT) and is
 * retried from the new start.
 */
export async function backfillTable(ctx: PipelineContext, t: TableConfig): Promise<void> {
  if (t.mode === 'cdc') {
    const source = ctx.config.sources.find((s) => s.name === t.source)!;
    await requestSnapshot(ctx, ctx.keys.cdcState(source.name, source.cdc.slot), t, 'backfill');
    return;
  }
  await resetTable(ctx, t);
  await ctx.extractQueue.add(
    `${t.source}.${t.name} (backfill)`,
    { v: 1, kind: 'table', source: t.source, table: t.name, reason: 'manual' },
    extractJobOptions(ctx.config.extract.attempts),
  );
}
