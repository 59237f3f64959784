import { forEachMember } from './dev-sink-scan.js';

/**
 * Splitting the dev sink's raw JSON rows into column values without `JSON.parse` (which rounds integers beyond
 * 2^53): each value stays the exact text the row carried, sliced out of it, and is typed by its JSON kind.
 */

/** Columns the store adds to every row; a row key with one of these names is dropped. */
export const RECEIVED_AT = '_received_at';
export const REQUEST_ID = '_request_id';
export const RESERVED = new Set([RECEIVED_AT, REQUEST_ID]);

/** `nonfinite` is the string `"NaN"`, `"Infinity"` or `"-Infinity"`: how pushsync sends a float8 that JSON cannot hold. */
export type ValueKind = 'null' | 'string' | 'nonfinite' | 'int64' | 'int128' | 'float' | 'boolean' | 'nested';

export interface RowRejection {
  /** Index of the row in the `rows` given to `append`. */
  index: number;
  code: 'NOT_AN_OBJECT' | 'EMPTY_KEY' | 'KEY_CASE_COLLISION';
  message: string;
}

export interface BatchColumn {
  /** Lower-cased: DuckDB compares column names case-insensitively. */
  column: string;
  /** The key as the first accepted row spells it; names a new column. */
  name: string;
}

export interface Batch {
  /** The columns the accepted rows use, in first-seen order. */
  columns: BatchColumn[];
  /**
   * One array per accepted row, indexed like `columns`: the value's raw JSON text, or undefined where the row does
   * not have the key (an array may be shorter than `columns`).
   */
  rows: (string | undefined)[][];
  rejected: RowRejection[];
  /** Reserved keys the rows carried, whose values were dropped. */
  dropped: string[];
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT128_MIN = -(2n ** 127n);
const INT128_MAX = 2n ** 127n - 1n;
const INTEGER = /^-?\d+$/;
const NONFINITE = new Set(['"NaN"', '"Infinity"', '"-Infinity"']);

/** The JSON kind of a raw value text, from its first character; integers are sized from their digits. */
export function kindOf(raw: string): ValueKind {
  switch (raw.charCodeAt(0)) {
    case 0x22:
      // `"-Infinity"` is the longest of the three: longer strings need no lookup.
      return raw.length <= 11 && NONFINITE.has(raw) ? 'nonfinite' : 'string';
    case 0x7b:
    case 0x5b:
      return 'nested';
    case 0x74:
    case 0x66:
      return 'boolean';
    case 0x6e:
      return 'null';
  }
  if (!INTEGER.test(raw)) return 'float';
  if (raw.length <= 18) return 'int64';
  const n = BigInt(raw);
  if (n >= INT64_MIN && n <= INT64_MAX) return 'int64';
  // An integer wider than HUGEINT can only be approximated; DOUBLE at least keeps its magnitude.
  return n >= INT128_MIN && n <= INT128_MAX ? 'int128' : 'float';
}

/** The text of a JSON string literal; most have no escape, and slicing them is far cheaper than parsing. */
export function stringText(raw: string): string {
  return raw.indexOf('\\') === -1 ? raw.slice(1, -1) : (JSON.parse(raw) as string);
}

interface Key {
  /** The key's raw text, quotes included. */
  raw: string;
  name: string;
  column: string;
}

/**
 * Splits raw rows into their values, rejecting rows whose keys cannot become DuckDB columns. Rows of one batch
 * mostly share their keys, in the same order: each key is first compared in place with the key the previous row
 * had at that position, and only a key that differs is copied out and looked up; each distinct key text is
 * decoded once.
 */
export function splitRows(rows: readonly string[]): Batch {
  const keys = new Map<string, Key>();
  // The keys of the last row, by position.
  const previous: Key[] = [];
  const slots = new Map<string, number>();
  const columns: BatchColumn[] = [];
  const accepted: (string | undefined)[][] = [];
  const rejected: RowRejection[] = [];
  const dropped = new Set<string>();
  // Which row last set a slot, and under which spelling: two spellings in one row are a collision.
  const setIn: number[] = [];
  const setAs: string[] = [];

  const reject = (index: number, code: RowRejection['code'], message: string, firstNewSlot: number): void => {
    rejected.push({ index, code, message });
    // Columns first seen in a rejected row are not the batch's.
    for (const c of columns.splice(firstNewSlot)) slots.delete(c.column);
  };

  rows.forEach((text, index) => {
    if (text.trimStart().charCodeAt(0) !== 0x7b) {
      rejected.push({ index, code: 'NOT_AN_OBJECT', message: 'row is not a JSON object' });
      return;
    }
    const firstNewSlot = columns.length;
    const values: (string | undefined)[] = [];
    let position = 0;
    const complete = forEachMember(text, text.indexOf('{'), (keyStart, keyEnd, valueStart, valueEnd) => {
      let key = previous[position];
      // The same characters from the opening quote on are the same literal: its closing quote is escaped alike.
      if (key === undefined || key.raw.length !== keyEnd - keyStart || !text.startsWith(key.raw, keyStart)) {
        const rawKey = text.slice(keyStart, keyEnd);
        key = keys.get(rawKey);
        if (!key) {
          const name = rawKey.indexOf('\\') === -1 ? rawKey.slice(1, -1) : (JSON.parse(rawKey) as string);
          key = { raw: rawKey, name, column: name.toLowerCase() };
          keys.set(rawKey, key);
        }
        previous[position] = key;
      }
      position += 1;
      if (key.name === '') {
        reject(index, 'EMPTY_KEY', 'row has an empty key, which cannot name a column', firstNewSlot);
        return false;
      }
      if (RESERVED.has(key.column)) {
        dropped.add(key.name);
        return true;
      }
      let slot = slots.get(key.column);
      if (slot === undefined) {
        slot = columns.length;
        columns.push({ column: key.column, name: key.name });
        slots.set(key.column, slot);
      }
      if (setIn[slot] === index && setAs[slot] !== key.name) {
        reject(
          index,
          'KEY_CASE_COLLISION',
          `keys ${setAs[slot]!} and ${key.name} differ only in case, which DuckDB column names cannot`,
          firstNewSlot,
        );
        return false;
      }
      setIn[slot] = index;
      setAs[slot] = key.name;
      // A repeated key keeps its last value, as JSON.parse does.
      values[slot] = text.slice(valueStart, valueEnd);
      return true;
    });
    if (complete === -1) return;
    accepted.push(values);
  });
  return { columns, rows: accepted, rejected, dropped: [...dropped] };
}
