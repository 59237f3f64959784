import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { IngestBuffer, ingestKeys } from '../src/queue/ingest-buffer.js';
import { listDeadLetters } from '../src/queue/dlq.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { keyEvent, pgEvent, type Column, type PgEvent } from './helpers/debezium-events.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { runPushsync } from './helpers/cli.js';

/**
 * Debezium Server's Redis sink, read from a real Redis stream through a consumer group: entries are acknowledged
 * only once stored, pending entries of a dead consumer are claimed, nothing is lost or silently dropped.
 */
const COLUMNS: Column[] = [
  { name: 'id', type: 'int32', optional: false },
  { name: 'v', type: 'string' },
];
const pg = (id: number, lsn: number, extra: Partial<PgEvent> = {}): string =>
  pgEvent({ op: 'c', columns: COLUMNS, lsn, after: { id: String(id), v: JSON.stringify(`v${id}`) }, ...extra });
const key = (id: number): string => keyEvent([COLUMNS[0]!], { id: String(id) });

describe('Debezium Server Redis sink streams', () => {
  let receiver: Receiver;
  let prefix: string;
  let stream: string;
  let runtime: Runtime | undefined;
  let redis: Redis;

  function configFor(extra: Record<string, unknown> = {}, redisStreams: Record<string, unknown> = {}): Config {
    return parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 20, cap: 200, jitter: 0 }, attempts: 100 },
        sources: [
          {
            name: 'legacy',
            kind: 'debezium',
            redisStreams: { url: REDIS_URL, streams: [stream], group: 'pushsync', claimIdle: '300ms', batch: 50, ...redisStreams },
            flushInterval: '50ms',
            // No primaryKey: the key comes with every entry.
            tables: [{ name: 'public.orders' }],
            ...extra,
          },
        ],
        web: { port: 0 },
      },
      {},
    );
  }

  async function start(config: Config): Promise<void> {
    runtime = await startRuntime(createPipeline(config, createLogger('silent')), { roles: ['scheduler', 'extract', 'push', 'ingest'] });
  }

  beforeEach(async () => {
    receiver = await startReceiver('k');
    prefix = uniqueName('dbzr');
    stream = `${uniqueName('dbserver')}.public.orders`;
    redis = new Redis(REDIS_URL);
  });
  afterEach(async () => {
    await runtime?.stop();
    runtime = undefined;
    await receiver.close();
    await redis.del(stream);
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  it('/readyz and pushsync check probe the Redis of the streams, naming the source and never its password', async () => {
    const secret = 's3cret-pw';
    // A Redis nobody listens on, with a password in its URL.
    const dead = `redis://:${secret}@127.0.0.1:1/0`;
    const config = (url: string): Config => {
      const c = configFor({}, { url });
      return { ...c, web: { ...c.web, auth: { token: 'web-token' } } } as Config;
    };
    runtime = await startRuntime(createPipeline(config(dead), createLogger('silent')), { roles: ['ingest'], httpPort: 0 });
    const readyz = async (auth?: string): Promise<{ status: number; body: string }> => {
      const res = await request(`${runtime!.web!.url}/readyz`, auth ? { headers: { authorization: `Bearer ${auth}` } } : {});
      return { status: res.statusCode, body: await res.body.text() };
    };
    const anonymous = await readyz();
    expect(anonymous.status).toBe(503);
    expect(JSON.parse(anonymous.body).checks).toMatchObject({ redis: 'ok', 'source:legacy:redis-streams': 'unavailable' });
    const signedIn = await readyz('web-token');
    expect(JSON.parse(signedIn.body).checks['source:legacy:redis-streams']).toMatch(
      /cannot reach the Redis of the streams at redis:\/\/:\*\*\*@127\.0\.0\.1:1/,
    );
    expect(signedIn.body).not.toContain(secret);
    await runtime.stop();
    runtime = undefined;
    runtime = await startRuntime(createPipeline(config(REDIS_URL), createLogger('silent')), { roles: ['ingest'], httpPort: 0 });
    const ok = await readyz();
    expect(`${ok.status} ${ok.body}`).toContain('"source:legacy:redis-streams":"ok"');

    const dir = mkdtempSync(join(tmpdir(), 'pushsync-dbz-check-'));
    try {
      const write = (name: string, url: string): string => {
        const path = join(dir, name);
        writeFileSync(
          path,
          JSON.stringify({
            redis: { url: REDIS_URL, prefix },
            destination: { url: receiver.url, apiKey: 'k' },
            sources: [
              { name: 'legacy', kind: 'debezium', redisStreams: { url, streams: [stream, `${stream}.absent`] }, tables: [{ name: 'public.orders' }] },
            ],
          }),
        );
        return path;
      };
      await redis.xadd(stream, '*', 'key', key(1), 'value', pg(1, 100));
      const good = await runPushsync(['--config', write('good.json', REDIS_URL), 'check']);
      expect(good.stdout).toContain(`ok   source legacy Redis streams reachable: ${REDIS_URL}`);
      expect(good.stdout).toContain(`warn source legacy: stream ${stream}.absent does not exist yet`);
      expect(good.stdout).not.toContain(`stream ${stream} does`);
      const bad = await runPushsync(['--config', write('bad.json', dead), 'check']);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(
        /FAIL source legacy Redis streams reachable: cannot reach the Redis of the streams at redis:\/\/:\*\*\*@127\.0\.0\.1:1/,
      );
      expect(bad.stdout + bad.stderr).not.toContain(secret);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const records = (): Array<{ _op: string; id: number; v?: string; _ordering?: string }> =>
    (receiver.stored.get('bronze.legacy_orders') ?? []).map((r) => JSON.parse(r) as { _op: string; id: number });
  const pending = async (): Promise<number> => Number(((await redis.xpending(stream, 'pushsync')) as [number])[0]);

  async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
    for (let i = 0; i < 600; i++) {
      if (await check()) return;
      await sleep(50);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('reads extended and compact entries through the consumer group, skips tombstones, acknowledges what it stored', async () => {
    // Extended format: key, value and headers; compact format: one field named by the key.
    await redis.xadd(stream, '*', 'key', key(1), 'value', pg(1, 1000), '__DEBEZIUM_HEADER', 'x');
    await redis.xadd(stream, '*', key(2), pg(2, 1100));
    await redis.xadd(stream, '*', key(2), pg(2, 1200, { op: 'd', before: { id: '2', v: 'null' }, after: null }));
    await redis.xadd(stream, '*', key(2), 'default');
    await start(configFor());
    await until('the records', () => records().length === 3);
    expect(records().map((r) => [r._op, r.id])).toEqual([
      ['insert', 1],
      ['insert', 2],
      ['delete', 2],
    ]);
    await until('every entry acknowledged', async () => (await pending()) === 0);
    const [group] = (await redis.xinfo('GROUPS', stream)) as Array<Array<string | number>>;
    expect(group).toContain('pushsync');
    // Entries written later are read too.
    await redis.xadd(stream, '*', key(3), pg(3, 1300));
    await until('the new record', () => records().length === 4);
  });

  it('leaves entries pending while they cannot be stored, and acknowledges them once the buffer has room', async () => {
    receiver.setDefault({ kind: 'status', status: 503 });
    // Two entries per read: the first read fits the budget, the second does not.
    await start(configFor({ maxBufferedBytes: 1024 * 1024 }, { batch: 2 }));
    const big = (id: number): string =>
      pgEvent({ op: 'c', columns: COLUMNS, lsn: 1000 + id, after: { id: String(id), v: JSON.stringify('x'.repeat(300_000)) } });
    for (let id = 1; id <= 8; id++) await redis.xadd(stream, '*', key(id), big(id));
    const buffer = new IngestBuffer(redis, ingestKeys(prefix, 'legacy'));
    // The buffer fills to its budget; what did not fit stays pending in the stream, unacknowledged.
    await until('the budget to fill', async () => (await buffer.bytes()) > 600_000 && (await pending()) > 0);
    await sleep(500);
    expect(await pending()).toBeGreaterThan(0);
    expect(records()).toHaveLength(0);
    receiver.setDefault({ kind: 'ok' });
    await until('every record', () => records().length === 8);
    await until('every entry acknowledged', async () => (await pending()) === 0);
    expect(new Set(records().map((r) => r.id)).size).toBe(8);
  });

  it('claims the pending entries of a consumer that died before acknowledging them', async () => {
    await redis.xgroup('CREATE', stream, 'pushsync', '0', 'MKSTREAM');
    for (let id = 1; id <= 5; id++) await redis.xadd(stream, '*', key(id), pg(id, 1000 + id));
    // A consumer takes every entry and dies without acknowledging any.
    const taken = (await redis.xreadgroup('GROUP', 'pushsync', 'dead-consumer', 'COUNT', 10, 'STREAMS', stream, '>')) as Array<[string, unknown[]]>;
    expect(taken[0]![1]).toHaveLength(5);
    await start(configFor());
    await until('the claimed records', () => records().length === 5);
    await until('every entry acknowledged', async () => (await pending()) === 0);
  });

  it("stores a stream's entries in their order, waiting for earlier ones another consumer holds: the snapshot floor holds", async () => {
    await redis.xgroup('CREATE', stream, 'pushsync', '0', 'MKSTREAM');
    // The initial snapshot's row of key 1, at the snapshot's LSN 2000, taken by a consumer that then dies.
    await redis.xadd(stream, '*', key(1), pg(1, 2000, { op: 'r', after: { id: '1', v: '"snapshot"' } }));
    await redis.xreadgroup('GROUP', 'pushsync', 'dead-consumer', 'COUNT', 10, 'STREAMS', stream, '>');
    // The first transaction streamed after the snapshot: begun before it (LSN 1500), committed after, no previous commit.
    await redis.xadd(stream, '*', key(1), pg(1, 1500, { op: 'u', lastCommitLsn: null, after: { id: '1', v: '"changed"' } }));
    await start(configFor({}, { claimIdle: '1s' }));
    await until('both records', () => records().length === 2);
    // Stored in stream order, the change obeys the floor the snapshot row set and is the key's newest version.
    const byOrdering = [...records()].sort((a, b) => (String(a._ordering) < String(b._ordering) ? -1 : 1));
    expect(byOrdering.map((r) => [r._op, r.v])).toEqual([
      ['snapshot', 'snapshot'],
      ['update', 'changed'],
    ]);
    await until('every entry acknowledged', async () => (await pending()) === 0);
  });

  it('sends an entry it cannot read to the dead-letter queue, acknowledged, and delivers its neighbours', async () => {
    await redis.xadd(stream, '*', key(1), pg(1, 1000));
    await redis.xadd(stream, '*', key(2), '{"payload": not json');
    await redis.xadd(stream, '*', key(3), pg(3, 1100).replace('"op":"c"', '"op":"z"'));
    await redis.xadd(stream, '*', key(4), pg(4, 1200));
    await start(configFor());
    await until('the readable records', () => records().length === 2);
    await until('the dead letters', async () => (await listDeadLetters(runtime!.ctx.pushQueue)).length === 1);
    const [letter] = await listDeadLetters(runtime!.ctx.pushQueue);
    expect(letter!.reason).toContain('[EVENT_INVALID] 2 event(s) of source legacy could not be read');
    expect(letter!.reason).toContain(`of ${stream}: not valid JSON`);
    expect(letter!.reason).toContain('payload.op: unknown operation "z"');
    await until('every entry acknowledged', async () => (await pending()) === 0);
  });
});
