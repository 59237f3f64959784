import { describe, expect, it } from 'vitest';
import { START_CURSOR, cursorAfterRange, nextPhase, parseCursor, rangeId, serializeCursor, type Cursor, type KeyRange } from './cursor.js';
import { AppError } from './errors.js';

function parseError(text: string): AppError {
  try {
    parseCursor(text, 'app.public.orders');
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error(`expected ${text} to be refused`);
}

describe('cursor serialization', () => {
  const cursors: Cursor[] = [
    START_CURSOR,
    { phase: 'null', after: { wm: null, pk: ['42'] } },
    { phase: 'wm', after: null },
    { phase: 'wm', after: { wm: '2024-03-01 12:00:00.123456+00', pk: ['7', 'a "quoted", value'] } },
    { phase: 'wm', after: { wm: '-9223372036854775808', pk: ['9223372036854775807'] } },
    { phase: 'pk', after: { wm: null, pk: ['3', 'x'] } },
  ];

  it.each(cursors.map((c) => [serializeCursor(c), c] as const))('reads back %s as the cursor it was written from', (text, cursor) => {
    expect(parseCursor(text, 'where')).toEqual(cursor);
  });

  it('treats a missing stored cursor as the start of the table', () => {
    expect(parseCursor(null, 'where')).toEqual({ phase: 'null', after: null });
  });

  const malformed: Array<[string, string]> = [
    ['text that is not JSON', '{"v":1,'],
    ['JSON null', 'null'],
    ['a bare number', '3'],
    ['an array', '[1,"wm",null]'],
    ['an unknown version', '{"v":2,"phase":"wm","after":null}'],
    ['no version', '{"phase":"wm","after":null}'],
    ['an unknown phase', '{"v":1,"phase":"done","after":null}'],
    ['a missing position', '{"v":1,"phase":"wm"}'],
    ['an empty primary key', '{"v":1,"phase":"wm","after":{"wm":"1","pk":[]}}'],
    ['a numeric primary-key value', '{"v":1,"phase":"wm","after":{"wm":"1","pk":[1]}}'],
    ['a numeric watermark', '{"v":1,"phase":"wm","after":{"wm":1,"pk":["1"]}}'],
    ['a wm-phase position without a watermark', '{"v":1,"phase":"wm","after":{"wm":null,"pk":["1"]}}'],
    ['a null-phase position with a watermark', '{"v":1,"phase":"null","after":{"wm":"2024-01-01 00:00:00+00","pk":["1"]}}'],
    ['a pk-phase position with a watermark', '{"v":1,"phase":"pk","after":{"wm":"2024-01-01 00:00:00+00","pk":["1"]}}'],
  ];

  it.each(malformed)('refuses %s as CURSOR_INVALID instead of restarting the table', (_what, text) => {
    const err = parseError(text);
    expect(err.code).toBe('CURSOR_INVALID');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('app.public.orders');
  });

  it('keeps only the position fields of a stored cursor', () => {
    const parsed = parseCursor('{"v":1,"phase":"wm","after":{"pk":["1"],"extra":true,"wm":"5"}}', 'where');
    expect(parsed.after).toEqual({ wm: '5', pk: ['1'] });
    expect(Object.keys(parsed.after!)).toEqual(['wm', 'pk']);
  });
});

describe('cursor movement', () => {
  it('moves the cursor to the end of a range in the same phase', () => {
    const range: KeyRange = { phase: 'wm', lo: null, hi: { wm: '10', pk: ['3'] } };
    expect(cursorAfterRange(range)).toEqual({ phase: 'wm', after: { wm: '10', pk: ['3'] } });
  });

  it('starts the watermark phase after the null phase, and has nothing after the watermark phase', () => {
    expect(nextPhase({ phase: 'null', after: { wm: null, pk: ['9'] } })).toEqual({ phase: 'wm', after: null });
    expect(nextPhase({ phase: 'wm', after: { wm: '1', pk: ['1'] } })).toBeNull();
  });
});

describe('rangeId', () => {
  const range: KeyRange = {
    phase: 'wm',
    lo: { wm: '2024-01-01 00:00:00+00', pk: ['1'] },
    hi: { wm: '2024-01-01 00:00:00.5+00', pk: ['2'] },
  };

  it('is the same 32-hex-digit id every time for the same range', () => {
    const id = rangeId('app', 'public.orders', range);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(rangeId('app', 'public.orders', structuredClone(range))).toBe(id);
  });

  it('differs when the source, table, phase or either bound differs', () => {
    const ids = new Set([
      rangeId('app', 'public.orders', range),
      rangeId('app2', 'public.orders', range),
      rangeId('app', 'public.orders2', range),
      rangeId('app', 'public.orders', { ...range, phase: 'null', lo: null, hi: { wm: null, pk: ['2'] } }),
      rangeId('app', 'public.orders', { ...range, lo: null }),
      rangeId('app', 'public.orders', { ...range, lo: { wm: '2024-01-01 00:00:00+00', pk: ['0'] } }),
      rangeId('app', 'public.orders', { ...range, hi: { wm: '2024-01-01 00:00:00.5+00', pk: ['3'] } }),
      rangeId('app', 'public.orders', { ...range, hi: { wm: '2024-01-01 00:00:00.6+00', pk: ['2'] } }),
    ]);
    expect(ids.size).toBe(8);
  });

  it('does not confuse a composite key with a single key of the joined text', () => {
    const a = rangeId('s', 't', { phase: 'null', lo: null, hi: { wm: null, pk: ['1', '23'] } });
    const b = rangeId('s', 't', { phase: 'null', lo: null, hi: { wm: null, pk: ['12', '3'] } });
    const c = rangeId('s', 't', { phase: 'null', lo: null, hi: { wm: null, pk: ['123'] } });
    expect(new Set([a, b, c]).size).toBe(3);
  });

  it('gives a range built from a stored cursor the same id whatever order the stored keys were in', () => {
    const stored = parseCursor('{"v":1,"phase":"wm","after":{"pk":["1"],"wm":"2024-01-01 00:00:00+00"}}', 'where');
    const fromStore: KeyRange = { phase: 'wm', lo: stored.after, hi: range.hi };
    expect(rangeId('app', 'public.orders', fromStore)).toBe(rangeId('app', 'public.orders', range));
  });
});
