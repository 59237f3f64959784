import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { AppError } from './core/errors.js';

/** The smallest config that is valid; tests spread their changes over it. */
function minimal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    destination: { apiKey: 'k' },
    sources: [{ name: 'app', kind: 'postgres', url: 'postgres://u@db/app', tables: [{ name: 'public.orders', watermark: 'updated_at' }] }],
    ...overrides,
  };
}

function table(fields: Record<string, unknown>): Record<string, unknown> {
  return minimal({
    sources: [{ name: 'app', kind: 'postgres', url: 'postgres://u@db/app', tables: [{ name: 'public.orders', watermark: 'updated_at', ...fields }] }],
  });
}

function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(raw, env);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    const e = err as AppError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.retryable).toBe(false);
    const list = e.details?.problems as string[];
    expect(Array.isArray(list)).toBe(true);
    for (const p of list) expect(e.message).toContain(p);
    return list;
  }
  throw new Error('expected the config to be refused');
}

describe('parseConfig with a valid file', () => {
  it('accepts a full config and keeps every value', () => {
    const cfg = parseConfig(
      {
        redis: { url: 'rediss://cache:6380', prefix: 'ps-prod' },
        destination: {
          url: 'https://staging.definite.app/v2/stream',
          apiKey: 'secret',
          timeout: '45s',
          compression: 'gzip',
          wait: true,
          tags: { env: 'prod' },
          attempts: 20,
          backoff: { base: '2s', cap: '10m', jitter: 0.25 },
          maxRows: 10_000,
          maxBytes: 5 * 1024 * 1024,
          concurrency: 8,
        },
        extract: { concurrency: 3, maxPendingBatches: 50, attempts: 7, progressInterval: '2s' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: 'postgres://u@db/app',
            poolSize: 6,
            statementTimeout: '2m',
            tables: [
              { name: 'public.orders', watermark: 'updated_at', every: '5m', batchRows: 2000, target: 'raw.orders' },
              { name: 'public."Order Items"', watermark: '"UpdatedAt"', primaryKey: ['order_id', 'line'], cron: '*/10 * * * *' },
            ],
          },
        ],
        web: { port: 8080, host: '0.0.0.0', readOnly: true, auth: { token: 't0ken-of-16-chars' } },
        log: { level: 'debug' },
      },
      {},
    );
    expect(cfg.redis).toEqual({
      url: 'rediss://cache:6380',
      prefix: 'ps-prod',
      connectTimeout: 10_000,
      tls: false,
      waitReplicas: 0,
      waitTimeout: 5000,
    });
    expect(cfg.destination).toMatchObject({
      url: 'https://staging.definite.app/v2/stream',
      apiKey: 'secret',
      timeout: 45_000,
      compression: 'gzip',
      wait: true,
      tags: { env: 'prod' },
      attempts: 20,
      backoff: { base: 2000, cap: 600_000, jitter: 0.25 },
      maxRows: 10_000,
      maxBytes: 5 * 1024 * 1024,
      concurrency: 8,
    });
    expect(cfg.extract).toEqual({ concurrency: 3, maxPendingBatches: 50, leaseTtl: 30_000, attempts: 7, progressInterval: 2000 });
    const [source] = cfg.sources;
    expect(source).toMatchObject({ name: 'app', poolSize: 6, statementTimeout: 120_000 });
    expect(source!.tables[0]).toMatchObject({ source: 'app', name: 'public.orders', every: 300_000, batchRows: 2000, target: 'raw.orders' });
    expect(source!.tables[1]).toMatchObject({
      source: 'app',
      name: 'public."Order Items"',
      watermark: '"UpdatedAt"',
      primaryKey: ['order_id', 'line'],
      cron: '*/10 * * * *',
      every: undefined,
      target: 'bronze.app_order_items',
    });
    expect(cfg.web).toEqual({ port: 8080, host: '0.0.0.0', readOnly: true, auth: { token: 't0ken-of-16-chars' } });
    expect(cfg.log.level).toBe('debug');
  });

  it('fills in the documented defaults', () => {
    const cfg = parseConfig(minimal(), {});
    expect(cfg.redis).toEqual({
      url: 'redis://127.0.0.1:6379',
      prefix: 'pushsync',
      connectTimeout: 10_000,
      tls: false,
      waitReplicas: 0,
      waitTimeout: 5000,
    });
    expect(cfg.destination).toMatchObject({
      url: 'https://api.definite.app/v2/stream',
      timeout: 60_000,
      compression: 'none',
      wait: false,
      allowInsecureHttp: false,
      maxRows: 50_000,
      maxBytes: 10 * 1024 * 1024,
    });
    expect(cfg.web).toMatchObject({ host: '127.0.0.1', port: 3000, readOnly: false });
    expect(cfg.sources[0]!.tables[0]).toMatchObject({ every: 30_000, batchRows: 5000 });
  });

  it('names the default target bronze.<source>_<table>', () => {
    const cfg = parseConfig(
      minimal({
        sources: [
          {
            name: 'crm-eu',
            kind: 'postgres',
            url: 'postgres://u@db/crm',
            tables: [
              { name: 'sales.Deals', watermark: 'updated_at' },
              { name: 'public."Order Items"', watermark: 'updated_at' },
            ],
          },
        ],
      }),
      {},
    );
    expect(cfg.sources[0]!.tables.map((t) => t.target)).toEqual(['bronze.crm_eu_deals', 'bronze.crm_eu_order_items']);
  });
});

