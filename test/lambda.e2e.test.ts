import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { handler } from '../src/lambda.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/** The AWS Lambda entry point, called in-process the way the Node.js runtime calls it. */
describe('the Lambda handler', () => {
  const prefix = uniqueName('lambda');
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  const saved = { config: process.env.PUSHSYNC_CONFIG, url: process.env.DATABASE_URL };

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
    await db.client.query(`INSERT INTO orders (id) SELECT generate_series(1, 12)`);
    receiver = await startReceiver('lambda-key');
    const path = join(mkdtempSync(join(tmpdir(), 'pushsync-lambda-')), 'pushsync.yaml');
    writeFileSync(
      path,
      stringify({
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'lambda-key', attempts: 1 },
        sources: [
          { name: 'app', kind: 'postgres', url: '${DATABASE_URL}', tables: [{ name: `${db.schema}.orders`, watermark: 'updated_at', batchRows: 5 }] },
        ],
        // The web role's credentials are not needed by a pass: left unresolved, they must not stop it.
        web: { auth: { token: '${UNSET_WEB_TOKEN_FOR_LAMBDA}' } },
        log: { level: 'warn' },
      }),
    );
    process.env.PUSHSYNC_CONFIG = path;
    process.env.DATABASE_URL = PG_URL;
  });
  afterAll(async () => {
    process.env.PUSHSYNC_CONFIG = saved.config;
    process.env.DATABASE_URL = saved.url;
    if (saved.config === undefined) delete process.env.PUSHSYNC_CONFIG;
    if (saved.url === undefined) delete process.env.DATABASE_URL;
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it('runs one sync --once pass per invocation and returns what it sent', async () => {
    const result = await handler({}, { getRemainingTimeInMillis: () => 120_000 });
    expect(result).toMatchObject({
      failed: [],
      timedOut: false,
      counts: [{ table: `app.${db.schema}.orders`, target: 'bronze.app_orders', extracted: 12, pushed: 12 }],
    });
    expect(receiver.stored.get('bronze.app_orders')).toHaveLength(12);
    // A second invocation in the same (warm) process goes on from the cursor: nothing new, nothing re-sent.
    const again = await handler({}, { getRemainingTimeInMillis: () => 120_000 });
    expect(again.counts[0]).toMatchObject({ extracted: 0, pushed: 0 });
    expect(receiver.stored.get('bronze.app_orders')).toHaveLength(12);
  });

  it('fails the invocation with RUN_INCOMPLETE when a batch lands in the dead-letter queue', async () => {
    await db.client.query(`INSERT INTO orders (id) VALUES (13)`);
    receiver.setDefault({ kind: 'status', status: 400 });
    try {
      await expect(handler(null, {})).rejects.toMatchObject({ code: 'RUN_INCOMPLETE', message: expect.stringContaining('1 job(s) failed') });
    } finally {
      receiver.setDefault({ kind: 'ok' });
    }
  });
});
