import { describe, expect, it } from 'vitest';
import { sortableWatermark } from './ordering.js';
import { prng } from '../../test/helpers/prng.js';

function lexSort(values: string[]): string[] {
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The text Postgres prints for a timestamptz under TimeZone=UTC: fraction without trailing zeros, `+00`. */
function pgTimestamp(micros: bigint, withZone: boolean): string {
  const ms = Number(micros / 1000n);
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const frac = (micros % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac ? `.${frac}` : ''}${withZone ? '+00' : ''}`;
}

describe('sortableWatermark for timestamps', () => {
  it('orders timestamps with 0 to 6 fractional digits exactly like the instants they denote', () => {
    const random = prng(7);
    const base = 1_709_294_400_000_000n; // 2024-03-01 12:00:00 UTC in microseconds
    const instants: bigint[] = [];
    for (let i = 0; i < 400; i++) {
      const second = BigInt(Math.floor(random() * 5)) * 1_000_000n;
      // Pick fractions of every length: .5, .25, .125, ... .000001 and zero.
      const digits = Math.floor(random() * 7);
      const unit = 10n ** BigInt(6 - digits);
      const frac = digits === 0 ? 0n : BigInt(Math.floor(random() * 10 ** digits)) * unit;
      instants.push(base + second + frac);
    }
    const texts = instants.map((m) => pgTimestamp(m, true));
    expect(new Set(texts.map((t) => /\.(\d+)/.exec(t)?.[1]?.length ?? 0))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6]));

    const byInstant = [...instants].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((m) => sortableWatermark(pgTimestamp(m, true), 'timestamp')!);
    const byText = lexSort(texts.map((t) => sortableWatermark(t, 'timestamp')!));
    expect(byText).toEqual(byInstant);
  });

  it('puts a whole second before the half second after it', () => {
    const whole = sortableWatermark('2024-01-02 03:04:05+00', 'timestamp')!;
    const half = sortableWatermark('2024-01-02 03:04:05.5+00', 'timestamp')!;
    expect(whole < half).toBe(true);
  });

  it('renders an instant at fixed width with a Z for UTC', () => {
    expect(sortableWatermark('2024-01-02 03:04:05.12+00', 'timestamp')).toBe('2024-01-02T03:04:05.120000Z');
    expect(sortableWatermark('2024-01-02 03:04:05+00', 'timestamp')).toBe('2024-01-02T03:04:05.000000Z');
  });

  it('orders timestamps without time zone the same way, with no zone suffix', () => {
    const texts = ['2024-01-02 03:04:05.000001', '2024-01-02 03:04:05', '2024-01-02 03:04:04.999999', '2024-01-02 03:04:05.1'];
    const sorted = lexSort(texts.map((t) => sortableWatermark(t, 'timestamp')!));
    expect(sorted).toEqual(['2024-01-02T03:04:04.999999', '2024-01-02T03:04:05.000000', '2024-01-02T03:04:05.000001', '2024-01-02T03:04:05.100000']);
  });

  it('sorts -infinity before every timestamp and infinity after', () => {
    const values = ['infinity', '2024-01-01 00:00:00+00', '-infinity', '9999-12-31 23:59:59.999999+00', '0001-01-01 00:00:00+00'];
    const sorted = lexSort(values.map((v) => sortableWatermark(v, 'timestamp')!));
    expect(sorted[0]).toBe(sortableWatermark('-infinity', 'timestamp'));
    expect(sorted[sorted.length - 1]).toBe(sortableWatermark('infinity', 'timestamp'));
    expect(sorted.slice(1, 4)).toEqual(['0001-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', '9999-12-31T23:59:59.999999Z']);
  });

  it('sorts years past 9999 after four-digit years and before infinity', () => {
    const values = ['294276-12-31 23:59:59+00', '10000-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00', 'infinity', '2024-01-01 00:00:00+00'];
    const sorted = lexSort(values.map((v) => sortableWatermark(v, 'timestamp')!));
    expect(sorted).toEqual(
      ['2024-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00', '10000-01-01 00:00:00+00', '294276-12-31 23:59:59+00', 'infinity'].map((v) =>
        sortableWatermark(v, 'timestamp'),
      ),
    );
  });

  it('sorts BC timestamps before AD ones', () => {
    const bc = sortableWatermark('0044-03-15 00:00:00+00 BC', 'timestamp')!;
    const ad = sortableWatermark('0001-01-01 00:00:00+00', 'timestamp')!;
    expect(bc < ad).toBe(true);
    expect(sortableWatermark('-infinity', 'timestamp')! < bc).toBe(true);
  });
});

describe('sortableWatermark for dates', () => {
  it('keeps ISO dates as they are and places the infinities and long years around them', () => {
    expect(sortableWatermark('2024-02-29', 'date')).toBe('2024-02-29');
    const values = ['2024-02-29', 'infinity', '10000-01-01', '-infinity', '1999-12-31', '5874897-12-31'];
    const sorted = lexSort(values.map((v) => sortableWatermark(v, 'date')!));
    expect(sorted).toEqual(
      ['-infinity', '1999-12-31', '2024-02-29', '10000-01-01', '5874897-12-31', 'infinity'].map((v) => sortableWatermark(v, 'date')),
    );
  });
});

describe('sortableWatermark for integers', () => {
  it('orders negative and positive integers numerically as plain strings', () => {
    const random = prng(11);
    const values: bigint[] = [0n, 1n, -1n, 9n, 10n, -9n, -10n, 9223372036854775807n, -9223372036854775808n];
    for (let i = 0; i < 300; i++) {
      const magnitude = BigInt(Math.floor(random() * 2 ** 53)) * BigInt(Math.floor(random() * 1024) + 1);
      values.push(random() < 0.5 ? -magnitude : magnitude);
    }
    const expected = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((v) => sortableWatermark(v.toString(), 'integer')!);
    const actual = lexSort(values.map((v) => sortableWatermark(v.toString(), 'integer')!));
    expect(actual).toEqual(expected);
  });

  it('gives every integer a distinct fixed-width form', () => {
    expect(sortableWatermark('-1', 'integer')).not.toBe(sortableWatermark('1', 'integer'));
    expect(sortableWatermark('5', 'integer')!.length).toBe(sortableWatermark('-9223372036854775808', 'integer')!.length);
  });
});

describe('sortableWatermark for anything else', () => {
  it('passes other kinds through and keeps NULL as null', () => {
    expect(sortableWatermark('abc', 'other')).toBe('abc');
    expect(sortableWatermark(null, 'timestamp')).toBeNull();
    expect(sortableWatermark(null, 'integer')).toBeNull();
  });
});

describe('sortableWatermark fast path for UTC timestamps', () => {
  it('gives the same text as the general pattern for every fraction width and for near misses', () => {
    const general = (text: string): string => {
      const m = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d(?::?\d\d)?(?::?\d\d)?)?$/.exec(text);
      if (!m) return text;
      const [, y, mo, d, h, mi, s, frac = '', offset] = m;
      const base = `${y}-${mo}-${d}T${h}:${mi}:${s}.${frac.padEnd(6, '0')}`;
      return offset === undefined ? base : offset === '+00' ? `${base}Z` : `${base}${offset}`;
    };
    const texts = ['2024-01-02 03:04:05+00', '2024-01-02 03:04:05.1+00', '2024-01-02 03:04:05.123456+00', '1999-12-31 23:59:59.99999+00'];
    for (const t of texts) expect(sortableWatermark(t, 'timestamp')).toBe(general(t));
    // Shapes the fast path must leave to the general one (or to the special cases), unchanged in result.
    expect(sortableWatermark('2024-01-02 03:04:05.+00', 'timestamp')).toBe('2024-01-02 03:04:05.+00');
    expect(sortableWatermark('2024-01-02 03:04:05.1234567+00', 'timestamp')).toBe('2024-01-02 03:04:05.1234567+00');
    expect(sortableWatermark('2024-01-02T03:04:05+00', 'timestamp')).toBe('2024-01-02T03:04:05+00');
    expect(sortableWatermark('2024-01-02 03:04:05+05:30', 'timestamp')).toBe('2024-01-02T03:04:05.000000+05:30');
    expect(sortableWatermark('2024-01-02 03:04:05.5', 'timestamp')).toBe('2024-01-02T03:04:05.500000');
    expect(sortableWatermark('12024-01-02 03:04:05+00', 'timestamp')).toBe('~0012024-01-02T03:04:05.000000Z');
    expect(sortableWatermark('2024-01-02 03:04:05+00 BC', 'timestamp')).toBe('!BC 2024-01-02 03:04:05+00 BC');
  });
});

describe('sortableWatermark for decimals', () => {
  /** The exact value of a plain decimal text, scaled by 10^40. */
  const scaled = (text: string): bigint => {
    const [whole, fraction = ''] = text.replace(/^-/, '').split('.');
    const v = BigInt(`${whole}${fraction.padEnd(40, '0')}`);
    return text.startsWith('-') ? -v : v;
  };

  it('orders decimal texts of any length and scale by their value', () => {
    const random = prng(11);
    const digits = (n: number): string => Array.from({ length: n }, () => String(Math.floor(random() * 10))).join('');
    const texts: string[] = ['0', '-0.000', '0.0'];
    for (let i = 0; i < 600; i++) {
      const whole = digits(Math.floor(random() * 25)).replace(/^0+(?=\d)/, '') || '0';
      const fraction = digits(Math.floor(random() * 12));
      texts.push(`${random() < 0.4 ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`);
    }
    const byValue = [...texts].sort((a, b) => {
      const x = scaled(a);
      const y = scaled(b);
      return x < y ? -1 : x > y ? 1 : 0;
    });
    const sortable = (t: string): string => sortableWatermark(t, 'decimal')!;
    expect(lexSort(texts.map(sortable))).toEqual(byValue.map(sortable));
    // One value, one form, whatever its scale.
    expect(sortable('1.5')).toBe(sortable('01.50'));
    expect(sortable('-0.000')).toBe(sortable('0'));
  });

  it('orders the floating-point and special texts Postgres prints', () => {
    const ordered = [
      '-Infinity',
      '-1e+21',
      '-10.25',
      '-10',
      '-9.5',
      '-1.5e-05',
      '0',
      '1e-310',
      '1.5e-05',
      '9',
      '9.5',
      '10',
      '10.25',
      '1e+21',
      'Infinity',
      'NaN',
    ];
    const sortable = ordered.map((t) => sortableWatermark(t, 'decimal')!);
    expect(lexSort(sortable)).toEqual(sortable);
  });
});
