import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { widenedXid } from './postgres-cdc.js';
import { LOGICAL_PG_URL } from '../../test/helpers/services.js';

const EPOCH = 2n ** 32n;

describe('widenedXid', () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
  });

  it('widens a 32-bit transaction id to the 64-bit one nearest the reference, on either side of it and of a wraparound', async () => {
    const cases: Array<[xid: bigint, reference: bigint, full: bigint]> = [
      [997n, 1000n, 997n],
      [1003n, 1000n, 1003n],
      // A later epoch: completed before the reference, and held back at or past it.
      [997n, 5n * EPOCH + 1000n, 5n * EPOCH + 997n],
      [1003n, 5n * EPOCH + 1000n, 5n * EPOCH + 1003n],
      [1000n, 5n * EPOCH + 1000n, 5n * EPOCH + 1000n],
      // Across a wraparound of the 32-bit counter.
      [EPOCH - 6n, 5n * EPOCH + 5n, 5n * EPOCH - 6n],
      [3n, 5n * EPOCH + (EPOCH - 6n), 6n * EPOCH + 3n],
    ];
    for (const [xid, reference, full] of cases) {
      const { rows } = await client.query<{ full: string }>(`SELECT (${widenedXid('$1::bigint', '$2::bigint')})::text AS full`, [
        String(xid),
        String(reference),
      ]);
      expect([xid, reference, rows[0]!.full]).toEqual([xid, reference, String(full)]);
    }
  });
});
