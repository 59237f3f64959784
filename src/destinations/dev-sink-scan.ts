/**
 * Scanners over a request body that `JSON.parse` has already accepted, for the dev sink's hot path: they find where
 * each row and each value is in the text so values can be stored exactly as written. They do not validate; given
 * valid JSON they agree with `objectMembers` and `arrayElements` of core/json-scan.ts, but skip strings with
 * `indexOf` instead of a character loop, which matters at hundreds of thousands of rows per second.
 */

import { BACKSLASH, CLOSE_ARR, CLOSE_OBJ, COMMA, OPEN_ARR, OPEN_OBJ, QUOTE } from '../core/json-scan.js';

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index just past the string literal whose opening quote is at `start`. */
export function skipString(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const q = text.indexOf('"', i);
    if (q === -1) throw new SyntaxError('unterminated string in JSON text');
    // The quote closes the string unless an odd number of backslashes stands before it.
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b -= 1;
    if ((q - 1 - b) % 2 === 0) return q + 1;
    i = q + 1;
  }
}

/** Index just past the value starting at `start` (no leading space); a scalar ends before the next `,` `}` `]` or space. */
export function skipValue(text: string, start: number): number {
  const first = text.charCodeAt(start);
  if (first === QUOTE) return skipString(text, start);
  let i = start;
  if (first === OPEN_OBJ || first === OPEN_ARR) {
    let depth = 0;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        i = skipString(text, i);
        continue;
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) depth += 1;
      else if ((c === CLOSE_OBJ || c === CLOSE_ARR) && --depth === 0) return i + 1;
      i += 1;
    }
    throw new SyntaxError('unterminated object or array in JSON text');
  }
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === COMMA || c === CLOSE_OBJ || c === CLOSE_ARR || isSpace(c)) return i;
    i += 1;
  }
  return i;
}

export const skipSpace = (text: string, i: number): number => {
  while (isSpace(text.charCodeAt(i))) i += 1;
  return i;
};

/**
 * Calls `member` for each member of the object whose `{` is at `start`, with the span of the key's raw text (quotes
 * included) and of the value; returns the index just past the closing `}`. `member` returning false stops the walk
 * (the result is then -1). Spans rather than strings: a caller that recognises a key in place need not copy it.
 */
export function forEachMember(
  text: string,
  start: number,
  member: (keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean | void,
): number {
  let i = skipSpace(text, start + 1);
  if (text.charCodeAt(i) === CLOSE_OBJ) return i + 1;
  for (;;) {
    const keyEnd = skipString(text, i);
    // Past the colon and any space around it.
    const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1);
    const valueEnd = skipValue(text, valueStart);
    if (member(i, keyEnd, valueStart, valueEnd) === false) return -1;
    i = skipSpace(text, valueEnd);
    if (text.charCodeAt(i) === CLOSE_OBJ) return i + 1;
    // Past the comma to the next key.
    i = skipSpace(text, i + 1);
  }
}

/** The spans of the elements of the array whose `[` is at `start`, and the index just past its `]`. */
export function arraySpans(text: string, start: number): { spans: Array<[number, number]>; end: number } {
  const spans: Array<[number, number]> = [];
  let i = skipSpace(text, start + 1);
  if (text.charCodeAt(i) === CLOSE_ARR) return { spans, end: i + 1 };
  for (;;) {
    const valueEnd = skipValue(text, i);
    spans.push([i, valueEnd]);
    i = skipSpace(text, valueEnd);
    if (text.charCodeAt(i) === CLOSE_ARR) return { spans, end: i + 1 };
    i = skipSpace(text, i + 1);
  }
}

const keyIs = (rawKey: string, name: string): boolean => rawKey === `"${name}"` || (rawKey.includes('\\') && JSON.parse(rawKey) === name);

export interface EnvelopeParts {
  /** The raw text of `data`; undefined when the body has none. */
  data: string | undefined;
  /** The raw text of every row: the elements of `data` when it is an array, else `[data]`. */
  rows: string[];
  /** The raw text of `config`; undefined when the body has none. */
  config: string | undefined;
}

/**
 * The parts of an envelope `{"data": [...] | {...}, "config": {...}}` (a JSON object), in one pass over the body.
 * A repeated key counts by its last value, as in `JSON.parse`. The sink itself uses scanEnvelope, which also checks
 * the body and finds the rows' members in the same pass; this is what its test compares it with.
 */
export function envelopeParts(text: string): EnvelopeParts {
  const parts: EnvelopeParts = { data: undefined, rows: [], config: undefined };
  let i = skipSpace(text, text.indexOf('{') + 1);
  if (text.charCodeAt(i) === CLOSE_OBJ) return parts;
  for (;;) {
    const keyEnd = skipString(text, i);
    const rawKey = text.slice(i, keyEnd);
    const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1);
    let valueEnd: number;
    if (keyIs(rawKey, 'data') && text.charCodeAt(valueStart) === OPEN_ARR) {
      const { spans, end } = arraySpans(text, valueStart);
      parts.rows = spans.map(([a, b]) => text.slice(a, b));
      valueEnd = end;
      parts.data = text.slice(valueStart, valueEnd);
    } else {
      valueEnd = skipValue(text, valueStart);
      if (keyIs(rawKey, 'data')) {
        parts.data = text.slice(valueStart, valueEnd);
        parts.rows = [parts.data];
      } else if (keyIs(rawKey, 'config')) parts.config = text.slice(valueStart, valueEnd);
    }
    i = skipSpace(text, valueEnd);
    if (text.charCodeAt(i) === CLOSE_OBJ) return parts;
    i = skipSpace(text, i + 1);
  }
}
