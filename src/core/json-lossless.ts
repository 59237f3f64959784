import { AppError } from './errors.js';

/**
 * A JSON parser that keeps every number as the text it was written as. Change events carry int64 values (LSNs,
 * nanosecond timestamps, bigint columns) beyond 2^53 and doubles whose digits matter (`1.10`); `JSON.parse` would
 * round them. Objects are null-prototype records, so a key such as `__proto__` is an ordinary member.
 */
export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** Deeper nesting than this is refused: no change event comes close, and a hostile body must not exhaust the stack. */
const MAX_DEPTH = 256;

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

export function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}

/**
 * Values of members named `key` seen before, by their exact text: a change event's `schema` is the same kilobytes
 * in every event of a table, so it is compared (a native prefix test) instead of parsed again. Hits return the
 * same object, which callers must not modify.
 */
export class ReusedValues {
  private entries: Array<{ text: string; value: JsonValue }> = [];

  constructor(
    readonly key: string,
    private readonly size = 32,
  ) {}

  find(s: string, at: number): { text: string; value: JsonValue } | undefined {
    for (let k = 0; k < this.entries.length; k++) {
      const e = this.entries[k]!;
      if (s.startsWith(e.text, at)) {
        if (k > 0) this.entries = [e, ...this.entries.slice(0, k), ...this.entries.slice(k + 1)];
        return e;
      }
    }
    return undefined;
  }

  remember(text: string, value: JsonValue): void {
    this.entries = [{ text, value }, ...this.entries].slice(0, this.size);
  }
}

class Parser {
  i = 0;
  constructor(
    private readonly s: string,
    private readonly reuse?: ReusedValues,
  ) {}

  /** A member value that may be one seen before (see ReusedValues). */
  member(key: string, depth: number): JsonValue {
    const r = this.reuse;
    if (r === undefined || key !== r.key) return this.value(depth);
    this.ws();
    const start = this.i;
    const hit = r.find(this.s, start);
    if (hit) {
      // The cached text must end where the value does: a longer value sharing the prefix is not a hit.
      const after = this.s.charCodeAt(start + hit.text.length);
      if (after === 0x2c || after === 0x7d || after === 0x20 || after === 0x0a || after === 0x0d || after === 0x09) {
        this.i = start + hit.text.length;
        return hit.value;
      }
    }
    const v = this.value(depth);
    if (typeof v === 'object' && v !== null && this.i - start > 256) r.remember(this.s.slice(start, this.i), v);
    return v;
  }

  fail(what: string): never {
    throw new AppError('EVENT_INVALID', `not valid JSON: ${what} at position ${this.i}`);
  }

  ws(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i += 1;
      else return;
    }
  }

  get done(): boolean {
    this.ws();
    return this.i >= this.s.length;
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    this.ws();
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b:
        return this.object(depth);
      case 0x5b:
        return this.array(depth);
      case 0x22:
        return this.string();
      case 0x74:
        return this.literal('true', true);
      case 0x66:
        return this.literal('false', false);
      case 0x6e:
        return this.literal('null', null);
    }
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) this.fail(Number.isNaN(c) ? 'unexpected end' : `unexpected character ${JSON.stringify(this.s[this.i])}`);
    this.i += m[0].length;
    return new JsonNumber(m[0]);
  }

  literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) this.fail('unexpected token');
    this.i += word.length;
    return v;
  }

  string(): string {
    const s = this.s;
    const start = this.i + 1;
    const quote = s.indexOf('"', start);
    if (quote === -1) this.fail('unterminated string');
    const slash = s.indexOf('\\', start);
    if (slash === -1 || slash > quote) {
      const text = s.slice(start, quote);
      for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) < 0x20) this.fail('control character in string');
      this.i = quote + 1;
      return text;
    }
    // Escapes: find the real end, then let the platform decode the literal exactly.
    let j = start;
    for (;;) {
      const c = s.charCodeAt(j);
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c === 0x5c) j += 2;
      else if (c === 0x22) break;
      else j += 1;
    }
    const literal = s.slice(this.i, j + 1);
    this.i = j + 1;
    try {
      return JSON.parse(literal) as string;
    } catch {
      return this.fail('invalid escape in string');
    }
  }

  array(depth: number): JsonValue[] {
    this.i += 1;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i += 1;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s.charCodeAt(this.i);
      this.i += 1;
      if (c === 0x5d) return out;
      if (c !== 0x2c) {
        this.i -= 1;
        this.fail('expected , or ]');
      }
    }
  }

  object(depth: number): JsonObject {
    this.i += 1;
    const out: JsonObject = Object.create(null) as JsonObject;
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i += 1;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail('expected a key');
      const key = this.string();
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail('expected :');
      this.i += 1;
      out[key] = this.member(key, depth + 1);
      this.ws();
      const c = this.s.charCodeAt(this.i);
      this.i += 1;
      if (c === 0x7d) return out;
      if (c !== 0x2c) {
        this.i -= 1;
        this.fail('expected , or }');
      }
    }
  }
}

/** Parses one JSON value; anything after it but whitespace is an error. */
export function parseLossless(text: string, reuse?: ReusedValues): JsonValue {
  const p = new Parser(text, reuse);
  const v = p.value(0);
  if (!p.done) p.fail('text after the value');
  return v;
}

/** Parses a sequence of JSON values separated by whitespace (one value, or newline-delimited JSON). */
export function parseLosslessSequence(text: string, reuse?: ReusedValues): JsonValue[] {
  const p = new Parser(text, reuse);
  const out: JsonValue[] = [];
  while (!p.done) out.push(p.value(0));
  return out;
}

/** JSON text of a value, numbers as they were written. */
export function writeLossless(v: JsonValue): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof JsonNumber) return v.text;
  if (Array.isArray(v)) return `[${v.map(writeLossless).join(',')}]`;
  const parts: string[] = [];
  for (const k of Object.keys(v)) parts.push(`${JSON.stringify(k)}:${writeLossless(v[k]!)}`);
  return `{${parts.join(',')}}`;
}
