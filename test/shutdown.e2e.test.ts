import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { collect, spawnPushsync } from './helpers/cli.js';
import { eventually } from './helpers/wait.js';

/** SIGTERM lets in-flight jobs finish within shutdown.timeout, then exits 0. */
describe('stopping on SIGTERM', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  const prefixes: string[] = [];

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
    await db.client.query(`INSERT INTO orders (id) SELECT generate_series(1, 10)`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    for (const p of prefixes) await dropRedisPrefix(p);
  });

  async function startAndTerminate(shutdownTimeout: string, requestMs: number): Promise<{ code: number | null; log: string }> {
    const prefix = uniqueName('stop');
    prefixes.push(prefix);
    receiver.setDefault({ kind: 'slow', ms: requestMs });
    receiver.requests.length = 0;
    const path = join(mkdtempSync(join(tmpdir(), 'pushsync-stop-')), 'pushsync.yaml');
    writeFileSync(
      path,
      stringify({
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', concurrency: 1 },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.orders`, watermark: 'updated_at', every: '1s' }] }],
        web: { port: 0 },
        shutdown: { timeout: shutdownTimeout },
        log: { format: 'json' },
      }),
    );
    const child = spawnPushsync(['--config', path, 'start', '--role', 'scheduler', '--role', 'extract', '--role', 'push']);
    const done = collect(child);
    // A push request is in flight at the destination when the signal comes.
    await eventually(() => receiver.requests.length > 0, 50, 30_000);
    child.kill('SIGTERM');
    const run = await done;
    return { code: run.code, log: run.stdout + run.stderr };
  }

  it('finishes the in-flight push job before exiting 0 when it ends within shutdown.timeout', async () => {
    const before = receiver.stored.get('bronze.app_orders')?.length ?? 0;
    const { code, log } = await startAndTerminate('30s', 1_500);
    expect(code, log).toBe(0);
    // The request answered after the signal was delivered, and the process waited for it.
    expect((receiver.stored.get('bronze.app_orders')?.length ?? 0) - before).toBe(10);
    expect(log).toContain('stopping: finishing active jobs');
    expect(log).not.toContain('did not finish within shutdown.timeout');
    expect(log).toContain('pushsync stopped');
  });

  it('hands an in-flight job back and exits 0 once shutdown.timeout has passed', async () => {
    const { code, log } = await startAndTerminate('500ms', 60_000);
    expect(code, log).toBe(0);
    expect(log).toContain('in-flight jobs did not finish within shutdown.timeout; handing them back');
  });
});
