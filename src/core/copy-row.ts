import { isUtf8 } from 'node:buffer';

/**
 * Rows of `COPY … TO STDOUT` (text format) turned into the row's JSON object text, byte for byte what Postgres's
 * `to_json` of the same projection writes (docs/encoding.md): the JSON is then the same whichever way a row was
 * read, and so is every event id hashed over it. Postgres prints each value with its plain output function, which
 * costs it about half of building the JSON itself; the forms below are the few where the two texts differ by a
 * fixed rewrite. Every other column comes as `to_json(value)::text`, computed by Postgres, and is embedded (`json`).
 *
 * Assumes the session forms pushsync's Postgres sessions set (`DateStyle=ISO`, `extra_float_digits=1`), UTF-8.
 */
export type CopyForm =
  /** A JSON string of the value's text: text, varchar, char(n), uuid, date, and the types sent as their text. */
  | 'string'
  /** The text as a JSON number: smallint, integer. */
  | 'number'
  /** A JSON number, but `NaN`, `Infinity` and `-Infinity` as strings: real, double precision. */
  | 'float'
  /** `t`/`f` as `true`/`false`. */
  | 'boolean'
  /** ISO text (`2024-03-01 12:34:56.5+00`) as ISO 8601 (`2024-03-01T12:34:56.5+00:00`), in a string. */
  | 'timestamptz'
  /** ISO text (`2024-03-01 12:34:56.5`) as ISO 8601 (`2024-03-01T12:34:56.5`), in a string. */
  | 'timestamp'
  /** JSON text embedded as it is: json, jsonb, and any `to_json(…)::text`. */
  | 'json';

export interface CopyRowLayout {
  /** Leading fields handed back as text: the watermark and primary key values of the row's position. */
  keys: number;
  /** The row's columns, in order: each one's name and form. */
  columns: ReadonlyArray<{ name: string; form: CopyForm }>;
  /** A last field holding `true`/`false` (the soft-delete rule), after the columns. */
  flag: boolean;
}

/** A decoded row: valid until the next `decode`. */
export interface CopyRow {
  keys: string[];
  /** The row's JSON object text, in `json[start, start + length)`; the bytes before it are free to overwrite. */
  json: Buffer;
  start: number;
  length: number;
  /**
   * Opening brackets in embedded JSON values, plus one for the row object: the record cannot be nested deeper
   * (brackets inside strings are counted too, which only errs on the safe side).
   */
  brackets: number;
  flag: boolean;
  /**
   * False when the row's text is not valid UTF-8 (a SQL_ASCII database): its JSON must then take the text path,
   * where invalid bytes become U+FFFD as they did when every row was text.
   */
  utf8: boolean;
}

/** Node's per-encoding slicers of Buffer.prototype, which `toString` calls once it has checked its arguments. */
interface RawBuffer extends Buffer {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

/**
 * Bytes left free before each row: room for a record writer to put the event id's prefix right before the row and
 * hash both where they lie (record.ts).
 */
const HEAD_ROOM = 1024;

/** The decoder's buffer is kept for the next row up to this size; a larger row gets one of its own. */
const KEPT_BYTES = 4 * 1024 * 1024;

const TAB = 0x09;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const HEX = Buffer.from('0123456789abcdef');
const NULL = Buffer.from('null');
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const VT = Buffer.from('\\u000b');
const CONTROL = Buffer.from('\\u00');
const MINUTES = Buffer.from(':00');

/** Writes the few bytes of `bytes` at `w`; returns the offset after them. */
function put(out: Buffer, w: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) out[w++] = bytes[i]!;
  return w;
}

