import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { STREAM_LIMITS } from '../core/batching.js';
import { isAppError } from '../core/errors.js';
import { RequestPreparer } from './dev-sink-preparer.js';

const body = (rows: string[], table = 'bronze.t'): Uint8Array =>
  new Uint8Array(Buffer.from(`{"data":[${rows.join(',')}],"config":{"table":"${table}"}}`));

describe('dev sink request preparer', () => {
  const preparer = new RequestPreparer({ ...STREAM_LIMITS, maxDepth: 3 });
  afterEach(async () => {
    await preparer.close();
  });

  it('splits bodies on its worker and answers in the order they were given', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => preparer.prepare(body([`{"id":${i},"s":"a\\"b"}`, `{"id":${i},"deep":[[[1]]]}`], `bronze.t${i}`), false)),
    );
    answers.forEach((prepared, i) => {
      expect(prepared.table).toBe(`bronze.t${i}`);
      expect(prepared.errors).toEqual([{ row: 1, code: 'TOO_DEEP', message: expect.stringContaining('nested 4 levels') }]);
      const { batch } = prepared;
      expect(batch.rows).toBe(1);
      expect(batch.columns.map((c) => c.name)).toEqual(['id', 's']);
      const values = Array.from({ length: batch.members.length / 3 }, (_, m) => batch.text.slice(batch.members[3 * m + 1], batch.members[3 * m + 2]));
      expect(values).toEqual([String(i), '"a\\"b"']);
    });
  });

  it('unpacks gzip on its worker, and hands back a refusal with its status and where it is', async () => {
    const packed = new Uint8Array(gzipSync(Buffer.from('{"data":[{"a":"\xff"}],"config":{"table":"s.t"}}', 'latin1')));
    const refused = await preparer.prepare(packed, true).catch((err: unknown) => err);
    expect(isAppError(refused) && refused.details).toMatchObject({ status: 400, reason: 'INVALID_UTF8', where: { offset: 15 } });
    const stored = await preparer.prepare(new Uint8Array(gzipSync(body(['{"a":1}']))), true);
    expect(stored.batch.rows).toBe(1);
  });

  it('copies a body that shares its memory before moving it to the worker', async () => {
    const shared = Buffer.concat([Buffer.from('xx'), Buffer.from(body(['{"a":1}']))]).subarray(2);
    await expect(preparer.prepare(shared, false)).resolves.toMatchObject({ table: 'bronze.t' });
    expect(shared.byteLength).toBeGreaterThan(0);
  });
});
