import { describe, expect, it } from 'vitest';
import { RecordSender } from './sender.js';
import { AppError } from './errors.js';
import { requestBodyOf, STREAM_LIMITS, type StreamLimits } from './batching.js';
import type { EncodedRecords } from './encoded-records.js';
import { FakeDestination, ids } from '../../test/helpers/fakes.js';

const record = (id: number, pad = 0): string => `{"id":${id},"v":"${'x'.repeat(pad)}"}`;

interface Delivered {
  after: number | null;
  rows: number;
}

function sender(destination: FakeDestination, o: { limits?: Partial<StreamLimits>; start?: number | null; log?: string[] } = {}) {
  const delivered: Delivered[] = [];
  const s = new RecordSender<number>(
    {
      destination,
      target: 'bronze.t',
      limits: { ...STREAM_LIMITS, maxRows: 4, ...o.limits },
      envelopeBytes: 100,
      start: o.start ?? null,
      onDelivered: async (after, rows) => {
        delivered.push({ after, rows });
        o.log?.push(`delivered ${after}`);
      },
    },
    (position) => [String(position)],
  );
  return { s, delivered };
}

async function sendAll(s: RecordSender<number>, from: number, to: number, make: (id: number) => string = (id) => record(id)): Promise<void> {
  for (let id = from; id <= to; id++) await s.add(make(id), id);
}

