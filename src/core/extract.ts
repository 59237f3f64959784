import { AppError } from './errors.js';
import { cursorAfterRange, nextPhase, serializeCursor, type Cursor, type KeyRange } from './cursor.js';
import type { NextRange, RangeEnd, TableReader } from './ports.js';

/** Stored cursor with an opaque version for compare-and-set. */
export interface StoredCursor {
  cursor: Cursor;
  version: string | null;
  /** The furthest cursor ever saved; null when none was. */
  highWater: Cursor | null;
}

export interface CursorStore {
  load(): Promise<StoredCursor>;
  /** Saves `next` only if the stored cursor is still `expected`; otherwise throws CURSOR_CONFLICT. */
  save(expected: StoredCursor, next: Cursor): Promise<StoredCursor>;
}

export interface ExtractParams {
  reader: TableReader;
  cursors: CursorStore;
  batchRows: number;
  /** `source.table`, for messages. */
  where: string;
  /** Subtracted from the read boundary, for watermarks written from application clocks. */
  safetyLagMs: number;
  /**
   * Makes the push job for `range` durable (in Redis) before resolving. Invariant: the cursor moves past a row
   * only after the job that will deliver it is stored, so a crash anywhere re-sends, never skips.
   */
  enqueue: (range: KeyRange, rows: number, keys: string[][]) => Promise<void>;
  /**
   * False when `enqueue` does not use the keys: pages after a full one are then found by their last position alone
   * (`nextRangeEnd`), and `keys` is empty. @defaultValue true
   */
  keys?: boolean | undefined;
  /**
   * Resolves when the undelivered backlog is below its bound (backpressure), to how many more push jobs it has room
   * for now (at least 1, unless the run should stop).
   */
  waitForCapacity: () => Promise<number>;
  /** True when the run should stop early (shutdown, lost lock). */
  shouldStop: () => boolean;
}

export interface ExtractResult {
  rows: number;
  batches: number;
  /** True when the run read to the end of the table. */
  caughtUp: boolean;
}

const PHASE_ORDER = { null: 0, wm: 1, pk: 1 } as const;

/**
 * Pages planned per statement once a run has found a full page (`nextRangeEnds`), within the backlog's room. A
 * page planned one at a time costs a statement and a few Redis round trips; in a process busy pushing (its CPU
 * share taken by the push jobs, or a container at its CPU limit) those waits were what held the other processes'
 * push workers idle.
 */
export const PAGES_PER_STATEMENT = 8;

/**
 * At most this many positions per planning statement (pages × `batchRows`). A table without an index on the page
 * order sorts them; Postgres keeps a bounded sort of 20,000 narrow keys in memory (about 2.3 MB of the default 4 MB
 * `work_mem`), where 40,000 spilled a sort of every row to disk.
 */
export const KEYS_PER_STATEMENT = 20_000;

/** Pages one planning statement may cover: within the backlog's room, `PAGES_PER_STATEMENT` and `KEYS_PER_STATEMENT`. */
export function pagesPerStatement(room: number, batchRows: number): number {
  return Math.max(1, Math.min(room, PAGES_PER_STATEMENT, Math.floor(KEYS_PER_STATEMENT / batchRows)));
}

/**
 * A cursor that went backwards (an older copy restored, a hand edit) or a table that is suddenly empty after rows
 * were read from it (truncated, replaced, or the wrong database) is an error to look at, not something to accept.
 * `pushsync reset` clears a table's state when starting over is intended.
 */
