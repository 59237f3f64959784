import { createHash } from 'node:crypto';

/**
 * The record contract: every row sent to the Stream API is the source row's columns plus these metadata fields.
 * Metadata names start with `_` and a source column with the same name is refused at startup.
 */
export type Operation = 'upsert' | 'insert' | 'update' | 'delete' | 'snapshot';

export const METADATA_FIELDS = ['_op', '_event_id', '_ordering', '_extracted_at', '_source', '_table'] as const;

export interface RecordContext {
  source: string;
  /** The source table as configured, e.g. `public.orders`. */
  table: string;
  /** ISO-8601 time the push worker read the row. */
  extractedAt: string;
}

/**
 * Deterministic event id: the same row version (same columns, same values) always gets the same id, so a batch
 * re-sent after an ambiguous failure is removable downstream with `QUALIFY row_number() OVER (PARTITION BY
 * _event_id ...) = 1`. The id covers the row's content, not only its key and watermark, so a row rewritten without
 * moving its watermark still counts as a new version.
 */
export function eventId(source: string, table: string, op: Operation, rowJson: string): string {
  return createHash('sha256').update(source).update('\0').update(table).update('\0').update(op).update('\0')
    .update(rowJson).digest('hex').slice(0, 32);
}

const enc = (s: string): string => JSON.stringify(s);

/** Builds the record's JSON text around the row's JSON object text, without re-serialising the row. */
export function buildRecord(
  rowJson: string,
  op: Operation,
  ordering: string | null,
  ctx: RecordContext,
): string {
  const id = eventId(ctx.source, ctx.table, op, rowJson);
  const head =
    `{"_op":${enc(op)},"_event_id":"${id}","_ordering":${ordering === null ? 'null' : enc(ordering)},` +
    `"_extracted_at":${enc(ctx.extractedAt)},"_source":${enc(ctx.source)},"_table":${enc(ctx.table)}`;
  const body = rowJson.trimStart().slice(1).trimStart();
  return body.startsWith('}') ? `${head}}` : `${head},${body}`;
}