/** What COPY's backslash escapes stand for (COPY writes only these, and `\\`). */
function unescaped(c: number): number {
  switch (c) {
    case 0x62: // b
      return 0x08;
    case 0x66: // f
      return 0x0c;
    case 0x6e: // n
      return 0x0a;
    case 0x72: // r
      return 0x0d;
    case 0x74: // t
      return 0x09;
    case 0x76: // v
      return 0x0b;
    case BACKSLASH:
      return BACKSLASH;
    default:
      throw new SyntaxError('COPY text has an escape COPY does not write');
  }
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

export class CopyRowDecoder {
  private out = Buffer.allocUnsafe(64 * 1024);
  /** `"name":` of each column, with the comma before all but the first. */
  private readonly heads: Uint8Array[];
  private readonly forms: CopyForm[];
  private readonly headBytes: number;

  constructor(private readonly layout: CopyRowLayout) {
    this.heads = layout.columns.map((c, i) => Buffer.from(`${i === 0 ? '' : ','}${JSON.stringify(c.name)}:`));
    this.forms = layout.columns.map((c) => c.form);
    this.headBytes = this.heads.reduce((n, h) => n + h.length, 2);
  }

  /** One COPY row (its trailing newline optional). Throws a SyntaxError when the text is not such a row. */
  decode(line: Buffer): CopyRow {
    let end = line.length;
    if (end > 0 && line[end - 1] === NEWLINE) end -= 1;
    // Each input byte becomes at most six (a control character as \u00XX); a value gains at most 5 (`null`, quotes, `:00`).
    const room = HEAD_ROOM + this.headBytes + end * 6 + this.forms.length * 5;
    // A buffer grown for a large row is kept only while it stays small.
    if (this.out.length < room && room <= KEPT_BYTES) this.out = Buffer.allocUnsafe(Math.min(KEPT_BYTES, Math.max(room, this.out.length * 2)));
    const out = this.out.length >= room ? this.out : Buffer.allocUnsafe(room);
    const keys: string[] = [];
    let i = 0;
    for (let k = 0; k < this.layout.keys; k++) {
      const stop = fieldEnd(line, i, end);
      keys.push(textOf(line, i, stop));
      i = stop + 1;
    }
    let w = HEAD_ROOM;
    let brackets = 1;
    out[w++] = 0x7b;
    for (let c = 0; c < this.forms.length; c++) {
      if (i > end) throw new SyntaxError(`COPY row has ${c} of its ${this.forms.length} columns`);
      // Byte by byte: for a few bytes, faster than any of Buffer's copies.
      const head = this.heads[c]!;
      for (let h = 0; h < head.length; h++) out[w++] = head[h]!;
      const form = this.forms[c]!;
      if (line[i] === BACKSLASH && line[i + 1] === 0x4e && (i + 2 === end || line[i + 2] === TAB)) {
        w = put(out, w, NULL);
        i += 3;
        continue;
      }
      switch (form) {
        case 'string': {
          out[w++] = QUOTE;
          for (; i < end; i++) {
            const b = line[i]!;
            // Most bytes: none of the ones below (tab 0x09, the quote 0x22, the backslash, control characters).
            if ((b > QUOTE && b !== BACKSLASH) || b === 0x20 || b === 0x21) {
              out[w++] = b;
              continue;
            }
            if (b === TAB) break;
            if (b === BACKSLASH) {
              const e = line[++i]!;
              if (e === 0x76) {
                // JSON has no \v
                w = put(out, w, VT);
              } else {
                unescaped(e);
                out[w++] = BACKSLASH;
                out[w++] = e;
              }
            } else if (b === QUOTE) {
              out[w++] = BACKSLASH;
              out[w++] = QUOTE;
            } else if (b < 0x20) {
              // Raw control characters other than COPY's escaped ones, as Postgres's escape_json writes them.
              w = put(out, w, CONTROL);
              out[w++] = HEX[b >> 4]!;
              out[w++] = HEX[b & 15]!;
            } else {
              out[w++] = b;
            }
          }
          out[w++] = QUOTE;
          break;
        }
        case 'json': {
          for (; i < end; i++) {
            const b = line[i]!;
            if (b === TAB) break;
            if (b === BACKSLASH) out[w++] = unescaped(line[++i]!);
            else {
              if ((b | 0x20) === 0x7b) brackets += 1; // `{` 0x7b or `[` 0x5b
              out[w++] = b;
            }
          }
          break;
        }
        case 'number': {
          const stop = fieldEnd(line, i, end);
          if (!isJsonNumber(line, i, stop)) throw new SyntaxError(`column ${c + 1} is not a JSON number`);
          w = copyPlain(line, i, stop, out, w);
          i = stop;
          break;
        }
        case 'float': {
          const stop = fieldEnd(line, i, end);
          // NaN, Infinity, -Infinity: not JSON numbers, so to_json quotes them.
          const named = isNamedFloat(line, i, stop);
          if (!named && !isJsonNumber(line, i, stop)) throw new SyntaxError(`column ${c + 1} is not a JSON number`);
          if (named) out[w++] = QUOTE;
          w = copyPlain(line, i, stop, out, w);
          if (named) out[w++] = QUOTE;
          i = stop;
          break;
        }
        case 'boolean': {
          const stop = fieldEnd(line, i, end);
          if (stop !== i + 1 || (line[i] !== 0x74 && line[i] !== 0x66)) throw new SyntaxError(`column ${c + 1} is not a boolean's t or f`);
          w = put(out, w, line[i] === 0x74 ? TRUE : FALSE);
          i = stop;
          break;
        }
        case 'timestamptz':
        case 'timestamp':
          w = isoTimestamp(line, i, fieldEnd(line, i, end), out, w, form === 'timestamptz');
          i = fieldEnd(line, i, end);
          break;
      }
      i += 1;
    }
    let flag = false;
    if (this.layout.flag) {
      const stop = fieldEnd(line, i, end);
      flag = stop === i + 4 && line[i] === 0x74;
      i = stop + 1;
    }
    if (i !== end + 1) throw new SyntaxError('COPY row has more fields than its layout');
    out[w++] = 0x7d;
    return { keys, json: out, start: HEAD_ROOM, length: w - HEAD_ROOM, brackets, flag, utf8: isUtf8(line) };
  }
}

/** `NaN`, `Infinity` or `-Infinity` in `line[from, to)`. */
function isNamedFloat(line: Buffer, from: number, to: number): boolean {
  const first = line[from];
  // Only these can start one; a negative number's digit after its sign settles it without a string.
  if ((first !== 0x4e && first !== 0x49 && first !== 0x2d) || (first === 0x2d && line[from + 1] !== 0x49)) return false;
  const word = line.toString('latin1', from, to);
  return word === 'NaN' || word === 'Infinity' || word === '-Infinity';
}

/** Whether `line[from, to)` is a number in JSON's grammar (what Postgres prints for integers and finite floats). */
function isJsonNumber(line: Buffer, from: number, to: number): boolean {
  let i = from;
  if (line[i] === 0x2d) i += 1;
  if (i >= to || !isDigit(line[i])) return false;
  if (line[i] === 0x30 && i + 1 < to && isDigit(line[i + 1])) return false;
  while (i < to && isDigit(line[i])) i += 1;
  if (i < to && line[i] === 0x2e) {
    i += 1;
    if (i >= to || !isDigit(line[i])) return false;
    while (i < to && isDigit(line[i])) i += 1;
  }
  if (i < to && (line[i]! | 0x20) === 0x65) {
    i += 1;
    if (line[i] === 0x2b || line[i] === 0x2d) i += 1;
    if (i >= to || !isDigit(line[i])) return false;
    while (i < to && isDigit(line[i])) i += 1;
  }
  return i === to;
}

/** Index of the tab or the end that closes the field starting at `i`. */
function fieldEnd(line: Buffer, i: number, end: number): number {
  while (i < end && line[i] !== TAB) i += 1;
  return i;
}

function copyPlain(line: Buffer, from: number, to: number, out: Buffer, w: number): number {
  for (let i = from; i < to; i++) {
    const b = line[i]!;
    if (b === TAB) break;
    out[w++] = b;
  }
  return w;
}

/** A key field's text, COPY's escapes undone. */
function textOf(line: Buffer, from: number, to: number): string {
  if (to === from + 2 && line[from] === BACKSLASH && line[from + 1] === 0x4e) throw new SyntaxError('a key value is NULL');
  let escaped = false;
  let ascii = true;
  for (let i = from; i < to; i++) {
    const b = line[i]!;
    if (b === BACKSLASH) escaped = true;
    if (b >= 0x80) ascii = false;
  }
  // Node's own slicers, without toString's argument handling: a key is read for every row.
  if (!escaped) return ascii ? (line as RawBuffer).latin1Slice(from, to) : (line as RawBuffer).utf8Slice(from, to);
  const bytes: number[] = [];
  for (let i = from; i < to; i++) bytes.push(line[i] === BACKSLASH ? unescaped(line[++i]!) : line[i]!);
  return Buffer.from(bytes).toString('utf8');
}

/**
 * A timestamp's ISO text as to_json writes it: `T` between date and time, and with a time zone, its offset's
 * minutes always present (`+00` → `+00:00`; `+05:30` and `+05:30:15` stay). `infinity`, `-infinity` and the ` BC`
 * suffix are the same in both forms.
 */
function isoTimestamp(line: Buffer, from: number, to: number, out: Buffer, w: number, zoned: boolean): number {
  out[w++] = QUOTE;
  let i = from;
  if (isDigit(line[i])) {
    while (i < to && line[i] !== 0x20) out[w++] = line[i++]!;
    if (i === to || !isDigit(line[i - 1]) || !isDigit(line[i + 1])) throw new SyntaxError('a timestamp is not in the ISO form');
    out[w++] = 0x54; // T
    i += 1;
    if (zoned) {
      while (i < to && line[i] !== 0x2b && line[i] !== 0x2d) out[w++] = line[i++]!;
      if (i + 3 > to || !isDigit(line[i + 1]) || !isDigit(line[i + 2])) throw new SyntaxError('a timestamp with time zone has no UTC offset');
      out[w++] = line[i]!;
      out[w++] = line[i + 1]!;
      out[w++] = line[i + 2]!;
      i += 3;
      if (line[i] !== 0x3a) w = put(out, w, MINUTES);
    }
  } else {
    const word = line.toString('latin1', from, to);
    // The value itself stays out of the message: errors reach logs and the dashboard.
    if (word !== 'infinity' && word !== '-infinity') throw new SyntaxError('a timestamp is not in the ISO form');
  }
  w = copyPlain(line, i, to, out, w);
  out[w++] = QUOTE;
  return w;
}
