import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { runPushsync } from './helpers/cli.js';

/** Commands resolve only the `${VAR}` references of values they use. */
describe('config values a command does not use', () => {
  const prefix = uniqueName('ps');
  let path: string;

  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-needs-'));
    path = join(dir, 'pushsync.yaml');
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
web: { host: 0.0.0.0, auth: { token: \${PUSHSYNC_WEB_TOKEN} } }
`,
    );
  });
  afterAll(() => dropRedisPrefix(prefix));

  it('status and dlq list run without the API key, the web token or the database URL', async () => {
    const status = await runPushsync(['--config', path, 'status']);
    expect(status.stderr).toBe('');
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('app.public.orders → bronze.app_orders: not started');
    const dlq = await runPushsync(['--config', path, 'dlq', 'list']);
    expect(dlq.stderr).toBe('');
    expect(dlq.stdout).toContain('0 failed push job(s)');
  });

  it('check needs the database URL but not the API key or the web token', async () => {
    const run = await runPushsync(['--config', path, 'check']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('sources[0].url: environment variable DATABASE_URL is not set');
    expect(run.stderr).not.toContain('DEFINITE_API_KEY');
    expect(run.stderr).not.toContain('PUSHSYNC_WEB_TOKEN');
  });

  it('views, preview and manifest need the database URL only; healthcheck needs none of the secrets', async () => {
    for (const args of [['views'], ['preview', '--table', 'app.public.orders'], ['manifest']]) {
      const run = await runPushsync(['--config', path, ...args]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain('sources[0].url: environment variable DATABASE_URL is not set');
      expect(run.stderr).not.toContain('DEFINITE_API_KEY');
      expect(run.stderr).not.toContain('PUSHSYNC_WEB_TOKEN');
    }
    // Nothing listens on the default web.port here, or something else does: either way no variable is asked for.
    const health = await runPushsync(['--config', path, 'healthcheck', '--port', '9']);
    expect(health.code).toBe(1);
    expect(health.stderr).toMatch(/^pushsync: unhealthy: /);
    const fromConfig = await runPushsync(['--config', path, 'healthcheck']);
    expect(fromConfig.stderr).not.toContain('is not set');
  }, 240_000);

  it('start needs every value', async () => {
    const run = await runPushsync(['--config', path, 'start']);
    expect(run.code).toBe(2);
    for (const name of ['DEFINITE_API_KEY', 'DATABASE_URL', 'PUSHSYNC_WEB_TOKEN'])
      expect(run.stderr).toContain(`environment variable ${name} is not set`);
  });
});
