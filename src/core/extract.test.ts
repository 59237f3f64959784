import { describe, expect, it } from 'vitest';
import { KEYS_PER_STATEMENT, PAGES_PER_STATEMENT, assertCursorSane, extractTable, pagesPerStatement, type ExtractParams } from './extract.js';
import { AppError } from './errors.js';
import { SNAPSHOT_START_CURSOR, START_CURSOR, serializeCursor, type Cursor, type KeyRange } from './cursor.js';
import { FakeTableReader, MemoryCursorStore, fakeRows, type FakeRow } from '../../test/helpers/fakes.js';

interface Enqueued {
  range: KeyRange;
  rows: number;
  keys: string[][];
  /** The stored cursor at the moment the enqueue was called. */
  cursorAtCall: Cursor;
  /** The stored cursor once the enqueue had resolved. */
  cursorAtResolve?: Cursor;
}

function setup(rows: FakeRow[], o: { start?: Cursor; batchRows?: number; store?: MemoryCursorStore } = {}) {
  const reader = new FakeTableReader(rows);
  const cursors = o.store ?? new MemoryCursorStore(o.start ?? START_CURSOR);
  const enqueued: Enqueued[] = [];
  const params: ExtractParams = {
    reader,
    cursors,
    batchRows: o.batchRows ?? 3,
    where: 'app.public.t',
    safetyLagMs: 0,
    enqueue: async (range, n, keys) => {
      const entry: Enqueued = { range, rows: n, keys, cursorAtCall: cursors.current };
      enqueued.push(entry);
      // Let anything that is not waiting for this enqueue run before it resolves.
      await new Promise((r) => setImmediate(r));
      entry.cursorAtResolve = cursors.current;
    },
    waitForCapacity: async () => 200,
    shouldStop: () => false,
  };
  return { reader, cursors, enqueued, params };
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const pks = (keys: string[][]): string[] => keys.map((k) => k[0]!);

describe('extractTable', () => {
  it('never stores a cursor past a range whose enqueue has not resolved', async () => {
    const { params, enqueued, cursors } = setup(fakeRows(1, 10));
    await extractTable(params);
    expect(enqueued).toHaveLength(4);
    for (const e of enqueued) {
      // While the job was being stored, the cursor stood at the range's start, not past it.
      expect(e.cursorAtCall.after).toEqual(e.range.lo);
      expect(e.cursorAtResolve!.after).toEqual(e.range.lo);
    }
    expect(cursors.current).toEqual({ phase: 'wm', after: { wm: 'w000010', pk: ['10'] } });
  });

  it('leaves the cursor where it was when an enqueue throws, so a re-run enqueues the same range again', async () => {
    const { params, enqueued, cursors } = setup(fakeRows(1, 10));
    const enqueue = params.enqueue;
    params.enqueue = async (range, n, keys) => {
      if (enqueued.length === 2) {
        enqueued.push({ range, rows: n, keys, cursorAtCall: cursors.current });
        throw new AppError('REDIS_UNAVAILABLE', 'connection lost', { retryable: true });
      }
      await enqueue(range, n, keys);
    };
    expect((await rejection(extractTable(params))).code).toBe('REDIS_UNAVAILABLE');
    const failed = enqueued[2]!;
    expect(cursors.current).toEqual({ phase: 'wm', after: failed.range.lo });
    expect(cursors.current.after).toEqual({ wm: 'w000006', pk: ['6'] });

    params.enqueue = enqueue;
    const rerun = enqueued.length;
    const result = await extractTable(params);
    expect(enqueued[rerun]!.range).toEqual(failed.range);
    expect(pks(enqueued[rerun]!.keys)).toEqual(['7', '8', '9']);
    expect(result).toEqual({ rows: 4, batches: 2, caughtUp: true });
  });

  it('reads rows with a NULL watermark first by key, then moves to the watermark phase', async () => {
    const rows = [...fakeRows(1, 4, 'null'), ...fakeRows(5, 9)];
    const { params, enqueued, cursors } = setup(rows);
    const result = await extractTable(params);
    expect(enqueued.map((e) => [e.range.phase, pks(e.keys)])).toEqual([
      ['null', ['1', '2', '3']],
      ['null', ['4']],
      ['wm', ['5', '6', '7']],
      ['wm', ['8', '9']],
    ]);
    // The phase change is saved as its own step, with nothing read of the new phase yet.
    expect(cursors.saved).toContainEqual({ phase: 'wm', after: null });
    expect(enqueued[2]!.range.lo).toBeNull();
    expect(result).toEqual({ rows: 9, batches: 4, caughtUp: true });
  });

  it('reads a snapshot table in the pk phase by primary key and is caught up at its end', async () => {
    const rows = fakeRows(1, 5, 'null').reverse();
    const { params, enqueued, cursors } = setup(rows, { start: SNAPSHOT_START_CURSOR, batchRows: 2 });
    const result = await extractTable(params);
    expect(enqueued.map((e) => [e.range.phase, pks(e.keys)])).toEqual([
      ['pk', ['1', '2']],
      ['pk', ['3', '4']],
      ['pk', ['5']],
    ]);
    expect(cursors.current).toEqual({ phase: 'pk', after: { wm: null, pk: ['5'] } });
    expect(result).toEqual({ rows: 5, batches: 3, caughtUp: true });
  });

  it('plans up to PAGES_PER_STATEMENT pages per statement within the backlog room, storing all of them before the cursor moves', async () => {
    const withKeys = setup(fakeRows(1, 40));
    await extractTable(withKeys.params);
    const byEnds = setup(fakeRows(1, 40));
    const calls: Array<{ after: string | undefined; pages: number }> = [];
    byEnds.reader.nextRangeEnds = async (cursor, limit, pages, upperBound) => {
      calls.push({ after: cursor.after?.pk[0], pages });
      return byEnds.reader.pagedEnds(cursor, limit, pages, upperBound);
    };
    // Rooms for: the null-watermark phase (no rows), the first page, then the statements.
    const rooms = [200, 200, 3, 200];
    byEnds.params.waitForCapacity = async () => rooms.shift() ?? 200;
    const result = await extractTable({ ...byEnds.params, keys: false });
    expect(result).toEqual({ rows: 40, batches: 14, caughtUp: true });
    expect(byEnds.enqueued.map((e) => [e.range, e.rows])).toEqual(withKeys.enqueued.map((e) => [e.range, e.rows]));
    // The first page reads its keys; then 3 pages (the room), 8, and the 2 left, the last of 1 row.
    expect(calls).toEqual([
      { after: '3', pages: 3 },
      { after: '12', pages: PAGES_PER_STATEMENT },
      { after: '36', pages: PAGES_PER_STATEMENT },
    ]);
    for (const e of byEnds.enqueued.slice(1)) {
      // Every job of a statement was stored with the cursor still at the statement's start.
      const start = calls.findLast((c) => Number(c.after) < Number(e.range.hi.pk[0]))!.after;
      expect(e.cursorAtCall.after?.pk[0]).toBe(start);
      expect(e.cursorAtResolve!.after?.pk[0]).toBe(start);
    }
    expect(byEnds.cursors.current.after).toEqual({ wm: 'w000040', pk: ['40'] });
  });

  it('fails a planning statement whose one job could not be stored only once the others settled, the cursor not moved', async () => {
    const { params, reader, cursors } = setup(fakeRows(1, 30));
    reader.nextRangeEnds = (cursor, limit, pages, upperBound) => reader.pagedEnds(cursor, limit, pages, upperBound);
    let calls = 0;
    let settled = 0;
    params.enqueue = async () => {
      calls += 1;
      // The first page (keys read) and the statement's first job are stored; its second fails at once.
      if (calls === 3) throw new Error('redis went away');
      await new Promise((r) => setTimeout(r, 20));
      settled += 1;
    };
    const failure = await extractTable({ ...params, keys: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((failure as Error).message).toBe('redis went away');
    expect(calls).toBe(1 + PAGES_PER_STATEMENT);
    expect(settled).toBe(PAGES_PER_STATEMENT);
    expect(cursors.current.after).toEqual({ wm: 'w000003', pk: ['3'] });
  });

  it('bounds a planning statement by the room, the page count and the keys it may sort', () => {
    expect(pagesPerStatement(200, 3)).toBe(PAGES_PER_STATEMENT);
    expect(pagesPerStatement(2, 3)).toBe(2);
    expect(pagesPerStatement(200, 5000)).toBe(KEYS_PER_STATEMENT / 5000);
    expect(pagesPerStatement(200, 50_000)).toBe(1);
    expect(pagesPerStatement(0, 3)).toBe(1);
  });

  it('finds pages after a full one by their end alone when keys are not wanted, enqueueing the same ranges', async () => {
    const withKeys = setup(fakeRows(1, 10));
    await extractTable(withKeys.params);
    const byEnd = setup(fakeRows(1, 10));
    const ends: Cursor[] = [];
    byEnd.reader.nextRangeEnd = async (cursor, limit, upperBound) => {
      ends.push(cursor);
      const next = await byEnd.reader.nextRange(cursor, limit, upperBound);
      return next && { range: next.range, rows: next.rows };
    };
    const result = await extractTable({ ...byEnd.params, keys: false });
    expect(result).toEqual({ rows: 10, batches: 4, caughtUp: true });
    expect(byEnd.enqueued.map((e) => [e.range, e.rows])).toEqual(withKeys.enqueued.map((e) => [e.range, e.rows]));
    // The first page of the run reads its keys, and so does the one after the partial page (which finds nothing).
    expect(ends.map((c) => c.after?.pk[0])).toEqual(['3', '6', '9']);
    expect(byEnd.enqueued[0]!.keys).toHaveLength(3);
  });

  it('reads every page with its keys when they are wanted', async () => {
    const { params, reader, enqueued } = setup(fakeRows(1, 7));
    let ends = 0;
    reader.nextRangeEnd = async () => {
      ends += 1;
      return null;
    };
    await extractTable(params);
    expect(ends).toBe(0);
    expect(pks(enqueued.flatMap((e) => e.keys))).toEqual(['1', '2', '3', '4', '5', '6', '7']);
  });

  it('is caught up with nothing to do on a table with no rows', async () => {
    const { params, enqueued } = setup([]);
    expect(await extractTable(params)).toEqual({ rows: 0, batches: 0, caughtUp: true });
    expect(enqueued).toEqual([]);
  });

  it('stops before the next range when asked to, not caught up, keeping the cursor after the last enqueued range', async () => {
    const { params, enqueued, cursors } = setup(fakeRows(1, 10));
    params.shouldStop = () => enqueued.length >= 2;
    expect(await extractTable(params)).toEqual({ rows: 6, batches: 2, caughtUp: false });
    expect(cursors.current.after).toEqual({ wm: 'w000006', pk: ['6'] });
  });

  it('does not read once a stop is requested while it waited for capacity', async () => {
    const { params, reader, enqueued } = setup(fakeRows(1, 10), { start: { phase: 'wm', after: null } });
    let stop = false;
    params.shouldStop = () => stop;
    params.waitForCapacity = async () => {
      if (enqueued.length === 1) stop = true;
      return 200;
    };
    expect(await extractTable(params)).toEqual({ rows: 3, batches: 1, caughtUp: false });
    expect(reader.nextRangeCalls).toHaveLength(1);
  });

  it('waits for capacity before reading each range, and enqueues before saving the cursor past it', async () => {
    const { params, reader, cursors } = setup([...fakeRows(1, 2, 'null'), ...fakeRows(3, 5)], { batchRows: 2 });
    const log: string[] = [];
    reader.onNextRange = () => log.push('read');
    cursors.onSave = (next) => log.push(`save ${next.phase}:${next.after?.pk[0] ?? '-'}`);
    const enqueue = params.enqueue;
    params.enqueue = async (range, n, keys) => {
      log.push(`enqueue ${range.phase}:${range.hi.pk[0]}`);
      await enqueue(range, n, keys);
    };
    params.waitForCapacity = async () => {
      log.push('wait');
      return 200;
    };
    await extractTable(params);
    expect(log).toEqual([
      'wait',
      'read',
      'enqueue null:2',
      'save null:2',
      'wait',
      'read',
      'save wm:-',
      'wait',
      'read',
      'enqueue wm:4',
      'save wm:4',
      'wait',
      'read',
      'enqueue wm:5',
      'save wm:5',
      'wait',
      'read',
    ]);
  });

  it('computes the read boundary once per run from the safety lag and passes it to every read', async () => {
    const { params, reader, enqueued } = setup(fakeRows(1, 10), { start: { phase: 'wm', after: null } });
    params.safetyLagMs = 2500;
    reader.boundary = 'w000008';
    const result = await extractTable(params);
    expect(reader.readBoundaryCalls).toEqual([2500]);
    expect(reader.nextRangeCalls.map((c) => c.upperBound)).toEqual(['w000008', 'w000008', 'w000008', 'w000008']);
    expect(reader.nextRangeCalls.map((c) => c.limit)).toEqual([3, 3, 3, 3]);
    // Rows at or above the boundary are left for a later run.
    expect(enqueued.flatMap((e) => pks(e.keys))).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(result.caughtUp).toBe(true);
  });

  it('refuses a cursor behind its high water before reading or enqueueing anything', async () => {
    const high: Cursor = { phase: 'wm', after: { wm: 'w000008', pk: ['8'] } };
    const store = new MemoryCursorStore(START_CURSOR, { cursor: { phase: 'wm', after: { wm: 'w000003', pk: ['3'] } }, highWater: high });
    const { params, reader, enqueued } = setup(fakeRows(1, 10), { store });
    const err = await rejection(extractTable(params));
    expect(err.code).toBe('CURSOR_INVALID');
    expect(err.message).toMatch(/^app\.public\.t: the cursor moved backwards .*pushsync reset --table app\.public\.t/);
    expect(reader.nextRangeCalls).toEqual([]);
    expect(enqueued).toEqual([]);
    expect(store.saved).toEqual([]);
  });
});

describe('assertCursorSane', () => {
  const reader = new FakeTableReader(fakeRows(1, 10));
  const stored = (cursor: Cursor, highWater: Cursor | null, version: string | null = 'v') => ({ cursor, highWater, version });
  const at = (id: number): Cursor => ({ phase: 'wm', after: { wm: `w${String(id).padStart(6, '0')}`, pk: [String(id)] } });

  it('accepts a cursor at its high water, and a fresh table with neither', async () => {
    await assertCursorSane(reader, stored(at(8), at(8)), 'app.t');
    await assertCursorSane(reader, stored(START_CURSOR, null, null), 'app.t');
  });

  it('asks the database nothing to compare a cursor saved as its high water (an idle run stays at its few statements)', async () => {
    const counting = new FakeTableReader(fakeRows(1, 10));
    let compared = 0;
    const compare = counting.comparePositions.bind(counting);
    counting.comparePositions = (...args: Parameters<typeof compare>) => {
      compared += 1;
      return compare(...args);
    };
    await assertCursorSane(counting, stored(at(8), at(8), serializeCursor(at(8))), 'app.t');
    expect(compared).toBe(0);
    // A different text (an older copy restored) is compared, and found behind.
    const err = await rejection(assertCursorSane(counting, stored(at(3), at(8), serializeCursor(at(3))), 'app.t'));
    expect(err.message).toContain('moved backwards');
    expect(compared).toBe(1);
  });

  it('calls a cursor behind its high water in the same phase CURSOR_INVALID', async () => {
    const err = await rejection(assertCursorSane(reader, stored(at(3), at(8)), 'app.t'));
    expect(err.code).toBe('CURSOR_INVALID');
    expect(err.message).toContain('moved backwards');
  });

  it('calls a cursor in an earlier phase than its high water CURSOR_INVALID', async () => {
    const nullPhase: Cursor = { phase: 'null', after: { wm: null, pk: ['9'] } };
    expect((await rejection(assertCursorSane(reader, stored(nullPhase, at(2)), 'app.t'))).code).toBe('CURSOR_INVALID');
  });

  it('calls a cursor at the start of its high water phase CURSOR_INVALID', async () => {
    expect((await rejection(assertCursorSane(reader, stored({ phase: 'wm', after: null }, at(2)), 'app.t'))).code).toBe('CURSOR_INVALID');
  });

  it('calls a missing cursor with a high water CURSOR_INVALID', async () => {
    const err = await rejection(assertCursorSane(reader, stored(START_CURSOR, at(8), null), 'app.t'));
    expect(err.code).toBe('CURSOR_INVALID');
    expect(err.message).toMatch(/^app\.t: the cursor is missing but a later one was saved before; .*pushsync reset --table app\.t/);
  });

  it('calls a table that has no rows after rows were read from it SOURCE_EMPTY', async () => {
    const empty = new FakeTableReader([]);
    const err = await rejection(assertCursorSane(empty, stored(at(8), at(8)), 'app.t'));
    expect(err.code).toBe('SOURCE_EMPTY');
    expect(err.message).toMatch(/^app\.t: the table has no rows, but rows were read from it before/);
  });

  it('probes for an empty table with the first page when the reader reads both in one statement', async () => {
    const after = { phase: 'wm' as const, after: { wm: 'w000010', pk: ['10'] } };
    const { params, reader } = setup(fakeRows(1, 10), { start: after });
    const asked: string[] = [];
    reader.isEmpty = async () => (asked.push('isEmpty'), reader.rows.length === 0);
    reader.nextRangeOrEmpty = async (cursor, limit, upperBound) => {
      asked.push('nextRangeOrEmpty');
      return reader.rows.length === 0 ? 'empty' : reader.nextRange(cursor, limit, upperBound);
    };
    // Caught up: one statement, no probe of its own.
    expect(await extractTable(params)).toEqual({ rows: 0, batches: 0, caughtUp: true });
    expect(asked).toEqual(['nextRangeOrEmpty']);
    // Truncated since: the first page says so, and nothing moves.
    reader.rows = [];
    asked.length = 0;
    const err = await rejection(extractTable(params));
    expect(err.code).toBe('SOURCE_EMPTY');
    expect(err.message).toMatch(/^app\.public\.t: the table has no rows, but rows were read from it before/);
    expect(asked).toEqual(['nextRangeOrEmpty']);
  });

  it('reads later pages with nextRange once the first page did the probe', async () => {
    const after = { phase: 'wm' as const, after: { wm: 'w000002', pk: ['2'] } };
    const { params, reader, enqueued } = setup(fakeRows(1, 10), { start: after });
    let combined = 0;
    reader.nextRangeOrEmpty = async (cursor, limit, upperBound) => (combined++, reader.nextRange(cursor, limit, upperBound));
    const result = await extractTable(params);
    expect(result.rows).toBe(8);
    expect(combined).toBe(1);
    expect(enqueued.flatMap((e) => pks(e.keys))).toEqual(['3', '4', '5', '6', '7', '8', '9', '10']);
  });

  it('accepts an empty table whose phase has not started', async () => {
    await assertCursorSane(new FakeTableReader([]), stored({ phase: 'wm', after: null }, { phase: 'wm', after: null }), 'app.t');
  });
});
