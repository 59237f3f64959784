import { createHash } from 'node:crypto';
import { AppError } from './errors.js';

/**
 * Keyset positions and ranges. Every value is the database's exact text form (microseconds, full precision):
 * never a JS Date or number, which would round and make a keyset cursor skip or re-read rows.
 *
 * A table is read in two phases: first the rows whose watermark is NULL, ordered by primary key (only during
 * the initial backfill: a NULL watermark cannot tell that a row changed), then every other row in
 * (watermark, primary key) order. The primary key breaks ties, so any number of rows sharing one watermark
 * value page correctly.
 *
 * Tables synced by change data capture have no watermark: their initial snapshot reads the whole table in primary-key
 * order, the `pk` phase.
 */
export type Phase = 'null' | 'wm' | 'pk';

export interface Position {
  /** Watermark value as text; null in the `null` phase. */
  wm: string | null;
  /** Primary-key values as text, in primary-key column order. */
  pk: string[];
}

export interface Cursor {
  phase: Phase;
  /** The last position handed to a durable push job in this phase; null = the phase has not started. */
  after: Position | null;
}

/** Rows strictly after `lo` (or from the phase's start when null) up to and including `hi`. */
export interface KeyRange {
  phase: Phase;
  lo: Position | null;
  hi: Position;
}

export const START_CURSOR: Cursor = { phase: 'null', after: null };
export const SNAPSHOT_START_CURSOR: Cursor = { phase: 'pk', after: null };

export function cursorAfterRange(range: KeyRange): Cursor {
  return { phase: range.phase, after: range.hi };
}

/** The cursor that begins the next phase once the current one has no more rows. */
export function nextPhase(cursor: Cursor): Cursor | null {
  return cursor.phase === 'null' ? { phase: 'wm', after: null } : null;
}

function isPosition(value: unknown): value is Position {
  if (typeof value !== 'object' || value === null) return false;
  const p = value as Record<string, unknown>;
  return (p.wm === null || typeof p.wm === 'string') && Array.isArray(p.pk) && p.pk.length > 0 && p.pk.every((v) => typeof v === 'string');
}

export function serializeCursor(cursor: Cursor): string {
  return JSON.stringify({ v: 1, phase: cursor.phase, after: cursor.after });
}

/** Parses a stored cursor; anything malformed is an error, never silently a fresh start (which would re-send). */
export function parseCursor(text: string | null, where: string, start: Cursor = START_CURSOR): Cursor {
  if (text === null) return start;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new AppError('CURSOR_INVALID', `stored cursor for ${where} is not JSON`, { cause });
  }
  const c = value as Record<string, unknown>;
  if (
    typeof c !== 'object' ||
    c === null ||
    c.v !== 1 ||
    (c.phase !== 'null' && c.phase !== 'wm' && c.phase !== 'pk') ||
    !(c.after === null || isPosition(c.after)) ||
    // A position's watermark is set exactly in the `wm` phase: anything else was not written by serializeCursor.
    (c.after !== null && ((c.after as Position).wm !== null) !== (c.phase === 'wm'))
  ) {
    throw new AppError('CURSOR_INVALID', `stored cursor for ${where} has an unknown shape: ${text.slice(0, 200)}`);
  }
  return { phase: c.phase, after: c.after === null ? null : canonical(c.after as Position) };
}

/** Only `wm` and `pk`, in that order: extra or reordered keys in stored text must not change a range's id. */
function canonical(p: Position): Position {
  return { wm: p.wm, pk: [...p.pk] };
}

/**
 * A stable id for a range, used as the push job's id: re-enqueueing the same range after a crash (before the
 * cursor was saved) finds the job already there instead of adding a second one.
 */
export function rangeId(source: string, table: string, range: KeyRange): string {
  const h = createHash('sha256');
  const lo = range.lo === null ? null : canonical(range.lo);
  h.update(JSON.stringify([source, table, range.phase, lo, canonical(range.hi)]));
  return h.digest('hex').slice(0, 32);
}
