/**
 * Small scanners over JSON text that the pipeline must inspect without parsing it: `JSON.parse` would round
 * numbers beyond 2^53 (a jsonb `{"n": 12345678901234567890}` must arrive with every digit), and parsing every
 * row would cost more than the whole read. All functions expect valid JSON as produced by a database.
 */

/** Char codes of JSON's structural characters, for every scanner over JSON text. */
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const OPEN_OBJ = 0x7b;
export const CLOSE_OBJ = 0x7d;
export const OPEN_ARR = 0x5b;
export const CLOSE_ARR = 0x5d;
export const COMMA = 0x2c;
export const COLON = 0x3a;

/** Index just past the string literal that starts at `start` (which holds the opening quote). */
function skipString(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) i += 2;
    else if (Number.isNaN(c)) throw new SyntaxError('unterminated string in JSON text');
    else i += 1;
  }
}

/** Nesting depth of a JSON value: scalars 0, `{}` or `[]` 1, `{"a":[1]}` 2. */
export function jsonDepth(text: string, start = 0, end = text.length): number {
  let depth = 0;
  let max = 0;
  let i = start;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = skipString(text, i);
      continue;
    }
    if (c === OPEN_OBJ || c === OPEN_ARR) {
      depth += 1;
      if (depth > max) max = depth;
    } else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
      depth -= 1;
    }
    i += 1;
  }
  return max;
}

/**
 * True when the text holds at most `limit` opening brackets (inside strings or not), so its nesting depth cannot
 * exceed `limit`. Native searches make this far cheaper than the character-by-character depth scan, which then
 * runs only for rows with many brackets.
 */
export function shallowerThanBrackets(text: string, limit: number): boolean {
  let opens = 0;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) if (++opens > limit) return false;
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) if (++opens > limit) return false;
  return true;
}

export interface MemberSpan {
  /** The key as it stands in the text, quotes included. */
  rawKey: string;
  valueStart: number;
  valueEnd: number;
}

/** The members of a top-level JSON object, with the span of each value in the text. */
export function objectMembers(text: string): MemberSpan[] {
  const members: MemberSpan[] = [];
  let i = text.indexOf('{') + 1;
  if (i === 0) throw new SyntaxError('JSON text is not an object');
  for (;;) {
    while (i < text.length && text.charCodeAt(i) !== QUOTE && text.charCodeAt(i) !== CLOSE_OBJ) i += 1;
    if (i >= text.length || text.charCodeAt(i) === CLOSE_OBJ) return members;
    const keyEnd = skipString(text, i);
    const rawKey = text.slice(i, keyEnd);
    i = keyEnd;
    while (text.charCodeAt(i) !== COLON) i += 1;
    i += 1;
    while (isSpace(text.charCodeAt(i))) i += 1;
    const valueStart = i;
    i = skipValue(text, i);
    let valueEnd = i;
    while (valueEnd > valueStart && isSpace(text.charCodeAt(valueEnd - 1))) valueEnd -= 1;
    members.push({ rawKey, valueStart, valueEnd });
    while (i < text.length && text.charCodeAt(i) !== COMMA && text.charCodeAt(i) !== CLOSE_OBJ) i += 1;
    if (text.charCodeAt(i) === COMMA) i += 1;
  }
}

/** The spans of the elements of a top-level JSON array. */
export function arrayElements(text: string, start = 0): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  let i = text.indexOf('[', start) + 1;
  if (i === 0) throw new SyntaxError('JSON text is not an array');
  for (;;) {
    while (i < text.length && isSpace(text.charCodeAt(i))) i += 1;
    if (i >= text.length || text.charCodeAt(i) === CLOSE_ARR) return spans;
    const valueStart = i;
    i = skipValue(text, i);
    let valueEnd = i;
    while (valueEnd > valueStart && isSpace(text.charCodeAt(valueEnd - 1))) valueEnd -= 1;
    spans.push([valueStart, valueEnd]);
    while (i < text.length && text.charCodeAt(i) !== COMMA && text.charCodeAt(i) !== CLOSE_ARR) i += 1;
    if (text.charCodeAt(i) === COMMA) i += 1;
  }
}

/** Index just past the value starting at `start`; for scalars, the next `,` `}` or `]` at this level. */
function skipValue(text: string, start: number): number {
  const first = text.charCodeAt(start);
  if (first === QUOTE) return skipString(text, start);
  if (first === OPEN_OBJ || first === OPEN_ARR) {
    let depth = 0;
    let i = start;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        i = skipString(text, i);
        continue;
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) depth += 1;
      else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
        depth -= 1;
        if (depth === 0) return i + 1;
      }
      i += 1;
    }
    throw new SyntaxError('unterminated object or array in JSON text');
  }
  let i = start;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === COMMA || c === CLOSE_OBJ || c === CLOSE_ARR) return i;
    i += 1;
  }
  return i;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
