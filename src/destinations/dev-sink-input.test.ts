import { isUtf8 } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { fieldProblem, invalidUtf8Offset, tableNameProblem } from './dev-sink-input.js';
import { prng } from '../../test/helpers/prng.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('invalidUtf8Offset', () => {
  it('accepts valid UTF-8 of every length', () => {
    expect(invalidUtf8Offset(Buffer.from('a é € 😀 \u{10ffff}'))).toBe(-1);
  });

  it('points at the first byte of a sequence that is not UTF-8', () => {
    expect(invalidUtf8Offset(bytes(0x61, 0xff))).toBe(1);
    expect(invalidUtf8Offset(bytes(0x61, 0x62, 0x80))).toBe(2); // lone continuation byte
    expect(invalidUtf8Offset(bytes(0xc0, 0xaf))).toBe(0); // overlong '/'
    expect(invalidUtf8Offset(bytes(0xe0, 0x80, 0xaf))).toBe(0); // overlong three-byte form
    expect(invalidUtf8Offset(bytes(0x61, 0xed, 0xa0, 0x80))).toBe(1); // an encoded surrogate (CESU-8)
    expect(invalidUtf8Offset(bytes(0xf4, 0x90, 0x80, 0x80))).toBe(0); // above U+10FFFF
    expect(invalidUtf8Offset(bytes(0x61, 0xe2, 0x82))).toBe(1); // cut short at the end
    expect(invalidUtf8Offset(bytes(0xc3, 0x28))).toBe(0); // lead byte without its continuation
  });

  it('agrees with Node on random bytes', () => {
    const random = prng(7);
    for (let n = 0; n < 2000; n++) {
      const b = Uint8Array.from({ length: 1 + Math.floor(random() * 6) }, () =>
        random() < 0.5 ? 0x80 + Math.floor(random() * 0x80) : Math.floor(random() * 256),
      );
      expect(invalidUtf8Offset(b) === -1, Buffer.from(b).toString('hex')).toBe(isUtf8(b));
    }
  });
});

describe('fieldProblem', () => {
  const check = (text: string, row = 0) => fieldProblem(JSON.parse(text), text, row);

  it('passes rows whose strings are well formed, NULs in values included', () => {
    expect(check('{"a":"x\\u0000y","b":"\\ud83d\\ude00","c":{"d":["\\u00e9"]}}')).toBeUndefined();
  });

  it('names the row, the field and where in a nested value the unpaired surrogate is', () => {
    expect(check('{"a":1,"b":{"c":[0,{"\\udc01":1}]}}', 4)).toEqual({
      row: 4,
      field: 'b',
      code: 'UNPAIRED_SURROGATE',
      message: 'row 4, field "b": the string at "b"."c"[1]."\\udc01" holds an unpaired surrogate \\udc01, which UTF-8 cannot represent',
    });
  });

  it('refuses a NUL in a top-level key, which would name a column', () => {
    expect(check('{"a\\u0000":1}')).toMatchObject({ row: 0, field: 'a\u0000', code: 'NUL_IN_KEY' });
  });

  it('refuses table names that cannot be stored', () => {
    expect(tableNameProblem('bronze.t\u0000')).toBe('config.table holds a NUL character');
    expect(tableNameProblem('bronze.\ud800')).toBe('config.table holds an unpaired surrogate \\ud800');
    expect(tableNameProblem('bronze.t')).toBeUndefined();
  });
});
