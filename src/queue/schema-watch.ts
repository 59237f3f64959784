import { createHash } from 'node:crypto';
import { allTables, type TableConfig } from '../config.js';
import { parseCursor } from '../core/cursor.js';
import { sortableWatermark } from '../core/ordering.js';
import type { TableReader } from '../core/ports.js';
import {
  announcement,
  diffShapes,
  needsAttention,
  sameShape,
  type RelationShape,
  type SchemaChangeAnnouncement,
  type ShapeChange,
} from '../core/table-shape.js';
import type { Logger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { RedisCursorStore } from './cursor-store.js';
import { pipelineValues } from './redis.js';
import { extractJobOptions, type AnnouncePushJob } from './jobs.js';
import { enqueuePushJob } from './push-jobs.js';
import { backfillTable } from './table-admin.js';
import { startGeneration, tableGeneration } from './generations.js';

/** Announcements `pushsync status` keeps per table. */
const KEPT_ANNOUNCEMENTS = 20;

/** Swaps the stored shape only if it is still the one this process compared against: one process announces a change. */
const SWAP_SHAPE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0`;

/** The pause fields that mark a schema freeze (`pushsync schema accept` ends it; `resume` does not). */
export const FROZEN_FIELD = 'schema';

/** What a freeze holds in `FROZEN_FIELD`: everything the changes since it began call for once accepted. */
interface Freeze {
  recreated: boolean;
  backfill: boolean;
  /** The kinds of change frozen on, in the order first seen. */
  kinds?: string[];
  /** How many changes the freeze holds: each one rewrites the field, so an accept can tell it from a later one. */
  changes?: number;
}

/**
 * Freezes a table, or adds a change to its freeze (KEYS[1] the pause hash; ARGV: now in ms, the change's `Freeze`
 * JSON, the reason before and after its list of kinds). A later change never clears what an earlier one calls for
 * (a re-read of a re-created table, a backfill): an accept must set off all of it. The earliest `at` stays, and a
 * reason a freeze wrote is rewritten to list every kind; an operator's reason written after the freeze is kept.
 */
const FREEZE = `
local new = cjson.decode(ARGV[2])
local stored = redis.call('HGET', KEYS[1], '${FROZEN_FIELD}')
if not stored then
  new['changes'] = 1
  redis.call('HSET', KEYS[1], 'at', ARGV[1], 'reason', ARGV[3] .. table.concat(new['kinds'], ', ') .. ARGV[4], '${FROZEN_FIELD}', cjson.encode(new))
  return 1
end
local old = cjson.decode(stored)
for k, v in pairs(new) do
  if v == true then old[k] = true elseif v == false and old[k] == nil then old[k] = false end
end
local kinds = type(old['kinds']) == 'table' and old['kinds'] or {}
local seen = {}
for _, k in ipairs(kinds) do seen[k] = true end
for _, k in ipairs(new['kinds']) do
  if not seen[k] then table.insert(kinds, k) seen[k] = true end
end
old['kinds'] = kinds
old['changes'] = (tonumber(old['changes']) or 1) + 1
redis.call('HSET', KEYS[1], '${FROZEN_FIELD}', cjson.encode(old))
if redis.call('HSETNX', KEYS[1], 'at', ARGV[1]) == 0 then
  local reason = redis.call('HGET', KEYS[1], 'reason')
  if reason and string.sub(reason, 1, #ARGV[3]) ~= ARGV[3] then return 2 end
end
redis.call('HSET', KEYS[1], 'reason', ARGV[3] .. table.concat(kinds, ', ') .. ARGV[4])
return 2
`;

/** Ends a freeze only if it is still the one read (KEYS[1] the pause hash, ARGV[1] that freeze): 1, else 0. */
const THAW = `if redis.call('HGET', KEYS[1], '${FROZEN_FIELD}') == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end return 0`;

/**
 * Compares the shape `reader` was described with against the one last seen for the table (kept in Redis, so a change
 * made while pushsync was stopped is seen too, and every process agrees), and acts on a difference once: announces
 * each change (a log line, `pushsync_schema_changes_total`, status, a record to `destination.schemaChangesTarget`)
 * and applies the table's policy. Returns true when the table is frozen by a schema change (`schemaChanges: freeze`):
 * nothing of it may be read or sent until accepted.
 *
 * A CDC table is also checked when its stream describes new columns; `streamFrom` is then the `_ordering` of the
 * first change with the new shape, announced as where it applies from. `recreated`: the stream saw the table dropped
 * and created again, which a source without relation identities (MySQL) cannot tell from its shape.
 */
export async function watchShape(
  ctx: PipelineContext,
  table: TableConfig,
  reader: TableReader,
  log: Logger,
  streamFrom?: string | null,
  recreated = false,
  /** The stored shape and the freeze field (`FROZEN_FIELD` of the pause hash), when the caller just read them. */
  known?: { stored: string | null; frozen: string | null },
): Promise<boolean> {
  const relation = reader.shape.relation;
  if (relation === undefined || (table.mode !== 'watermark' && table.mode !== 'cdc')) return false;
  const key = ctx.keys.schemaShape(table.source, table.name);
  const seen = JSON.stringify(relation);
  for (let attempt = 0; attempt < 3; attempt++) {
    // One round trip (a pipeline) for both, or none on the first attempt when the caller read them.
    const [stored, frozen] = attempt === 0 && known ? [known.stored, known.frozen] : await readShapeState(ctx, table, key);
    if (stored === null) {
      // First sight of the table: nothing to compare with.
      if ((await ctx.redis.set(key, seen, 'NX')) === 'OK') return frozen !== null;
      continue;
    }
    const before = JSON.parse(stored) as RelationShape;
    const unseenRecreation = recreated && before.identity === null && relation.identity === null;
    if (sameShape(before, relation) && !unseenRecreation) return frozen !== null;
    const changes = diffShapes(before, relation);
    if (unseenRecreation) changes.unshift({ kind: 'table_recreated', from: null, to: null });
    // Invariant: what a change calls for (a freeze, a re-read from the start) is in Redis before the new shape is
    // stored as seen, so a crash in between repeats it at the next check and never skips it. A process that loses
    // the swap may have done it too: a second re-read is harmless.
    // Read before a re-read moves the cursor back to the start.
    // A CDC table's records are read when sent: every record sent after the change has the new shape.
    const from = changes.length === 0 ? null : (streamFrom ?? (table.mode === 'cdc' ? null : await appliesFrom(ctx, table, reader)));
    // A new relation under the name starts a generation; its record waits for an accept like every job of the table.
    // Watermark orderings of two relations say nothing about each other: its record carries none there.
    const generation = changes.some((c) => c.kind === 'table_recreated')
      ? await startGeneration(ctx, table, relation.identity!, before.identity, table.mode === 'cdc' ? from : null)
      : await tableGeneration(ctx, table, relation.identity);
    const frozenNow = changes.length > 0 && (await applyPolicy(ctx, table, reader, changes, log));
    if ((await ctx.redis.eval(SWAP_SHAPE, 1, key, stored, seen)) !== 1) continue;
    if (changes.length > 0) await announce(ctx, table, reader, changes, { from, generation }, log);
    return frozenNow || frozen !== null;
  }
  // Another process kept changing the stored shape: it announced what changed; look again at the next read.
  return (await ctx.redis.hget(ctx.keys.paused(table.source, table.name), FROZEN_FIELD)) !== null;
}

async function readShapeState(ctx: PipelineContext, table: TableConfig, key: string): Promise<[string | null, string | null]> {
  const replies = await ctx.redis.pipeline().get(key).hget(ctx.keys.paused(table.source, table.name), FROZEN_FIELD).exec();
  const [stored = null, frozen = null] = pipelineValues(replies) as Array<string | null>;
  return [stored, frozen];
}

/** Where reading had reached, as an `_ordering`: rows at and after it are sent with the new shape. */
async function appliesFrom(ctx: PipelineContext, table: TableConfig, reader: TableReader): Promise<string | null> {
  const cursor = parseCursor(await ctx.redis.get(ctx.keys.cursor(table.source, table.name)), `${table.source}.${table.name}`);
  return cursor.after === null ? null : sortableWatermark(cursor.after.wm, reader.shape.watermarkKind);
}

async function announce(
  ctx: PipelineContext,
  table: TableConfig,
  reader: TableReader,
  changes: ShapeChange[],
  { from: appliesFrom, generation }: { from: string | null; generation: number },
  log: Logger,
): Promise<void> {
  const leaving = new Set((reader.shape.outgoing ?? reader.shape.columns).map((c) => c.name));
  const at = {
    source: table.source,
    table: table.name,
    detectedAt: new Date().toISOString(),
    appliesFrom,
    sent: (column: string) => leaving.has(column),
  };
  const frozen =
    table.schemaChanges === 'freeze'
      ? `; ${table.source}.${table.name} is frozen until "pushsync schema accept --table ${table.source}.${table.name}"`
      : '';
  const records = changes.map((c) => {
    const a = announcement(c, at);
    return { ...a, note: a.note + frozen };
  });
  for (const [i, a] of records.entries()) {
    const fields = { schemaChange: a, policy: table.schemaChanges };
    if (needsAttention(changes[i]!)) log.warn(fields, `schema change of ${table.source}.${table.name}: ${a.note}`);
    else log.info(fields, `schema change of ${table.source}.${table.name}: ${a.note}`);
    ctx.metrics.schemaChanges.inc({ source: table.source, table: table.name, kind: a.kind });
  }
  const list = ctx.keys.schemaChanges(table.source, table.name);
  await ctx.redis
    .multi()
    .lpush(list, ...records.map((r) => JSON.stringify(r)))
    .ltrim(list, 0, KEPT_ANNOUNCEMENTS - 1)
    .exec();
  await enqueueAnnouncement(ctx, table, records, generation);
}

async function enqueueAnnouncement(ctx: PipelineContext, table: TableConfig, records: SchemaChangeAnnouncement[], generation: number): Promise<void> {
  const data: AnnouncePushJob = {
    v: 1,
    generation,
    source: table.source,
    table: table.name,
    target: ctx.config.destination.schemaChangesTarget,
    rows: records.length,
    cutAt: new Date().toISOString(),
    announce: records,
  };
  const id = createHash('sha256').update(JSON.stringify(records)).digest('hex').slice(0, 32);
  await enqueuePushJob(ctx, `s-${id}`, data, { countRows: false });
}

async function applyPolicy(ctx: PipelineContext, table: TableConfig, reader: TableReader, changes: ShapeChange[], log: Logger): Promise<boolean> {
  const where = `${table.source}.${table.name}`;
  const leaving = new Set((reader.shape.outgoing ?? reader.shape.columns).map((c) => c.name));
  const recreated = changes.some((c) => c.kind === 'table_recreated');
  const added = changes.some((c) => c.kind === 'column_added' && leaving.has(c.column));
  const backfill = !recreated && added && table.onAddedColumn === 'backfill';
  if (table.schemaChanges === 'freeze') {
    // Merged into a freeze already pending: the accept to come must set off what every change since it began calls for.
    const freeze: Freeze = { recreated, backfill, kinds: [...new Set(changes.map((c) => c.kind))] };
    await ctx.redis.eval(
      FREEZE,
      1,
      ctx.keys.paused(table.source, table.name),
      String(Date.now()),
      JSON.stringify(freeze),
      'schema changed (',
      `) and schemaChanges is freeze: pushsync schema accept --table ${where}`,
    );
    log.warn({ source: table.source, table: table.name }, `${where} frozen by a schema change until "pushsync schema accept --table ${where}"`);
    return true;
  }
  await afterAccepted(ctx, table, { recreated, backfill }, log);
  return false;
}

/** What an accepted change sets off: a re-created table is read again from its start, an added column may backfill. */
export async function afterAccepted(
  ctx: PipelineContext,
  table: TableConfig,
  todo: { recreated: boolean; backfill: boolean },
  log: Logger,
): Promise<void> {
  const where = `${table.source}.${table.name}`;
  if (table.mode === 'cdc') {
    // Snapshotted again while the stream flows (cdc-snapshots.ts); the stream's reader already asked for a
    // re-created table, with the position its changes stop applying at.
    if (todo.backfill) await backfillTable(ctx, table);
    return;
  }
  if (todo.recreated) {
    await restartTable(ctx, table);
    log.warn({ source: table.source, table: table.name }, `${where} was re-created: reading it again from its start`);
  } else if (todo.backfill) {
    await backfillTable(ctx, table);
    log.info(
      { source: table.source, table: table.name },
      `${where}: a column was added and onAddedColumn is backfill: reading it again from its start`,
    );
  }
}

/**
 * A re-created table is a new table: its cursor (and high water, which the new table's keys owe nothing to) is
 * forgotten and it is read from its start under a new generation. The keys known to reconciliation are kept, so
 * reconciliation sends deletes for the old table's keys the new one lacks.
 */
async function restartTable(ctx: PipelineContext, table: TableConfig): Promise<void> {
  await RedisCursorStore.startOver(ctx.redis, ctx.keys.cursor(table.source, table.name), ctx.keys.generation(table.source, table.name), (m) =>
    m.del(ctx.keys.state(table.source, table.name)),
  );
  await ctx.extractQueue.add(
    `${table.source}.${table.name} (re-created)`,
    { v: 1, kind: 'table', source: table.source, table: table.name, reason: 'manual' },
    extractJobOptions(ctx.config.extract.attempts),
  );
}

/** The table's latest announcements, newest first. */
export async function recentSchemaChanges(
  ctx: PipelineContext,
  table: Pick<TableConfig, 'source' | 'name'>,
  limit = KEPT_ANNOUNCEMENTS,
): Promise<SchemaChangeAnnouncement[]> {
  const list = await ctx.redis.lrange(ctx.keys.schemaChanges(table.source, table.name), 0, limit - 1);
  return list.map((s) => JSON.parse(s) as SchemaChangeAnnouncement);
}

/**
 * What `acceptSchema` did: `accepted`, `not_frozen` (no schema change waited), or `changed_again`: the schema changed
 * once more while it ran, and the table stays frozen by the newer change until it is accepted too.
 */
export type AcceptOutcome = 'accepted' | 'not_frozen' | 'changed_again';

/**
 * Ends a schema freeze (`pushsync schema accept`): the table is extracted and sent again with its new shape, and
 * what the changes set off (a re-read of a re-created table, a backfill) starts.
 */
export async function acceptSchema(ctx: PipelineContext, table: TableConfig, log: Logger): Promise<AcceptOutcome> {
  const pausedKey = ctx.keys.paused(table.source, table.name);
  const frozen = await ctx.redis.hget(pausedKey, FROZEN_FIELD);
  if (frozen === null) return 'not_frozen';
  // Invariant: what the change calls for is in Redis before the freeze ends, so a crash in between leaves the table
  // frozen and a second accept repeats it (a second re-read is harmless), never a thawed table that skipped it.
  await afterAccepted(ctx, table, JSON.parse(frozen) as Freeze, log);
  // A change seen meanwhile rewrote the freeze (and stored its shape): ending it would let a change nobody accepted
  // through and lose what it calls for. The freeze left in place still holds what was just set off: the next accept
  // repeats it, harmlessly.
  return (await ctx.redis.eval(THAW, 1, pausedKey, frozen)) === 1 ? 'accepted' : 'changed_again';
}

/**
 * Delayed push jobs of tables frozen by a schema change: they wait for `pushsync schema accept`, so a one-shot pass
 * does not wait for them. No query at all unless a table has `schemaChanges: freeze`.
 */
export async function frozenPushJobs(ctx: PipelineContext): Promise<number> {
  const freezing = allTables(ctx.config).filter((t) => t.schemaChanges === 'freeze');
  if (freezing.length === 0) return 0;
  const frozen = new Set<string>();
  for (const t of freezing) {
    if ((await ctx.redis.hget(ctx.keys.paused(t.source, t.name), FROZEN_FIELD)) !== null) frozen.add(`${t.source}.${t.name}`);
  }
  if (frozen.size === 0) return 0;
  const delayed = await ctx.pushQueue.getDelayed();
  return delayed.filter((j) => {
    const d = j?.data as { source?: string; table?: string } | undefined;
    return frozen.has(`${d?.source}.${d?.table}`);
  }).length;
}
