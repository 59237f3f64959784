import { forEachMember, skipSpace } from './dev-sink-scan.js';

/**
 * Splitting the dev sink's raw JSON rows into column values without `JSON.parse` (which rounds integers beyond
 * 2^53): each value stays the exact text the row carried, found by its span in the row, and is typed by its JSON
 * kind.
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
  /** The text the rows are in: a request's body, or the rows given to `append` joined. */
  text: string;
  /** How many rows were accepted. */
  rows: number;
  /**
   * Where the accepted rows' values are: member `m` is `(slot, valueStart, valueEnd)` at `members[3 * m]`, offsets
   * into `text`; accepted row `r` owns members `memberEnds[r - 1]` (0 for the first row) up to `memberEnds[r]`, in
   * the row's order. A key the row repeats keeps its last value, as `JSON.parse` does: the earlier members have
   * slot -1. Spans, not strings: a string per value made here would live until the append, and the garbage
   * collector's copying of them cost more than splitting the rows.
   */
  members: Int32Array;
  memberEnds: Int32Array;
  /**
   * Per accepted row, the offset of the first backslash in `text` at or after the row's start (-1: none): a value
   * ending before it has no escape, and slicing it is far cheaper than parsing.
   */
  backslashes: Int32Array;
  /** Per slot, the index in KINDS of the accepted rows' first non-null value (-1: only nulls or missing). */
  firstKinds: Int8Array;
  /** Per slot, a bit `1 << k` for each kind KINDS[k] among the accepted rows' non-null values. */
  kindMasks: Uint8Array;
  rejected: RowRejection[];
  /** Reserved keys the rows carried, whose values were dropped. */
  dropped: string[];
}

/** The non-null kinds, indexed as in `Batch.firstKinds` and `Batch.kindMasks`. */
export const KINDS: readonly Exclude<ValueKind, 'null'>[] = ['string', 'nonfinite', 'int64', 'int128', 'float', 'boolean', 'nested'];
const KIND_INDEX = Object.fromEntries(KINDS.map((k, i) => [k, i])) as Record<ValueKind, number>;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT128_MIN = -(2n ** 127n);
const INT128_MAX = 2n ** 127n - 1n;

/** `"NaN"`, `"Infinity"` or `"-Infinity"` at `start`, the literal's length being `end - start`. */
function isNonfinite(text: string, start: number, end: number): boolean {
  switch (end - start) {
    case 5:
      return text.startsWith('"NaN"', start);
    case 10:
      return text.startsWith('"Infinity"', start);
    case 11:
      return text.startsWith('"-Infinity"', start);
    default:
      return false;
  }
}

/** The JSON kind of the value text at `start`..`end`, from its first character; integers are sized from their digits. */
export function kindAt(text: string, start: number, end: number): ValueKind {
  switch (text.charCodeAt(start)) {
    case 0x22:
      return isNonfinite(text, start, end) ? 'nonfinite' : 'string';
    case 0x7b:
    case 0x5b:
      return 'nested';
    case 0x74:
    case 0x66:
      return 'boolean';
    case 0x6e:
      return 'null';
  }
  // A JSON number: an integer is a minus sign and digits, anything else (a point, an exponent) makes it a float.
  for (let i = text.charCodeAt(start) === 0x2d ? start + 1 : start; i < end; i += 1) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 'float';
  }
  if (end - start <= 18) return 'int64';
  const n = BigInt(text.slice(start, end));
  if (n >= INT64_MIN && n <= INT64_MAX) return 'int64';
  // An integer wider than HUGEINT can only be approximated; DOUBLE at least keeps its magnitude.
  return n >= INT128_MIN && n <= INT128_MAX ? 'int128' : 'float';
}

/** Whether the (valid JSON) value at `start`..`end` is `null`. */
export const isNullAt = (text: string, start: number, end: number): boolean => end - start === 4 && text.charCodeAt(start) === 0x6e;

/**
 * The content of the string literal at `start`..`end`. `firstBackslash` is the row's entry in `Batch.backslashes`
 * (the first backslash at or after the row's start, or -1): most literals have no escape, and slicing them is far cheaper than
 * parsing.
 */
export function stringAt(text: string, start: number, end: number, firstBackslash: number): string {
  const backslash = firstBackslash === -1 || firstBackslash >= end ? -1 : firstBackslash > start ? firstBackslash : text.indexOf('\\', start);
  return backslash === -1 || backslash >= end ? text.slice(start + 1, end - 1) : (JSON.parse(text.slice(start, end)) as string);
}

interface Key {
  /** The key's raw text, quotes included. */
  raw: string;
  name: string;
  column: string;
  /** Whether the key names one of the store's own columns (its values are dropped). */
  reserved: boolean;
  /** The key's column's slot in the batch, once it has one: a hint, checked against `columns` before use. */
  slot: number;
}

