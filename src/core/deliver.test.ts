import { beforeEach, describe, expect, it } from 'vitest';
import { deliverRange, type DeliverParams } from './deliver.js';
import { AppError } from './errors.js';
import { STREAM_LIMITS } from './batching.js';
import type { KeyRange, Position } from './cursor.js';
import type { SendSummary } from './sender.js';
import { FakeDestination, FakeTableReader, fakeRows, ids, type FakeRow } from '../../test/helpers/fakes.js';

const wmOf = (id: number): string => `w${String(id).padStart(6, '0')}`;
const pos = (id: number): Position => ({ wm: wmOf(id), pk: [String(id)] });
/** Rows 1..20 of the table; the range is (3, 15]. */
const RANGE: KeyRange = { phase: 'wm', lo: pos(3), hi: pos(15) };

/**
 * Whether the reader hands rows over one by one (readRangeEach), one by one as UTF-8 bytes in a reused buffer with
 * room before them (readRangeBytes), or as one array per read.
 */
let streamed: 'collected' | 'streamed' | 'bytes' = 'collected';

function setup(rows: FakeRow[] = fakeRows(1, 20), destination = new FakeDestination()) {
  const reader = new FakeTableReader(rows);
  const delivered: Array<{ after: Position | null; rows: number }> = [];
  const reads: Array<Position | null> = [];
  const readRange = reader.readRange.bind(reader);
  reader.readRange = async (range, after, limit) => {
    reads.push(after);
    return readRange(range, after, limit);
  };
  if (streamed !== 'collected') {
    reader.readRangeEach = async (range, after, limit, each) => {
      const rows = await reader.readRange(range, after, limit);
      for (const row of rows) each(row);
      return rows.length;
    };
  }
  if (streamed === 'bytes') {
    const buffer = Buffer.alloc(4 * 1024 * 1024);
    reader.readRangeBytes = async (range, after, limit, each) => {
      const rows = await reader.readRange(range, after, limit);
      for (const row of rows) {
        // Garbage after the row, as a reused buffer holds: only json[0, length) is the row.
        buffer.fill(0x7b);
        const start = 100;
        const length = buffer.write(row.json, start);
        const brackets = [...row.json].filter((c) => c === '{' || c === '[').length;
        each({ position: row.position, json: buffer, start, length, brackets, deleted: row.deleted, utf8: true });
      }
      return rows.length;
    };
  }
  const params: DeliverParams = {
    reader,
    destination,
    range: RANGE,
    resumeAfter: null,
    source: 'app',
    table: 'public.t',
    target: 'bronze.app_t',
    limits: { ...STREAM_LIMITS, maxRows: 4 },
    envelopeBytes: 100,
    readRows: 5,
    now: () => new Date('2024-05-01T00:00:00Z'),
    onDelivered: async (after, n) => {
      delivered.push({ after, rows: n });
    },
  };
  return { reader, destination, delivered, reads, params };
}

