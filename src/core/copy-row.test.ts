import { describe, expect, it } from 'vitest';
import { CopyRowDecoder, type CopyForm } from './copy-row.js';

function decode(forms: Array<[string, CopyForm]>, line: string, keys = 0, flag = false) {
  const decoder = new CopyRowDecoder({ keys, columns: forms.map(([name, form]) => ({ name, form })), flag });
  const row = decoder.decode(Buffer.from(line));
  return { ...row, text: row.json.toString('utf8', row.start, row.start + row.length) };
}

describe('CopyRowDecoder', () => {
  it('writes text as a JSON string, COPY escapes turned into JSON ones and raw control characters as \\u00XX', () => {
    const { text } = decode([['t', 'string']], 'a\\\\b\\tc\\nd\\re\\bf\\fg\\vh"i\x01j\x1fk\x7fé😀\n');
    expect(text).toBe('{"t":"a\\\\b\\tc\\nd\\re\\bf\\fg\\u000bh\\"i\\u0001j\\u001fk\x7fé😀"}');
    expect(JSON.parse(text)).toEqual({ t: 'a\\b\tc\nd\re\bf\fg\vh"i\x01j\x1fk\x7fé😀' });
  });

  it('reads \\N as null in every form, and text that spells \\N as that text', () => {
    const forms: CopyForm[] = ['string', 'number', 'float', 'boolean', 'timestamptz', 'timestamp', 'json'];
    const { text } = decode(
      forms.map((f) => [f, f]),
      forms.map(() => '\\N').join('\t'),
    );
    expect(JSON.parse(text)).toEqual(Object.fromEntries(forms.map((f) => [f, null])));
    expect(decode([['t', 'string']], '\\\\N').text).toBe('{"t":"\\\\N"}');
  });

  it('writes numbers as they are, and the named floats as strings', () => {
    const { text } = decode(
      [
        ['i', 'number'],
        ['a', 'float'],
        ['b', 'float'],
        ['c', 'float'],
        ['d', 'float'],
        ['e', 'float'],
      ],
      '-32768\t1e+300\tNaN\tInfinity\t-Infinity\t-0',
    );
    expect(text).toBe('{"i":-32768,"a":1e+300,"b":"NaN","c":"Infinity","d":"-Infinity","e":-0}');
  });

  it('writes booleans, and refuses what is not t or f', () => {
    expect(decode([['b', 'boolean']], 't').text).toBe('{"b":true}');
    expect(decode([['b', 'boolean']], 'f').text).toBe('{"b":false}');
    expect(() => decode([['b', 'boolean']], 'true')).toThrow(SyntaxError);
  });

  it('rewrites ISO timestamps as ISO 8601, offsets with their minutes, BC and infinities kept', () => {
    const z = (v: string): string => JSON.parse(decode([['v', 'timestamptz']], v).text).v as string;
    expect(z('2024-03-01 12:34:56.123456+00')).toBe('2024-03-01T12:34:56.123456+00:00');
    expect(z('2024-03-01 12:34:56-03:30')).toBe('2024-03-01T12:34:56-03:30');
    expect(z('1890-03-01 12:34:56+00:53:28')).toBe('1890-03-01T12:34:56+00:53:28');
    expect(z('0044-03-15 00:00:00+00 BC')).toBe('0044-03-15T00:00:00+00:00 BC');
    expect(z('10000-01-01 00:00:00+00')).toBe('10000-01-01T00:00:00+00:00');
    expect(z('infinity')).toBe('infinity');
    expect(z('-infinity')).toBe('-infinity');
    expect(JSON.parse(decode([['v', 'timestamp']], '2024-03-01 12:34:56.5 BC').text).v).toBe('2024-03-01T12:34:56.5 BC');
    expect(() => z('Fri Mar 01 12:34:56 2024 UTC')).toThrow(SyntaxError);
    expect(() => z('2024-03-01 12:34:56')).toThrow(SyntaxError);
  });

  it('embeds JSON with COPY escapes undone, and counts its opening brackets', () => {
    const row = decode([['j', 'json']], '{"a":\\n\\t[1, {"s": "x\\\\n"}]}');
    expect(row.text).toBe('{"j":{"a":\n\t[1, {"s": "x\\n"}]}}');
    expect(row.brackets).toBe(4);
  });

  it('hands the leading key fields back as text and reads the trailing flag', () => {
    const row = decode([['v', 'number']], '2024-01-01 00:00:00+00\ta\\tb\t5\ttrue', 2, true);
    expect(row.keys).toEqual(['2024-01-01 00:00:00+00', 'a\tb']);
    expect(row.text).toBe('{"v":5}');
    expect(row.flag).toBe(true);
    expect(decode([['v', 'number']], '1\tfalse', 0, true).flag).toBe(false);
    expect(decode([['v', 'number']], '1\t\\N', 0, true).flag).toBe(false);
  });

  it('escapes column names as JSON and writes the row without spaces', () => {
    expect(
      decode(
        [
          ['a"b\tc', 'number'],
          ['é', 'string'],
        ],
        '1\tx',
      ).text,
    ).toBe('{"a\\"b\\tc":1,"é":"x"}');
  });

  it('refuses a row with fewer or more fields than its layout, and escapes COPY never writes', () => {
    expect(() =>
      decode(
        [
          ['a', 'number'],
          ['b', 'number'],
        ],
        '1',
      ),
    ).toThrow(/1 of its 2 columns/);
    expect(() => decode([['a', 'number']], '1\t2')).toThrow(/more fields/);
    expect(() => decode([['a', 'string']], 'x\\q')).toThrow(/an escape COPY does not write/);
  });

  it('refuses number text that is not a JSON number, so a column whose type changed cannot make invalid JSON', () => {
    for (const text of ['1.5', '-0', '12e+3', '1E-7', '0']) expect(decode([['n', 'number']], text).text).toBe(`{"n":${text}}`);
    for (const text of ['abc', '', '1.', '.5', '01', '1e', '--1', '1 ', 'NaN']) {
      expect(() => decode([['n', 'number']], text), text).toThrow(/column 1 is not a JSON number/);
    }
    expect(() => decode([['f', 'float']], 'Infinityx')).toThrow(/not a JSON number/);
    expect(() => decode([['f', 'float']], '{"a":1}')).toThrow(/not a JSON number/);
  });

  it('refuses a NULL key value, and keeps values out of its messages', () => {
    expect(() => decode([['v', 'number']], '\\N\t1', 1)).toThrow(/a key value is NULL/);
    let message = '';
    try {
      decode([['v', 'timestamptz']], 'secret-value');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/not in the ISO form/);
    expect(message).not.toContain('secret');
  });

  it('says whether the row is valid UTF-8', () => {
    expect(decode([['t', 'string']], 'é').utf8).toBe(true);
    const decoder = new CopyRowDecoder({ keys: 0, columns: [{ name: 't', form: 'string' }], flag: false });
    expect(decoder.decode(Buffer.from([0x61, 0xff, 0x62])).utf8).toBe(false);
  });

  it('reuses its buffer but grows it for a row larger than it', () => {
    const decoder = new CopyRowDecoder({ keys: 0, columns: [{ name: 't', form: 'string' }], flag: false });
    const small = decoder.decode(Buffer.from('a')).json;
    const big = 'x'.repeat(200_000);
    const row = decoder.decode(Buffer.from(`${big}\x01`));
    expect(row.json.toString('utf8', row.start, row.start + row.length)).toBe(`{"t":"${big}\\u0001"}`);
    expect(row.json).not.toBe(small);
    expect(decoder.decode(Buffer.from('b')).json).toBe(row.json);
    // A row past the size kept has a buffer of its own, and the kept one serves the next row.
    const huge = decoder.decode(Buffer.from('y'.repeat(1_000_000)));
    expect(huge.length).toBe(1_000_008);
    expect(decoder.decode(Buffer.from('c')).json).toBe(row.json);
  });
});
