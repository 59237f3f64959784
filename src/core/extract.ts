import { cursorAfterRange, nextPhase, type Cursor, type KeyRange } from './cursor.js';
import type { TableReader } from './ports.js';

/** Stored cursor with an opaque version for compare-and-set. */
export interface StoredCursor {
  cursor: Cursor;
  version: string | null;
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
  /** Subtracted from the read boundary, for watermarks written from application clocks. */
  safetyLagMs: number;
  /**
   * Makes the push job for `range` durable (in Redis) before resolving. Invariant: the cursor moves past a row
   * only after the job that will deliver it is stored, so a crash anywhere re-sends, never skips.
   */
  enqueue: (range: KeyRange, rows: number, keys: string[][]) => Promise<void>;
  /** Resolves when the undelivered backlog is below its bound (backpressure). */
  waitForCapacity: () => Promise<void>;
  /** True when the run should stop early (shutdown, lost lock). */
  shouldStop: () => boolean;
}

export interface ExtractResult {
  rows: number;
  batches: number;
  /** True when the run read to the end of the table. */
  caughtUp: boolean;
}

/** Pages through a table from its saved cursor, enqueueing one push job per page. */
export async function extractTable(p: ExtractParams): Promise<ExtractResult> {
  let stored = await p.cursors.load();
  // Computed once per run: a transaction starting later gets a later now(), so its rows lie above the bound.
  const boundary = await p.reader.readBoundary(p.safetyLagMs);
  let rows = 0;
  let batches = 0;
  for (;;) {
    if (p.shouldStop()) return { rows, batches, caughtUp: false };
    await p.waitForCapacity();
    if (p.shouldStop()) return { rows, batches, caughtUp: false };
    const next = await p.reader.nextRange(stored.cursor, p.batchRows, boundary);
    if (!next) {
      const following = nextPhase(stored.cursor);
      if (!following) return { rows, batches, caughtUp: true };
      stored = await p.cursors.save(stored, following);
      continue;
    }
    await p.enqueue(next.range, next.rows, next.keys);
    stored = await p.cursors.save(stored, cursorAfterRange(next.range));
    rows += next.rows;
    batches += 1;
  }
}
