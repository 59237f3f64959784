import { describe, expect, it } from 'vitest';
import {
  civilFromDays,
  dateFromDays,
  daysFromCivil,
  timeFromUnits,
  timestampFromUnits,
  zonedTimeText,
  zonedTimestampToUtc,
} from './debezium-time.js';

// Day counts and epoch microseconds below were computed by PostgreSQL ('…'::date - '1970-01-01', extract(epoch …)).
describe('Debezium temporal values in pushsync text forms', () => {
  it('dates from day counts, BC and five-digit years as Postgres writes them', () => {
    expect(dateFromDays(19782)).toBe('2024-02-29');
    expect(dateFromDays(0)).toBe('1970-01-01');
    expect(dateFromDays(-735160)).toBe('0044-03-15 BC');
    expect(dateFromDays(2932897)).toBe('10000-01-01');
  });

  it('day counts and calendar dates convert both ways over a wide range', () => {
    for (let d = -800_000; d <= 3_000_000; d += 997) {
      const [y, m, day] = civilFromDays(d);
      expect(daysFromCivil(y, m, day)).toBe(d);
    }
  });

  it('timestamps from milli-, micro- and nanoseconds keep every digit, trailing zeros dropped', () => {
    expect(timestampFromUnits(1709296496123456n, 1_000_000n)).toBe('2024-03-01T12:34:56.123456');
    expect(timestampFromUnits(1709296496123456789n, 1_000_000_000n)).toBe('2024-03-01T12:34:56.123456789');
    expect(timestampFromUnits(1709296496120n, 1000n)).toBe('2024-03-01T12:34:56.12');
    expect(timestampFromUnits(1709251200000n, 1000n)).toBe('2024-03-01T00:00:00');
    expect(timestampFromUnits(-1n, 1_000_000n)).toBe('1969-12-31T23:59:59.999999');
    expect(timestampFromUnits(-63517780799500000n, 1_000_000n)).toBe('0044-03-15T12:00:00.5 BC');
    expect(timestampFromUnits(1709296496123456n, 1_000_000n, '+00:00')).toBe('2024-03-01T12:34:56.123456+00:00');
  });

  it('times of day, and MySQL TIME values past 24 hours or negative', () => {
    expect(timeFromUnits(45296123456n, 1_000_000n)).toBe('12:34:56.123456');
    expect(timeFromUnits(45296120n, 1000n)).toBe('12:34:56.12');
    expect(timeFromUnits(86_400_000_000n, 1_000_000n)).toBe('24:00:00');
    expect(timeFromUnits(-3020399000000n, 1_000_000n)).toBe('-838:59:59');
    expect(timeFromUnits(0n, 1_000_000_000n)).toBe('00:00:00');
  });

  it('ISO timestamps with offsets become UTC with +00:00, the fraction kept exactly', () => {
    expect(zonedTimestampToUtc('2024-03-01T12:34:56.123456Z')).toBe('2024-03-01T12:34:56.123456+00:00');
    expect(zonedTimestampToUtc('2024-03-01T12:34:56.120000Z')).toBe('2024-03-01T12:34:56.12+00:00');
    expect(zonedTimestampToUtc('2024-03-01T00:30:00+05:30')).toBe('2024-02-29T19:00:00+00:00');
    expect(zonedTimestampToUtc('2024-03-01T12:34Z')).toBe('2024-03-01T12:34:00+00:00');
    expect(zonedTimestampToUtc('+10000-01-01T00:00:00Z')).toBe('10000-01-01T00:00:00+00:00');
    expect(zonedTimestampToUtc('-0043-03-15T00:00:00Z')).toBe('0044-03-15T00:00:00+00:00 BC');
    expect(zonedTimestampToUtc('1969-12-31T23:59:59.5-00:30')).toBe('1970-01-01T00:29:59.5+00:00');
    expect(zonedTimestampToUtc('yesterday')).toBeNull();
  });

  it('times with offsets in Postgres timetz text', () => {
    expect(zonedTimeText('10:15:30.5Z')).toBe('10:15:30.5+00');
    expect(zonedTimeText('10:15:30+05:30')).toBe('10:15:30+05:30');
    expect(zonedTimeText('10:15:30.000000+05:00')).toBe('10:15:30+05');
    expect(zonedTimeText('10:15:30-08:00')).toBe('10:15:30-08');
  });
});
