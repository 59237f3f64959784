import { describe, expect, it } from 'vitest';
import { deliverChanges, type DeliverChangesParams, type KeyChange } from './deliver-changes.js';
import { AppError } from './errors.js';
import { STREAM_LIMITS } from './batching.js';
import { changeOrdering } from './lsn.js';
import type { SendSummary } from './sender.js';
import { FakeDestination, FakeTableReader, fakeRows, ids, type FakeRow } from '../../test/helpers/fakes.js';

const change = (op: KeyChange['op'], id: number, position: number): KeyChange => ({
  op,
  pk: [String(id)],
  ordering: changeOrdering('1/A0', position),
});

/** Ten updates of keys 1..10, in order. */
const UPDATES: KeyChange[] = Array.from({ length: 10 }, (_, i) => change('update', i + 1, i + 1));

function setup(changes: KeyChange[], rows: FakeRow[] = fakeRows(1, 10, 'null'), destination = new FakeDestination()) {
  const reader = new FakeTableReader(rows, { watermark: null });
  const delivered: Array<{ resumeAt: number; rows: number }> = [];
  const params: DeliverChangesParams = {
    reader,
    destination,
    changes,
    resumeAt: 0,
    source: 'app',
    table: 'public.t',
    target: 'bronze.app_t',
    limits: { ...STREAM_LIMITS, maxRows: 4 },
    envelopeBytes: 100,
    now: () => new Date('2024-05-01T00:00:00Z'),
    onDelivered: async (resumeAt, n) => {
      delivered.push({ resumeAt, rows: n });
    },
  };
  return { reader, destination, delivered, params };
}

