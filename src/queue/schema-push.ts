import type { TableConfig } from '../config.js';
import { recordEncoder } from '../core/record.js';
import type { SendSummary } from '../core/sender.js';
import type { PipelineContext } from './context.js';
import type { AnnouncePushJob, BoundaryPushJob } from './jobs.js';

/**
 * Sends a table's schema change announcements, one record each, to `destination.schemaChangesTarget` (the configured
 * one, never the payload's). The records carry the usual metadata (`_source`, `_table` of the table that changed,
 * `_ordering` = when it was detected, `_generation` = the table generation it applies to), and their event ids depend only on the announcement, so a retry after an
 * ambiguous failure re-sends the same ids. A handful of records: one request.
 */
export async function pushAnnouncement(ctx: PipelineContext, data: AnnouncePushJob): Promise<SendSummary> {
  const target = ctx.config.destination.schemaChangesTarget;
  const encode = recordEncoder('insert', {
    source: data.source,
    table: data.table,
    extractedAt: new Date().toISOString(),
    generation: data.generation,
  });
  const records = data.announce.map((a) => encode(JSON.stringify(a), a.detected_at, a.detected_at));
  // Not counted in the table's rows_pushed: these are records about the table, not of it.
  const result = await ctx.destination.send(target, records);
  return { rows: result.rows, requests: 1 };
}

/**
 * Sends the `table_recreated` record that starts a table generation to the table's configured target: metadata
 * only (`_op` `table_recreated`, `_generation`, `_ordering`), no column of the table. Its event id depends on the
 * generation and ordering only, so a retry re-sends the same id.
 */
export async function pushBoundary(ctx: PipelineContext, table: TableConfig, data: BoundaryPushJob): Promise<SendSummary> {
  const { generation, ordering } = data.boundary;
  const encode = recordEncoder('table_recreated', { source: data.source, table: data.table, extractedAt: new Date().toISOString(), generation });
  const result = await ctx.destination.send(table.target, [encode('{}', ordering)]);
  return { rows: result.rows, requests: 1 };
}
