import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { runPushsync } from './helpers/cli.js';

const pushsync = runPushsync;

describe('the pushsync command', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let dir: string;
  let prefix: string;

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('cli-key');
    dir = mkdtempSync(join(tmpdir(), 'pushsync-cli-'));
    prefix = uniqueName('ps');
    await db.client.query(`CREATE TABLE "Orders" (id int PRIMARY KEY, "updatedAt" timestamptz NOT NULL, total numeric)`);
    await db.client.query(`INSERT INTO "Orders" SELECT g, now(), g * 1.5 FROM generate_series(1, 25) g`);
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  function writeConfig(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, body);
    return path;
  }

  const validConfig = (table: string): string => `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination:
  url: ${receiver.url}
  apiKey: \${DEFINITE_API_KEY}
  backoff: { base: 10ms, cap: 50ms }
  attempts: 2
sources:
  - name: app
    kind: postgres
    url: \${DATABASE_URL}
    tables:
      - name: ${table}
        watermark: '"updatedAt"'
        every: 1m
        batchRows: 10
`;

  it('rejects an invalid config with exit code 2, listing every problem with its key path', async () => {
    // start needs every value, so the unset API key variable is one of the problems (check would not need it).
    const path = writeConfig(
      'bad.yaml',
      `
destination: { url: not-a-url, apiKey: \${MISSING_KEY} }
sources:
  - name: app
    kind: oracle
    url: x
    tables:
      - { name: t, watermark: u, batchRows: 0, every: 5 parsecs }
web: { host: 0.0.0.0 }
`,
    );
    const run = await pushsync(['--config', path, 'start']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('CONFIG_INVALID');
    expect(run.stderr).toContain('destination.apiKey: environment variable MISSING_KEY is not set');
    expect(run.stderr).toContain('destination.url');
    expect(run.stderr).toContain('sources[0].kind');
    expect(run.stderr).toContain('sources[0].tables[0].batchRows');
    expect(run.stderr).toContain('sources[0].tables[0].every');
    expect(run.stderr).toContain('web.auth: web.host 0.0.0.0 is not loopback');
  });

  it('check reports each table and fails on a missing watermark column', async () => {
    const good = writeConfig('good.yaml', validConfig(`${db.schema}."Orders"`));
    const ok = await pushsync(['--config', good, 'check'], { DEFINITE_API_KEY: 'cli-key', DATABASE_URL: PG_URL });
    expect(ok.stdout).toContain('ok   redis reachable');
    expect(ok.stdout).toContain(`ok   app.${db.schema}."Orders": watermark updatedAt, primary key (id)`);
    expect(ok.stdout).toContain('all checks passed');
    expect(ok.code).toBe(0);

    const bad = writeConfig('bad-col.yaml', validConfig(`${db.schema}."Orders"`).replace(`'"updatedAt"'`, 'updatedat'));
    const failed = await pushsync(['--config', bad, 'check'], { DEFINITE_API_KEY: 'cli-key', DATABASE_URL: PG_URL });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAIL app\..*watermark column updatedat not found.*did you mean "updatedAt"/);
  });

  it('sync --once delivers every row and exits 0, then exits 1 when a batch lands in the failed set', async () => {
    const path = writeConfig('sync.yaml', validConfig(`${db.schema}."Orders"`));
    const env = { DEFINITE_API_KEY: 'cli-key', DATABASE_URL: PG_URL };
    const ok = await pushsync(['--config', path, 'sync', '--once'], env);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`app.${db.schema}."Orders" → bronze.app_orders: extracted=25 pushed=25`);
    expect(receiver.stored.get('bronze.app_orders')).toHaveLength(25);

    await db.client.query(`UPDATE "Orders" SET total = 0, "updatedAt" = now() WHERE id <= 3`);
    receiver.setDefault({ kind: 'status', status: 422, body: { success: false, errors: ['column total: type mismatch'] } });
    const failed = await pushsync(['--config', path, 'sync', '--once'], env);
    receiver.setDefault({ kind: 'ok' });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAILED push job p-[0-9a-f]+ .*\[DEST_REJECTED\] HTTP 422.*type mismatch/);

    const listed = await pushsync(['--config', path, 'dlq', 'list'], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/p-[0-9a-f]+ {2}app\..*attempts=1/);
    expect(listed.stdout).toContain('1 failed push job(s)');

    const retried = await pushsync(['--config', path, 'dlq', 'retry', '--all'], env);
    expect(retried.stdout).toMatch(/^retried 1 job\(s\): p-[0-9a-f]+/);
    const before = receiver.stored.get('bronze.app_orders')!.length;
    // The retried job is waiting again; the next pass delivers it.
    const drained = await pushsync(['--config', path, 'sync', '--once'], env);
    expect(drained.code).toBe(0);
    expect(receiver.stored.get('bronze.app_orders')!.length - before).toBe(3);
    expect((await pushsync(['--config', path, 'dlq', 'list'], env)).stdout).toContain('0 failed push job(s)');
  });

  it('dlq purge removes failed jobs and refuses to guess which', async () => {
    const path = writeConfig('purge.yaml', validConfig(`${db.schema}."Orders"`));
    const env = { DEFINITE_API_KEY: 'cli-key', DATABASE_URL: PG_URL };
    await db.client.query(`UPDATE "Orders" SET "updatedAt" = now() WHERE id = 9`);
    receiver.setDefault({ kind: 'status', status: 400 });
    expect((await pushsync(['--config', path, 'sync', '--once'], env)).code).toBe(1);
    receiver.setDefault({ kind: 'ok' });
    const refused = await pushsync(['--config', path, 'dlq', 'purge'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('name job ids, or pass --all');
    const purged = await pushsync(['--config', path, 'dlq', 'purge', '--all'], env);
    expect(purged.stdout).toMatch(/^purged 1 job\(s\)/);
    const status = (await pushsync(['--config', path, 'status', '--json'], env)).stdout;
    expect(JSON.parse(status)).toMatchObject({ tables: [{ pendingBatches: 0, failedBatches: 0 }], deadLetters: 0 });
  });

  it('check explains what change data capture lacks on a server without wal_level=logical', async () => {
    const path = writeConfig(
      'cdc.yaml',
      `
destination: { url: ${receiver.url}, apiKey: k }
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
sources:
  - name: app
    kind: postgres
    url: ${PG_URL}
    mode: cdc
    tables:
      - name: ${db.schema}."Orders"
`,
    );
    const run = await pushsync(['--config', path, 'check']);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/FAIL source app change data capture: source app: wal_level is \w+; CDC needs wal_level = logical/);
  });
});
