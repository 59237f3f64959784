import type { TableConfig } from '../config.js';
import type { RowRules } from '../core/row-rules.js';
import type { PipelineContext } from './context.js';
import { RedisFilterLedger } from './filter-ledger.js';

/**
 * A table's per-row rules for the push worker: its transform, and the Redis ledger of its filter when it has one
 * (a `where` or a transform, which can drop rows), that of the table generation the records belong to. Undefined
 * for tables with neither.
 */
export async function tableRules(ctx: PipelineContext, table: TableConfig, generation: number): Promise<RowRules | undefined> {
  const filtered = table.where !== undefined || table.transform !== undefined;
  if (!filtered) return undefined;
  return {
    transform: table.transform === undefined ? undefined : await ctx.transforms(table.transform),
    ledger: new RedisFilterLedger(ctx.redis, ctx.keys.filterLedger(table.source, table.name, generation), table.onFilteredOut ?? 'delete'),
  };
}