describe('parseConfig environment references', () => {
  it('substitutes ${VAR} and ${VAR:-default} inside string values', () => {
    const cfg = parseConfig(
      minimal({
        destination: { apiKey: '${DEFINITE_API_KEY}', url: '${API_URL:-https://api.definite.app/v2/stream}' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: 'postgres://${PGUSER}@${PGHOST:-localhost}/app',
            tables: [{ name: 'orders', watermark: 'updated_at' }],
          },
        ],
      }),
      { DEFINITE_API_KEY: 'abc', PGUSER: 'reader' },
    );
    expect(cfg.destination.apiKey).toBe('abc');
    expect(cfg.destination.url).toBe('https://api.definite.app/v2/stream');
    expect(cfg.sources[0]!.url).toBe('postgres://reader@localhost/app');
  });

  it('prefers a set variable over the default, and treats an empty variable as unset', () => {
    const cfg = parseConfig(minimal({ redis: { prefix: '${PREFIX:-pushsync}' }, destination: { apiKey: '${KEY:-fallback}' } }), {
      PREFIX: 'mine',
      KEY: '',
    });
    expect(cfg.redis.prefix).toBe('mine');
    expect(cfg.destination.apiKey).toBe('fallback');
  });

  it('turns a value that is only a reference into a number or boolean, so numeric settings can come from the environment', () => {
    const cfg = parseConfig(minimal({ web: { port: '${PORT:-3000}' }, destination: { apiKey: 'k', wait: '${WAIT}' } }), { WAIT: 'true' });
    expect(cfg.web.port).toBe(3000);
    expect(cfg.destination.wait).toBe(true);
  });

  it('keeps digit-only secrets exactly, including leading zeros and more digits than a double holds', () => {
    const cfg = parseConfig(minimal({ destination: { apiKey: '${KEY}' }, web: { auth: { token: '${TOKEN}' } } }), {
      KEY: '12345678901234567890123',
      TOKEN: '007',
    });
    expect(cfg.destination.apiKey).toBe('12345678901234567890123');
    expect(cfg.web.auth.token).toBe('007');
  });

  it('drops optional keys whose reference resolves to an empty default', () => {
    const cfg = parseConfig(minimal({ web: { auth: { token: '${WEB_TOKEN:-}' } } }), {});
    expect(cfg.web.auth.token).toBeUndefined();
  });

  it('reports an unset variable with the key path that uses it', () => {
    const list = problems(minimal({ destination: { apiKey: '${DEFINITE_API_KEY}' } }));
    expect(list).toHaveLength(1);
    expect(list[0]).toMatch(/^destination\.apiKey: environment variable DEFINITE_API_KEY is not set/);
  });

  it('reports unset variables inside arrays with their index', () => {
    const list = problems(
      minimal({ sources: [{ name: 'app', kind: 'postgres', url: '${APP_DB_URL}', tables: [{ name: 'orders', watermark: 'updated_at' }] }] }),
    );
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.url: environment variable APP_DB_URL is not set/)]);
  });
});

