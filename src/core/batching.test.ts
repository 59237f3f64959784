import { describe, expect, it } from 'vitest';
import {
  BatchPacker,
  STREAM_LIMITS,
  envelopeBytes,
  prepareRow,
  requestBody,
  requestBodyBytes,
  requestBodyOf,
  type RequestConfig,
  type StreamLimits,
} from './batching.js';
import { AppError } from './errors.js';
import { EncodedRecords } from './encoded-records.js';
import { jsonDepth } from './json-scan.js';
import { prng } from '../../test/helpers/prng.js';

/** A JSON value whose depth is exactly `depth` (alternating arrays and objects). */
function nested(depth: number): string {
  let text = '12345678901234567890';
  for (let i = 0; i < depth; i++) text = i % 2 === 0 ? `[${text}]` : `{"k":${text}}`;
  return text;
}

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

const CONFIG: RequestConfig = { table: 'bronze.app_orders', mode: 'append', wait: false, tags: { source: 'pushsync' } };

describe('prepareRow', () => {
  it('leaves a row within the depth limit untouched, counting the row object as one level', () => {
    const row = `{"id":1,"doc":${nested(9)}}`;
    expect(jsonDepth(row)).toBe(10);
    expect(prepareRow(row, STREAM_LIMITS, true)).toEqual({ json: row, stringified: [] });
  });

  it('sends a JSON column nested beyond depth 10 as its JSON text in a string and lists it', () => {
    const deep = nested(10);
    const row = `{"id":12345678901234567890,"doc":${deep},"shallow":{"a":[1]},"big":98765432109876543210.5}`;
    const prepared = prepareRow(row, STREAM_LIMITS, true);
    expect(prepared.stringified).toEqual(['doc']);
    expect(jsonDepth(prepared.json)).toBeLessThanOrEqual(STREAM_LIMITS.maxDepth);
    const parsed = JSON.parse(prepared.json) as Record<string, unknown>;
    expect(parsed.doc).toBe(deep);
    expect(parsed.shallow).toEqual({ a: [1] });
    // Big numbers stay as the digits the database wrote, never through a double.
    expect(prepared.json).toContain('"id":12345678901234567890,');
    expect(prepared.json).toContain('"big":98765432109876543210.5');
    expect(prepared.json).toContain(JSON.stringify(deep));
  });

  it('stringifies every column that is too deep, and only those', () => {
    const row = `{"a":${nested(12)},"b":${nested(3)},"c":${nested(10)}}`;
    const prepared = prepareRow(row, STREAM_LIMITS, true);
    expect(prepared.stringified).toEqual(['a', 'c']);
    expect(JSON.parse(prepared.json)).toEqual({ a: nested(12), b: JSON.parse(nested(3)), c: nested(10) });
  });

  it('skips the depth scan for tables that cannot nest', () => {
    const row = `{"doc":${nested(12)}}`;
    expect(prepareRow(row, STREAM_LIMITS, false)).toEqual({ json: row, stringified: [] });
  });

  it('refuses a field over 1 MB with ROW_TOO_LARGE naming the column', () => {
    const big = 'x'.repeat(STREAM_LIMITS.maxFieldBytes);
    const row = `{"id":1,"body":${JSON.stringify(big)},"tail":2}`;
    const err = thrown(() => prepareRow(row, STREAM_LIMITS, false));
    expect(err.code).toBe('ROW_TOO_LARGE');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('"body"');
    expect(err.details).toMatchObject({ column: 'body', bytes: STREAM_LIMITS.maxFieldBytes + 2 });
  });

  it('measures fields in UTF-8 bytes, not characters', () => {
    const limits: StreamLimits = { ...STREAM_LIMITS, maxFieldBytes: 3000 };
    const threeBytes = '€'.repeat(1000); // 3000 bytes, plus two quote bytes
    const err = thrown(() => prepareRow(`{"note":"${threeBytes}"}`, limits, false));
    expect(err.details).toMatchObject({ column: 'note', bytes: 3002 });
    expect(prepareRow(`{"note":"${'€'.repeat(999)}"}`, limits, false).stringified).toEqual([]);
  });

  it('accepts a row larger than the field limit when no single field is', () => {
    const half = 'y'.repeat(STREAM_LIMITS.maxFieldBytes / 2);
    const row = `{"a":"${half}","b":"${half}","c":"${half}"}`;
    expect(prepareRow(row, STREAM_LIMITS, false).json).toBe(row);
  });
});