async function failure(promise: Promise<SendSummary>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(['collected', 'streamed', 'bytes'] as const)('deliverRange, rows read %s', (mode) => {
  beforeEach(() => {
    streamed = mode;
  });

  it('sends the rows after the range start up to and including its end, in keyset order, read in chunks', async () => {
    const { params, destination, reads } = setup();
    expect(await deliverRange(params)).toEqual({ rows: 12, requests: 3 });
    expect(destination.requests.map(ids)).toEqual([range(4, 7), range(8, 11), range(12, 15)]);
    expect(reads).toEqual([null, pos(8), pos(13)]);
  });

  it('encodes each row as a record with its metadata, and a soft-deleted row as a delete', async () => {
    const rows = fakeRows(1, 20);
    rows[4]!.deleted = true;
    const { params, destination, reader } = setup(rows);
    Object.assign(reader.shape, { mayNest: true });
    await deliverRange(params);
    const records = destination.accepted.map((r) => JSON.parse(r) as Record<string, unknown>);
    expect(records[0]).toMatchObject({
      _op: 'upsert',
      _ordering: wmOf(4),
      _source: 'app',
      _table: 'public.t',
      _extracted_at: '2024-05-01T00:00:00.000Z',
      id: 4,
      v: 'row 4',
    });
    expect(records[1]).toMatchObject({ _op: 'delete', _ordering: wmOf(5), id: 5 });
  });

  it('sends every row under the given operation and ordering when the job carries them (a snapshot)', async () => {
    const { params, destination } = setup();
    await deliverRange({ ...params, op: 'snapshot', ordering: '~0000000001000000' });
    const records = destination.accepted.map((r) => JSON.parse(r) as Record<string, unknown>);
    expect(new Set(records.map((r) => `${String(r._op)} ${String(r._ordering)}`))).toEqual(new Set(['snapshot ~0000000001000000']));
  });

  it('saves the last delivered position after each accepted request, before sending the next', async () => {
    const { params, destination, delivered } = setup();
    const seen: Array<Position | null | undefined> = [];
    destination.onSend = () => seen.push(delivered.at(-1)?.after);
    await deliverRange(params);
    expect(seen).toEqual([undefined, pos(7), pos(11)]);
    expect(delivered).toEqual([
      { after: pos(7), rows: 4 },
      { after: pos(11), rows: 4 },
      { after: pos(15), rows: 4 },
    ]);
  });

  it('delivers every other row when one has a field over 1 MB, then fails with ROW_TOO_LARGE naming the column and key', async () => {
    const rows = fakeRows(1, 20);
    rows[9]!.json = `{"id":10,"v":"${'x'.repeat(1024 * 1024 + 1)}"}`;
    const { params, destination } = setup(rows);
    const err = await failure(deliverRange(params));
    expect(err.code).toBe('ROW_TOO_LARGE');
    expect(err.message).toContain('column "v" is 1048579 bytes, over the 1048576-byte field limit');
    expect(err.details).toMatchObject({ delivered: 11, rejectedRows: 1, failures: [{ code: 'ROW_TOO_LARGE', keys: [['10']] }] });
    expect(ids(destination.accepted)).toEqual([4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]);
  });

  it('sends a value nested past the depth limit as its JSON text in a string, and a shallow one as it is', async () => {
    const rows = fakeRows(1, 20);
    const deep = '['.repeat(12) + ']'.repeat(12);
    rows[4]!.json = `{"id":5,"deep":${deep},"s":"[[[[[[[[[[[["}`;
    rows[5]!.json = `{"id":6,"shallow":[[1]],"s":"[[[[[[[[[[[["}`;
    const { params, destination, reader } = setup(rows);
    Object.assign(reader.shape, { mayNest: true });
    await deliverRange(params);
    const records = destination.accepted.map((r) => JSON.parse(r) as Record<string, unknown>);
    const byId = new Map(records.map((r) => [r.id, r]));
    expect(byId.get(5)!.deep).toBe(deep);
    expect(byId.get(6)!.shallow).toEqual([[1]]);
  });

  it('re-sends the row that was too large, and none of the requests accepted before it, when retried from the saved resume point', async () => {
    const rows = fakeRows(1, 20);
    rows[9]!.json = `{"id":10,"v":"${'x'.repeat(1024 * 1024 + 1)}"}`;
    const { params, destination, delivered } = setup(rows);
    await failure(deliverRange(params));
    const resumeAfter = delivered.at(-1)!.after;
    // The row is fixed at the source, and the job is retried from the dead-letter queue.
    rows[9]!.json = undefined;
    const retry = new FakeDestination();
    expect(await deliverRange({ ...params, destination: retry, resumeAfter })).toMatchObject({ rows: 8 });
    expect(ids(retry.accepted)[0]).toBe(8);
    expect(ids(retry.accepted)).toContain(10);
    expect(ids([...destination.accepted, ...retry.accepted]).filter((id) => id < 8)).toEqual([4, 5, 6, 7]);
  });

  it('delivers the rest after a request with rejected rows and, retried from the saved point, re-sends exactly that request onwards', async () => {
    const destination = new FakeDestination((records) =>
      ids(records).includes(9) ? new AppError('DEST_ROWS_REJECTED', 'destination rejected 1 of 4 rows', { details: { rejectedRows: 1 } }) : undefined,
    );
    const { params, delivered } = setup(fakeRows(1, 20), destination);
    const err = await failure(deliverRange(params));
    expect(err.code).toBe('DEST_ROWS_REJECTED');
    expect(err.details).toMatchObject({ delivered: 8, rejectedRows: 1 });
    expect(ids(destination.accepted)).toEqual([...range(4, 7), ...range(12, 15)]);
    expect(delivered.at(-1)).toEqual({ after: pos(7), rows: 0 });

    const retry = new FakeDestination();
    await deliverRange({ ...params, destination: retry, resumeAfter: delivered.at(-1)!.after });
    expect(retry.requests.map(ids)).toEqual([range(8, 11), range(12, 15)]);
  });

  it('lets a retryable destination error through at once; resumed from the saved point it sends exactly what was not accepted', async () => {
    const destination = new FakeDestination((_records, call) =>
      call === 2 ? new AppError('DEST_UNAVAILABLE', 'HTTP 503', { retryable: true }) : undefined,
    );
    const { params, delivered } = setup(fakeRows(1, 20), destination);
    expect((await failure(deliverRange(params))).code).toBe('DEST_UNAVAILABLE');
    expect(destination.requests).toHaveLength(2);
    expect(delivered).toEqual([{ after: pos(7), rows: 4 }]);

    const retry = new FakeDestination();
    await deliverRange({ ...params, destination: retry, resumeAfter: delivered.at(-1)!.after });
    expect(ids([...destination.accepted, ...retry.accepted])).toEqual(range(4, 15));
  });

  it('fails with DEST_REJECTED and the total of rejected rows when a range has different failures', async () => {
    const rows = fakeRows(1, 20);
    rows[4]!.json = `{"id":5,"v":"${'x'.repeat(1024 * 1024 + 1)}"}`;
    const destination = new FakeDestination((records) => {
      if (ids(records).includes(13)) return new AppError('DEST_TOO_LARGE', 'HTTP 413');
      if (ids(records).includes(9)) return new AppError('DEST_ROWS_REJECTED', 'rejected 2 rows', { details: { rejectedRows: 2 } });
      return undefined;
    });
    const { params } = setup(rows, destination);
    const err = await failure(deliverRange(params));
    expect(err.code).toBe('DEST_REJECTED');
    // Row 5 over the field limit, 2 rejected by the destination in [9..12], row 13 too large even alone.
    expect(err.details).toMatchObject({ rejectedRows: 4 });
    expect(ids(destination.accepted)).toEqual([4, 6, 7, 8, 14, 15]);
  });
});