describe('parseConfig problems', () => {
  it('reports several problems at once, each with its key path', () => {
    const list = problems({
      redis: { url: 'http://cache' },
      destination: { apiKey: '${MISSING_KEY}', compression: 'brotli' },
      sources: [
        {
          name: 'app db',
          kind: 'postgres',
          url: 'postgres://x',
          tables: [
            { name: 'orders', watermark: 'updated_at', every: 'soon' },
            { name: 'items', watermark: 'updated_at', batchRows: 0 },
          ],
        },
      ],
      unknownKey: 1,
    });
    const paths = list.map((p) => p.slice(0, p.indexOf(':')));
    expect(paths).toEqual(
      expect.arrayContaining([
        'redis.url',
        'destination.apiKey',
        'destination.compression',
        'sources[0].name',
        'sources[0].tables[0].every',
        'sources[0].tables[1].batchRows',
        '(root)',
      ]),
    );
    expect(list.find((p) => p.startsWith('destination.apiKey'))).toContain('MISSING_KEY');
    expect(list.find((p) => p.startsWith('sources[0].tables[0].every'))).toContain('30s');
    // The unset variable is reported once, not again as a missing key.
    expect(list.filter((p) => p.startsWith('destination.apiKey'))).toHaveLength(1);
  });

  it('says how to provide a missing API key', () => {
    const list = problems({ destination: {}, sources: minimal().sources });
    expect(list).toEqual([expect.stringMatching(/^destination\.apiKey: is required.*DEFINITE_API_KEY/)]);
  });

  it('takes web.metricsToken and log.format, and refuses a short metrics token or an unknown format', () => {
    const cfg = parseConfig(minimal({ web: { metricsToken: '${METRICS_TOKEN}' }, log: { format: 'pretty' } }), { METRICS_TOKEN: '0123456789abcdef' });
    expect(cfg.web.metricsToken).toBe('0123456789abcdef');
    expect(cfg.log.format).toBe('pretty');
    expect(parseConfig(minimal(), {}).log.format).toBeUndefined();
    expect(problems(minimal({ web: { metricsToken: 'short' }, log: { format: 'xml' } }))).toEqual([
      expect.stringMatching(/^web\.metricsToken: must be at least 16 characters/),
      expect.stringMatching(/^log\.format: /),
    ]);
  });

  it('refuses a table with both every and cron', () => {
    const list = problems(table({ every: '5m', cron: '*/5 * * * *' }));
    expect(list).toEqual(['sources[0].tables[0]: set either every or cron, not both']);
  });

  it('refuses an invalid cron expression', () => {
    const list = problems(table({ cron: 'every five minutes' }));
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[0\]\.cron: not a valid cron expression/)]);
  });

  it('refuses a table configured twice in one source', () => {
    const list = problems(
      minimal({
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: 'postgres://x',
            tables: [
              { name: 'public.orders', watermark: 'updated_at' },
              { name: 'public.orders', watermark: 'created_at', target: 'bronze.other' },
            ],
          },
        ],
      }),
    );
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[1\]\.name: table public\.orders is configured twice/)]);
  });

  it('refuses two tables landing in the same target', () => {
    const list = problems(
      minimal({
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: 'postgres://x',
            tables: [
              { name: 'public.orders', watermark: 'updated_at' },
              { name: 'archive.orders', watermark: 'updated_at' },
            ],
          },
        ],
      }),
    );
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[1\]\.target: bronze\.app_orders is also the target of app\.public\.orders/)]);
  });

  it('refuses a malformed table name', () => {
    const list = problems(table({ name: 'public."Order Items' }));
    expect(list).toEqual([expect.stringMatching(/^sources\[0\]\.tables\[0\]\.name: must be "table" or "schema\.table"/)]);
  });

  it('refuses a dashboard on a non-loopback host without auth', () => {
    const list = problems(minimal({ web: { host: '0.0.0.0' } }));
    expect(list).toEqual([expect.stringMatching(/^web\.auth: web\.host 0\.0\.0\.0 is not loopback/)]);
  });

  it('accepts a non-loopback host with a 16-character token or a username and 12-character password', () => {
    expect(parseConfig(minimal({ web: { host: '0.0.0.0', auth: { token: '0123456789abcdef' } } }), {}).web.host).toBe('0.0.0.0');
    expect(parseConfig(minimal({ web: { host: '10.0.0.5', auth: { username: 'u', password: 'twelve chars' } } }), {}).web.auth).toEqual({
      username: 'u',
      password: 'twelve chars',
    });
    expect(parseConfig(minimal({ web: { host: 'localhost' } }), {}).web.host).toBe('localhost');
  });

  it('refuses a short or blank dashboard token on a non-loopback host, naming web.auth.token and the rule', () => {
    for (const token of ['a', '  ', ' 0123456789abcde ']) {
      const list = problems(minimal({ web: { host: '0.0.0.0', auth: { token } } }));
      expect(list).toEqual([expect.stringMatching(/^web\.auth\.token: .*at least 16 characters.*web\.host 0\.0\.0\.0 is not loopback/)]);
    }
  });

  it('refuses a dashboard password under 12 characters on a non-loopback host, naming web.auth.password', () => {
    const list = problems(minimal({ web: { host: '10.0.0.5', auth: { username: 'ops', password: 'p4ssw0rd' } } }));
    expect(list).toEqual([expect.stringMatching(/^web\.auth\.password: .*at least 12 characters.*web\.host 10\.0\.0\.5 is not loopback/)]);
  });

  it('accepts a short token on a loopback host', () => {
    expect(parseConfig(minimal({ web: { host: '127.0.0.1', auth: { token: 'a' } } }), {}).web.auth.token).toBe('a');
  });

  it('reports a weak dashboard token even when other keys are invalid', () => {
    const list = problems(minimal({ extract: { concurrency: 0 }, web: { host: '0.0.0.0', auth: { token: 'a' } } }));
    expect(list).toContainEqual(expect.stringMatching(/^web\.auth\.token: .*at least 16 characters/));
  });

  it('refuses a username without a password', () => {
    const list = problems(minimal({ web: { auth: { username: 'u' } } }));
    expect(list).toEqual(['web.auth: set both username and password for basic auth, or neither']);
  });

  it('refuses a destination URL with a scheme other than https or http, naming the key', () => {
    for (const url of ['ftp://api.example.com/v2/stream', 'file:///etc/passwd', 'javascript:alert(1)', 'ws://127.0.0.1/x']) {
      const list = problems(minimal({ destination: { apiKey: 'k', url } }));
      expect(list, url).toEqual([
        expect.stringMatching(
          /^destination\.url: must be an https: URL \(http: only to a loopback host, or with destination\.allowInsecureHttp: true\); \w+: is not supported$/,
        ),
      ]);
    }
    expect(problems(minimal({ destination: { apiKey: 'k', url: 'not a url' } }))).toEqual([
      'destination.url: must be an https: URL such as https://api.definite.app/v2/stream',
    ]);
  });

  it('refuses a cleartext http destination URL to a host that is not loopback', () => {
    for (const url of ['http://api.definite.app/v2/stream', 'http://10.0.0.5:8787/v2/stream', 'http://127.0.0.1.example.com/', 'http://[::2]/']) {
      const list = problems(minimal({ destination: { apiKey: 'k', url } }));
      expect(list, url).toEqual([
        expect.stringMatching(
          /^destination\.url: must be an https: URL: http: to \S+, which is not loopback .*unencrypted.*destination\.allowInsecureHttp: true/,
        ),
      ]);
    }
  });

  it('reports a cleartext destination URL even when other destination keys are invalid', () => {
    const list = problems({ destination: { url: 'http://sink.example.com/v2/stream' }, sources: minimal().sources });
    expect(list.map((p) => p.slice(0, p.indexOf(':')))).toEqual(['destination.apiKey', 'destination.url']);
  });

  it('reports a missing or malformed destination section as a problem, not a crash', () => {
    for (const destination of [undefined, null, 'x']) {
      const list = problems({ destination, sources: minimal().sources });
      expect(list, String(destination)).toEqual([expect.stringMatching(/^destination: /)]);
    }
  });

  it('accepts http to a loopback host, and to any host with allowInsecureHttp', () => {
    for (const url of [
      'http://127.0.0.1:8787/v2/stream',
      'http://127.5.6.7/',
      'http://localhost:8787/v2/stream',
      'http://[::1]:8787/v2/stream',
      'https://10.0.0.5/v2/stream',
    ]) {
      expect(parseConfig(minimal({ destination: { apiKey: 'k', url } }), {}).destination.url).toBe(url);
    }
    const cfg = parseConfig(minimal({ destination: { apiKey: 'k', url: '${URL}', allowInsecureHttp: '${INSECURE:-false}' } }), {
      URL: 'http://sink:8787/v2/stream',
      INSECURE: 'true',
    });
    expect(cfg.destination).toMatchObject({ url: 'http://sink:8787/v2/stream', allowInsecureHttp: true });
    expect(problems(minimal({ destination: { apiKey: 'k', url: 'ftp://sink/', allowInsecureHttp: true } }))).toHaveLength(1);
  });

  it('refuses limits above what the Stream API documents', () => {
    const list = problems(minimal({ destination: { apiKey: 'k', maxRows: 50_001, maxBytes: 20 * 1024 * 1024 } }));
    expect(list.map((p) => p.slice(0, p.indexOf(':')))).toEqual(['destination.maxRows', 'destination.maxBytes']);
  });
});

