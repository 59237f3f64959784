import type { TableConfig } from '../config.js';
import type { PipelineContext } from './context.js';
import { RedisCursorStore } from './cursor-store.js';

/**
 * Forgets what pushsync knows of a table: its cursor (and high water), the keys remembered for reconciliation and,
 * for a CDC table, that its snapshot is done. The next run reads the table from its start: everything is sent
 * again, unchanged rows with the same event ids.
 */
export async function resetTable(ctx: PipelineContext, table: TableConfig): Promise<void> {
  await RedisCursorStore.clear(ctx.redis, ctx.keys.cursor(table.source, table.name));
  // Ranges read again get new job ids: the completed jobs of the old ones would otherwise absorb them.
  await ctx.redis.incr(ctx.keys.generation(table.source, table.name));
  await ctx.redis.del(ctx.keys.knownKeys(table.source, table.name), ctx.keys.state(table.source, table.name));
  if (table.mode === 'cdc') {
    const source = ctx.config.sources.find((s) => s.name === table.source)!;
    await ctx.redis.hdel(ctx.keys.cdcState(source.name, source.cdc.slot), `snapshot:${table.name}`);
  }
}
