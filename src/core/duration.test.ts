import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    [' 2 m ', 120_000],
    ['750', 750],
    ['0s', 0],
  ])('reads %j as %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('takes a bare non-negative number as milliseconds', () => {
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration(0)).toBe(0);
  });

  it.each<string | number>(['', 'soon', '5 minutes', '-5s', '1e3ms', '5w', -1, Number.NaN, Number.POSITIVE_INFINITY])(
    'refuses %j with CONFIG_INVALID naming the accepted forms',
    (value) => {
      let caught: unknown;
      try {
        parseDuration(value);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(AppError);
      expect((caught as AppError).code).toBe('CONFIG_INVALID');
      if (typeof value === 'string') expect((caught as AppError).message).toContain('30s');
    },
  );
});
