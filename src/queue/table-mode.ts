import type { TableConfig } from '../config.js';
import { parseCursor } from '../core/cursor.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { announceGeneration, tableGeneration } from './generations.js';
import type { ChangesPushJob, RangePushJob } from './jobs.js';
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

function cursorPhase(cursor: string | null, where: string): string | null {
  return cursor === null ? null : parseCursor(cursor, where).phase;
}

/**
 * What a watermark run of the table must do first: nothing (`ready`), the switch from CDC (`switch`), or the end of
 * a switch a crash interrupted, the mode recorded but the CDC cursor still there (`finish`).
 */
export function watermarkStart(
  recorded: string | null,
  cursor: string | null,
  cdcSnapshotDone: boolean,
  where: string,
): 'ready' | 'switch' | 'finish' {
  const phase = cursorPhase(cursor, where);
  if (recorded === 'watermark') return phase === 'pk' ? 'finish' : 'ready';
  if (recorded === 'cdc') return 'switch';
  return phase === 'pk' || cdcSnapshotDone ? 'switch' : 'ready';
}

/** The mode the table's stored state belongs to, as a CDC run sees it; null when nothing tells. */
export function storedMode(recorded: string | null, cursor: string | null, where: string): TableMode | null {
  if (recorded === 'watermark' || recorded === 'cdc') return recorded;
  const phase = cursorPhase(cursor, where);
  return phase === null ? null : phase === 'pk' ? 'cdc' : 'watermark';
}

/** Records that the table's state belongs to `mode`. */
export async function recordMode(ctx: PipelineContext, table: Pick<TableConfig, 'source' | 'name'>, mode: TableMode): Promise<void> {
  await ctx.redis.set(ctx.keys.tableMode(table.source, table.name), mode);
}

/**
 * A CDC table whose state a watermark run left: its snapshot starts from the start. The mode is recorded last: a
 * crash before it repeats the reset.
 */
export async function startCdcOver(ctx: PipelineContext, table: TableConfig, log: Logger): Promise<void> {
  log.warn(`${table.source}.${table.name}: synced by watermark until now; snapshotting it from the start for change data capture`);
  await resetTable(ctx, table);
  await recordMode(ctx, table, 'cdc');
}

/**
 * KEYS[1]: the table's mode, KEYS[2]: its generations; ARGV[1]: the relation's identity ('' if none). Records the
 * watermark mode and the next generation (given to the identity itself, and as the latest) in one step, so a push
 * worker that reads the new generation reads the new mode too (see `jobFate`).
 */
const SWITCH_TO_WATERMARK = `
redis.call('SET', KEYS[1], 'watermark')
local n = tonumber(redis.call('HGET', KEYS[2], '#') or '0') + 1
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], n) end
redis.call('HSET', KEYS[2], '#', n)
return n`;

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
  const generation =
    step === 'switch'
      ? Number(
          await ctx.redis.eval(
            SWITCH_TO_WATERMARK,
            2,
            ctx.keys.tableMode(table.source, table.name),
            ctx.keys.generations(table.source, table.name),
            identity ?? '',
          ),
        )
      : await tableGeneration(ctx, table, identity);
  await announceGeneration(ctx, table, generation, null);
  await resetTable(ctx, table);
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
  if ((recorded === 'watermark' || recorded === 'cdc') && job !== recorded) return 'superseded';
  if (job === 'watermark' && configured === 'cdc') return 'wait';
  return 'send';
}
