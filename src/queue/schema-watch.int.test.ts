import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, type TableConfig } from '../config.js';
import type { TableReader } from '../core/ports.js';
import type { ShapeColumn } from '../core/table-shape.js';
import { closePipeline, createPipeline } from '../main.js';
import { createLogger } from '../observability/logger.js';
import type { PipelineContext } from './context.js';
import { acceptSchema, FROZEN_FIELD, watchShape } from './schema-watch.js';
import { resumeTable, pauseTable, tableByName } from './table-admin.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

const log = createLogger('silent');
const COLUMNS: ShapeColumn[] = [
  { name: 'id', type: 'integer' },
  { name: 'updated_at', type: 'timestamp without time zone' },
];
const NOTE: ShapeColumn = { name: 'note', type: 'text' };

/** A reader only described: watchShape reads its shape, never its rows. */
function reader(identity: string, columns: ShapeColumn[]): TableReader {
  return {
    shape: { relation: { identity, columns }, columns: columns.map((c) => ({ name: c.name })), watermarkKind: 'timestamp' },
  } as unknown as TableReader;
}

/**
 * `ctx` with one Redis command on the table's pause hash followed by `meanwhile`, once: what a worker does between an
 * admin command's read of the pause and its next write, run in that order instead of left to timing. Every command
 * still goes to the real Redis.
 */
function afterFirstPauseCommand(ctx: PipelineContext, pausedKey: string, meanwhile: () => Promise<unknown>): PipelineContext {
  let done = false;
  const redis = new Proxy(ctx.redis, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => Promise<unknown>;
      if (prop !== 'hget' && prop !== 'eval') return fn.bind(target);
      return async (...args: unknown[]) => {
        const reply = await fn.apply(target, args);
        const touchesPause = prop === 'hget' ? args[0] === pausedKey : args[2] === pausedKey;
        if (!done && touchesPause) {
          done = true;
          await meanwhile();
        }
        return reply;
      };
    },
  });
  return { ...ctx, redis } as PipelineContext;
}

