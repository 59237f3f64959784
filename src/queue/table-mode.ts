import type { TableConfig } from '../config.js';
import { parseCursor } from '../core/cursor.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { announceGeneration, restartGeneration, tableGeneration } from './generations.js';
import type { ChangesPushJob, RangePushJob } from './jobs.js';
import { resetTable } from './table-admin.js';

/**
 * A table's mode can change between runs (`mode: cdc` ↔ watermark). Its cursor and its records belong to the mode
 * that wrote them, so the first run in the new mode starts the table over instead of continuing what the other mode
 * left:
 *
 * - **Watermark → CDC.** The snapshot would otherwise continue from the watermark cursor (a position the snapshot's
 *   key order knows nothing of). The table starts a new generation and is snapshotted from the start: the snapshot
 *   cannot send the deletes reconciliation had still to send, which are superseded.
 * - **CDC → watermark.** Watermark sync would otherwise continue after the snapshot's last key and read nothing ever
 *   again; and every watermark ordering sorts before every CDC one, so even a full re-read would never become the
 *   current state. The table starts a new generation (the silver view keeps only the newest one) and is read again
 *   from the start.
 *
 * Push jobs of the mode left behind are superseded once the switch is recorded (`jobFate`): the new mode reads every
 * row again, and a CDC change sent in the new generation would outrank every watermark version of its key.
 *
 * The mode a table's state belongs to is kept in Redis (`tableMode`). For state written before it was kept, a CDC
 * snapshot's cursor (the `pk` phase, which watermark runs never write) or a finished CDC snapshot recorded in the
 * source's change stream state tells that change data capture synced the table.
 */
export type TableMode = 'watermark' | 'cdc';

/** Recorded while a switch to watermark is under way, until the table's reset is done (`startWatermarkOver`). */
const SWITCHING_TO_WATERMARK = 'watermark-pending';

/** The recorded mode, a switch under way counting as its new mode; null for anything else. */
function modeOf(recorded: string | null): TableMode | null {
  if (recorded === SWITCHING_TO_WATERMARK) return 'watermark';
  return recorded === 'watermark' || recorded === 'cdc' ? recorded : null;
}

function cursorPhase(cursor: string | null, where: string): string | null {
  return cursor === null ? null : parseCursor(cursor, where).phase;
}

/**
 * What a watermark run of the table must do first: nothing (`ready`), the switch from CDC (`switch`), or the end of
 * a switch a crash interrupted before the table was reset (`finish`).
 */
export function watermarkStart(
  recorded: string | null,
  cursor: string | null,
  cdcSnapshotDone: boolean,
  where: string,
): 'ready' | 'switch' | 'finish' {
  if (recorded === SWITCHING_TO_WATERMARK) return 'finish';
  if (recorded === 'watermark') return 'ready';
  if (recorded === 'cdc') return 'switch';
  return cursorPhase(cursor, where) === 'pk' || cdcSnapshotDone ? 'switch' : 'ready';
}

/** The mode the table's stored state belongs to, as a CDC run sees it; null when nothing tells. */
export function storedMode(recorded: string | null, cursor: string | null, where: string): TableMode | null {
  const mode = modeOf(recorded);
  if (mode !== null) return mode;
  const phase = cursorPhase(cursor, where);
  return phase === null ? null : phase === 'pk' ? 'cdc' : 'watermark';
}

/** Records that the table's state belongs to `mode`. */
export async function recordMode(ctx: PipelineContext, table: Pick<TableConfig, 'source' | 'name'>, mode: TableMode): Promise<void> {
  await ctx.redis.set(ctx.keys.tableMode(table.source, table.name), mode);
}

/**
 * A CDC table whose state a watermark run left: a new generation, and its snapshot starts from the start. A new
 * generation because the snapshot cannot send the deletes the watermark side still had to send (reconciliation's,
 * which are not sent once the switch is recorded), and because the change stream tags changes with the generation
 * of `identity`, the stream's own identity of the relation (an engine whose tables have none under watermark sync
 * would otherwise leave it on an older generation than the table's, and every change would count as stale). The
 * mode is recorded last: a crash before it repeats the switch, which only starts one more generation.
 */
export async function startCdcOver(ctx: PipelineContext, table: TableConfig, identity: string | null | undefined, log: Logger): Promise<void> {
  const generation = await restartGeneration(ctx, table, identity);
  await resetTable(ctx, table);
  await recordMode(ctx, table, 'cdc');
  log.warn(
    { generation },
    `${table.source}.${table.name}: synced by watermark until now; snapshotting it from the start for change data capture as table generation ${generation}`,
  );
}

/**
 * A watermark table whose state CDC left (`watermarkStart`): starts a new generation, announced like a re-created
 * table's, and reads the table again from the start. `finish` completes a switch a crash interrupted: the
 * generation already started, its announcement (idempotent) and the reset are done again.
 */
export async function startWatermarkOver(
  ctx: PipelineContext,
  table: TableConfig,
  identity: string | null | undefined,
  step: 'switch' | 'finish',
  log: Logger,
): Promise<void> {
  // The mode is recorded with the new generation in one step, so a push worker that reads the new generation reads
  // the new mode too (`jobFate`). `finish`: the generation started; its announcement is idempotent.
  const generation =
    step === 'switch'
      ? await restartGeneration(ctx, table, identity, { key: ctx.keys.tableMode(table.source, table.name), value: SWITCHING_TO_WATERMARK })
      : await tableGeneration(ctx, table, identity);
  if (step === 'finish') await announceGeneration(ctx, table, generation, null);
  await resetTable(ctx, table);
  // Last: until then a crash finishes the switch at the next run (the announcement is idempotent).
  await recordMode(ctx, table, 'watermark');
  log.warn(
    { generation },
    `${table.source}.${table.name}: moved from change data capture to watermark sync; reading it again from the start as table generation ${generation}`,
  );
}

/**
 * The mode a push job's rows belong to. A CDC table's snapshot ranges are in the `pk` phase and its change jobs carry
 * CDC orderings (`~…`); a watermark table's ranges are in the `null` and `wm` phases, and its change jobs are the
 * deletes reconciliation found, ordered by a timestamp watermark.
 */
export function jobMode(data: RangePushJob | ChangesPushJob): TableMode {
  if ('range' in data) return data.range.phase === 'pk' ? 'cdc' : 'watermark';
  return data.changes[0]!.ordering.startsWith('~') ? 'cdc' : 'watermark';
}

/**
 * What a push worker does with a job of `job`'s mode, given the mode the table's state belongs to (`recorded`) and
 * its configured one. A job of the mode the table left, once the switch is recorded, is superseded: the new mode
 * reads every row again. A watermark job of a table configured for CDC before the switch is recorded waits for it:
 * the table cannot be read by its watermark any more, and the job may still be needed if the change is undone.
 */
export function jobFate(job: TableMode, recorded: string | null, configured: TableMode): 'send' | 'superseded' | 'wait' {
  const mode = modeOf(recorded);
  if (mode !== null && job !== mode) return 'superseded';
  if (job === 'watermark' && configured === 'cdc') return 'wait';
  return 'send';
}