describe('parseConfig with SQL conditions', () => {
  it("refuses a soft-delete condition that would end pushsync's statement, naming the key and the position", () => {
    expect(problems(table({ softDelete: { condition: 'true) FROM t LIMIT 0; DROP TABLE y; SELECT (true' } }))).toEqual([
      "sources[0].tables[0].softDelete.condition: must be one SQL condition: found ')' at position 5 with no '(' before it; it would close pushsync's own parenthesis",
    ]);
    expect(problems(table({ softDelete: { condition: '  ' } }))).toEqual([
      'sources[0].tables[0].softDelete.condition: must be one SQL condition: it is empty',
    ]);
  });

  it('accepts a soft-delete condition with quoted semicolons and parentheses', () => {
    const condition = "status = 'gone; )' OR (note = $$--$$)";
    expect(parseConfig(table({ softDelete: { condition } }), {}).sources[0]!.tables[0]!.softDelete).toEqual({ condition });
  });
});

describe('parseConfig with a mysql source', () => {
  const mysql = (fields: Record<string, unknown> = {}, tableFields: Record<string, unknown> = {}): Record<string, unknown> =>
    minimal({
      sources: [
        {
          name: 'shop',
          kind: 'mysql',
          url: 'mysql://u:secret@db:3306/shop',
          tables: [{ name: 'shop.orders', watermark: 'updated_at', ...tableFields }],
          ...fields,
        },
      ],
    });

  it('accepts kind mysql with the same table options as postgres', () => {
    const cfg = parseConfig(
      mysql(
        {},
        { primaryKey: ['id'], batchRows: 100, safetyLag: '2s', softDelete: { column: 'deleted_at' }, reconcile: { every: '1h' }, every: '10s' },
      ),
      {},
    );
    const s = cfg.sources[0]!;
    expect(s).toMatchObject({ kind: 'mysql', url: 'mysql://u:secret@db:3306/shop', poolSize: 4, mode: 'watermark' });
    expect(s.tables[0]).toMatchObject({
      name: 'shop.orders',
      primaryKey: ['id'],
      batchRows: 100,
      safetyLag: 2000,
      softDelete: { column: 'deleted_at' },
      every: 10_000,
      target: 'bronze.shop_orders',
    });
  });

  it('accepts a mariadb:// URL', () => {
    expect(parseConfig(mysql({ url: 'mariadb://u@127.0.0.1/shop' }), {}).sources[0]!.url).toBe('mariadb://u@127.0.0.1/shop');
  });

  it('refuses a URL of another scheme without repeating it (it may carry a password)', () => {
    for (const url of ['postgres://u:hunter2@db/shop', 'db:3306', 'mysql:///nohost', 'mysql://u:hunter2@[bad/shop']) {
      const list = problems(mysql({ url }));
      expect(list).toEqual(['sources[0].url: must be a mysql:// or mariadb:// URL, e.g. mysql://user:password@host:3306/database']);
      expect(list.join('\n')).not.toContain('hunter2');
    }
  });

  it('takes backfillRead on a Postgres source only, json by default', () => {
    expect(parseConfig(minimal(), {}).sources[0]).toMatchObject({ backfillRead: 'json' });
    const copy = minimal({ sources: [{ ...(minimal().sources as object[])[0], backfillRead: 'copy' }] });
    expect(parseConfig(copy, {}).sources[0]).toMatchObject({ backfillRead: 'copy' });
    expect(problems(mysql({ backfillRead: 'copy' }))).toEqual([
      'sources[0].backfillRead: copy is for Postgres sources; MySQL reads rows as text already',
    ]);
    expect(problems(minimal({ sources: [{ ...(minimal().sources as object[])[0], backfillRead: 'binary' }] }))).toEqual([
      'sources[0].backfillRead: must be json or copy',
    ]);
  });

  it('refuses an unknown kind, naming the kinds there are', () => {
    expect(problems(mysql({ kind: 'oracle' }))).toEqual(['sources[0].kind: must be postgres or mysql']);
  });

  it('reports the other problems of a source whose kind is unknown, and a bad mysql URL beside other problems', () => {
    expect(problems(mysql({ kind: 'oracle' }, { batchRows: 0 }))).toEqual([
      'sources[0].kind: must be postgres or mysql',
      'sources[0].tables[0].batchRows: Too small: expected number to be >=1',
    ]);
    expect(problems(mysql({ url: 'db:3306' }, { batchRows: 0 })).sort()).toEqual([
      'sources[0].tables[0].batchRows: Too small: expected number to be >=1',
      'sources[0].url: must be a mysql:// or mariadb:// URL, e.g. mysql://user:password@host:3306/database',
    ]);
  });

  it('accepts mode cdc for a mysql source, with the replica server id and the receive timeout of its binlog reader', () => {
    const cfg = parseConfig(mysql({ mode: 'cdc', cdc: { serverId: 4242 } }, { watermark: undefined }), {});
    expect(cfg.sources[0]!.tables[0]!.mode).toBe('cdc');
    expect(cfg.sources[0]!.cdc).toMatchObject({ serverId: 4242, slot: 'pushsync_shop', receiveTimeout: 60_000 });
    const timed = parseConfig(mysql({ mode: 'cdc', cdc: { receiveTimeout: '20s' } }, { watermark: undefined }), {});
    expect(timed.sources[0]!.cdc.receiveTimeout).toBe(20_000);
    expect(problems(mysql({ cdc: { serverId: 0 } }))[0]).toMatch(/^sources\[0\]\.cdc\.serverId: /);
  });

  it('refuses keys that are not source settings, for mysql as for postgres', () => {
    expect(problems(mysql({ replicaOf: 'x' }))[0]).toMatch(/^sources\[0\]: Unrecognized key/);
  });
});

