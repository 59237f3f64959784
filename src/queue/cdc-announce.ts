import type { TableConfig } from '../config.js';
import { announcement, needsAttention, type ShapeChange } from '../core/table-shape.js';
import type { PipelineContext } from './context.js';

/** Announces schema changes a change stream described: one log line per change. */
export async function announceSchemaChanges(
  ctx: PipelineContext,
  table: TableConfig,
  changes: readonly ShapeChange[],
  appliesFrom: string | null,
  log: PipelineContext['logger'],
): Promise<void> {
  const detectedAt = new Date().toISOString();
  for (const change of changes) {
    const record = announcement(change, { source: table.source, table: table.name, detectedAt, appliesFrom, sent: () => true });
    const fields = { table: table.name, kind: record.kind, column: record.column, oldType: record.old_type, newType: record.new_type, appliesFrom };
    if (needsAttention(change)) log.warn(fields, `schema change: ${record.note}`);
    else log.info(fields, `schema change: ${record.note}`);
  }
  await Promise.resolve(ctx);
}
