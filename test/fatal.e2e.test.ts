import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { freePort, runPushsync } from './helpers/cli.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const FAULT = new URL('./fixtures/stray-fault.ts', import.meta.url).href;

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  err?: { message?: string; stack?: string };
}

describe('a stray rejection or exception in a running process', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let path: string;
  const prefix = uniqueName('ps');

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
    receiver = await startReceiver('k');
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-fatal-'));
    path = join(dir, 'pushsync.yaml');
    writeFileSync(
      path,
      `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: k }
sources:
  - { name: app, kind: postgres, url: "${PG_URL}", tables: [{ name: ${db.schema}.orders, watermark: updated_at, every: 1m }] }
`,
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  for (const [kind, message] of [
    ['rejection', 'unhandled rejection: stray rejection nobody handles'],
    ['exception', 'uncaught exception: stray exception from a timer'],
  ] as const) {
    it(`logs one structured fatal line for an unhandled ${kind}, stops in order and exits 1`, async () => {
      const port = await freePort();
      const run = await runPushsync(['--config', path, 'start', '--port', String(port)], { FAULT_PORT: String(port), FAULT_KIND: kind }, [FAULT]);
      expect(run.code).toBe(1);
      // No raw stack on either stream: every stdout line is one JSON object, stderr is empty.
      expect(run.stderr).toBe('');
      const lines = run.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LogLine);
      const fatal = lines.filter((l) => l.level === 60);
      expect(fatal).toHaveLength(1);
      expect(fatal[0]!.msg).toBe(`${message}; stopping`);
      expect(fatal[0]!.code).toBe('INTERNAL');
      expect(fatal[0]!.err?.stack).toContain('stray-fault.ts');
      const after = lines.slice(lines.indexOf(fatal[0]!) + 1).map((l) => l.msg);
      expect(after).toContain('pushsync stopped');
    });
  }
});