describe('parseConfig with a Debezium source', () => {
  const debezium = (fields: Record<string, unknown> = {}, web: Record<string, unknown> = {}): Record<string, unknown> => ({
    destination: { apiKey: 'k' },
    sources: [
      { name: 'legacy', kind: 'debezium', http: { token: 'x'.repeat(16) }, tables: [{ name: 'public.orders', primaryKey: ['id'] }], ...fields },
    ],
    web,
  });

  it('keeps Debezium sources apart from database sources, with their defaults and table targets', () => {
    const cfg = parseConfig(
      {
        ...minimal(),
        sources: [
          ...(minimal().sources as unknown[]),
          ...(debezium({ redisStreams: { url: 'redis://10.0.0.5:6379', streams: ['dbserver1.public.orders'] } }).sources as unknown[]),
        ],
      },
      {},
    );
    expect(cfg.sources.map((s) => s.name)).toEqual(['app']);
    expect(cfg.debezium).toHaveLength(1);
    expect(cfg.debezium[0]).toMatchObject({
      maxBufferedBytes: 256 * 1024 * 1024,
      flushInterval: 1000,
      unavailableValue: '__debezium_unavailable_value',
      redisStreams: { group: 'pushsync', batch: 500, claimIdle: 30_000, nullValue: 'default' },
      tables: [{ name: 'public.orders', primaryKey: ['id'], target: 'bronze.legacy_orders', mode: 'debezium', source: 'legacy', batchRows: 5000 }],
    });
  });

  it('needs a way in: http, redisStreams or both', () => {
    expect(problems(debezium({ http: undefined }))).toContain('sources[0]: set http (POST /ingest/debezium) or redisStreams, or both');
  });

  it('refuses the ingest endpoint on a host other than loopback without a strong token', () => {
    expect(problems(debezium({ http: {} }, { host: '0.0.0.0', auth: { token: 't'.repeat(16) } }))).toContain(
      'sources[0].http.token: web.host 0.0.0.0 is not loopback, so POST /ingest/debezium needs a token',
    );
    expect(problems(debezium({ http: { token: 'short' } }, { host: '0.0.0.0', auth: { token: 't'.repeat(16) } }))[0]).toMatch(
      /^sources\[0\]\.http\.token: must be at least 16 characters/,
    );
    expect(() => parseConfig(debezium({ http: {} }), {})).not.toThrow();
  });

  it('reports unknown keys and table options that do not apply, with their paths', () => {
    const list = problems(debezium({ tables: [{ name: 'public.orders', watermark: 'updated_at' }], colour: 'blue' }));
    expect(list.some((p) => p.startsWith('sources[0].tables[0]') && p.includes('watermark'))).toBe(true);
    expect(list.some((p) => p.startsWith('sources[0]') && p.includes('colour'))).toBe(true);
  });
});

