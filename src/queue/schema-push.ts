import { recordEncoder } from '../core/record.js';
import type { SendSummary } from '../core/sender.js';
import type { PipelineContext } from './context.js';
import type { AnnouncePushJob } from './jobs.js';

/**
 * Sends a table's schema change announcements, one record each, to `destination.schemaChangesTarget` (the configured
 * one, never the payload's). The records carry the usual metadata (`_source`, `_table` of the table that changed,
 * `_ordering` = when it was detected), and their event ids depend only on the announcement, so a retry after an
 * ambiguous failure re-sends the same ids. A handful of records: one request.
 */
export async function pushAnnouncement(ctx: PipelineContext, data: AnnouncePushJob): Promise<SendSummary> {
  const target = ctx.config.destination.schemaChangesTarget;
  const encode = recordEncoder('insert', { source: data.source, table: data.table, extractedAt: new Date().toISOString() });
  const records = data.announce.map((a) => encode(JSON.stringify(a), a.detected_at, a.detected_at));
  // Not counted in the table's rows_pushed: these are records about the table, not of it.
  const result = await ctx.destination.send(target, records);
  return { rows: result.rows, requests: 1 };
}