async function failure(promise: Promise<SendSummary>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const parsed = (records: readonly string[]): Array<Record<string, unknown>> => records.map((r) => JSON.parse(r) as Record<string, unknown>);

describe('deliverChanges', () => {
  it('sends inserts and updates as the row read now, under the change ordering, and deletes with the key columns only', async () => {
    const rows = fakeRows(1, 3, 'null');
    const changes = [change('insert', 1, 1), change('update', 2, 2), change('delete', 7, 3)];
    const { params, destination } = setup(changes, rows);
    expect(await deliverChanges(params)).toEqual({ rows: 3, requests: 1 });
    const records = parsed(destination.accepted);
    expect(records.map((r) => [r._op, r._ordering])).toEqual(changes.map((c) => [c.op, c.ordering]));
    expect(records[0]).toMatchObject({ id: 1, v: 'row 1', _source: 'app', _table: 'public.t', _extracted_at: '2024-05-01T00:00:00.000Z' });
    expect(records[2]).toEqual({
      _op: 'delete',
      _event_id: records[2]!._event_id,
      _ordering: changes[2]!.ordering,
      _generation: 0,
      _extracted_at: '2024-05-01T00:00:00.000Z',
      _source: 'app',
      _table: 'public.t',
      id: 7,
    });
  });

  it('sends changes of a dropped table under its generation: its deletes only, never rows read from the new table', async () => {
    const changes = [change('insert', 1, 1), change('delete', 2, 2), change('update', 3, 3)];
    const { destination, params } = setup(changes);
    await deliverChanges({ ...params, generation: 2, changesGeneration: 1 });
    expect(parsed(destination.accepted).map((r) => [r._op, r.id, r._generation])).toEqual([['delete', 2, 1]]);
    // The same changes streamed from the relation rows are read from go out whole, under its generation.
    const current = setup(changes);
    await deliverChanges({ ...current.params, generation: 2, changesGeneration: 2 });
    expect(parsed(current.destination.accepted).map((r) => [r._op, r.id, r._generation])).toEqual([
      ['insert', 1, 2],
      ['delete', 2, 2],
      ['update', 3, 2],
    ]);
  });

  it('sends a delete of a key that was inserted again with the key columns only, and the insert with the row', async () => {
    const { params, destination } = setup([change('delete', 2, 1), change('insert', 2, 2)]);
    await deliverChanges(params);
    const records = parsed(destination.accepted);
    expect(records.map((r) => [r._op, r.id, r.v])).toEqual([
      ['delete', 2, undefined],
      ['insert', 2, 'row 2'],
    ]);
  });

  it('skips an insert or update of a key the table no longer has, and sends the rest', async () => {
    const rows = fakeRows(1, 5, 'null').filter((r) => r.pk[0] !== '2' && r.pk[0] !== '4');
    const changes = [change('insert', 1, 1), change('insert', 2, 2), change('update', 3, 3), change('update', 4, 4), change('delete', 4, 5)];
    const { params, destination } = setup(changes, rows);
    expect(await deliverChanges(params)).toEqual({ rows: 3, requests: 1 });
    expect(parsed(destination.accepted).map((r) => [r._op, r.id])).toEqual([
      ['insert', 1],
      ['update', 3],
      ['delete', 4],
    ]);
  });

  it('sends a change of a soft-deleted row as a delete of the whole row', async () => {
    const rows = fakeRows(1, 3, 'null');
    rows[1]!.deleted = true;
    const { params, destination } = setup([change('update', 2, 1), change('insert', 3, 2)], rows);
    await deliverChanges(params);
    expect(parsed(destination.accepted).map((r) => [r._op, r.id, r.v])).toEqual([
      ['delete', 2, 'row 2'],
      ['insert', 3, 'row 3'],
    ]);
  });

  it('sends every change of a key that changed several times, each with its own ordering and event id', async () => {
    const { params, destination } = setup([change('insert', 1, 1), change('update', 1, 2), change('update', 1, 3)]);
    await deliverChanges(params);
    const records = parsed(destination.accepted);
    expect(records.map((r) => r._op)).toEqual(['insert', 'update', 'update']);
    expect(new Set(records.map((r) => r._event_id)).size).toBe(3);
    expect(records.map((r) => r._ordering)).toEqual([changeOrdering('1/A0', 1), changeOrdering('1/A0', 2), changeOrdering('1/A0', 3)]);
  });

  it('saves the index of the next change after each accepted request, before sending the next', async () => {
    const { params, destination, delivered } = setup(UPDATES);
    const seen: Array<number | undefined> = [];
    destination.onSend = () => seen.push(delivered.at(-1)?.resumeAt);
    await deliverChanges(params);
    expect(seen).toEqual([undefined, 4, 8]);
    expect(delivered.map((d) => d.resumeAt)).toEqual([4, 8, 10]);
  });

  it('starts at resumeAt, sending nothing before it, even of keys that change again later', async () => {
    const changes = [change('update', 1, 1), change('delete', 2, 2), change('update', 3, 3), change('update', 1, 4), change('update', 4, 5)];
    const { params, destination, delivered } = setup(changes);
    await deliverChanges({ ...params, resumeAt: 2 });
    expect(parsed(destination.accepted).map((r) => [r._op, r.id, r._ordering])).toEqual(
      changes.slice(2).map((c) => [c.op, Number(c.pk[0]), c.ordering]),
    );
    expect(delivered.map((d) => d.resumeAt)).toEqual([5]);
  });

  it('delivers the rest after rejected rows, moves resumeAt back to the failed request, and re-sends exactly from there on retry', async () => {
    const destination = new FakeDestination((records) =>
      ids(records).includes(6) ? new AppError('DEST_ROWS_REJECTED', 'rejected 1 row', { details: { rejectedRows: 1 } }) : undefined,
    );
    const { params, delivered } = setup(UPDATES, undefined, destination);
    const err = await failure(deliverChanges(params));
    expect(err.code).toBe('DEST_ROWS_REJECTED');
    expect(err.details).toMatchObject({ delivered: 6, rejectedRows: 1, failures: [{ keys: [['5'], ['6'], ['7'], ['8']] }] });
    expect(ids(destination.accepted)).toEqual([1, 2, 3, 4, 9, 10]);
    expect(delivered.at(-1)).toEqual({ resumeAt: 4, rows: 0 });

    const retry = new FakeDestination();
    await deliverChanges({ ...params, destination: retry, resumeAt: 4 });
    expect(retry.requests.map(ids)).toEqual([
      [5, 6, 7, 8],
      [9, 10],
    ]);
  });

  it('moves resumeAt back to the start of a resumed attempt whose first request fails', async () => {
    const destination = new FakeDestination((_records, call) => (call === 1 ? new AppError('DEST_TOO_LARGE', 'HTTP 413') : undefined));
    const { params, delivered } = setup(UPDATES, undefined, destination);
    await failure(deliverChanges({ ...params, resumeAt: 6, limits: { ...STREAM_LIMITS, maxRows: 1 } }));
    expect(delivered.at(-1)).toEqual({ resumeAt: 6, rows: 0 });
  });

  it('delivers every other change when a row has a field over 1 MB, then fails with ROW_TOO_LARGE', async () => {
    const rows = fakeRows(1, 10, 'null');
    rows[2]!.json = `{"id":3,"v":"${'x'.repeat(1024 * 1024 + 1)}"}`;
    const { params, destination, delivered } = setup(UPDATES, rows);
    const err = await failure(deliverChanges(params));
    expect(err.code).toBe('ROW_TOO_LARGE');
    expect(err.details).toMatchObject({ delivered: 9, rejectedRows: 1, failures: [{ code: 'ROW_TOO_LARGE', keys: [['3']] }] });
    expect(ids(destination.accepted)).toEqual([1, 2, 4, 5, 6, 7, 8, 9, 10]);
    // Nothing was sent before the row was refused: a retry starts from the first change again.
    expect(delivered.at(-1)).toEqual({ resumeAt: 0, rows: 0 });
  });

  it('lets a retryable error through at once with resumeAt at the first change not accepted', async () => {
    const destination = new FakeDestination((_records, call) =>
      call === 2 ? new AppError('DEST_RATE_LIMITED', 'HTTP 429', { retryable: true }) : undefined,
    );
    const { params, delivered } = setup(UPDATES, undefined, destination);
    expect((await failure(deliverChanges(params))).code).toBe('DEST_RATE_LIMITED');
    expect(destination.requests).toHaveLength(2);
    expect(delivered).toEqual([{ resumeAt: 4, rows: 4 }]);

    const retry = new FakeDestination();
    await deliverChanges({ ...params, destination: retry, resumeAt: 4 });
    expect(ids([...destination.accepted, ...retry.accepted])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('fails with DEST_REJECTED and the total of rejected rows when changes fail for different reasons', async () => {
    const rows = fakeRows(1, 10, 'null');
    rows[0]!.json = `{"id":1,"v":"${'x'.repeat(1024 * 1024 + 1)}"}`;
    const destination = new FakeDestination((records) =>
      ids(records).includes(9) ? new AppError('DEST_ROWS_REJECTED', 'rejected 2 rows', { details: { rejectedRows: 2 } }) : undefined,
    );
    const { params } = setup(UPDATES, rows, destination);
    const err = await failure(deliverChanges(params));
    expect(err.code).toBe('DEST_REJECTED');
    expect(err.details).toMatchObject({ rejectedRows: 3 });
  });
});
