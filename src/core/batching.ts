import { AppError } from './errors.js';
import { jsonDepth, objectMembers, shallowerThanBrackets } from './json-scan.js';
import type { EncodedRecords } from './encoded-records.js';

/** The Stream API's documented limits. Configurable downwards only (a test or a cautious deployment). */
export interface StreamLimits {
  /** @defaultValue 50000 */
  maxRows: number;
  /** Uncompressed request body. @defaultValue 10 MB (10 * 1024 * 1024) */
  maxBytes: number;
  /** One field's serialised value. @defaultValue 1 MB */
  maxFieldBytes: number;
  /** JSON nesting depth of a record, the record itself counting as 1. @defaultValue 10 */
  maxDepth: number;
}

export const STREAM_LIMITS: StreamLimits = {
  maxRows: 50_000,
  maxBytes: 10 * 1024 * 1024,
  maxFieldBytes: 1024 * 1024,
  maxDepth: 10,
};

export interface PreparedRow {
  json: string;
  /** Columns whose JSON value was nested deeper than allowed and is sent as a JSON string instead. */
  stringified: string[];
}

/**
 * Fits one row's JSON object text within the per-record limits.
 * - A JSON value nested deeper than the limit is sent as its JSON text in a string (documented; lossless:
 *   `json(value)` in DuckDB restores it).
 * - A field larger than the limit cannot be sent without altering it: ROW_TOO_LARGE.
 * `mayNest` is false for tables without json/jsonb/composite/array columns, which skips the depth scan.
 */
export function prepareRow(rowJson: string, limits: StreamLimits, mayNest: boolean): PreparedRow {
  const json = preparedJson(rowJson, limits, mayNest);
  return json === rowJson ? { json, stringified: [] } : stringifyDeepMembers(rowJson, limits.maxDepth - 1);
}

/**
 * `prepareRow(…).json` without the object around it, for the per-row path that does not need the list of
 * stringified columns.
 */
export function preparedJson(rowJson: string, limits: StreamLimits, mayNest: boolean): string {
  let json = rowJson;
  // record depth = 1 + depth of the row object's deepest value; the row object itself is the record.
  if (mayNest && !shallowerThanBrackets(rowJson, limits.maxDepth) && jsonDepth(rowJson) > limits.maxDepth) {
    json = stringifyDeepMembers(rowJson, limits.maxDepth - 1).json;
  }
  // A field can only exceed the limit when the whole row does: the precise per-field check runs rarely.
  if (json.length > limits.maxFieldBytes / 3 && Buffer.byteLength(json) > limits.maxFieldBytes) {
    for (const m of objectMembers(json)) {
      const size = Buffer.byteLength(json.slice(m.valueStart, m.valueEnd));
      if (size > limits.maxFieldBytes) {
        throw new AppError('ROW_TOO_LARGE', `column ${m.rawKey} is ${size} bytes, over the ${limits.maxFieldBytes}-byte field limit`, {
          details: { column: JSON.parse(m.rawKey) as string, bytes: size },
        });
      }
    }
  }
  return json;
}

function stringifyDeepMembers(rowJson: string, maxValueDepth: number): PreparedRow {
  const parts: string[] = [];
  const stringified: string[] = [];
  for (const m of objectMembers(rowJson)) {
    let value = rowJson.slice(m.valueStart, m.valueEnd);
    if (jsonDepth(value) > maxValueDepth) {
      value = JSON.stringify(value);
      stringified.push(JSON.parse(m.rawKey) as string);
    }
    parts.push(`${m.rawKey}:${value}`);
  }
  return { json: `{${parts.join(',')}}`, stringified };
}

/**
 * Accumulates record texts into request-sized batches: at most `maxRows` records and `maxBytes` bytes of body
 * including the envelope. A record that cannot fit even alone is reported, not silently dropped.
 */
export class BatchPacker {
  private records: string[] = [];
  private bytes = 0;
  private readonly budget: number;

  constructor(
    private readonly limits: StreamLimits,
    envelopeBytes: number,
  ) {
    this.budget = limits.maxBytes - envelopeBytes;
  }

  /** Bytes one record occupies in the body (its UTF-8 length plus the separating comma). */
  static sizeOf(record: string): number {
    return Buffer.byteLength(record) + 1;
  }

  fits(recordBytes: number): boolean {
    return recordBytes <= this.budget;
  }

  /** Adds a record; returns the full batch it closed, if adding it would have overflowed the current one. */
  add(record: string, recordBytes: number): string[] | null {
    if (!this.fits(recordBytes)) {
      throw new AppError('ROW_TOO_LARGE', `record of ${recordBytes} bytes exceeds the ${this.budget}-byte request budget`);
    }
    let closed: string[] | null = null;
    if (this.records.length >= this.limits.maxRows || this.bytes + recordBytes > this.budget) {
      closed = this.flush();
    }
    this.records.push(record);
    this.bytes += recordBytes;
    return closed;
  }

  get size(): number {
    return this.records.length;
  }

  flush(): string[] {
    const out = this.records;
    this.records = [];
    this.bytes = 0;
    return out;
  }
}

export interface RequestConfig {
  table: string;
  mode: 'append';
  wait: boolean;
  tags: Record<string, string>;
}

/** The JSON envelope; records are spliced in as text. */
export function requestBody(records: readonly string[], config: RequestConfig): string {
  return `{"data":[${records.join(',')}],"config":${JSON.stringify(config)}}`;
}

/**
 * `requestBody` as the UTF-8 bytes that go on the wire, written record by record into one buffer: no intermediate
 * string of the whole body (megabytes, copied again when encoded). Same bytes as `Buffer.from(requestBody(…))`.
 */
export function requestBodyBytes(records: readonly string[], config: RequestConfig): Buffer {
  const head = '{"data":[';
  const tail = `],"config":${JSON.stringify(config)}}`;
  const lengths = new Array<number>(records.length);
  let size = Buffer.byteLength(head) + Buffer.byteLength(tail) + Math.max(0, records.length - 1);
  for (let i = 0; i < records.length; i++) size += lengths[i] = Buffer.byteLength(records[i]!);
  const body = Buffer.allocUnsafe(size);
  let at = body.write(head, 0);
  for (let i = 0; i < records.length; i++) {
    if (i > 0) body[at++] = 0x2c;
    at += body.write(records[i]!, at, lengths[i]!);
  }
  at += body.write(tail, at);
  if (at !== size) throw new AppError('INTERNAL', `request body is ${at} bytes, expected ${size}`);
  return body;
}

/**
 * `requestBodyBytes` of records `from` to `to` (exclusive) already encoded: for all of them, written around them in
 * their own buffer (no copy); for a part (a request split in halves), copied once.
 */
export function requestBodyOf(records: EncodedRecords, from: number, to: number, config: RequestConfig): Buffer {
  const head = '{"data":[';
  const tail = `],"config":${JSON.stringify(config)}}`;
  if (from === 0 && to === records.count) return records.body(head, tail);
  return Buffer.concat([Buffer.from(head), records.bytes(from, to), Buffer.from(tail)]);
}

export function envelopeBytes(config: RequestConfig): number {
  return Buffer.byteLength(requestBody([], config));
}
