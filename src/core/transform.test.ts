import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { applyTransform, type Transform, type TransformContext } from './transform.js';

const CTX: TransformContext = {
  op: 'upsert',
  ordering: 'p00000000000000000001',
  extractedAt: '2024-01-01T00:00:00.000Z',
  source: 'app',
  table: 'public.t',
  primaryKey: ['id'],
};
const ROW = '{"id":"12345678901234567890","email":"a@b.c","n":1.5}';

function failure(fn: Transform): AppError {
  try {
    applyTransform(fn, ROW, CTX);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('TRANSFORM_FAILED');
    return err as AppError;
  }
  throw new Error('expected TRANSFORM_FAILED');
}

describe('applyTransform', () => {
  it('sends a JSON column it passed through as written: big integers and trailing zeros survive', () => {
    const row = '{"id":"1","doc":{"n":12345678901234567890,"p":1.10,"a":[1e400,-0.0]},"scalar":123456789012345678901,"k":2}';
    const ctx = { ...CTX, primaryKey: ['id'] };
    expect(applyTransform((r) => ({ ...r, extra: 'x' }), row, ctx)).toBe(
      '{"id":"1","doc":{"n":12345678901234567890,"p":1.10,"a":[1e400,-0.0]},"scalar":123456789012345678901,"k":2,"extra":"x"}',
    );
    // A column the transform rebuilt is sent as the transform built it.
    expect(applyTransform((r) => ({ ...r, doc: { replaced: true } }), row, ctx)).toContain('"doc":{"replaced":true}');
  });

  it('hands over the record with its metadata and returns the columns it sends', () => {
    let seen: unknown;
    const out = applyTransform((r) => ((seen = r), { ...r, domain: String(r.email).split('@')[1], email: undefined }), ROW, CTX);
    expect(seen).toEqual({
      _op: 'upsert',
      _ordering: 'p00000000000000000001',
      _generation: 0,
      _extracted_at: '2024-01-01T00:00:00.000Z',
      _source: 'app',
      _table: 'public.t',
      id: '12345678901234567890',
      email: 'a@b.c',
      n: 1.5,
    });
    expect(out).toBe('{"id":"12345678901234567890","n":1.5,"domain":"b.c"}');
  });

  it('drops the row when the transform returns null', () => {
    expect(applyTransform(() => null, ROW, CTX)).toBeNull();
  });

  it('fails the row with the message when the transform throws', () => {
    expect(
      failure(() => {
        throw new Error('no region for this customer');
      }).message,
    ).toBe('transform threw: no region for this customer');
  });

  it('fails the row when the transform returns something other than a record', () => {
    expect(failure(() => 'x' as never).message).toMatch(/returned string/);
    expect(failure(() => [] as never).message).toMatch(/returned an array/);
    expect(failure(() => undefined as never).message).toMatch(/returned undefined/);
    expect(failure(() => Promise.resolve({}) as never).message).toMatch(/promise/);
  });

  it('fails the row when the transform touches a metadata field or the primary key', () => {
    expect(failure((r) => ({ ...r, _op: 'delete' })).message).toBe("transform changed the metadata field _op; metadata is pushsync's");
    expect(failure((r) => ({ ...r, _event_id: 'x' })).message).toMatch(/_event_id/);
    const { _table: _dropped, ...rest } = { _table: '', id: '1' };
    void _dropped;
    expect(failure(() => rest).message).toMatch(/metadata field/);
    expect(failure((r) => ({ ...r, id: 'other' })).message).toBe('transform changed the primary-key column id; keys must leave as they came');
    expect(failure((r) => ({ ...r, big: 10n })).message).toMatch(/not JSON/);
  });
});