describe('parseConfig with Redis Sentinel or Redis Cluster', () => {
  it('reads a sentinel group with passwords from the environment', () => {
    const cfg = parseConfig(
      minimal({
        redis: {
          sentinel: { nodes: ['10.0.0.1:26379', '[::1]:26380'], masterName: 'pushsync', password: '${SENTINEL_PW}' },
          password: '${REDIS_PW}',
        },
      }),
      { SENTINEL_PW: 's3', REDIS_PW: 'r3' },
    );
    expect(cfg.redis.sentinel).toEqual({ nodes: ['10.0.0.1:26379', '[::1]:26380'], masterName: 'pushsync', password: 's3', tls: false });
    expect(cfg.redis.password).toBe('r3');
    expect(cfg.redis.prefix).toBe('pushsync');
  });

  it('makes the prefix a hash tag in cluster mode, so every key lives in one slot', () => {
    const cluster = { nodes: ['127.0.0.1:7000'] };
    expect(parseConfig(minimal({ redis: { cluster } }), {}).redis.prefix).toBe('{pushsync}');
    expect(parseConfig(minimal({ redis: { cluster, prefix: 'ps-prod' } }), {}).redis.prefix).toBe('{ps-prod}');
    expect(parseConfig(minimal({ redis: { cluster, prefix: '{ps}' } }), {}).redis.prefix).toBe('{ps}');
  });

  it('refuses two ways to reach Redis, credentials beside a URL, and nodes that are not host:port', () => {
    const list = problems(
      minimal({
        redis: { url: 'redis://a:6379', cluster: { nodes: ['127.0.0.1'] }, sentinel: { nodes: ['h:1'], masterName: 'm' } },
      }),
    );
    expect(list).toEqual(expect.arrayContaining([expect.stringMatching(/^redis\.cluster\.nodes\[0\]: must be host:port/)]));
    expect(problems(minimal({ redis: { url: 'redis://a:6379', cluster: { nodes: ['h:1'] } } }))).toEqual([
      'redis: set one of url, sentinel and cluster, not url and cluster',
    ]);
    expect(problems(minimal({ redis: { password: 'x' } }))).toEqual([
      'redis.password: applies to sentinel and cluster modes; with url, write it in the URL (rediss:// for TLS)',
    ]);
    expect(problems(minimal({ redis: { sentinel: { nodes: ['h:1'] } } }))).toEqual([expect.stringMatching(/^redis\.sentinel\.masterName:/)]);
  });

  it('leaves a Redis password unresolved for a command that does not use Redis', () => {
    const raw = minimal({ redis: { sentinel: { nodes: ['h:1'], masterName: 'm', password: '${SENTINEL_PW}' } } });
    expect(parseConfig(raw, {}, [], []).redis.sentinel!.password).toBe('${SENTINEL_PW}');
    expect(problems(raw)).toEqual([expect.stringMatching(/^redis\.sentinel\.password: environment variable SENTINEL_PW is not set/)]);
  });
});
