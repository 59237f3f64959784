import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { parseConfig, type Config } from '../src/config.js';
import { hashText } from '../src/core/masks.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { bullBoardDump, capturingLogger, hits, redisDump } from './helpers/leak-scan.js';
import { pgEvent, type Column, type PgEvent } from './helpers/debezium-events.js';

/**
 * A Debezium table's columns and masks, over real HTTP into the real Redis and out to a real receiver: what the
 * customer chose not to send is gone before the events are stored, and a hash equals a Postgres table's hash.
 */
const TOKEN = 'ingest-token-0123456789abcdef';
const MASKING_KEY = 'a-masking-key-for-debezium-0123';

const ORDER_COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'email', type: 'string' },
  { name: 'status', type: 'string' },
  { name: 'body', type: 'string' },
];
const ACCOUNT_COLUMNS: Column[] = [
  { name: 'code', type: 'string', optional: false },
  { name: 'plan', type: 'string' },
];

const EMAIL = 'alice.raw-email-7731@example.org';
const STATUS = 'RAW-STATUS-VALUE-5521';
const BODY = 'RAW-EXCLUDED-BODY-9043';
const CODE = 'RAW-ACCOUNT-CODE-3317';
const RAW = [EMAIL, STATUS, BODY, CODE];

const order = (id: number, lsn: number): string =>
  pgEvent({
    op: 'c',
    columns: ORDER_COLUMNS,
    lsn,
    after: { id: String(id), email: JSON.stringify(EMAIL), status: JSON.stringify(STATUS), body: JSON.stringify(BODY) },
  });
const account = (e: Partial<PgEvent>): string => pgEvent({ op: 'c', columns: ACCOUNT_COLUMNS, table: 'accounts', lsn: 0, ...e });

async function post(url: string, body: string): Promise<number> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body });
  await res.body.text();
  return res.statusCode;
}

