import { AppError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `250ms`, `30s`, `5m`, `1h`, `1d` (or a bare number of milliseconds) into milliseconds.
 * Throws CONFIG_INVALID naming the accepted forms.
 */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isFinite(text) && text >= 0) return text;
    throw new AppError('CONFIG_INVALID', `duration must be a non-negative number of ms, got ${text}`);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) {
    throw new AppError('CONFIG_INVALID', `"${text}" is not a duration; use e.g. 500ms, 30s, 5m, 1h, 1d`);
  }
  return Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!);
}
