import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, resolved } from './config.js';
import { AppError } from './core/errors.js';

/** Checks of single values whose messages must say what is wrong and where: schedules, source URLs, durations, YAML. */
const SOURCE = { name: 'app', kind: 'postgres', url: 'postgres://u@db/app' };

function config(source: Record<string, unknown> = {}, table: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    destination: { apiKey: 'k' },
    sources: [{ ...SOURCE, ...source, tables: [{ name: 'public.orders', watermark: 'updated_at', ...table }] }],
  };
}

function problems(run: () => unknown): string[] {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('CONFIG_INVALID');
    return ((err as AppError).details?.problems as string[] | undefined) ?? [(err as AppError).message];
  }
  throw new Error('expected the config to be refused');
}

describe('schedule intervals', () => {
  it('refuses every: 0s for a table, a reconciliation and a CDC source, naming the key and the minimum', () => {
    expect(problems(() => parseConfig(config({}, { every: '0s' }), {}))).toEqual(['sources[0].tables[0].every: must be at least 1s (got 0 ms)']);
    expect(problems(() => parseConfig(config({}, { reconcile: { every: 0 } }), {}))).toEqual([
      'sources[0].tables[0].reconcile.every: must be at least 1s (got 0 ms)',
    ]);
    expect(problems(() => parseConfig(config({ mode: 'cdc', cdc: { every: '0s' } }, { watermark: undefined }), {}))).toEqual([
      'sources[0].cdc.every: must be at least 100ms (got 0 ms)',
    ]);
  });

  it('accepts every: 1s for a table and 200ms for a CDC source', () => {
    expect(parseConfig(config({}, { every: '1s' }), {}).sources[0]!.tables[0]!.every).toBe(1000);
    expect(parseConfig(config({ mode: 'cdc', cdc: { every: '200ms' } }, { watermark: undefined }), {}).sources[0]!.cdc.every).toBe(200);
  });
});

describe('source URLs', () => {
  it('reports a port out of range at sources[i].url, without echoing the URL', () => {
    const list = problems(() => parseConfig(config({ url: 'postgres://u:secret@db:99999/app' }), {}));
    expect(list).toEqual(['sources[0].url: port 99999 is out of range (1-65535)']);
  });

  it('does not echo a password whose unencoded #, / or ? made part of it look like the port', () => {
    for (const url of ['postgres://admin:S3cretPass#1@db:5432/app', 'postgres://admin:123456/x@db/app', 'postgresql://admin:S3cr?etPass@db/app']) {
      const list = problems(() => parseConfig(config({ url }), {}));
      expect(list).toEqual([
        'sources[0].url: the user name or password holds a character that must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40)',
      ]);
    }
  });

  it('refuses a URL that is not postgres:// or postgresql://', () => {
    expect(problems(() => parseConfig(config({ url: 'mysql://db/app' }), {}))).toEqual([
      'sources[0].url: must be a postgres:// or postgresql:// URL, e.g. postgres://user:password@host:5432/database',
    ]);
  });

  it('accepts postgresql:// URLs, unix-socket URLs and passwords with special characters', () => {
    for (const url of ['postgresql://u@db:5432/app', 'postgres:///app?host=/var/run/postgresql', 'postgres://u:p%40ss@[::1]:6432/app']) {
      expect(parseConfig(config({ url }), {}).sources[0]!.url).toBe(url);
    }
  });
});

describe('durations', () => {
  it('says what a duration must be when the number is not finite (safetyLag: 1e400)', () => {
    const list = problems(() => parseConfig(config({}, { safetyLag: Number.POSITIVE_INFINITY }), {}));
    expect(list).toHaveLength(1);
    expect(list[0]).toMatch(/^sources\[0\]\.tables\[0\]\.safetyLag: must be a duration such as "30s", "5m" or a finite number of milliseconds/);
    expect(list[0]).not.toContain('Invalid input');
  });

  it('refuses durations beyond what timers can hold', () => {
    const list = problems(() => parseConfig(config({}, { safetyLag: '30d' }), {}));
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[0\]\.safetyLag: must be at most 2147483647 ms/)]);
  });

  it('refuses a duration of the wrong type with the accepted forms', () => {
    const list = problems(() => parseConfig(config({}, { safetyLag: true }), {}));
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[0\]\.safetyLag: must be a duration such as "30s"/)]);
  });
});

describe('YAML syntax errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-config-'));

  it('reports an unclosed quote at the line and column where the quoted value starts', () => {
    const path = join(dir, 'quote.yaml');
    writeFileSync(path, 'redis:\n  url: "redis://127.0.0.1:6379\ndestination:\n  apiKey: k\n');
    const [message] = problems(() => loadConfig(path, {}));
    expect(message).toContain(`config file ${path} is not valid YAML at line 2, column 8`);
    expect(message).toContain('the quoted value that starts there is not closed');
  });

  it('reports other syntax errors at their own line', () => {
    const path = join(dir, 'indent.yaml');
    writeFileSync(path, 'redis:\n  url: redis://x\n prefix: p\n');
    const [message] = problems(() => loadConfig(path, {}));
    expect(message).toMatch(/is not valid YAML at line 3/);
  });
});

describe('values a command does not need', () => {
  const secrets = {
    redis: { url: '${REDIS_URL}' },
    destination: { apiKey: '${DEFINITE_API_KEY}' },
    sources: [{ ...SOURCE, url: '${DATABASE_URL}', tables: [{ name: 'public.orders', watermark: 'updated_at' }] }],
    web: { host: '0.0.0.0', auth: { token: '${PUSHSYNC_WEB_TOKEN}' } },
  };

  it('leaves an unset variable of an unneeded value unresolved, and refuses it at use naming key and variable', () => {
    const cfg = parseConfig(secrets, { REDIS_URL: 'redis://cache:6379' }, [], ['redis.url']);
    expect(cfg.redis.url).toBe('redis://cache:6379');
    expect(() => resolved(cfg.destination.apiKey, 'destination.apiKey')).toThrow(
      'destination.apiKey: environment variable DEFINITE_API_KEY is not set',
    );
    expect(() => resolved(cfg.sources[0]!.url, 'sources[0].url')).toThrow('sources[0].url: environment variable DATABASE_URL is not set');
  });

  it('still reports every unset variable of the values the command needs', () => {
    const list = problems(() => parseConfig(secrets, {}, [], ['redis.url', 'web.auth']));
    expect(list.filter((p) => p.includes('environment variable'))).toEqual([
      'redis.url: environment variable REDIS_URL is not set (write ${REDIS_URL:-default} to allow a default)',
      'web.auth.token: environment variable PUSHSYNC_WEB_TOKEN is not set (write ${PUSHSYNC_WEB_TOKEN:-default} to allow a default)',
    ]);
  });

  it('needs every value by default', () => {
    expect(problems(() => parseConfig(secrets, {})).filter((p) => p.includes('environment variable'))).toHaveLength(4);
  });

  it("resolves the command's values from a file the same way", () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-needs-'));
    const path = join(dir, 'needs.yaml');
    writeFileSync(
      path,
      'destination: { apiKey: ${DEFINITE_API_KEY} }\nsources:\n  - { name: app, kind: postgres, url: "${DATABASE_URL}", tables: [{ name: t, watermark: u }] }\n',
    );
    expect(loadConfig(path, {}, { needs: ['redis.url'] }).sources[0]!.name).toBe('app');
    expect(problems(() => loadConfig(path, {}, { needs: ['sources.url'] }))).toEqual([
      expect.stringMatching(/^sources\[0\]\.url: environment variable DATABASE_URL is not set/),
    ]);
  });
});
