import { describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfter, type BackoffPolicy } from './backoff.js';

const NO_JITTER: BackoffPolicy = { baseMs: 1000, capMs: 300_000, jitter: 0 };

describe('backoffDelay', () => {
  it('doubles the delay with every attempt, starting at the base', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, NO_JITTER));
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000]);
  });

  it('never goes past the cap, even for absurd attempt numbers', () => {
    expect(backoffDelay(9, NO_JITTER)).toBe(256_000);
    expect(backoffDelay(10, NO_JITTER)).toBe(300_000);
    expect(backoffDelay(50, NO_JITTER)).toBe(300_000);
    expect(backoffDelay(5000, NO_JITTER)).toBe(300_000);
  });

  it('treats attempt 0 or below as the first retry', () => {
    expect(backoffDelay(0, NO_JITTER)).toBe(1000);
    expect(backoffDelay(-3, NO_JITTER)).toBe(1000);
  });

  it('keeps a jittered delay between (1 - jitter) and 1 times the exponential delay', () => {
    const policy: BackoffPolicy = { baseMs: 1000, capMs: 300_000, jitter: 0.5 };
    expect(backoffDelay(4, policy, undefined, () => 0)).toBe(4000);
    expect(backoffDelay(4, policy, undefined, () => 0.999999)).toBe(8000);
    expect(backoffDelay(4, policy, undefined, () => 0.5)).toBe(6000);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, policy);
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
  });

  it('spreads full jitter from zero to the delay, and clamps jitter outside 0..1', () => {
    const full: BackoffPolicy = { baseMs: 1000, capMs: 300_000, jitter: 1 };
    expect(backoffDelay(2, full, undefined, () => 0)).toBe(0);
    expect(backoffDelay(2, full, undefined, () => 0.25)).toBe(500);
    expect(backoffDelay(2, { ...full, jitter: 7 }, undefined, () => 0)).toBe(0);
    expect(backoffDelay(2, { ...full, jitter: -1 }, undefined, () => 0)).toBe(2000);
  });

  it('waits at least as long as the server asked with Retry-After', () => {
    expect(backoffDelay(1, NO_JITTER, 30_000)).toBe(30_000);
    // A shorter Retry-After does not shorten the computed delay.
    expect(backoffDelay(6, NO_JITTER, 500)).toBe(32_000);
  });

  it('honours a Retry-After longer than the cap, but not beyond an hour (or the cap, if longer)', () => {
    expect(backoffDelay(1, NO_JITTER, 900_000)).toBe(900_000);
    expect(backoffDelay(1, NO_JITTER, 86_400_000)).toBe(3_600_000);
    expect(backoffDelay(1, { ...NO_JITTER, capMs: 7_200_000 }, 86_400_000)).toBe(7_200_000);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2024-03-01T12:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
  });

  it('reads fractional seconds, rounding up to the millisecond', () => {
    expect(parseRetryAfter('1.5', now)).toBe(1500);
    expect(parseRetryAfter('0.0001', now)).toBe(1);
  });

  it('reads an HTTP-date relative to now', () => {
    expect(parseRetryAfter('Fri, 01 Mar 2024 12:00:30 GMT', now)).toBe(30_000);
    // The obsolete RFC 850 form is still a valid HTTP-date.
    expect(parseRetryAfter('Friday, 01-Mar-24 12:01:00 GMT', now)).toBe(60_000);
  });

  it('treats an HTTP-date in the past as no wait', () => {
    expect(parseRetryAfter('Fri, 01 Mar 2024 11:00:00 GMT', now)).toBe(0);
  });

  it('returns undefined for a missing or unreadable header', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    // Date.parse alone would read these as dates in 2001, i.e. "no wait".
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter('1.5.2', now)).toBeUndefined();
  });
});
