import { describe, expect, it } from 'vitest';
import { JsonNumber, isObject, parseLossless, parseLosslessSequence, writeLossless } from './json-lossless.js';

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
});
