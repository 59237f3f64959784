import { describe, expect, it } from 'vitest';
import { bigIntToLsn, changeOrdering, compareLsn, lsnToBigInt, snapshotOrdering } from './lsn.js';
import { prng } from '../../test/helpers/prng.js';

const TWO_32 = 2n ** 32n;

/** A random LSN near a 32-bit boundary or anywhere, as Postgres prints it. */
function randomLsn(next: () => number): bigint {
  const hi = BigInt(Math.floor(next() * 4));
  const lo = next() < 0.5 ? TWO_32 - 1n - BigInt(Math.floor(next() * 3)) : BigInt(Math.floor(next() * 2 ** 32));
  return hi * TWO_32 + lo;
}

describe('LSN text and numbers', () => {
  it('round-trips LSNs at the edges of the low 32 bits', () => {
    for (const text of ['0/0', '0/1', '0/FFFFFFFF', '1/0', '1/FFFFFFFF', '16/B374D848', 'FFFFFFFF/0', 'FFFFFFFF/FFFFFFFF']) {
      expect(bigIntToLsn(lsnToBigInt(text))).toBe(text);
    }
    expect(lsnToBigInt('1/0')).toBe(TWO_32);
    expect(lsnToBigInt('0/FFFFFFFF')).toBe(TWO_32 - 1n);
    expect(lsnToBigInt('FFFFFFFF/FFFFFFFF')).toBe(2n ** 64n - 1n);
  });

  it('reads padded and lower-case forms as the same position and prints the canonical form', () => {
    expect(lsnToBigInt('00000000/0198E518')).toBe(lsnToBigInt('0/198E518'));
    expect(bigIntToLsn(lsnToBigInt('00000000/0198E518'))).toBe('0/198E518');
    expect(bigIntToLsn(lsnToBigInt('0000001a/00000000'))).toBe('1A/0');
    expect(lsnToBigInt('16/b374d848')).toBe(lsnToBigInt('16/B374D848'));
  });

  it('round-trips random positions through text', () => {
    const next = prng(7);
    for (let i = 0; i < 500; i++) {
      const v = randomLsn(next);
      expect(lsnToBigInt(bigIntToLsn(v))).toBe(v);
    }
  });

  it('refuses text that is not an LSN with a RangeError', () => {
    for (const text of ['', '0', '/0', '0/', '0/0/0', 'G/0', '0/-1', ' 0/1', '0/1 ', '123456789/0', '0/123456789', '0x1/0']) {
      expect(() => lsnToBigInt(text), text).toThrow(RangeError);
    }
    expect(() => compareLsn('0/1', 'nope')).toThrow(RangeError);
    expect(() => changeOrdering('nope', 1)).toThrow(RangeError);
  });

  it('compares LSNs by position, not by text', () => {
    expect(compareLsn('0/FFFFFFFF', '1/0')).toBe(-1);
    expect(compareLsn('A/0', '10/0')).toBe(-1);
    expect(compareLsn('0/9', '0/10')).toBe(-1);
    expect(compareLsn('1/0', '0/FFFFFFFF')).toBe(1);
    expect(compareLsn('00000001/00000000', '1/0')).toBe(0);
  });
});

describe('change and snapshot orderings', () => {
  it('sort as strings exactly as (commit LSN, position), across the 32-bit boundary', () => {
    const next = prng(11);
    const changes: Array<{ lsn: bigint; position: number; ordering: string }> = [];
    for (let i = 0; i < 400; i++) {
      const lsn = randomLsn(next);
      const position = next() < 0.3 ? Math.floor(next() * 12) + 1 : Math.floor(next() * 2_000_000_000) + 1;
      changes.push({ lsn, position, ordering: changeOrdering(bigIntToLsn(lsn), position) });
    }
    changes.push(
      { lsn: TWO_32 - 1n, position: 9, ordering: changeOrdering('0/FFFFFFFF', 9) },
      { lsn: TWO_32 - 1n, position: 10, ordering: changeOrdering('0/FFFFFFFF', 10) },
      { lsn: TWO_32, position: 1, ordering: changeOrdering('1/0', 1) },
    );
    const byValue = [...changes].sort((a, b) => (a.lsn !== b.lsn ? (a.lsn < b.lsn ? -1 : 1) : a.position - b.position)).map((c) => c.ordering);
    const byText = changes.map((c) => c.ordering).sort();
    expect(byText).toEqual(byValue);
  });

  it('are the same for padded and plain forms of one LSN', () => {
    expect(changeOrdering('00000000/0198E518', 3)).toBe(changeOrdering('0/198E518', 3));
    expect(snapshotOrdering('00000000/0198E518')).toBe(snapshotOrdering('0/198E518'));
  });

  it('put a snapshot before every change of the same or a later LSN', () => {
    const next = prng(13);
    for (let i = 0; i < 300; i++) {
      const start = randomLsn(next);
      const snapshot = snapshotOrdering(bigIntToLsn(start));
      const later = start + BigInt(Math.floor(next() * 3)) * (next() < 0.5 ? 1n : TWO_32);
      const position = Math.floor(next() * 1000) + 1;
      expect(snapshot < changeOrdering(bigIntToLsn(later), position), `${snapshot} vs ${bigIntToLsn(later)}:${position}`).toBe(true);
    }
    expect(snapshotOrdering('0/FFFFFFFF') < changeOrdering('0/FFFFFFFF', 0)).toBe(true);
    expect(snapshotOrdering('0/FFFFFFFF') < changeOrdering('1/0', 1)).toBe(true);
  });

  it('sort after ordinary watermark values (four-digit years, dates, integers) a table had before it moved to change capture', () => {
    for (const watermark of [
      '9999-12-31T23:59:59.999999Z',
      '2024-01-02T03:04:05.000000',
      '2024-01-02',
      'p99999999999999999999',
      'n99999999999999999957',
      '!-infinity',
    ]) {
      expect(watermark < snapshotOrdering('0/0')).toBe(true);
    }
  });
});