async function finishError(s: RecordSender<number>): Promise<AppError> {
  const err = await s.finish().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const tooLarge = (): AppError => new AppError('DEST_TOO_LARGE', 'HTTP 413 for bronze.t: request too large');
const rowsRejected = (n: number): AppError => new AppError('DEST_ROWS_REJECTED', `destination rejected ${n} rows`, { details: { rejectedRows: n } });

describe('RecordSender', () => {
  it('sends records in order in requests of at most maxRows, saving progress after each before sending the next', async () => {
    const log: string[] = [];
    const destination = new FakeDestination();
    destination.onSend = (records) => log.push(`send ${ids(records).join(',')}`);
    const { s } = sender(destination, { log });
    await sendAll(s, 1, 10);
    expect(await s.finish()).toEqual({ rows: 10, requests: 3 });
    expect(log).toEqual(['send 1,2,3,4', 'delivered 4', 'send 5,6,7,8', 'delivered 8', 'send 9,10', 'delivered 10']);
  });

  it('closes a request before it would exceed the byte budget', async () => {
    const destination = new FakeDestination();
    // Budget 1024 - 100 = 924 bytes; each record is about 311 bytes with its comma: two fit, three do not.
    const { s } = sender(destination, { limits: { maxRows: 100, maxBytes: 1024 } });
    await sendAll(s, 1, 5, (id) => record(id, 300));
    await s.finish();
    expect(destination.requests.map(ids)).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('splits a request the destination calls too large in halves, recursively, until each part is accepted', async () => {
    const destination = new FakeDestination((records) => (records.length > 2 ? tooLarge() : undefined));
    const { s, delivered } = sender(destination, { limits: { maxRows: 8 } });
    await sendAll(s, 1, 8);
    expect(await s.finish()).toEqual({ rows: 8, requests: 4 });
    expect(destination.requests.map((r) => r.length)).toEqual([8, 4, 2, 2, 4, 2, 2]);
    expect(ids(destination.accepted)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(delivered.map((d) => d.after)).toEqual([2, 4, 6, 8]);
  });

  it('records a single record the destination still calls too large, delivers the rest, then fails with DEST_TOO_LARGE', async () => {
    const destination = new FakeDestination((records) => (ids(records).includes(6) ? tooLarge() : undefined));
    const { s, delivered } = sender(destination);
    await sendAll(s, 1, 10);
    const err = await finishError(s);
    expect(err.code).toBe('DEST_TOO_LARGE');
    expect(ids(destination.accepted)).toEqual([1, 2, 3, 4, 5, 7, 8, 9, 10]);
    expect(err.details).toMatchObject({ delivered: 9, rejectedRows: 1, failures: [{ code: 'DEST_TOO_LARGE', keys: [['6']] }] });
    expect(err.message).toMatch(/^1 part\(s\) were not delivered \(9 rows were\): .*\[keys \[\["6"\]\]\]/);
    // Progress stops being saved at the failure, and the resume point ends just before it.
    expect(delivered).toEqual([
      { after: 4, rows: 4 },
      { after: 5, rows: 1 },
      { after: 5, rows: 0 },
    ]);
  });

  it('rejects a record too large for any request as ROW_TOO_LARGE without sending it, and delivers the rest', async () => {
    const destination = new FakeDestination();
    const { s } = sender(destination, { limits: { maxBytes: 1024 } });
    await sendAll(s, 1, 6, (id) => record(id, id === 3 ? 2000 : 0));
    const err = await finishError(s);
    expect(err.code).toBe('ROW_TOO_LARGE');
    expect(err.details).toMatchObject({ delivered: 5, rejectedRows: 1, failures: [{ code: 'ROW_TOO_LARGE', keys: [['3']] }] });
    expect(ids(destination.accepted)).toEqual([1, 2, 4, 5, 6]);
    expect(destination.requests.flat().some((r) => r.length > 1000)).toBe(false);
  });

  it('delivers the requests after one with rejected rows, then fails counting the rows the destination rejected', async () => {
    const destination = new FakeDestination((records) => (ids(records).includes(6) ? rowsRejected(2) : undefined));
    const { s, delivered } = sender(destination);
    await sendAll(s, 1, 12);
    const err = await finishError(s);
    expect(err.code).toBe('DEST_ROWS_REJECTED');
    expect(err.details).toMatchObject({
      delivered: 8,
      rejectedRows: 2,
      failures: [{ code: 'DEST_ROWS_REJECTED', keys: [['5'], ['6'], ['7'], ['8']] }],
    });
    expect(destination.requests.map(ids)).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11, 12],
    ]);
    expect(delivered.at(-1)).toEqual({ after: 4, rows: 0 });
  });

  it('fails with DEST_REJECTED and the sum of rejected rows when the failures have different codes', async () => {
    const destination = new FakeDestination((records) => {
      if (ids(records).includes(2)) return rowsRejected(3);
      if (ids(records).includes(7)) return tooLarge();
      return undefined;
    });
    const { s } = sender(destination, { limits: { maxRows: 4, maxBytes: 1024 } });
    await sendAll(s, 1, 12, (id) => record(id, id === 11 ? 2000 : 0));
    const err = await finishError(s);
    expect(err.code).toBe('DEST_REJECTED');
    // 3 rejected by the destination in [1..4], 1 too large alone (7), 1 over the request budget (11).
    expect(err.details).toMatchObject({ rejectedRows: 5, delivered: 6 });
    expect((err.details!.failures as Array<{ code: string }>).map((f) => f.code)).toEqual(['DEST_ROWS_REJECTED', 'DEST_TOO_LARGE', 'ROW_TOO_LARGE']);
    expect(err.message).toMatch(/^3 part\(s\) were not delivered \(6 rows were\)/);
  });

  it('moves the resume point back to the start when the first request fails', async () => {
    const destination = new FakeDestination((records, call) => (call === 1 ? rowsRejected(1) : undefined));
    const { s, delivered } = sender(destination, { start: 20 });
    for (let id = 21; id <= 26; id++) await s.add(record(id), id);
    await finishError(s);
    expect(delivered).toEqual([{ after: 20, rows: 0 }]);
  });

  it('lets a retryable error through at once, with progress saved up to the last accepted request', async () => {
    const destination = new FakeDestination((_records, call) =>
      call === 2 ? new AppError('DEST_UNAVAILABLE', 'HTTP 503', { retryable: true }) : undefined,
    );
    const { s, delivered } = sender(destination);
    const err = await sendAll(s, 1, 12).then(
      () => undefined,
      (e: unknown) => e as AppError,
    );
    expect(err?.code).toBe('DEST_UNAVAILABLE');
    expect(destination.requests).toHaveLength(2);
    expect(delivered).toEqual([{ after: 4, rows: 4 }]);
  });

  it('keeps the resume point before an earlier failure when a retryable error follows it', async () => {
    const destination = new FakeDestination((records, call) => {
      if (call === 2) return rowsRejected(1);
      if (call === 4) return new AppError('DEST_UNAVAILABLE', 'HTTP 503', { retryable: true });
      return undefined;
    });
    const { s, delivered } = sender(destination);
    const err = await sendAll(s, 1, 20).then(
      () => undefined,
      (e: unknown) => e as AppError,
    );
    expect(err?.code).toBe('DEST_UNAVAILABLE');
    // Request 3 ([9..12]) was accepted, but the saved progress must not pass the rejected request [5..8].
    expect(delivered).toEqual([{ after: 4, rows: 4 }]);
  });

  it('lets a retryable error inside a split through with the first half saved as delivered', async () => {
    const destination = new FakeDestination((records, call) => {
      if (call === 1) return tooLarge();
      if (call === 3) return new AppError('DEST_TIMEOUT', 'timed out', { retryable: true });
      return undefined;
    });
    const { s, delivered } = sender(destination);
    await sendAll(s, 1, 4);
    const err = await s.finish().then(
      () => undefined,
      (e: unknown) => e as AppError,
    );
    expect(err?.code).toBe('DEST_TIMEOUT');
    expect(delivered).toEqual([{ after: 2, rows: 2 }]);
  });

  it('hands a destination that takes encoded records the same requests, as UTF-8 bytes, split in halves alike', async () => {
    const plain = new FakeDestination((records) => (records.length > 2 ? tooLarge() : undefined));
    const encoded = new FakeDestination((records) => (records.length > 2 ? tooLarge() : undefined));
    const counts: number[] = [];
    const withBytes = Object.assign(encoded, {
      sendEncoded: (target: string, batch: EncodedRecords, from: number, to: number) => {
        counts.push(to - from);
        const body = JSON.parse(requestBodyOf(batch, from, to, { table: target, mode: 'append', wait: false, tags: {} }).toString('utf8')) as {
          data: unknown[];
        };
        return encoded.send(
          target,
          body.data.map((r) => JSON.stringify(r)),
        );
      },
    });
    const make = (id: number): string => JSON.stringify({ id, v: 'é€😀'.repeat(id) });
    const a = sender(plain);
    const b = sender(withBytes);
    await sendAll(a.s, 1, 9, make);
    await sendAll(b.s, 1, 9, make);
    expect(await b.s.finish()).toEqual(await a.s.finish());
    expect(encoded.requests).toEqual(plain.requests);
    expect(encoded.accepted).toEqual(plain.accepted);
    expect(b.delivered).toEqual(a.delivered);
    expect(counts).toEqual(encoded.requests.map((r) => r.length));
  });
});
