import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { KeySealer } from './key-seal.js';

describe('KeySealer', () => {
  const sealer = new KeySealer(Buffer.from('a pseudonym key of some length'));

  it('seals the same value to the same text, different values to different texts, and opens them again', () => {
    const a = sealer.seal('12345');
    expect(sealer.seal('12345')).toBe(a);
    expect(sealer.seal('12346')).not.toBe(a);
    expect(a).not.toContain('12345');
    expect(sealer.open(a, 'app.t')).toBe('12345');
    expect(sealer.openKey(sealer.sealKey(['é', '', '2024-01-01 00:00:00+00']), 'app.t')).toEqual(['é', '', '2024-01-01 00:00:00+00']);
  });

  it('refuses a value sealed under another key, a tampered one and a raw one, asking for a reset', () => {
    const other = new KeySealer(Buffer.from('another pseudonym key'));
    for (const bad of [other.seal('12345'), `${sealer.seal('12345').slice(0, -2)}AA`, '12345']) {
      let err: unknown;
      try {
        sealer.open(bad, 'app.t');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('CURSOR_INVALID');
      expect((err as AppError).message).toContain('pushsync reset');
    }
  });
});
