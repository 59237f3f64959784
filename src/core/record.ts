import { hash } from 'node:crypto';
import type { EncodedRecords } from './encoded-records.js';

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

/** True when every character is printable ASCII that JSON writes as itself (no quote, no backslash). */
function printableAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

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

/** Stages one record into `out` and returns its length in bytes (to `commit`); see `recordWriter`. */
export interface RecordWriter {
  (out: EncodedRecords, rowJson: string, ordering: string | null, identity?: string): number;
  /**
   * The same record from the row's JSON as UTF-8 in `row[rowAt, rowAt + length)`: the same bytes as from its text.
   * The bytes before `rowAt` are the writer's to overwrite (the event id's input is put together there).
   */
  bytes(out: EncodedRecords, row: Buffer, rowAt: number, length: number, ordering: string | null): number;
}

/**
 * Buffer's own per-encoding writers (Node's `Buffer.prototype.utf8Write` and `latin1Write`, what `write` calls once it
 * has sorted out its arguments): at several writes per row that sorting-out was a measurable part of a backfill.
 */
interface RawBuffer extends Buffer {
  utf8Write(text: string, offset: number, length: number): number;
  latin1Write(text: string, offset: number, length: number): number;
}

/** Where a row and its id's prefix are written for hashing; reused, and kept only while it stays this small. */
let scratch = Buffer.allocUnsafe(64 * 1024);
const SCRATCH_KEPT = 1024 * 1024;

function scratchOf(bytes: number): Buffer {
  if (bytes <= scratch.length) return scratch;
  const grown = Buffer.allocUnsafe(bytes);
  if (bytes <= SCRATCH_KEPT) scratch = grown;
  return grown;
}

/**
 * `recordEncoder` writing straight into a batch's bytes: the same record, byte for byte, with the same event id, but
 * the row is turned into UTF-8 once, hashed from those bytes and copied from them. The record never exists as a
 * string, nor does the id's input: at hundreds of thousands of rows per second those copies were most of what the
 * garbage collector had to deal with.
 */
export function recordWriter(op: Operation, ctx: RecordContext): RecordWriter {
  const generation = ctx.generation ?? 0;
  const idPrefix = Buffer.from(`${ctx.source}\0${ctx.table}\0${op}\0`);
  const idSuffix = Buffer.from(`\0${generationPart(generation)}`);
  const start = Buffer.from(`{"_op":${enc(op)},"_event_id":"`);
  const orderingKey = Buffer.from('","_ordering":');
  const shared = Buffer.from(
    `,"_generation":${generation},"_extracted_at":${enc(ctx.extractedAt)},"_source":${enc(ctx.source)},"_table":${enc(ctx.table)}`,
  );
  const fallback = recordEncoder(op, ctx);
  /** The record of the row object in `src[rowAt, n)` with event id `id`, written into the open request. */
  const emit = (out: EncodedRecords, src: Buffer, rowAt: number, n: number, id: string, ordering: string | null): number => {
    let i = rowAt;
    while (i < n && isSpace(src[i]!)) i += 1;
    i += 1;
    while (i < n && isSpace(src[i]!)) i += 1;
    const empty = i < n && src[i] === 0x7d;
    // An ordering JSON leaves as it is (every watermark's sortable form: digits, dashes, colons, a T, a Z) is
    // written between quotes without JSON.stringify; anything else is escaped by it.
    const plain = ordering !== null && printableAscii(ordering);
    const orderingJson = ordering === null ? 'null' : plain ? ordering : enc(ordering);
    const at = out.open(start.length + 32 + orderingKey.length + orderingJson.length * 3 + 2 + shared.length + 1 + (n - i));
    const buf = out.buffer as RawBuffer;
    buf.set(start, at);
    let w = at + start.length;
    w += buf.latin1Write(id, w, 32);
    buf.set(orderingKey, w);
    w += orderingKey.length;
    if (plain) {
      buf[w++] = 0x22;
      w += buf.latin1Write(orderingJson, w, orderingJson.length);
      buf[w++] = 0x22;
    } else {
      w += buf.utf8Write(orderingJson, w, buf.length - w);
    }
    buf.set(shared, w);
    w += shared.length;
    if (empty) {
      buf[w++] = 0x7d;
    } else {
      buf[w++] = 0x2c;
      buf.set(src.subarray(i, n), w);
      w += n - i;
    }
    return w - at;
  };
  /** Whether `src[from, n)` starts, after white space, with an object's `{`. */
  const isObject = (src: Buffer, from: number, n: number): boolean => {
    let i = from;
    while (i < n && isSpace(src[i]!)) i += 1;
    return i < n && src[i] === 0x7b;
  };
  const writer = ((out, rowJson, ordering, identity) => {
    const idPart = identity ?? ordering ?? '';
    // At most three bytes per UTF-16 unit.
    const s = scratchOf(idPrefix.length + idSuffix.length + (idPart.length + rowJson.length) * 3) as RawBuffer;
    s.set(idPrefix, 0);
    let n = idPrefix.length;
    n += s.utf8Write(idPart, n, s.length - n);
    s.set(idSuffix, n);
    n += idSuffix.length;
    const rowAt = n;
    n += s.utf8Write(rowJson, n, s.length - n);
    // Not an object's text: the string path, whose character-wise splicing this byte-wise one would not match.
    if (!isObject(s, rowAt, n)) return out.stage(fallback(rowJson, ordering, identity));
    return emit(out, s, rowAt, n, hash('sha256', s.subarray(0, n), 'hex'), ordering);
  }) as RecordWriter;
  writer.bytes = (out, row, rowAt, length, ordering) => {
    const idPart = ordering ?? '';
    const partBytes = printableAscii(idPart) ? idPart.length : Buffer.byteLength(idPart);
    const from = rowAt - idPrefix.length - partBytes - idSuffix.length;
    const n = rowAt + length;
    if (!isObject(row, rowAt, n)) return out.stage(fallback(row.toString('utf8', rowAt, n), ordering));
    if (from < 0) return writer(out, row.toString('utf8', rowAt, n), ordering);
    // The id's input is the prefix and the row: written into the free bytes before the row, it is hashed in place.
    (row as RawBuffer).set(idPrefix, from);
    (row as RawBuffer).utf8Write(idPart, from + idPrefix.length, partBytes);
    row.set(idSuffix, rowAt - idSuffix.length);
    return emit(out, row, rowAt, n, hash('sha256', row.subarray(from, n), 'hex'), ordering);
  };
  return writer;
}