/** Calls `member` for each member of the object row `index`, whose `{` is at `open`; -1 when `member` stopped it. */
export type MemberSource = (
  text: string,
  index: number,
  open: number,
  member: (keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean,
) => number;

/** Finds the members by scanning the row. */
const scanMembers: MemberSource = (text, _index, open, member) => forEachMember(text, open, member);

/** `rows` as one text, for `splitRows`: joined by newlines, with where each starts. */
export function joinRows(rows: readonly string[]): { text: string; rowStarts: number[] } {
  const rowStarts: number[] = [];
  let at = 0;
  for (const row of rows) {
    rowStarts.push(at);
    at += row.length + 1;
  }
  return { text: rows.join('\n'), rowStarts };
}

/**
 * Splits raw rows, the JSON values starting at `rowStarts` in `text`, into their values, rejecting rows whose keys
 * cannot become DuckDB columns (a rejection's `index` is the row's position in `rowStarts`). Rows of one batch
 * mostly share their keys, in the same order: each key is first compared in place with the key the previous row
 * had at that position, and only a key that differs is copied out and looked up; each distinct key text is
 * decoded once.
 */
export function splitRows(text: string, rowStarts: readonly number[], eachMember: MemberSource = scanMembers): Batch {
  const keys = new Map<string, Key>();
  // The keys of the last row, by position.
  const previous: Key[] = [];
  const slots = new Map<string, number>();
  const columns: BatchColumn[] = [];
  let rows = 0;
  let members = new Int32Array(3 * 32 * Math.max(1, rowStarts.length));
  let count = 0;
  const memberEnds = new Int32Array(rowStarts.length);
  const backslashes = new Int32Array(rowStarts.length);
  let nextBackslash = text.indexOf('\\');
  const rejected: RowRejection[] = [];
  const dropped = new Set<string>();
  // Which row last set a slot, under which spelling and in which member: two spellings in one row are a collision,
  // the same one twice leaves the last value.
  const setIn: number[] = [];
  const setAs: string[] = [];
  const setBy: number[] = [];

  const reject = (index: number, code: RowRejection['code'], message: string, firstNewSlot: number): void => {
    rejected.push({ index, code, message });
    // Columns first seen in a rejected row are not the batch's.
    for (const c of columns.splice(firstNewSlot)) slots.delete(c.column);
  };

  rowStarts.forEach((rowStart, index) => {
    const open = skipSpace(text, rowStart);
    if (text.charCodeAt(open) !== 0x7b) {
      rejected.push({ index, code: 'NOT_AN_OBJECT', message: 'row is not a JSON object' });
      return;
    }
    const firstNewSlot = columns.length;
    const firstMember = count;
    let position = 0;
    const complete = eachMember(text, index, open, (keyStart, keyEnd, valueStart, valueEnd) => {
      let key = previous[position];
      // The same characters from the opening quote on are the same literal: its closing quote is escaped alike.
      if (key === undefined || key.raw.length !== keyEnd - keyStart || !text.startsWith(key.raw, keyStart)) {
        const rawKey = text.slice(keyStart, keyEnd);
        key = keys.get(rawKey);
        if (!key) {
          const name = rawKey.indexOf('\\') === -1 ? rawKey.slice(1, -1) : (JSON.parse(rawKey) as string);
          const column = name.toLowerCase();
          key = { raw: rawKey, name, column, reserved: RESERVED.has(column), slot: -1 };
          keys.set(rawKey, key);
        }
        previous[position] = key;
      }
      position += 1;
      if (key.name === '') {
        reject(index, 'EMPTY_KEY', 'row has an empty key, which cannot name a column', firstNewSlot);
        return false;
      }
      if (key.reserved) {
        dropped.add(key.name);
        return true;
      }
      // Keys spelt alike share a slot; a rejected row's new columns are dropped, so the hint is checked.
      let slot = key.slot;
      if (columns[slot]?.column !== key.column) {
        slot = slots.get(key.column) ?? -1;
        if (slot === -1) {
          slot = columns.length;
          columns.push({ column: key.column, name: key.name });
          slots.set(key.column, slot);
        }
        key.slot = slot;
      }
      if (setIn[slot] === index) {
        if (setAs[slot] !== key.name) {
          reject(
            index,
            'KEY_CASE_COLLISION',
            `keys ${setAs[slot]!} and ${key.name} differ only in case, which DuckDB column names cannot`,
            firstNewSlot,
          );
          return false;
        }
        members[3 * setBy[slot]!] = -1;
      }
      setIn[slot] = index;
      setAs[slot] = key.name;
      if (3 * count + 3 > members.length) {
        const grown = new Int32Array(2 * members.length);
        grown.set(members);
        members = grown;
      }
      setBy[slot] = count;
      members[3 * count] = slot;
      members[3 * count + 1] = valueStart;
      members[3 * count + 2] = valueEnd;
      count += 1;
      return true;
    });
    if (complete === -1) {
      count = firstMember;
      return;
    }
    if (nextBackslash !== -1 && nextBackslash < open) nextBackslash = text.indexOf('\\', open);
    backslashes[rows] = nextBackslash;
    memberEnds[rows] = count;
    rows += 1;
  });
  const batch: Batch = {
    columns,
    text,
    rows,
    members: members.subarray(0, 3 * count),
    memberEnds: memberEnds.subarray(0, rows),
    backslashes: backslashes.subarray(0, rows),
    firstKinds: new Int8Array(columns.length).fill(-1),
    kindMasks: new Uint8Array(columns.length),
    rejected,
    dropped: [...dropped],
  };
  noteKinds(batch);
  return batch;
}

/** Fills the batch's `firstKinds` and `kindMasks` from its members. */
function noteKinds(batch: Batch): void {
  const { members, text, firstKinds, kindMasks } = batch;
  for (let m = 0; m < members.length; m += 3) {
    const slot = members[m]!;
    if (slot < 0) continue;
    const start = members[m + 1]!;
    const end = members[m + 2]!;
    if (isNullAt(text, start, end)) continue;
    const kind = KIND_INDEX[kindAt(text, start, end)];
    if (firstKinds[slot] === -1) firstKinds[slot] = kind;
    kindMasks[slot]! |= 1 << kind;
  }
}
