import type { Cursor, KeyRange, Phase, Position } from '../../src/core/cursor.js';
import type { CursorStore, StoredCursor } from '../../src/core/extract.js';
import type { AppError } from '../../src/core/errors.js';
import type { Destination, KeyedRow, NextRange, RangeEnd, SendResult, SourceRow, TableReader, TableShape } from '../../src/core/ports.js';
import { serializeCursor } from '../../src/core/cursor.js';

/**
 * In-memory implementations of the core's ports, for unit tests of the core. They keep the contracts of
 * src/core/ports.ts and record what was asked of them.
 */

export interface FakeRow {
  /** Primary-key values as text; numeric text compares as numbers. */
  pk: string[];
  /** Watermark text (fixed-width, compared as strings); null puts the row in the `null` phase. */
  wm: string | null;
  /** The row's JSON object text; defaults to `{"id":<pk[0]>,"v":"row <pk[0]>"}`. */
  json?: string;
  deleted?: boolean;
}

function compareText(a: string, b: string): number {
  if (/^-?\d+$/.test(a) && /^-?\d+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function comparePk(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const c = compareText(a[i] ?? '', b[i] ?? '');
    if (c !== 0) return c;
  }
  return 0;
}

function comparePosition(phase: Phase, a: Position, b: Position): number {
  if (phase === 'wm') {
    const c = compareText(a.wm!, b.wm!);
    if (c !== 0) return c;
  }
  return comparePk(a.pk, b.pk);
}

export function positionOf(row: FakeRow, phase: Phase): Position {
  return { wm: phase === 'wm' ? row.wm : null, pk: row.pk };
}

/** A table held in memory: phases, keyset order and the read boundary behave like the Postgres source's. */
export class FakeTableReader implements TableReader {
  readonly shape: TableShape;
  rows: FakeRow[];
  readonly nextRangeCalls: Array<{ cursor: Cursor; limit: number; upperBound: string | null | undefined }> = [];
  readonly readBoundaryCalls: number[] = [];
  /** What readBoundary answers. */
  boundary: string | null = null;
  /** Called at the start of nextRange, for tests that log the order of calls. */
  onNextRange: () => void = () => {};
  /** Absent unless a test gives the reader a row-by-row read. */
  readRangeEach?: TableReader['readRangeEach'];
  readRangeBytes?: TableReader['readRangeBytes'];
  /** Absent unless a test sets it (like a source without the keys-free page read). */
  nextRangeEnd?: TableReader['nextRangeEnd'];
  /** Absent unless a test sets it (like a source that plans one page per statement). */
  nextRangeEnds?: TableReader['nextRangeEnds'];
  /** Absent unless a test sets it (like a source that cannot probe for emptiness with a page). */
  nextRangeOrEmpty?: TableReader['nextRangeOrEmpty'];

  constructor(rows: FakeRow[], shape: Partial<TableShape> = {}) {
    this.rows = rows;
    this.shape = {
      schema: 'public',
      relname: 't',
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'v', type: 'text' },
      ],
      primaryKey: ['id'],
      watermark: 'updated_at',
      watermarkKind: 'other',
      mayNest: false,
      ...shape,
    };
  }

  private phaseRows(phase: Phase): FakeRow[] {
    const rows = phase === 'pk' ? [...this.rows] : this.rows.filter((r) => (phase === 'null' ? r.wm === null : r.wm !== null));
    return rows.sort((a, b) => comparePosition(phase, positionOf(a, phase), positionOf(b, phase)));
  }

  /** What `nextRangeEnds` answers, found page by page with `nextRange`; a test sets `nextRangeEnds` to it. */
  async pagedEnds(cursor: Cursor, limit: number, pages: number, upperBound?: string | null): Promise<RangeEnd[]> {
    const ends: RangeEnd[] = [];
    let at = cursor;
    while (ends.length < pages) {
      const next = await this.nextRange(at, limit, upperBound);
      if (!next) break;
      ends.push({ range: next.range, rows: next.rows });
      at = { phase: next.range.phase, after: next.range.hi };
    }
    return ends;
  }

  async nextRange(cursor: Cursor, limit: number, upperBound?: string | null): Promise<NextRange | null> {
    this.onNextRange();
    this.nextRangeCalls.push({ cursor, limit, upperBound });
    const after = cursor.after;
    const rows = this.phaseRows(cursor.phase)
      .filter((r) => after === null || comparePosition(cursor.phase, positionOf(r, cursor.phase), after) > 0)
      .filter((r) => cursor.phase !== 'wm' || upperBound === null || upperBound === undefined || compareText(r.wm!, upperBound) < 0)
      .slice(0, limit);
    if (rows.length === 0) return null;
    return {
      range: { phase: cursor.phase, lo: after, hi: positionOf(rows[rows.length - 1]!, cursor.phase) },
      rows: rows.length,
      keys: rows.map((r) => r.pk),
    };
  }

  async readBoundary(safetyLagMs: number): Promise<string | null> {
    this.readBoundaryCalls.push(safetyLagMs);
    return this.boundary;
  }

  async comparePositions(phase: Phase, a: Position, b: Position): Promise<number> {
    return comparePosition(phase, a, b);
  }

  async isEmpty(): Promise<boolean> {
    return this.rows.length === 0;
  }

  async now(): Promise<string | null> {
    return null;
  }

  async readRange(range: KeyRange, after: Position | null, limit: number): Promise<SourceRow[]> {
    const from = after ?? range.lo;
    return this.phaseRows(range.phase)
      .map((r) => ({ r, position: positionOf(r, range.phase) }))
      .filter(
        ({ position }) =>
          (from === null || comparePosition(range.phase, position, from) > 0) && comparePosition(range.phase, position, range.hi) <= 0,
      )
      .slice(0, limit)
      .map(({ r, position }) => ({ position, json: rowJson(r), deleted: r.deleted ?? false }));
  }

  async countNullWatermark(): Promise<number> {
    return this.rows.filter((r) => r.wm === null).length;
  }

  async readKeys(keys: readonly string[][]): Promise<KeyedRow[]> {
    const out: KeyedRow[] = [];
    keys.forEach((key, index) => {
      const row = this.rows.find((r) => comparePk(r.pk, key) === 0);
      if (row) out.push({ index, json: rowJson(row), deleted: row.deleted ?? false });
    });
    return out;
  }

  async keyJson(keys: readonly string[][]): Promise<string[]> {
    return keys.map((key) => `{${this.shape.primaryKey.map((c, i) => `${JSON.stringify(c)}:${key[i]}`).join(',')}}`);
  }
}