export async function assertCursorSane(
  reader: TableReader,
  stored: StoredCursor,
  where: string,
  /** False when the caller probes for an empty table itself (with the first page: `nextRangeOrEmpty`). */
  probeEmpty = true,
): Promise<void> {
  const { cursor, highWater } = stored;
  const remedy = resetRemedy(where);
  if (highWater && stored.version === null) {
    throw new AppError('CURSOR_INVALID', `${where}: the cursor is missing but a later one was saved before; ${remedy}`);
  }
  // A cursor saved as the high water (every run's last save is) cannot be behind it: no query needed, which keeps an
  // idle run at the few statements it must make.
  const atHighWater = highWater !== null && stored.version !== null && stored.version === serializeCursor(highWater);
  if (highWater && highWater.after && !atHighWater) {
    const behind =
      PHASE_ORDER[cursor.phase] < PHASE_ORDER[highWater.phase] ||
      (cursor.phase === highWater.phase &&
        (cursor.after === null || (await reader.comparePositions(cursor.phase, cursor.after, highWater.after)) < 0));
    if (behind)
      throw new AppError(
        'CURSOR_INVALID',
        `${where}: the cursor moved backwards (from ${JSON.stringify(highWater)} to ${JSON.stringify(cursor)}); ${remedy}`,
      );
  }
  if (probeEmpty && cursor.after !== null && (await reader.isEmpty())) throw sourceEmpty(where);
}

const resetRemedy = (where: string): string => `if starting over is intended, run "pushsync reset --table ${where}"`;

function sourceEmpty(where: string): AppError {
  return new AppError(
    'SOURCE_EMPTY',
    `${where}: the table has no rows, but rows were read from it before (truncated, replaced, or a different database?); ${resetRemedy(where)}`,
  );
}

/** Pages through a table from its saved cursor, enqueueing one push job per page. */
export async function extractTable(p: ExtractParams): Promise<ExtractResult> {
  let stored = await p.cursors.load();
  // A cursor past a row means the table had rows: its emptiness is probed with the first page when the reader can.
  let probeWithPage = stored.cursor.after !== null && p.reader.nextRangeOrEmpty !== undefined;
  await assertCursorSane(p.reader, stored, p.where, !probeWithPage);
  // Computed once per run: a transaction starting later gets a later now(), so its rows lie above the bound.
  const boundary = await p.reader.readBoundary(p.safetyLagMs);
  let rows = 0;
  let batches = 0;
  // The first page of a run reads its keys: an idle run stays one statement. After a full page more are likely, and
  // only the end of each is read.
  let full = false;
  const byEnd = p.keys === false && p.reader.nextRangeEnd !== undefined;
  const byEnds = p.keys === false && p.reader.nextRangeEnds !== undefined;
  for (;;) {
    if (p.shouldStop()) return { rows, batches, caughtUp: false };
    const room = await p.waitForCapacity();
    if (p.shouldStop()) return { rows, batches, caughtUp: false };
    if (byEnds && full) {
      const ends = await p.reader.nextRangeEnds!(stored.cursor, p.batchRows, pagesPerStatement(room, p.batchRows), boundary);
      const last = ends[ends.length - 1];
      if (last) {
        // Every job stored before the cursor moves past any of them; a crash in between re-enqueues the same ranges.
        // All settle before a failure is thrown, so none is still writing once the run has ended.
        const stores = await Promise.allSettled(ends.map((end) => p.enqueue(end.range, end.rows, [])));
        const failed = stores.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        stored = await p.cursors.save(stored, cursorAfterRange(last.range));
        for (const end of ends) rows += end.rows;
        batches += ends.length;
        full = last.rows >= p.batchRows;
        continue;
      }
      full = false;
      const following = nextPhase(stored.cursor);
      if (!following) return { rows, batches, caughtUp: true };
      stored = await p.cursors.save(stored, following);
      continue;
    }
    let next: NextRange | RangeEnd | null;
    if (probeWithPage) {
      probeWithPage = false;
      const first = await p.reader.nextRangeOrEmpty!(stored.cursor, p.batchRows, boundary);
      if (first === 'empty') throw sourceEmpty(p.where);
      next = first;
    } else {
      next =
        byEnd && full
          ? await p.reader.nextRangeEnd!(stored.cursor, p.batchRows, boundary)
          : await p.reader.nextRange(stored.cursor, p.batchRows, boundary);
    }
    full = next !== null && next.rows >= p.batchRows;
    if (!next) {
      const following = nextPhase(stored.cursor);
      if (!following) return { rows, batches, caughtUp: true };
      stored = await p.cursors.save(stored, following);
      continue;
    }
    await p.enqueue(next.range, next.rows, 'keys' in next ? (next as NextRange).keys : []);
    stored = await p.cursors.save(stored, cursorAfterRange(next.range));
    rows += next.rows;
    batches += 1;
  }
}
