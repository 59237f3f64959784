import { describe, expect, it } from 'vitest';
import { JsonNumber, ReusedValues, isObject, parseLossless, parseLosslessSequence, writeLossless } from './json-lossless.js';

describe('parseLossless', () => {
  it('keeps every digit of numbers a double cannot hold, and the digits of decimals as written', () => {
    const v = parseLossless('{"lsn":18446744073709551615,"ns":1709296496123456789,"d":1.10,"e":1.0E10,"neg":-0.0}');
    expect(writeLossless(v)).toBe('{"lsn":18446744073709551615,"ns":1709296496123456789,"d":1.10,"e":1.0E10,"neg":-0.0}');
  });

  it('decodes escapes, unicode and nested structures like JSON.parse does', () => {
    const text = '{"s":"a \\"q\\" \\\\ \\n \\u00e9 😀","a":[true,false,null,{"x":[]}],"o":{}}';
    const v = parseLossless(text);
    expect(isObject(v) && v.s).toBe(JSON.parse(text).s);
    expect(writeLossless(v)).toBe(JSON.stringify(JSON.parse(text)));
  });

  it('treats __proto__ as an ordinary key', () => {
    const v = parseLossless('{"__proto__":{"polluted":1},"constructor":2}');
    expect(isObject(v) && Object.keys(v)).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each(['{"a":1', '{"a" 1}', '[1,]', '01', '"\u0001"', 'tru', '{"a":1} x', '', '"\\x"'])('refuses %j with the position', (text) => {
    expect(() => parseLossless(text)).toThrow(/not valid JSON: .* at position \d+/);
  });

  it('refuses nesting deep enough to exhaust the stack', () => {
    expect(() => parseLossless('['.repeat(10_000) + ']'.repeat(10_000))).toThrow(/nesting deeper than/);
  });

  it('reads a sequence of values separated by newlines', () => {
    expect(parseLosslessSequence('{"a":1}\n{"b":2}\n\n[3]\n').map(writeLossless)).toEqual(['{"a":1}', '{"b":2}', '[3]']);
    expect(parseLosslessSequence('  ')).toEqual([]);
  });

  it('keeps numbers as JsonNumber', () => {
    expect(parseLossless('12')).toEqual(new JsonNumber('12'));
  });

  it('reuses the parsed value of a repeated member text, and never a value that only shares its beginning', () => {
    const reuse = new ReusedValues('schema');
    const schema = JSON.stringify({ type: 'struct', fields: Array.from({ length: 20 }, (_, i) => ({ type: 'int32', field: `c${i}` })) });
    const a = parseLossless(`{"schema":${schema},"payload":{"id":1}}`, reuse);
    const b = parseLossless(`{"schema":${schema} ,"payload":{"id":2}}`, reuse);
    expect(isObject(a) && isObject(b) && a.schema === b.schema).toBe(true);
    expect(writeLossless(b)).toBe(`{"schema":${schema},"payload":{"id":2}}`);
    // Same prefix, more text after it: parsed, not taken from the cache.
    const longer = `${schema.slice(0, -1)},"extra":true}`;
    const c = parseLossless(`{"schema":${longer},"payload":{}}`, reuse);
    expect(isObject(c) && isObject(c.schema) && c.schema.extra).toBe(true);
    expect(() => parseLossless(`{"schema":${schema}x,"payload":{}}`, reuse)).toThrow(/not valid JSON/);
  });
});
