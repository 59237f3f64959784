import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileMask, hashText, maskMembers, firstChars, valueText } from './masks.js';

const KEY = Buffer.from('a pseudonym key of some length');
const hmac = (text: string): string => createHmac('sha256', KEY).update(text, 'utf8').digest('hex');

describe('valueText', () => {
  it('reads a string by its content and anything else by its JSON text', () => {
    expect(valueText('"a\\"b"')).toBe('a"b');
    expect(valueText('12345678901234567890')).toBe('12345678901234567890');
    expect(valueText('"12345678901234567890"')).toBe('12345678901234567890');
    expect(valueText('true')).toBe('true');
    expect(valueText('[1,2]')).toBe('[1,2]');
    expect(valueText('null')).toBeNull();
  });
});

describe('hash', () => {
  it('is HMAC-SHA-256 in lower-case hex (RFC 4231 style vector)', () => {
    expect(hashText(Buffer.from('key'), 'The quick brown fox jumps over the lazy dog')).toBe(
      'f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8',
    );
  });

  it('hashes the outgoing text, so an integer and a bigint string of the same digits hash alike, and keeps null', () => {
    const mask = compileMask({ kind: 'hash' }, KEY);
    expect(mask('42')).toBe(JSON.stringify(hmac('42')));
    expect(mask('"42"')).toBe(mask('42'));
    expect(mask('"héllo ☃"')).toBe(JSON.stringify(hmac('héllo ☃')));
    expect(mask('null')).toBe('null');
  });

  it('gives every output a different value under another key', () => {
    const other = compileMask({ kind: 'hash' }, Buffer.from('another pseudonym key'));
    expect(other('"a@b.c"')).not.toBe(compileMask({ kind: 'hash' }, KEY)('"a@b.c"'));
  });
});

describe('the other pipeline masks', () => {
  it('truncates by code points, never splitting a surrogate pair', () => {
    expect(firstChars('a😀bc', 2)).toBe('a😀');
    expect(firstChars('ab', 5)).toBe('ab');
    expect(compileMask({ kind: 'truncate', chars: 3 }, null)('"ab   "')).toBe('"ab "');
  });

  it('replaces every match of a JavaScript regular expression with the text as written', () => {
    const card = compileMask({ kind: 'replace', pattern: '\\d(?=\\d{4})', with: '*' }, null);
    expect(card('"4111111111111234"')).toBe('"************1234"');
    expect(card('41111234')).toBe('"****1234"');
    expect(compileMask({ kind: 'replace', pattern: 'x', with: '$&$1' }, null)('"axb"')).toBe('"a$&$1b"');
    expect(card('null')).toBe('null');
  });

  it('redacts to a fixed string and nulls, keeping null', () => {
    expect(compileMask({ kind: 'redact', text: '***' }, null)('"secret"')).toBe('"***"');
    expect(compileMask({ kind: 'redact', text: '***' }, null)('null')).toBe('null');
    expect(compileMask({ kind: 'null' }, null)('{"a":1}')).toBe('null');
  });

  it('refuses a hash without a key', () => {
    expect(() => compileMask({ kind: 'hash' }, null)).toThrow(/masking.key/);
  });
});

describe('maskMembers', () => {
  it('rewrites only the named members and leaves every other byte as it was', () => {
    const row = '{"id":1,"email":"a@b.c","doc":{"email":"nested stays"},"big":12345678901234567890,"n":null}';
    const out = maskMembers(
      row,
      new Map([
        ['email', compileMask({ kind: 'hash' }, KEY)],
        ['n', compileMask({ kind: 'redact', text: 'x' }, null)],
      ]),
    );
    expect(out).toBe(`{"id":1,"email":"${hmac('a@b.c')}","doc":{"email":"nested stays"},"big":12345678901234567890,"n":null}`);
  });

  it('finds members whose names need escaping', () => {
    const row = '{"a\\"b":"v","c":1}';
    expect(maskMembers(row, new Map([['a"b', () => '"m"']]))).toBe('{"a\\"b":"m","c":1}');
  });

  it('returns the text unchanged when no member is masked', () => {
    const row = '{"id":1}';
    expect(maskMembers(row, new Map([['x', () => 'null']]))).toBe(row);
  });
});
