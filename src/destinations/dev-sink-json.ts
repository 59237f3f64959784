/**
 * Whether a text is one JSON value (RFC 8259), without building it. The dev sink stores rows from their raw text,
 * so it only needs to know that a body is JSON: `JSON.parse` on a 10 MB body builds every row as objects, which
 * cost more CPU (and garbage collection) than storing them. Invariant: accepts exactly what `JSON.parse` accepts;
 * the test compares the two on random valid and broken texts.
 */

const OBJECT = 0;
const ARRAY = 1;
/** Runs of string characters that need no look: not a quote, a backslash or a control character. */
// eslint-disable-next-line no-control-regex -- control characters are what JSON strings may not hold raw
const PLAIN = /[^"\\\u0000-\u001f]*/y;
const HEX4 = /[0-9a-fA-F]{4}/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index of the first character at or after `i` that is not JSON whitespace. */
export function skipJsonSpace(text: string, i: number): number {
  while (isSpace(text.charCodeAt(i))) i += 1;
  return i;
}

/** Index past the string literal at `i`, or -1 when there is none. */
export function isJsonString(text: string, i: number): number {
  if (text.charCodeAt(i) !== 0x22) return -1;
  let j = i + 1;
  for (;;) {
    PLAIN.lastIndex = j;
    PLAIN.test(text);
    j = PLAIN.lastIndex;
    const c = text.charCodeAt(j);
    if (c === 0x22) return j + 1;
    if (c !== 0x5c) return -1; // a control character, or the end of the text
    const e = text.charCodeAt(j + 1);
    // " \ / b f n r t
    if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) j += 2;
    else if (e === 0x75) {
      HEX4.lastIndex = j + 2;
      if (!HEX4.test(text)) return -1;
      j += 6;
    } else return -1;
  }
}

// eslint-disable-next-line no-control-regex -- control characters are what JSON strings may not hold raw
const CONTROL = /[\u0000-\u001f]/;

/**
 * `isJsonString` for the literals of one text, read from left to right: most bodies hold no control character at
 * all (one native search says so) and few backslashes, and there a literal ends at the next quote, found by
 * `indexOf`, as long as no backslash comes before it. Calling a sticky regex per literal cost more than the rest of
 * the scan. Other texts, and literals with a backslash, take `isJsonString`.
 */
export function stringEnds(text: string): (i: number) => number {
  if (CONTROL.test(text)) return (i) => isJsonString(text, i);
  let backslash = text.indexOf('\\');
  return (i) => {
    if (text.charCodeAt(i) !== 0x22) return -1;
    const close = text.indexOf('"', i + 1);
    if (close === -1) return -1;
    if (backslash !== -1 && backslash < i) backslash = text.indexOf('\\', i);
    if (backslash === -1 || backslash > close) return close + 1;
    return isJsonString(text, i);
  };
}

/** Index past the scalar (string, number, literal) at `i`, or -1. */
export function isJsonScalar(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return isJsonString(text, i);
  if (c === 0x74) return text.startsWith('true', i) ? i + 4 : -1;
  if (c === 0x66) return text.startsWith('false', i) ? i + 5 : -1;
  if (c === 0x6e) return text.startsWith('null', i) ? i + 4 : -1;
  NUMBER.lastIndex = i;
  return NUMBER.test(text) && NUMBER.lastIndex > i ? NUMBER.lastIndex : -1;
}

/** Index of the value after the object key at `i` (the key, its colon and spaces skipped), or -1. */
function key(text: string, i: number): number {
  const end = isJsonString(text, i);
  if (end === -1) return -1;
  const colon = skipJsonSpace(text, end);
  return text.charCodeAt(colon) === 0x3a ? skipJsonSpace(text, colon + 1) : -1;
}

/** Whether `JSON.parse(text)` would succeed. Iterative, so no nesting depth overflows the stack. */
export function isJson(text: string): boolean {
  const open: number[] = [];
  let i = skipJsonSpace(text, 0);
  for (;;) {
    // A value starts at i.
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      const inner = skipJsonSpace(text, i + 1);
      if (text.charCodeAt(inner) === (c === 0x7b ? 0x7d : 0x5d)) i = inner + 1;
      else {
        open.push(c === 0x7b ? OBJECT : ARRAY);
        i = c === 0x7b ? key(text, inner) : inner;
        if (i === -1) return false;
        continue;
      }
    } else {
      i = isJsonScalar(text, i);
      if (i === -1) return false;
    }
    // After a value: close containers until a comma leads to the next value.
    for (;;) {
      i = skipJsonSpace(text, i);
      if (open.length === 0) return i === text.length;
      const inObject = open[open.length - 1] === OBJECT;
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i = skipJsonSpace(text, i + 1);
        if (inObject) i = key(text, i);
        if (i === -1) return false;
        break;
      }
      if (d !== (inObject ? 0x7d : 0x5d)) return false;
      open.pop();
      i += 1;
    }
  }
}
