import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createChangeSources, createSources } from '../src/main.js';
import { previewTable } from '../src/preview.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const withoutExtractedAt = (record: string): string => record.replace(/"_extracted_at":"[^"]*"/, '"_extracted_at":"…"');

describe('pushsync preview', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  let config: Config;

  async function preview(limit: number): Promise<string[]> {
    const sources = createSources(config);
    const changeSources = createChangeSources(config);
    try {
      const result = await previewTable(config, `app.${db.schema}.customers`, limit, sources, changeSources);
      expect(result.failures).toEqual([]);
      return result.records;
    } finally {
      await Promise.all([...sources.values()].map((s) => s.close()));
    }
  }

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-preview-'));
    writeFileSync(join(dir, 't.mjs'), `export default (r) => (r.tier === 'gone' ? null : { ...r, domain: 'x.org' });`);
    await db.client.query(
      `CREATE TABLE customers (id bigint PRIMARY KEY, updated_at timestamptz, email text, ssn text, born_at timestamptz, region text, tier text, doc jsonb)`,
    );
    await db.client.query(
      `INSERT INTO customers SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE '2024-01-01'::timestamptz + (g / 3) * interval '1 ms' END, 'c' || g || '@x.org', 'ssn-' || g,
              '1990-05-17 10:11:12.123456+00'::timestamptz + g * interval '1 day', CASE WHEN g % 4 = 0 THEN 'EU' ELSE 'US' END,
              CASE WHEN g % 5 = 0 THEN 'gone' ELSE 'gold' END, jsonb_build_object('n', 12345678901234567890::numeric + g)
       FROM generate_series(1, 40) g`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', maxRows: 7 },
        masking: { key: 'a-pseudonym-key-for-preview' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              {
                name: `${db.schema}.customers`,
                watermark: 'updated_at',
                batchRows: 6,
                columns: { exclude: ['ssn'] },
                masks: { id: 'hash', email: 'hash', born_at: { truncate: 'month' }, region: { redact: '**' } },
                where: "region <> 'EU'",
                transform: join(dir, 't.mjs'),
              },
            ],
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('writes nothing to Redis or the destination', async () => {
    const records = await preview(40);
    expect(records.length).toBeGreaterThan(0);
    const redis = new Redis(REDIS_URL);
    try {
      expect(await redis.keys(`${prefix}:*`)).toEqual([]);
    } finally {
      await redis.quit();
    }
    expect(receiver.requests).toEqual([]);
  });

  it('prints exactly the records a sync then sends for the same rows, byte for byte apart from _extracted_at', async () => {
    const previewed = await preview(40);
    const firstRows = await preview(9);
    expect((await syncPass(config)).failed).toEqual([]);
    const sent = receiver.stored.get('bronze.app_customers')!;
    // 40 rows: 10 in the EU, 8 more dropped by the transform (2 of them also EU).
    expect(sent).toHaveLength(40 - 10 - 8 + 2);
    // Push jobs of one table run in parallel, so records arrive in no fixed order across jobs: compare as sets.
    expect(previewed.map(withoutExtractedAt).sort()).toEqual(sent.map(withoutExtractedAt).sort());
    // A preview lists records in keyset order (rows without a watermark first): fewer rows give a prefix.
    expect(firstRows.map(withoutExtractedAt)).toEqual(previewed.slice(0, firstRows.length).map(withoutExtractedAt));
    expect(firstRows.length).toBeLessThan(9);
    expect(previewed.slice(0, 3).every((r) => r.includes('"_ordering":null'))).toBe(true);
  });
});
