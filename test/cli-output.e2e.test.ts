import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { PUSH_QUEUE } from '../src/queue/jobs.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { collect, runPushsync, spawnPushsync } from './helpers/cli.js';
import { eventually } from './helpers/wait.js';

const ROOT = new URL('..', import.meta.url).pathname;

/** What the command line prints, as a person or a script sees it. */
describe('pushsync output', () => {
  const prefix = uniqueName('out');
  let path: string;

  beforeAll(async () => {
    path = join(mkdtempSync(join(tmpdir(), 'pushsync-out-')), 'pushsync.yaml');
    writeFileSync(
      path,
      `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { apiKey: \${DEFINITE_API_KEY} }
sources:
  - name: app
    kind: postgres
    url: \${DATABASE_URL}
    tables: [{ name: public.orders, watermark: updated_at }]
`,
    );
    // Three push jobs in the dead-letter queue, so `dlq list --json` has lines to write.
    const queue = new Queue(PUSH_QUEUE, { connection: { url: REDIS_URL }, prefix });
    const worker = new Worker(PUSH_QUEUE, () => Promise.reject(new UnrecoverableError('[DEST_REJECTED] refused')), {
      connection: { url: REDIS_URL },
      prefix,
    });
    for (const i of [1, 2, 3]) await queue.add('app.public.orders', { v: 1, source: 'app', table: 'public.orders', i }, { jobId: `j${i}` });
    await eventually(async () => (await queue.getFailedCount()) === 3);
    await worker.close();
    await queue.close();
  });
  afterAll(() => dropRedisPrefix(prefix));

  it('prints its version with --version', async () => {
    const run = await runPushsync(['--version']);
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(version);
  });

  it.each([
    ['dlq list --json', ['--config', '', 'dlq', 'list', '--json']],
    ['config schema', ['config', 'schema']],
  ])('ends quietly with exit 0 when the reader of stdout has gone (%s | head -1)', async (_name, args) => {
    const child = spawnPushsync(args.map((a) => (a === '' ? path : a)));
    // The reading end is closed before the command writes anything: every write of it fails with EPIPE.
    child.stdout.destroy();
    const run = await collect(child);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  });
});
