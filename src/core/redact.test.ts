import { describe, expect, it } from 'vitest';
import { capEntries, createRedactor, REDACTED, truncateText } from './redact.js';

const KEY = 'sk_live/abc+def=9f8e7d';
const r = createRedactor([KEY]);

describe('redaction of text a server sent', () => {
  it('removes the configured key wherever it appears, also URL-encoded, JSON-escaped and in base64', () => {
    const base64 = Buffer.from(KEY).toString('base64');
    const text = `key ${KEY}; url ?k=${encodeURIComponent(KEY)}; php ${KEY.replace('/', '\\/')}; b64 ${base64} ${base64.replace(/=+$/, '')} ${Buffer.from(KEY).toString('base64url')}`;
    const out = r.text(text);
    expect(out).not.toContain('sk_live');
    expect(out).not.toContain(encodeURIComponent(KEY));
    expect(out).not.toContain(base64.slice(0, 20));
    expect(out.split(REDACTED)).toHaveLength(7);
  });

  it('removes any Bearer or Basic credential, not only the configured key', () => {
    expect(r.text('got Bearer eyJhbGciOi.J9.sig_x-y~z/+= from you')).toBe('got Bearer [redacted] from you');
    expect(r.text('basic dXNlcjpwYXNz')).toBe('basic [redacted]');
  });

  it('removes the values of credential-named keys in JSON, headers and query strings', () => {
    expect(r.text('{"apiKey":"a1","api_key": "a2","x-api-key":"a3","access_token":"a4","password":"a\\"5","user":"bob"}')).toBe(
      '{"apiKey":"[redacted]","api_key": "[redacted]","x-api-key":"[redacted]","access_token":"[redacted]","password":"[redacted]","user":"bob"}',
    );
    expect(r.text('Authorization: Bearer abc\nX-Api-Key: zzz\nHost: example')).toBe(
      'Authorization: [redacted]\nX-Api-Key: [redacted]\nHost: example',
    );
    expect(r.text('/v2/stream?api_key=zzz&token=yyy&page=2')).toBe('/v2/stream?api_key=[redacted]&token=[redacted]&page=2');
    expect(r.text("{'secret': 'q'}")).toBe("{'secret': '[redacted]'}");
    expect(r.text(`Authorization: Bearer ${KEY}`)).toBe('Authorization: [redacted]');
  });

  it('leaves words that only contain a credential word alone', () => {
    const text = '{"tokens_used": 12, "password_policy": "strict", "error": "column token missing"}';
    expect(r.text(text)).toBe(text);
  });

  it('does not search for a secret shorter than 4 characters as plain text', () => {
    expect(createRedactor(['k']).text('bad key')).toBe('bad key');
    expect(createRedactor(['abcd']).text('xabcdx')).toBe(`x${REDACTED}x`);
  });

  it('caps an excerpt, and never leaves the start of a secret cut at the end of the redacted head', () => {
    expect(r.excerpt(`Bearer ${KEY} ${'x'.repeat(500)}`, 30)).toBe(`Bearer ${REDACTED} ${'x'.repeat(12)}…`);
    // A long key repeated: redaction shrinks the head so much that where it was cut (inside the third copy) lies
    // within what is kept. The cut copy's first characters must not survive.
    const long = Array.from({ length: 200 }, (_, i) => 'abcdefghijklmnopqrstuvwxyz0123456789'[(i * 7) % 36]).join('');
    const out = createRedactor([long]).excerpt(long.repeat(5), 30);
    expect(out).toBe(`${REDACTED}${REDACTED}`);
  });

  it('redacts a JSON value deeply: strings, keys and credential-named members, with strings capped', () => {
    const value = {
      errors: [`bad ${KEY}`, { row: 1, authorization: `Bearer ${KEY}`, token: 7, nested: { password: null, long: 'w'.repeat(50) } }],
      [`k-${KEY}`]: true,
    };
    expect(r.value(value, 20)).toEqual({
      errors: [`bad ${REDACTED}`, { row: 1, authorization: REDACTED, token: REDACTED, nested: { password: null, long: `${'w'.repeat(20)}…` } }],
      [`k-${REDACTED}`]: true,
    });
    expect(r.value({ a: { b: { c: 1 } } }, 20, 2)).toEqual({ a: { b: '[nested]' } });
  });
});

describe('capping lists and texts', () => {
  it('keeps entries up to a total size and counts what it left out', () => {
    expect(capEntries(['aaaa', 'bbbb', 'cccc', 'dddd'], 14, 100)).toEqual(['aaaa', 'bbbb', '… 2 more']);
    expect(capEntries([{ m: 'x'.repeat(100) }], 1000, 20)).toEqual([`{"m":"${'x'.repeat(14)}…`]);
  });

  it('cuts text without splitting a surrogate pair', () => {
    expect(truncateText('ab😀cd', 3)).toBe('ab…');
    expect(truncateText('abc', 3)).toBe('abc');
  });
});