describe('schema freeze in Redis (schemaChanges: freeze)', () => {
  let prefix: string;
  let ctx: PipelineContext;
  let table: TableConfig;
  let pausedKey: string;
  const deepCursor = JSON.stringify({ v: 1, phase: 'wm', after: { wm: '2026-11-30 10:00:00', pk: ['5000'] } });

  beforeEach(async () => {
    prefix = uniqueName('frz');
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: 'http://127.0.0.1:9/v2/stream', apiKey: 'k' },
        sources: [
          { name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: 'public.orders', watermark: 'updated_at', schemaChanges: 'freeze' }] },
        ],
      },
      {},
    );
    ctx = createPipeline(config, log);
    table = tableByName(config, 'app.public.orders');
    pausedKey = ctx.keys.paused('app', 'public.orders');
    // The shape last seen: relation 100, and reading had gone deep into it.
    await ctx.redis.set(ctx.keys.schemaShape('app', 'public.orders'), JSON.stringify({ identity: '100', columns: COLUMNS }));
    await ctx.redis.set(ctx.keys.cursor('app', 'public.orders'), deepCursor);
  });
  afterEach(async () => {
    await closePipeline(ctx);
    await dropRedisPrefix(prefix);
  });

  const restarts = async (): Promise<string[]> => (await ctx.extractQueue.getWaiting()).map((j) => j.name).filter((n) => n.includes('re-created'));

  it('a second change before the accept keeps what the first one calls for: the re-created table is read from its start', async () => {
    expect(await watchShape(ctx, table, reader('200', COLUMNS), log)).toBe(true);
    const since = await ctx.redis.hget(pausedKey, 'at');
    // A column added to the new table before anyone accepts: a change that by itself calls for no re-read.
    expect(await watchShape(ctx, table, reader('200', [...COLUMNS, NOTE]), log)).toBe(true);

    const pause = await ctx.redis.hgetall(pausedKey);
    expect(JSON.parse(pause[FROZEN_FIELD]!)).toMatchObject({ recreated: true, backfill: false, changes: 2 });
    // Frozen since the first change, for every kind seen.
    expect(pause.at).toBe(since);
    expect(pause.reason).toContain('table_recreated, column_added');

    expect(await acceptSchema(ctx, table, log)).toBe('accepted');
    expect(await ctx.redis.get(ctx.keys.cursor('app', 'public.orders'))).toBeNull();
    expect(await restarts()).toHaveLength(1);
    expect(await ctx.redis.exists(pausedKey)).toBe(0);
  });

  it('a later change never clears a backfill an added column called for', async () => {
    const backfilling = { ...table, onAddedColumn: 'backfill' as const };
    expect(await watchShape(ctx, backfilling, reader('100', [...COLUMNS, NOTE]), log)).toBe(true);
    expect(await watchShape(ctx, backfilling, reader('100', [COLUMNS[0]!, { ...COLUMNS[1]!, type: 'timestamp with time zone' }, NOTE]), log)).toBe(
      true,
    );
    expect(JSON.parse((await ctx.redis.hget(pausedKey, FROZEN_FIELD))!)).toMatchObject({ recreated: false, backfill: true });
    expect(await acceptSchema(ctx, backfilling, log)).toBe('accepted');
    expect((await ctx.extractQueue.getWaiting()).map((j) => j.name)).toEqual(['app.public.orders (backfill)']);
  });

  it('a change seen while the accept runs stays frozen, and the next accept sets off what it calls for', async () => {
    // Change 1: id widened to bigint; nothing to re-read.
    const wider = [{ name: 'id', type: 'bigint' }, COLUMNS[1]!];
    expect(await watchShape(ctx, table, reader('100', wider), log)).toBe(true);
    // Between the accept's read of the freeze and its end, a worker sees the table re-created (relation 300).
    const admin = afterFirstPauseCommand(ctx, pausedKey, () => watchShape(ctx, table, reader('300', wider), log));

    expect(await acceptSchema(admin, table, log)).toBe('changed_again');
    expect(JSON.parse((await ctx.redis.hget(pausedKey, FROZEN_FIELD))!)).toMatchObject({ recreated: true });
    // The worker stored the new shape, so no later check would freeze the table again: the freeze left is the only
    // record of the re-creation.
    expect(await watchShape(ctx, table, reader('300', wider), log)).toBe(true);
    expect(await restarts()).toHaveLength(0);

    expect(await acceptSchema(ctx, table, log)).toBe('accepted');
    expect(await restarts()).toHaveLength(1);
    expect(await ctx.redis.get(ctx.keys.cursor('app', 'public.orders'))).toBeNull();
    expect(await acceptSchema(ctx, table, log)).toBe('not_frozen');
  });

  it('a change calling for nothing to re-read, seen while the accept runs, still keeps the table frozen', async () => {
    const wider = [{ name: 'id', type: 'bigint' }, COLUMNS[1]!];
    expect(await watchShape(ctx, table, reader('100', wider), log)).toBe(true);
    const admin = afterFirstPauseCommand(ctx, pausedKey, () => watchShape(ctx, table, reader('100', [...wider, NOTE]), log));
    expect(await acceptSchema(admin, table, log)).toBe('changed_again');
    expect(await ctx.redis.hget(pausedKey, FROZEN_FIELD)).not.toBeNull();
    expect(await acceptSchema(ctx, table, log)).toBe('accepted');
  });

  it('a resume keeps a freeze written while it runs', async () => {
    await pauseTable(ctx, table, 'maintenance');
    const admin = afterFirstPauseCommand(ctx, pausedKey, () => watchShape(ctx, table, reader('200', COLUMNS), log));

    await resumeTable(admin, table);
    expect(JSON.parse((await ctx.redis.hget(pausedKey, FROZEN_FIELD))!)).toMatchObject({ recreated: true });
    await expect(resumeTable(ctx, table)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(await acceptSchema(ctx, table, log)).toBe('accepted');
    expect(await restarts()).toHaveLength(1);
  });

  it('a resume ends an operator pause as before', async () => {
    await pauseTable(ctx, table, 'maintenance');
    expect(await resumeTable(ctx, table)).toBe(true);
    expect(await resumeTable(ctx, table)).toBe(false);
    expect(await ctx.redis.exists(pausedKey)).toBe(0);
  });
});
