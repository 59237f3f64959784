import { isJsonScalar, skipJsonSpace, stringEnds } from './dev-sink-json.js';

/**
 * One pass over a request body that both checks it is JSON (exactly as `isJson` does) and records where the
 * envelope's parts are: the `data` and `config` values, each row, and each row's top-level members. Checking and
 * then scanning again for rows and again for their values read every body three times; the splitting of rows into
 * values then works from these spans.
 */

const OBJECT = 0;
const ARRAY = 1;

export interface EnvelopeScan {
  /** Span of the last `data` value of the top-level object; -1 when there is none. */
  dataStart: number;
  dataEnd: number;
  /** Span of the last `config` value; -1 when there is none. */
  configStart: number;
  configEnd: number;
  /** Per row (the elements of `data` when it is an array, else `data` itself): its start and end in the body. */
  rowStarts: number[];
  rowEnds: number[];
  /**
   * The top-level members of the rows that are objects: member `m` is `(keyStart, keyEnd, valueStart, valueEnd)` at
   * `members[4 * m]`, the key's span including its quotes; row `r` owns members `memberEnds[r - 1]` (0 for the first
   * row) up to `memberEnds[r]`, in the row's order.
   */
  members: Int32Array;
  memberEnds: number[];
}

/** Whether a raw key (quotes included) names `name`, escapes decoded. */
const keyIs = (text: string, start: number, end: number, name: string): boolean =>
  (end - start === name.length + 2 && text.startsWith(name, start + 1) && text.charCodeAt(end - 1) === 0x22) ||
  (text.slice(start, end).includes('\\') && JSON.parse(text.slice(start, end)) === name);

/** Scans a body; undefined when it is not JSON (`JSON.parse` would throw). Iterative: no nesting overflows the stack. */
export function scanEnvelope(text: string): EnvelopeScan | undefined {
  const scan: EnvelopeScan = {
    dataStart: -1,
    dataEnd: -1,
    configStart: -1,
    configEnd: -1,
    rowStarts: [],
    rowEnds: [],
    members: new Int32Array(1024),
    memberEnds: [],
  };
  let count = 0;
  const open: number[] = [];
  // The envelope's member being read: 1 data, 2 config, 0 another.
  let part = 0;
  // The depth at which rows stand (1: data is the row, 2: data is an array of rows); 0 outside data.
  let rowDepth = 0;
  let keyStart = -1;
  let keyEnd = -1;
  let valueStart = -1;
  const stringEnd = stringEnds(text);

  /** Reads the key at `k` (at the given depth, open.length); returns where its value starts, or -1. */
  const key = (k: number): number => {
    const end = stringEnd(k);
    if (end === -1) return -1;
    const colon = skipJsonSpace(text, end);
    if (text.charCodeAt(colon) !== 0x3a) return -1;
    const depth = open.length;
    if (depth === 1 && open[0] === OBJECT) part = keyIs(text, k, end, 'data') ? 1 : keyIs(text, k, end, 'config') ? 2 : 0;
    else if (rowDepth !== 0 && depth === rowDepth + 1) {
      keyStart = k;
      keyEnd = end;
    }
    return skipJsonSpace(text, colon + 1);
  };
  /** A value starts at `at`, `depth` containers deep. */
  const starts = (at: number, depth: number): void => {
    if (depth === 1 && open[0] === OBJECT) {
      if (part === 1) {
        scan.dataStart = at;
        scan.rowStarts.length = 0;
        scan.rowEnds.length = 0;
        scan.memberEnds.length = 0;
        count = 0;
        if (text.charCodeAt(at) === 0x5b) rowDepth = 2;
        else {
          rowDepth = 1;
          scan.rowStarts.push(at);
        }
      } else if (part === 2) scan.configStart = at;
    } else if (rowDepth === 2 && depth === 2) scan.rowStarts.push(at);
    else if (rowDepth !== 0 && depth === rowDepth + 1) valueStart = at;
  };
  /** A value that started `depth` containers deep ends at `at`. */
  const ends = (at: number, depth: number): void => {
    if (rowDepth !== 0 && depth === rowDepth + 1 && open[rowDepth] === OBJECT) {
      if (4 * count + 4 > scan.members.length) {
        const grown = new Int32Array(2 * scan.members.length);
        grown.set(scan.members);
        scan.members = grown;
      }
      const m = 4 * count;
      scan.members[m] = keyStart;
      scan.members[m + 1] = keyEnd;
      scan.members[m + 2] = valueStart;
      scan.members[m + 3] = at;
      count += 1;
    }
    if (rowDepth !== 0 && depth === rowDepth) {
      scan.rowEnds.push(at);
      scan.memberEnds.push(count);
    }
    if (depth === 1 && open[0] === OBJECT) {
      if (part === 1) {
        scan.dataEnd = at;
        rowDepth = 0;
      } else if (part === 2) scan.configEnd = at;
    }
  };

  let i = skipJsonSpace(text, 0);
  for (;;) {
    // A value starts at i.
    const c = text.charCodeAt(i);
    starts(i, open.length);
    if (c === 0x7b || c === 0x5b) {
      const inner = skipJsonSpace(text, i + 1);
      if (text.charCodeAt(inner) === (c === 0x7b ? 0x7d : 0x5d)) {
        i = inner + 1;
        ends(i, open.length);
      } else {
        open.push(c === 0x7b ? OBJECT : ARRAY);
        i = c === 0x7b ? key(inner) : inner;
        if (i === -1) return undefined;
        continue;
      }
    } else {
      i = c === 0x22 ? stringEnd(i) : isJsonScalar(text, i);
      if (i === -1) return undefined;
      ends(i, open.length);
    }
    // After a value: close containers until a comma leads to the next value.
    for (;;) {
      i = skipJsonSpace(text, i);
      if (open.length === 0) return i === text.length ? scan : undefined;
      const inObject = open[open.length - 1] === OBJECT;
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i = skipJsonSpace(text, i + 1);
        if (inObject) i = key(i);
        if (i === -1) return undefined;
        break;
      }
      if (d !== (inObject ? 0x7d : 0x5d)) return undefined;
      open.pop();
      i += 1;
      ends(i, open.length);
    }
  }
}
