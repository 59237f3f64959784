import { describe, expect, it } from 'vitest';
import { durationWords, progress, progressWords } from './progress.js';

describe('backfill progress', () => {
  it('computes percent, rate and time left from rows done and the estimate', () => {
    const p = progress(120_000, { rows: 2_000_000, exact: false }, 100_000, 2_500);
    expect(p).toEqual({ rows: 120_000, total: 2_000_000, exact: false, percent: 6, rowsPerSecond: 40_000, etaSeconds: 47 });
    expect(progressWords(p)).toBe('120,000 of ~2,000,000 rows (6.0%), 40,000 rows/s, about 47s left');
  });

  it('never shows more than the total or 100% before the end when the estimate was low', () => {
    const p = progress(1_200, { rows: 1_000, exact: false }, 1_200, 1_000);
    expect(p.total).toBe(1_200);
    expect(p.percent).toBe(99.9);
    expect(p.etaSeconds).toBe(0);
  });

  it('reports rows and rate alone without an estimate, and an exact count without a tilde', () => {
    expect(progressWords(progress(500, null, 500, 1_000))).toBe('500 rows, 500 rows/s');
    expect(progressWords(progress(0, { rows: 10, exact: true }, 0, 0))).toBe('0 of 10 rows (0.0%), 0 rows/s');
  });

  it('writes durations in words', () => {
    expect([45, 200, 3_720, 90_000].map(durationWords)).toEqual(['45s', '3m 20s', '1h 02m', '1d 01h']);
  });
});