describe('BatchPacker', () => {
  it('never exceeds maxRows or maxBytes including the envelope, and loses or reorders no record', () => {
    const random = prng(20240301);
    const envelope = envelopeBytes(CONFIG);
    // Counted to show the loop exercised both limits and the refusal path.
    let refused = 0;
    let closedByBytes = 0;
    let closedByRows = 0;
    for (let round = 0; round < 200; round++) {
      const maxRows = 1 + Math.floor(random() * 20);
      const maxBytes = envelope + 40 + Math.floor(random() * 2000);
      const limits: StreamLimits = { ...STREAM_LIMITS, maxRows, maxBytes };
      const packer = new BatchPacker(limits, envelope);
      const batches: string[][] = [];
      const sent: string[] = [];
      const count = Math.floor(random() * 300);
      for (let i = 0; i < count; i++) {
        // Mix ASCII and multi-byte text so that characters and bytes differ.
        const body = (random() < 0.3 ? 'é€' : 'ab').repeat(Math.floor(random() * 60));
        const record = JSON.stringify({ i, body });
        const size = BatchPacker.sizeOf(record);
        if (!packer.fits(size)) {
          expect(() => packer.add(record, size)).toThrow(AppError);
          refused += 1;
          continue;
        }
        const closed = packer.add(record, size);
        if (closed) {
          batches.push(closed);
          if (closed.length === maxRows) closedByRows += 1;
          else closedByBytes += 1;
        }
        sent.push(record);
      }
      if (packer.size > 0) batches.push(packer.flush());
      for (const batch of batches) {
        expect(batch.length).toBeGreaterThan(0);
        expect(batch.length).toBeLessThanOrEqual(maxRows);
        const body = requestBody(batch, CONFIG);
        expect(Buffer.byteLength(body)).toBeLessThanOrEqual(maxBytes);
        expect((JSON.parse(body) as { data: unknown[] }).data).toHaveLength(batch.length);
      }
      expect(batches.flat()).toEqual(sent);
    }
    expect(refused).toBeGreaterThan(0);
    expect(closedByBytes).toBeGreaterThan(0);
    expect(closedByRows).toBeGreaterThan(0);
  });

  it('fills a batch up to exactly maxRows before closing it', () => {
    const packer = new BatchPacker({ ...STREAM_LIMITS, maxRows: 3 }, envelopeBytes(CONFIG));
    const closed = ['{"a":1}', '{"a":2}', '{"a":3}', '{"a":4}'].map((r) => packer.add(r, BatchPacker.sizeOf(r)));
    expect(closed).toEqual([null, null, null, ['{"a":1}', '{"a":2}', '{"a":3}']]);
    expect(packer.size).toBe(1);
    expect(packer.flush()).toEqual(['{"a":4}']);
    expect(packer.size).toBe(0);
  });

  it('refuses a record that could not fit even alone with ROW_TOO_LARGE', () => {
    const envelope = envelopeBytes(CONFIG);
    const packer = new BatchPacker({ ...STREAM_LIMITS, maxBytes: envelope + 10 }, envelope);
    expect(packer.fits(10)).toBe(true);
    expect(packer.fits(11)).toBe(false);
    const err = thrown(() => packer.add('{"a":"0123456789"}', 19));
    expect(err.code).toBe('ROW_TOO_LARGE');
    expect(packer.size).toBe(0);
  });
});

describe('requestBodyBytes', () => {
  it('writes the same bytes as the body text encoded, for multi-byte text, no records and one record', () => {
    const cases = [[], ['{"a":1}'], ['{"a":"é€😀"}', '{"b":"\\u0000 x"}', '{}'], Array.from({ length: 1000 }, (_, i) => `{"n":${i},"t":"ü${i}"}`)];
    for (const records of cases) expect(requestBodyBytes(records, CONFIG).equals(Buffer.from(requestBody(records, CONFIG)))).toBe(true);
  });
});

describe('requestBodyOf', () => {
  it('writes the same bytes as requestBodyBytes for the same records encoded, none and one included', () => {
    const cases = [[], ['{"a":1}'], ['{"a":"é€😀"}', '{"b":"\\u0000 x"}', '{}']];
    for (const records of cases) {
      const encoded = new EncodedRecords(4);
      for (const r of records) encoded.commit(encoded.stage(r));
      expect(requestBodyOf(encoded, 0, encoded.count, CONFIG).equals(requestBodyBytes(records, CONFIG))).toBe(true);
      // Written in place, the body leaves the records as they were: a part of them (a split request) still reads right.
      expect(requestBodyOf(encoded, 1, encoded.count, CONFIG).equals(requestBodyBytes(records.slice(1), CONFIG))).toBe(true);
      expect(encoded.texts()).toEqual(records);
    }
  });
});

describe('requestBody', () => {
  it('is valid JSON with the records spliced in verbatim and the config beside them', () => {
    const records = ['{"n":12345678901234567890}', '{"s":"a,\\"b\\""}', '{}'];
    const body = requestBody(records, CONFIG);
    expect(body).toContain('12345678901234567890');
    // eslint-disable-next-line no-loss-of-precision -- JSON.parse loses these digits too; the body text keeps them
    expect(JSON.parse(body)).toEqual({ data: [{ n: 12345678901234567890 }, { s: 'a,"b"' }, {}], config: CONFIG });
  });

  it('measures the envelope as the body of an empty batch', () => {
    expect(envelopeBytes(CONFIG)).toBe(Buffer.byteLength(requestBody([], CONFIG)));
    expect(JSON.parse(requestBody([], CONFIG))).toEqual({ data: [], config: CONFIG });
  });
});