describe('Debezium tables: columns and masks', () => {
  let receiver: Receiver;
  let prefix: string;
  let runtime: Runtime | undefined;

  function configFor(): Config {
    return parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 20, cap: 200, jitter: 0 }, attempts: 100 },
        masking: { key: MASKING_KEY },
        sources: [
          {
            name: 'legacy',
            kind: 'debezium',
            http: { token: TOKEN },
            flushInterval: '50ms',
            tables: [
              {
                name: 'public.orders',
                primaryKey: ['id'],
                columns: { exclude: ['body'] },
                masks: { email: 'hash', status: { redact: '***' } },
              },
              { name: 'public.accounts', primaryKey: ['code'], masks: { code: 'hash' } },
            ],
          },
        ],
        web: { port: 0 },
      },
      {},
    );
  }

  let captured = capturingLogger();
  async function start(roles: Array<'scheduler' | 'extract' | 'push' | 'ingest'>): Promise<string> {
    const { logger } = captured;
    const ctx = createPipeline(configFor(), logger);
    runtime = await startRuntime(ctx, { roles, httpPort: 0 });
    return `${runtime.web!.url}/ingest/debezium`;
  }

  async function redisLeaks(): Promise<string[]> {
    const dump = await redisDump(prefix);
    expect(dump.length).toBeGreaterThan(0);
    return dump.flatMap(([key, value]) => RAW.filter((raw) => value.includes(raw) || key.includes(raw)).map((raw) => `${key}: ${raw}`));
  }

  beforeEach(async () => {
    receiver = await startReceiver('k');
    prefix = uniqueName('dbzmask');
    captured = capturingLogger();
  });
  afterEach(async () => {
    await runtime?.stop();
    runtime = undefined;
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('stores and sends no excluded column and no unmasked value; a hash equals the Postgres hash mask', async () => {
    // Ingest alone: the events stay buffered in Redis, so the scan sees them as stored.
    let url = await start(['ingest']);
    expect(await post(url, order(1, 1000))).toBe(200);
    expect(await post(url, account({ op: 'c', lsn: 1100, after: { code: JSON.stringify(CODE), plan: '"basic"' } }))).toBe(200);
    expect(await post(url, account({ op: 'u', lsn: 1200, after: { code: JSON.stringify(CODE), plan: '"pro"' } }))).toBe(200);
    expect(await post(url, account({ op: 'd', lsn: 1300, before: { code: JSON.stringify(CODE), plan: 'null' }, after: null }))).toBe(200);
    const dump = await redisDump(prefix);
    expect(
      dump.some(([, v]) => v.includes(hashText(Buffer.from(MASKING_KEY), EMAIL))),
      'the buffered events are in the scan',
    ).toBe(true);
    expect(await redisLeaks()).toEqual([]);
    await runtime!.stop();

    url = await start(['scheduler', 'extract', 'push', 'ingest']);
    expect(await post(url, order(2, 1400))).toBe(200);
    const records = (target: string) => (receiver.stored.get(target) ?? []).map((r) => JSON.parse(r) as Record<string, unknown>);
    for (let i = 0; i < 600 && (records('bronze.legacy_orders').length < 2 || records('bronze.legacy_accounts').length < 3); i++) await sleep(50);

    const hashed = (text: string): string => hashText(Buffer.from(MASKING_KEY, 'utf8'), text);
    const orders = records('bronze.legacy_orders');
    expect(orders.map((r) => r.id).sort()).toEqual(['1', '2']);
    for (const r of orders) {
      expect(r).not.toHaveProperty('body');
      expect(r.email).toBe(hashed(EMAIL));
      expect(r.status).toBe('***');
    }
    const accounts = records('bronze.legacy_accounts');
    expect(accounts.map((r) => [r._op, r.code, r.plan ?? null])).toEqual([
      ['insert', hashed(CODE), 'basic'],
      ['update', hashed(CODE), 'pro'],
      ['delete', hashed(CODE), null],
    ]);
    const sent = receiver.requests.map((r) => r.body).join('\n');
    for (const raw of RAW) expect(sent, raw).not.toContain(raw);
    expect(await redisLeaks()).toEqual([]);
    const logs = captured.lines.map((l, i): [string, string] => [`log line ${i}`, l]);
    expect(logs.length).toBeGreaterThan(0);
    expect(hits([...RAW, TOKEN, MASKING_KEY], [...logs, ...(await bullBoardDump(prefix))])).toEqual([]);
  });

  it('refuses an excluded primary key, a non-hash mask on it, and where/query/transform, naming the key', () => {
    const parse = (table: Record<string, unknown>) => () =>
      parseConfig(
        {
          destination: { url: 'http://127.0.0.1:1/', apiKey: 'k' },
          masking: { key: MASKING_KEY },
          sources: [{ name: 'legacy', kind: 'debezium', http: {}, tables: [{ name: 'public.orders', primaryKey: ['id'], ...table }] }],
        },
        {},
      );
    expect(parse({ columns: { exclude: ['id'] } })).toThrow(/sources\[0\]\.tables\[0\]\.columns: primary-key column id must leave/);
    expect(parse({ columns: { include: ['email'] } })).toThrow(/sources\[0\]\.tables\[0\]\.columns: primary-key column id must leave/);
    expect(parse({ masks: { id: { redact: 'x' } } })).toThrow(
      /sources\[0\]\.tables\[0\]\.masks\.id: a primary-key column can only be masked with hash/,
    );
    expect(parse({ masks: { email: { truncate: 'day' } } })).toThrow(/masks\.email: truncate: day is not supported for kind debezium/);
    expect(parse({ columns: { exclude: ['email'] }, masks: { email: 'hash' } })).toThrow(/masks\.email: column email does not leave/);
    for (const key of ['where', 'query', 'transform']) {
      expect(parse({ [key]: 'x' })).toThrow(new RegExp(`sources\\[0\\]\\.tables\\[0\\]\\.${key}: not supported for kind debezium`));
    }
    expect(() =>
      parseConfig(
        {
          destination: { url: 'http://127.0.0.1:1/', apiKey: 'k' },
          sources: [{ name: 'legacy', kind: 'debezium', http: {}, tables: [{ name: 'public.orders', masks: { email: 'hash' } }] }],
        },
        {},
      ),
    ).toThrow(/masks\.email: hash needs masking\.key/);
  });
});
