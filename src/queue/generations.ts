import { createHash } from 'node:crypto';
import type { TableConfig } from '../config.js';
import type { PipelineContext } from './context.js';
import type { BoundaryPushJob } from './jobs.js';
import { enqueuePushJob } from './push-jobs.js';

/**
 * Table generations: which relation under a table's name the records come from. The relation pushsync first sees
 * is generation 0; a relation with another identity (the table dropped and created again) starts the next one. A
 * re-read of the same relation (a backfill, a reset, a re-snapshot) keeps its generation, except the two that
 * `restartGeneration` and the switch from CDC to watermark (table-mode.ts) start: older records can no longer be
 * ordered against them. Every record carries its generation (`_generation`), and a new generation is announced to the
 * table's own target by one `table_recreated` record, so the silver view keeps only the newest generation's keys even
 * when the new table is empty (core/views.ts).
 *
 * Not the counter `ctx.keys.generation`, which numbers re-reads so that their push job ids are new.
 */

/**
 * ARGV[1]: the relation's identity; ARGV[2]: the identity recorded before it ('' if none). An identity keeps the
 * generation it got. On a first call (an empty hash) the recorded identity, if any and different, is generation 0
 * and the current one 1: a table re-created while pushsync was stopped, or before generations existed.
 */
const ASSIGN = `
local g = redis.call('HGET', KEYS[1], ARGV[1])
if g then return tonumber(g) end
local latest = redis.call('HGET', KEYS[1], '#')
if not latest then
  if ARGV[2] == '' or ARGV[2] == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[1], 0, '#', 0)
    return 0
  end
  redis.call('HSET', KEYS[1], ARGV[2], 0)
  latest = 0
end
local n = tonumber(latest) + 1
redis.call('HSET', KEYS[1], ARGV[1], n, '#', n)
return n`;

/**
 * The generation of the relation with `identity` under the table's name, assigned on first sight. Without an
 * identity (a custom SQL table, an engine that has none) the latest generation: re-creations are not told apart.
 */
export async function tableGeneration(
  ctx: PipelineContext,
  table: Pick<TableConfig, 'source' | 'name'>,
  identity: string | null | undefined,
  previous?: string | null,
): Promise<number> {
  const key = ctx.keys.generations(table.source, table.name);
  if (identity === null || identity === undefined) return Number((await ctx.redis.hget(key, '#')) ?? 0);
  return Number(await ctx.redis.eval(ASSIGN, 1, key, identity, previous ?? ''));
}

/**
 * A relation under the table's name replaced another (`previous`): assigns its generation and enqueues the
 * generation's `table_recreated` record to the table's target, `ordering` its `_ordering` (where the change stream
 * had reached; null in watermark mode, where orderings of two relations say nothing about each other). Idempotent:
 * every detector of the re-creation may call it, and a crash before the detection is recorded calls it again.
 * Returns the new generation.
 */
export async function startGeneration(
  ctx: PipelineContext,
  table: TableConfig,
  identity: string,
  previous: string | null,
  ordering: string | null,
): Promise<number> {
  const generation = await tableGeneration(ctx, table, identity, previous);
  if (generation === 0) return 0;
  await announceGeneration(ctx, table, generation, ordering);
  return generation;
}

/**
 * KEYS[1]: the table's generations, KEYS[2] (optional): a key set to ARGV[2] in the same step; ARGV[1]: the
 * relation's identity ('' if none). The next generation, given to the identity itself (and recorded as the latest),
 * so the same relation's records from now on are a new generation.
 */
const RESTART = `
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2]) end
local n = tonumber(redis.call('HGET', KEYS[1], '#') or '0') + 1
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], n) end
redis.call('HSET', KEYS[1], '#', n)
return n`;

/**
 * Starts a new generation for the same relation: what was sent of it before no longer decides its current state,
 * and the caller reads the whole table again (a CDC table snapshotted again by a new stream, whose snapshot cannot
 * see the keys deleted while no stream ran; a table whose mode changed, table-mode.ts). Announced like a re-created
 * table's. `also`: a key set in the same step, for a reader that must never see the new generation without it.
 * Returns the new generation.
 */
export async function restartGeneration(
  ctx: PipelineContext,
  table: TableConfig,
  identity: string | null | undefined,
  also?: { key: string; value: string },
): Promise<number> {
  const generations = ctx.keys.generations(table.source, table.name);
  const generation = Number(
    also === undefined
      ? await ctx.redis.eval(RESTART, 1, generations, identity ?? '')
      : await ctx.redis.eval(RESTART, 2, generations, also.key, identity ?? '', also.value),
  );
  await announceGeneration(ctx, table, generation, null);
  return generation;
}

/** Enqueues the `table_recreated` record that starts `generation` in the table's target (idempotent by its id). */
export async function announceGeneration(ctx: PipelineContext, table: TableConfig, generation: number, ordering: string | null): Promise<void> {
  const data: BoundaryPushJob = {
    v: 1,
    source: table.source,
    table: table.name,
    target: table.target,
    rows: 1,
    cutAt: new Date().toISOString(),
    boundary: { generation, ordering },
  };
  const id = createHash('sha256')
    .update(JSON.stringify([table.source, table.name, generation]))
    .digest('hex')
    .slice(0, 32);
  await enqueuePushJob(ctx, `g-${id}`, data, { countRows: false });
}
