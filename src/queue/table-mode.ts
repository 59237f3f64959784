import type { TableConfig } from '../config.js';
import { parseCursor } from '../core/cursor.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { restartGeneration } from './generations.js';
import { resetTable } from './table-admin.js';

/**
 * A table's mode can change between runs (`mode: cdc` ↔ watermark). Its cursor and its records belong to the mode
 * that wrote them, so the first run in the new mode starts the table over instead of continuing what the other mode
 * left:
 *
 * - **Watermark → CDC.** The snapshot would otherwise continue from the watermark cursor (a position the snapshot's
 *   key order knows nothing of). The table is snapshotted from the start; CDC orderings (`~…`) sort after every
 *   watermark ordering, so the snapshot's rows become the current state.
 * - **CDC → watermark.** Watermark sync would otherwise continue after the snapshot's last key and read nothing ever
 *   again; and every watermark ordering sorts before every CDC one, so even a full re-read would never become the
 *   current state. The table starts a new generation (the silver view keeps only the newest one) and is read again
 *   from the start. It waits until the CDC change jobs of the table still undelivered are delivered, so that no
 *   record of the CDC era is sent in the new generation.
 *
 * The mode a table's state belongs to is kept in Redis (`tableMode`). Tables whose state was written before it was
 * kept are recognised by their cursor: a CDC snapshot's is in the `pk` phase, a watermark run's never is.
 */
export type TableMode = 'watermark' | 'cdc';

/** The mode the table's stored state belongs to, from the recorded mode or else the cursor; null when unknown. */
export function storedMode(recorded: string | null, cursor: string | null, where: string): TableMode | null {
  if (recorded === 'watermark' || recorded === 'cdc') return recorded;
  if (cursor === null) return null;
  return parseCursor(cursor, where).phase === 'pk' ? 'cdc' : 'watermark';
}

/** Records that the table's state belongs to `mode`. */
export async function recordMode(ctx: PipelineContext, table: Pick<TableConfig, 'source' | 'name'>, mode: TableMode): Promise<void> {
  await ctx.redis.set(ctx.keys.tableMode(table.source, table.name), mode);
}

/** A CDC table whose state a watermark run left: its snapshot starts from the start. */
export async function startCdcOver(ctx: PipelineContext, table: TableConfig, log: Logger): Promise<void> {
  log.warn(`${table.source}.${table.name}: synced by watermark until now; snapshotting it from the start for change data capture`);
  await resetTable(ctx, table);
  await recordMode(ctx, table, 'cdc');
}

/**
 * A watermark table whose state a CDC run left. With `pending` undelivered jobs it waits (false): those may be CDC
 * change jobs, which must land in the old generation. Otherwise starts a new generation, starts the table over
 * and records the mode (true); a crash in between repeats the switch, which only re-reads the table once more.
 */
export async function startWatermarkOver(
  ctx: PipelineContext,
  table: TableConfig,
  identity: string | null | undefined,
  pending: number,
  log: Logger,
): Promise<boolean> {
  const name = `${table.source}.${table.name}`;
  if (pending > 0) {
    log.warn(
      { pending },
      `${name}: moved from change data capture to watermark sync; waiting for its ${pending} undelivered batch(es) before reading it again ` +
        `(a failed one waits in the dead-letter queue: retry or remove it)`,
    );
    return false;
  }
  const generation = await restartGeneration(ctx, table, identity);
  await resetTable(ctx, table);
  await recordMode(ctx, table, 'watermark');
  log.warn(
    { generation },
    `${name}: moved from change data capture to watermark sync; reading it again from the start as table generation ${generation}`,
  );
  return true;
}
