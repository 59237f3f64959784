import { hash } from 'node:crypto';

/**
 * The record contract: every row sent to the Stream API is the source row's columns plus these metadata fields.
 * Metadata names start with `_` and a source column with the same name is refused at startup.
 */
export type Operation = 'upsert' | 'insert' | 'update' | 'delete' | 'snapshot' | 'table_recreated';

export const METADATA_FIELDS = ['_op', '_event_id', '_ordering', '_generation', '_extracted_at', '_source', '_table'] as const;

export interface RecordContext {
  source: string;
  /** The source table as configured, e.g. `public.orders`. */
  table: string;
  /** ISO-8601 time the push worker read the row. */
  extractedAt: string;
  /**
   * The table generation the rows belong to: 0 for the relation pushsync first saw under the table's name, one more
   * for each time it was dropped and created again (queue/generations.ts). A re-read of the same relation (a
   * backfill, a reset) keeps its generation. @defaultValue 0
   */
  generation?: number | undefined;
}

/**
 * Deterministic event id: the same row version (same columns, same values) always gets the same id, so a batch
 * re-sent after an ambiguous failure is removable downstream with `QUALIFY row_number() OVER (PARTITION BY
 * _event_id ...) = 1`. The id covers the row's content, not only its key and watermark, so a row rewritten without
 * moving its watermark still counts as a new version; and it covers the ordering value, so two changes of a key
 * that read the same content (an update, a delete, then the same row again) stay distinct.
 */
export function eventId(source: string, table: string, op: Operation, rowJson: string, ordering: string | null = null, generation = 0): string {
  return hashedId(`${source}\0${table}\0${op}\0${ordering ?? ''}\0${generationPart(generation)}`, rowJson);
}

/**
 * A generation past the first is hashed after the ordering, so the same content read from a re-created table is a
 * new version, while every id of generation 0 (all records sent before generations existed) stays what it was. The
 * part is digits and a NUL before the row's `{`: no prefix of one can be mistaken for another.
 */
function generationPart(generation: number): string {
  return generation > 0 ? `${generation}\0` : '';
}

/**
 * One-shot hashing of the prefix and the row as one string: the same bytes as hashing the parts in turn (the NUL
 * separators keep the UTF-8 encoding of each part unchanged), at half the cost of a Hash object per row.
 */
function hashedId(prefix: string, rowJson: string): string {
  return hash('sha256', prefix + rowJson, 'hex').slice(0, 32);
}

const enc = (s: string): string => JSON.stringify(s);

/** White space as JSON (and String.prototype.trimStart on database JSON) knows it. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Builds the record's JSON text around the row's JSON object text, without re-serialising the row. */
export function buildRecord(rowJson: string, op: Operation, ordering: string | null, ctx: RecordContext): string {
  return recordEncoder(op, ctx)(rowJson, ordering);
}

/**
 * `buildRecord` for many rows of one operation and context: the metadata every row shares is encoded once, which
 * matters at hundreds of thousands of rows per second.
 */
export function recordEncoder(op: Operation, ctx: RecordContext): (rowJson: string, ordering: string | null, identity?: string) => string {
  const idPrefix = `${ctx.source}\0${ctx.table}\0${op}\0`;
  const generation = ctx.generation ?? 0;
  const idSuffix = `\0${generationPart(generation)}`;
  const start = `{"_op":${enc(op)},"_event_id":"`;
  const shared = `,"_generation":${generation},"_extracted_at":${enc(ctx.extractedAt)},"_source":${enc(ctx.source)},"_table":${enc(ctx.table)}`;
  // `identity` replaces the ordering in the event id where the ordering may differ between re-deliveries of one
  // change (a Debezium event's ordering includes the last commit its connector had seen).
  return (rowJson, ordering, identity) => {
    const head = `${start}${hashedId(`${idPrefix}${identity ?? ordering ?? ''}${idSuffix}`, rowJson)}","_ordering":${ordering === null ? 'null' : enc(ordering)}${shared}`;
    // The row's members follow the metadata: skip its `{` (and any white space around it) without copying the row.
    let i = 0;
    while (isSpace(rowJson.charCodeAt(i))) i += 1;
    i += 1;
    while (isSpace(rowJson.charCodeAt(i))) i += 1;
    return rowJson.charCodeAt(i) === 0x7d ? `${head}}` : `${head},${rowJson.slice(i)}`;
  };
}