export function rowJson(row: FakeRow): string {
  return row.json ?? `{"id":${row.pk[0]},"v":"row ${row.pk[0]}"}`;
}

/** Rows with ids `from`..`to`, each with a distinct watermark in id order (or none). */
export function fakeRows(from: number, to: number, wm: 'wm' | 'null' = 'wm'): FakeRow[] {
  const rows: FakeRow[] = [];
  for (let id = from; id <= to; id++) rows.push({ pk: [String(id)], wm: wm === 'wm' ? `w${String(id).padStart(6, '0')}` : null });
  return rows;
}

/** A cursor store in memory with the compare-and-set and high-water behaviour of the Redis one. */
export class MemoryCursorStore implements CursorStore {
  text: string | null;
  highWater: Cursor | null;
  current: Cursor;
  readonly saved: Cursor[] = [];
  /** Called at the start of save, for tests that log the order of calls. */
  onSave: (next: Cursor) => void = () => {};

  constructor(start: Cursor, stored?: { cursor: Cursor; highWater?: Cursor | null; version?: string | null }) {
    this.current = stored?.cursor ?? start;
    this.text = stored === undefined ? null : stored.version === undefined ? serializeCursor(stored.cursor) : stored.version;
    this.highWater = stored?.highWater ?? null;
  }

  async load(): Promise<StoredCursor> {
    return { cursor: this.current, version: this.text, highWater: this.highWater };
  }

  async save(expected: StoredCursor, next: Cursor): Promise<StoredCursor> {
    this.onSave(next);
    if (expected.version !== this.text) throw new Error(`cursor conflict: expected ${expected.version}, stored ${this.text}`);
    this.current = next;
    this.text = serializeCursor(next);
    this.highWater = next;
    this.saved.push(next);
    return { cursor: next, version: this.text, highWater: next };
  }
}

/**
 * A destination whose answer to each request is scripted: `respond` returns an AppError to throw or nothing to
 * accept. Every request is kept, and the records of accepted ones.
 */
export class FakeDestination implements Destination {
  readonly requests: string[][] = [];
  readonly accepted: string[] = [];
  respond: (records: readonly string[], call: number) => AppError | undefined;
  /** Called when a request arrives, for tests that log the order of calls. */
  onSend: (records: readonly string[]) => void = () => {};

  constructor(respond: (records: readonly string[], call: number) => AppError | undefined = () => undefined) {
    this.respond = respond;
  }

  async send(_target: string, records: readonly string[]): Promise<SendResult> {
    this.onSend(records);
    this.requests.push([...records]);
    const error = this.respond(records, this.requests.length);
    if (error) throw error;
    this.accepted.push(...records);
    return { rows: records.length, latencyMs: 1 };
  }

  async close(): Promise<void> {}
}

/** The `id` field of each record. */
export function ids(records: readonly string[]): number[] {
  return records.map((r) => (JSON.parse(r) as { id: number }).id);
}
