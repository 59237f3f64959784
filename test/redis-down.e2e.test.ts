import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { createSchema, PG_URL, uniqueName } from './helpers/services.js';
import { collect, freePort, runPushsync, spawnPushsync } from './helpers/cli.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/** Polls until `ready()` holds; gives up (returning false) after `limitMs`, so a broken build fails instead of hanging. */
async function eventually(ready: () => Promise<boolean> | boolean, limitMs = 30_000): Promise<boolean> {
  const until = Date.now() + limitMs;
  while (Date.now() < until) {
    if (await ready()) return true;
    await sleep(100);
  }
  return false;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await request(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
    return { status: res.statusCode, body: await res.body.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

const STACK_LINE = /^\s+at |^\w*Error:/m;

describe('Redis unreachable', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let redisPort: number;
  let path: string;
  let redis: ChildProcess | undefined;
  const prefix = uniqueName('ps');

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
    receiver = await startReceiver('k');
    redisPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-redis-down-'));
    path = join(dir, 'pushsync.yaml');
    writeFileSync(
      path,
      `
redis: { url: "redis://:hunter2@127.0.0.1:${redisPort}", prefix: ${prefix}, connectTimeout: 1s }
destination: { url: ${receiver.url}, apiKey: k }
sources:
  - { name: app, kind: postgres, url: "${PG_URL}", tables: [{ name: ${db.schema}.orders, watermark: updated_at, every: 1m }] }
`,
    );
  });
  afterAll(async () => {
    redis?.kill('SIGTERM');
    await receiver.close();
    await db.drop();
  });

  for (const command of [['check'], ['status'], ['dlq', 'list']]) {
    it(`${command.join(' ')} exits 1 with REDIS_UNAVAILABLE naming the URL without its password, and no stack`, async () => {
      const run = await runPushsync(['--config', path, ...command]);
      const output = run.stdout + run.stderr;
      expect(run.code).toBe(1);
      expect(output).toContain(`[REDIS_UNAVAILABLE] cannot reach Redis at redis://:***@127.0.0.1:${redisPort} within 1000 ms`);
      expect(output).toContain('ECONNREFUSED');
      expect(output).not.toContain('hunter2');
      expect(output).not.toMatch(STACK_LINE);
    });
  }

  it('start serves /healthz and a /readyz naming redis while Redis is down, logs one line per attempt, and proceeds once Redis is up', async () => {
    const httpPort = await freePort();
    const child = spawnPushsync(['--config', path, 'start', '--port', String(httpPort)]);
    const done = collect(child);
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    const base = `http://127.0.0.1:${httpPort}`;
    try {
      expect(await eventually(async () => (await get(`${base}/healthz`)).status === 200)).toBe(true);
      const notReady = await get(`${base}/readyz`);
      expect(notReady.status).toBe(503);
      // Without credentials /readyz names the failing check only; why it fails is in the log.
      expect(JSON.parse(notReady.body).checks.redis).toBe('unavailable');

      expect(await eventually(() => log.split('\n').filter((l) => l.includes('Redis unreachable; retrying')).length >= 3)).toBe(true);
      const attempts = log
        .split('\n')
        .filter((l) => l.includes('Redis unreachable; retrying'))
        .map((l) => JSON.parse(l) as { attempt: number; redis: string; err: string });
      expect(attempts.slice(0, 3).map((a) => a.attempt)).toEqual([1, 2, 3]);
      expect(attempts[0]!.redis).toBe(`redis://:***@127.0.0.1:${redisPort}`);
      expect(attempts[0]!.err).toContain('ECONNREFUSED');
      // Every line is one JSON object: no raw error blocks between them, no password.
      for (const line of log.split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow();
      expect(log).not.toContain('hunter2');

      redis = spawn(
        'redis-server',
        ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', 'hunter2'],
        {
          stdio: 'ignore',
        },
      );
      expect(await eventually(async () => (await get(`${base}/readyz`)).status === 200)).toBe(true);
      expect(await eventually(() => log.includes('pushsync started'))).toBe(true);
      expect(log).toContain('Redis connection restored');
    } finally {
      child.kill('SIGTERM');
    }
    const run = await done;
    expect(run.code).toBe(0);
    expect(run.stderr).not.toMatch(STACK_LINE);
  });
});
