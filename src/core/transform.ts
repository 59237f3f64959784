import { AppError } from './errors.js';
import { isObject, parseLossless, writeLossless } from './json-lossless.js';
import { truncateText } from './redact.js';
import { METADATA_FIELDS, type Operation } from './record.js';

/**
 * Transforms: a table's `transform` is an ES module whose default export receives each outgoing record (after
 * columns and masks, metadata included except `_event_id`, which is computed afterwards over what the transform
 * returned) and returns the record to send, or null to drop the row (treated like a row outside the filter).
 * These types are exported by the package for TypeScript users (`import type { Transform } from 'pushsync'`).
 */

/** A record as a transform receives it: metadata first, then the row's outgoing columns. */
export interface OutgoingRecord {
  readonly _op: Operation;
  /** See the README's record format; null for rows without a watermark. */
  readonly _ordering: string | null;
  /** The table generation: one more each time the table was dropped and created again (README, Schema changes). */
  readonly _generation: number;
  readonly _extracted_at: string;
  readonly _source: string;
  readonly _table: string;
  [column: string]: unknown;
}

/**
 * Returns the record to send (plain object; metadata fields unchanged, primary-key columns unchanged), or null to
 * drop the row. Throwing fails this row alone: the rest of its batch is delivered and the job rests in the
 * dead-letter queue with code TRANSFORM_FAILED. Synchronous.
 */
export type Transform = (record: OutgoingRecord) => Record<string, unknown> | null;

/** Loads the transform a table names (path as configured, resolved by the loader). */
export type TransformLoader = (path: string) => Promise<Transform>;

export interface TransformContext {
  op: Operation;
  ordering: string | null;
  /** @defaultValue 0 */
  generation?: number | undefined;
  extractedAt: string;
  source: string;
  table: string;
  primaryKey: readonly string[];
}

/** The longest transform message kept with a failed job. */
const MESSAGE_CHARS = 300;

const META = METADATA_FIELDS as readonly string[];

function failed(why: string, cause?: unknown): AppError {
  return new AppError('TRANSFORM_FAILED', why, cause === undefined ? {} : { cause });
}

/** The JSON text of one value, for comparing a key column before and after. */
function same(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Runs the transform on one row's outgoing JSON object text. Returns the row's new JSON object text (metadata
 * removed again: the encoder writes it), or null when the transform dropped the row. Everything that breaks the
 * contract is a TRANSFORM_FAILED error for this row.
 */
export function applyTransform(fn: Transform, rowJson: string, c: TransformContext): string | null {
  const row = JSON.parse(rowJson) as Record<string, unknown>;
  const meta = { _op: c.op, _ordering: c.ordering, _generation: c.generation ?? 0, _extracted_at: c.extractedAt, _source: c.source, _table: c.table };
  const keys = c.primaryKey.map((k) => row[k]);
  let out: unknown;
  try {
    // Object.assign, not spread syntax: spreading a parsed row into a literal costs ten times as much.
    out = fn(Object.assign({}, meta, row) as OutgoingRecord);
  } catch (err) {
    throw failed(`transform threw: ${truncateText(err instanceof Error ? err.message : String(err), MESSAGE_CHARS)}`, err);
  }
  if (out === null) return null;
  if (typeof out !== 'object' || out === undefined || Array.isArray(out))
    throw failed(`transform returned ${Array.isArray(out) ? 'an array' : typeof out}, not a record or null`);
  if (typeof (out as { then?: unknown }).then === 'function') throw failed('transform returned a promise; transforms are synchronous');
  const record = out as Record<string, unknown>;
  for (const field of META) {
    const expected = field === '_event_id' ? undefined : meta[field as keyof typeof meta];
    if (!same(record[field], expected) || (field === '_event_id' && field in record)) {
      throw failed(`transform changed the metadata field ${field}; metadata is pushsync's`);
    }
  }
  c.primaryKey.forEach((k, i) => {
    if (!same(record[k], keys[i])) throw failed(`transform changed the primary-key column ${k}; keys must leave as they came`);
  });
  try {
    return writeColumns(record, row, rowJson);
  } catch (err) {
    throw failed(`transform returned a record that is not JSON: ${(err as Error).message}`, err);
  }
}

/**
 * The outgoing columns' JSON object text. A JSON or JSONB column the transform passed through unchanged keeps the
 * text it came with: `JSON.parse` rounds integers beyond 2^53 and drops the trailing zeros of `1.10`, and the
 * transform did not ask for either.
 */
function writeColumns(record: Record<string, unknown>, row: Record<string, unknown>, rowJson: string): string {
  let exact: Record<string, string> | undefined;
  const parts: string[] = [];
  for (const k in record) {
    if (!Object.hasOwn(record, k) || META.includes(k)) continue;
    const v = record[k];
    let text: string | undefined;
    if ((typeof v === 'number' || (typeof v === 'object' && v !== null)) && Object.hasOwn(row, k) && v === row[k]) {
      exact ??= memberTexts(rowJson);
      text = exact[k];
    }
    text ??= JSON.stringify(v) as string | undefined;
    if (text !== undefined) parts.push(`${JSON.stringify(k)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

/** Each top-level member of a JSON object text, as written. */
function memberTexts(objectJson: string): Record<string, string> {
  const parsed = parseLossless(objectJson);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (isObject(parsed)) for (const k of Object.keys(parsed)) out[k] = writeLossless(parsed[k]!);
  return out;
}
