import { tableSpec, type TableConfig } from '../config.js';
import { isAppError } from '../core/errors.js';
import type { PipelineContext } from './context.js';
import { findSource } from './context.js';
import { watchShape } from './schema-watch.js';

/**
 * A change stream described new columns (or a new identity) for a table: the table's shape is read from the catalog
 * and compared with the one last seen, through the same path as every push attempt, so each change is announced once
 * (log line, metric, status, a record to the announcement target) and the table's policy applies (`freeze` holds its
 * jobs). `from`: the `_ordering` of the first change with the new shape.
 */
export async function streamDescribedChange(
  ctx: PipelineContext,
  table: TableConfig,
  from: string | null,
  log: PipelineContext['logger'],
  recreated = false,
): Promise<void> {
  let reader;
  try {
    reader = await findSource(ctx, table.source).table(tableSpec(table));
  } catch (err) {
    // The description is historic: the table may have been dropped since. The first push attempt that finds it
    // again announces what changed.
    if (isAppError(err) && err.code === 'SOURCE_SCHEMA') return;
    throw err;
  }
  await watchShape(ctx, table, reader, log, from, recreated);
}
