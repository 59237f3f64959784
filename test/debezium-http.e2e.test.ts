import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { parseConfig, type Config } from '../src/config.js';
import { signWebhook } from '../src/core/webhook-signature.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { IngestBuffer, ingestKeys } from '../src/queue/ingest-buffer.js';
import { listDeadLetters } from '../src/queue/dlq.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import {
  UNAVAILABLE,
  decimalBytes,
  heartbeatEvent,
  mysqlEvent,
  pgCloudEvent,
  pgCloudEventAttributes,
  pgCloudEventData,
  pgEvent,
  pgFlattened,
  transactionEvent,
  type Column,
  type PgEvent,
} from './helpers/debezium-events.js';

/**
 * POST /ingest/debezium over real HTTP, into the real Redis, delivered to a real receiver: events built from the
 * documented envelopes of the Postgres and MySQL connectors, as Debezium Server and Kafka Connect HTTP sinks send
 * them.
 */
const TOKEN = 'ingest-token-0123456789abcdef';
const WEBHOOK_SECRET = `whsec_${Buffer.from('a-webhook-secret-of-32-bytes!!!!').toString('base64')}`;

const PG_COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'status', type: 'string' },
  { name: 'amount', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } },
  { name: 'ratio', type: 'struct', semantic: 'io.debezium.data.VariableScaleDecimal' },
  { name: 'placed_at', type: 'string', semantic: 'io.debezium.time.ZonedTimestamp' },
  { name: 'local_at', type: 'int64', semantic: 'io.debezium.time.MicroTimestamp' },
  { name: 'nano_at', type: 'int64', semantic: 'io.debezium.time.NanoTimestamp' },
  { name: 'milli_at', type: 'int64', semantic: 'io.debezium.time.Timestamp' },
  { name: 'day', type: 'int32', semantic: 'io.debezium.time.Date' },
  { name: 'at_time', type: 'int64', semantic: 'io.debezium.time.MicroTime' },
  { name: 'ms_time', type: 'int32', semantic: 'io.debezium.time.Time' },
  { name: 'tz_time', type: 'string', semantic: 'io.debezium.time.ZonedTime' },
  { name: 'doc', type: 'string', semantic: 'io.debezium.data.Json' },
  { name: 'uid', type: 'string', semantic: 'io.debezium.data.Uuid' },
  { name: 'blob', type: 'bytes' },
  { name: 'body', type: 'string' },
];

function pgRow(id: number, status = 'open'): Record<string, string> {
  return {
    id: String(id),
    status: JSON.stringify(status),
    amount: decimalBytes(123456789012345678901234567890n),
    ratio: `{"scale":4,"value":${decimalBytes(-15n)}}`,
    placed_at: '"2024-03-01T12:34:56.123456Z"',
    local_at: '1709296496123456',
    nano_at: '1709296496123456789',
    milli_at: '1709296496120',
    day: '-735160',
    at_time: '86399999999',
    ms_time: '45296120',
    tz_time: '"10:15:30.5Z"',
    doc: JSON.stringify('{"n": 12345678901234567890, "x": [1.10]}'),
    uid: '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',
    blob: '"AP8Q"',
    body: JSON.stringify(`body of ${id}`),
  };
}

/** The row as pushsync sends it: exact decimals, ISO temporal text, bigint as strings, embedded JSON. */
function pgRecordValues(id: number, status = 'open'): Record<string, unknown> {
  return {
    id: String(id),
    status,
    amount: '1234567890123456789012345678.90',
    ratio: '-0.0015',
    placed_at: '2024-03-01T12:34:56.123456+00:00',
    local_at: '2024-03-01T12:34:56.123456',
    nano_at: '2024-03-01T12:34:56.123456789',
    milli_at: '2024-03-01T12:34:56.12',
    day: '0044-03-15 BC',
    at_time: '23:59:59.999999',
    ms_time: '12:34:56.12',
    tz_time: '10:15:30.5+00',
    uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    blob: 'AP8Q',
    body: `body of ${id}`,
  };
}

const pg = (e: Partial<PgEvent>): PgEvent => ({ op: 'c', columns: PG_COLUMNS, lsn: 1000, after: pgRow(1), ...e });

const MYSQL_COLUMNS: Column[] = [
  { name: 'id', type: 'int32', optional: false },
  { name: 'email', type: 'string' },
  { name: 'joined', type: 'int64', semantic: 'io.debezium.time.Timestamp' },
  { name: 'seen', type: 'string', semantic: 'io.debezium.time.ZonedTimestamp' },
  { name: 'credit', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } },
  { name: 'worked', type: 'int64', semantic: 'io.debezium.time.MicroTime' },
];
const mysqlRow = (id: number, email: string): Record<string, string> => ({
  id: String(id),
  email: JSON.stringify(email),
  joined: '1709296496000',
  seen: '"2024-03-01T12:34:56Z"',
  credit: decimalBytes(-995n),
  worked: '3020399000000',
});

interface Rec {
  _op: string;
  _event_id: string;
  _ordering: string;
  _table: string;
  _unavailable: string[];
  [k: string]: unknown;
}

async function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, ...headers },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
}

describe('POST /ingest/debezium', () => {
  let receiver: Receiver;
  let prefix: string;
  let runtime: Runtime | undefined;
  let url: string;
  let redis: Redis;

  function configFor(extra: Record<string, unknown> = {}, tables?: unknown[]): Config {
    return parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 20, cap: 200, jitter: 0 }, attempts: 100 },
        sources: [
          {
            name: 'legacy',
            kind: 'debezium',
            http: { token: TOKEN },
            flushInterval: '50ms',
            tables: tables ?? [
              { name: 'public.orders', primaryKey: ['id'], target: 'bronze.legacy_orders' },
              { name: 'inventory.customers', primaryKey: ['id'] },
            ],
            ...extra,
          },
        ],
        web: { port: 0 },
      },
      {},
    );
  }

  async function start(config: Config): Promise<void> {
    const ctx = createPipeline(config, createLogger('silent'));
    runtime = await startRuntime(ctx, { roles: ['scheduler', 'extract', 'push', 'ingest'], httpPort: 0 });
    url = `${runtime.web!.url}/ingest/debezium`;
  }

  beforeEach(async () => {
    receiver = await startReceiver('k');
    prefix = uniqueName('dbz');
    redis = new Redis(REDIS_URL);
  });
  afterEach(async () => {
    await runtime?.stop();
    runtime = undefined;
    await receiver.close();
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  const records = (target: string): Rec[] => (receiver.stored.get(target) ?? []).map((r) => JSON.parse(r) as Rec);
  const buffered = (): Promise<number> => new IngestBuffer(redis, ingestKeys(prefix, 'legacy')).bytes();

  async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
    for (let i = 0; i < 600; i++) {
      if (await check()) return;
      await sleep(50);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('delivers every kind of event as Debezium Server and Kafka Connect send them, with exact values', async () => {
    await start(configFor());
    const sent: Array<{ body: string; headers?: Record<string, string> }> = [
      // Debezium Server's HTTP sink: one event per request, with the schema envelope.
      { body: pgEvent(pg({ op: 'r', lsn: 900, after: pgRow(1), snapshot: 'true' })) },
      { body: pgEvent(pg({ op: 'r', lsn: 900, after: pgRow(2), snapshot: 'last' })) },
      { body: pgEvent(pg({ op: 'c', lsn: 1000, lastCommitLsn: 950, after: pgRow(3) })) },
      { body: pgEvent(pg({ op: 'u', lsn: 1100, lastCommitLsn: 1050, after: { ...pgRow(1, 'paid'), body: JSON.stringify(UNAVAILABLE) } })) },
      {
        body: pgEvent(
          pg({
            op: 'd',
            lsn: 1200,
            lastCommitLsn: 1150,
            before: { ...Object.fromEntries(PG_COLUMNS.map((c) => [c.name, 'null'])), id: '2' },
            after: null,
          }),
        ),
      },
      { body: pgEvent(pg({ op: 'd', lsn: 1300, lastCommitLsn: 1250, before: pgRow(3), after: null })) },
      { body: pgEvent(pg({ op: 't', lsn: 1400, before: null, after: null })) },
      { body: heartbeatEvent() },
      { body: transactionEvent('BEGIN') },
      // Without the schema envelope (schemas.enable=false).
      { body: pgEvent(pg({ op: 'c', lsn: 1500, after: { id: '4', status: '"plain"' }, columns: PG_COLUMNS.slice(0, 2), withSchema: false })) },
      // CloudEvents, structured and binary.
      { body: pgCloudEvent(pg({ op: 'c', lsn: 1600, after: pgRow(5) }), true), headers: { 'content-type': 'application/cloudevents+json' } },
      {
        body: pgCloudEventData(pg({ op: 'u', lsn: 1700, after: pgRow(5, 'binary') })),
        headers: Object.fromEntries([
          ['content-type', 'application/json'],
          ['ce-specversion', '1.0'],
          ['ce-id', 'x'],
          ['ce-source', '/debezium/postgresql/dbserver1'],
          ['ce-type', 'io.debezium.connector.postgresql.DataChangeEvent'],
          ...Object.entries(pgCloudEventAttributes(pg({ op: 'u', lsn: 1700 }))).map(([k, v]) => [`ce-${k}`, v]),
        ]),
      },
      // ExtractNewRecordState's flattened form.
      { body: pgFlattened(pg({ op: 'c', lsn: 1800, after: { id: '6', status: '"flat"' } })) },
      // A Kafka Connect HTTP sink: a JSON array of events, tombstones included, here MySQL connector events.
      {
        body: `[${[
          mysqlEvent({ op: 'r', columns: MYSQL_COLUMNS, after: mysqlRow(1, 'a@x'), file: 'mysql-bin.000003', pos: 154, snapshot: 'true' }),
          mysqlEvent({ op: 'c', columns: MYSQL_COLUMNS, after: mysqlRow(2, 'b@x'), file: 'mysql-bin.000003', pos: 300, row: 0 }),
          mysqlEvent({
            op: 'u',
            columns: MYSQL_COLUMNS,
            before: mysqlRow(1, 'a@x'),
            after: mysqlRow(1, 'a2@x'),
            file: 'mysql-bin.000003',
            pos: 500,
            row: 0,
          }),
          mysqlEvent({ op: 'd', columns: MYSQL_COLUMNS, before: mysqlRow(2, 'b@x'), after: null, file: 'mysql-bin.000004', pos: 4, row: 0 }),
          'null',
        ].join(',')}]`,
      },
    ];
    const answers = [];
    for (const s of sent) answers.push(await post(url, s.body, s.headers));
    expect(answers.map((a) => a.status)).toEqual(sent.map(() => 200));
    expect(answers[6]!.body).toEqual({ accepted: 0, skipped: { truncate: 1 } });
    expect(answers[7]!.body).toEqual({ accepted: 0, skipped: { heartbeat: 1 } });
    expect(answers[13]!.body).toEqual({ accepted: 4, skipped: { tombstone: 1 } });

    await until('every record', () => records('bronze.legacy_orders').length === 10 && records('bronze.legacy_customers').length === 4);
    const orders = records('bronze.legacy_orders');
    const byOrdering = (a: Rec, b: Rec): number => (a._ordering < b._ordering ? -1 : 1);
    expect(orders.sort(byOrdering).map((r) => [r._op, r.id, r._ordering])).toEqual([
      ['snapshot', '1', '~0000000000000384'],
      ['snapshot', '2', '~0000000000000384'],
      ['insert', '3', '~00000000000003e8:00000000000003e8'],
      ['update', '1', '~000000000000044c:000000000000044c'],
      ['delete', '2', '~00000000000004b0:00000000000004b0'],
      ['delete', '3', '~0000000000000514:0000000000000514'],
      // Events without a schema carry their values as they came (best effort): the id stays a JSON number.
      ['insert', 4, '~00000000000005dc:00000000000005dc'],
      ['insert', '5', '~0000000000000640:0000000000000640'],
      ['update', 5, '~00000000000006a4:00000000000006a4'],
      ['insert', 6, '~0000000000000708:0000000000000708'],
    ]);
    const [, , created, updated, deleted] = orders;
    // Metadata first, then the columns in the event's order, values exact.
    expect(Object.keys(created!).slice(0, 8)).toEqual([
      '_op',
      '_event_id',
      '_ordering',
      '_generation',
      '_extracted_at',
      '_source',
      '_table',
      '_unavailable',
    ]);
    expect(created).toMatchObject({ _source: 'legacy', _table: 'public.orders', _unavailable: [], ...pgRecordValues(3) });
    expect(receiver.stored.get('bronze.legacy_orders')!.find((r) => r.includes('"_op":"insert"') && r.includes('"id":"3"'))).toContain(
      '"doc":{"n": 12345678901234567890, "x": [1.10]}',
    );
    // The unchanged TOASTed column is absent and named, never sent as data.
    expect(updated!._unavailable).toEqual(['body']);
    expect('body' in updated!).toBe(false);
    expect(receiver.stored.get('bronze.legacy_orders')!.join('\n')).not.toContain(UNAVAILABLE);
    // Deletes carry the key only.
    expect(Object.keys(deleted!).filter((k) => !k.startsWith('_'))).toEqual(['id']);
    expect(orders.find((r) => r.id === '5' && r._op === 'insert')).toMatchObject(pgRecordValues(5));
    expect(orders.find((r) => r.id === 5 && r._op === 'update')).toMatchObject({ status: 'binary' });

    const customers = records('bronze.legacy_customers').sort(byOrdering);
    expect(customers.map((r) => [r._op, r.id, r._ordering])).toEqual([
      ['snapshot', 1, '~0000000003:00000000000000000154'],
      ['insert', 2, '~0000000003:00000000000000000300:0000000000'],
      ['update', 1, '~0000000003:00000000000000000500:0000000000'],
      ['delete', 2, '~0000000004:00000000000000000004:0000000000'],
    ]);
    expect(customers[1]).toMatchObject({
      email: 'b@x',
      joined: '2024-03-01T12:34:56',
      seen: '2024-03-01T12:34:56+00:00',
      credit: '-9.95',
      worked: '838:59:59',
    });

    // Every buffered event was removed from Redis once delivered.
    await until('the buffer to empty', async () => (await buffered()) === 0);

    // A re-delivery of an event (Debezium is at-least-once) carries the same event id.
    expect((await post(url, sent[2]!.body)).status).toBe(200);
    await until('the re-delivery', () => records('bronze.legacy_orders').length === 11);
    const ids = records('bronze.legacy_orders')
      .filter((r) => r._op === 'insert' && r.id === '3')
      .map((r) => r._event_id);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(ids[1]);
  });

  it('refuses a request with a malformed event as a whole: 400 naming the event and the field, nothing stored', async () => {
    await start(configFor());
    const good = pgEvent(pg({ lsn: 1000 }));
    const bad = pgEvent(pg({ lsn: 1001, after: { ...pgRow(2), amount: '"not-base64!"' } }));
    const answer = await post(url, `[${good},${bad},${good}]`);
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ error: 'event 1: payload.after.amount: expected base64 bytes', event: 1, field: 'payload.after.amount' });
    const noKey = await post(url, pgEvent(pg({ after: { ...pgRow(2), id: 'null' } })));
    expect(noKey.body).toMatchObject({ error: 'event 0: primary-key column id is missing or null', event: 0 });
    expect((await post(url, '{"after":')).status).toBe(400);
    expect(await buffered()).toBe(0);
    expect(await redis.exists(ingestKeys(prefix, 'legacy').buffer('public.orders'))).toBe(0);
    await sleep(300);
    expect(receiver.requests).toHaveLength(0);
  });

  it('answers 200 only once the events are in Redis: they wait there while the destination is down, then are delivered', async () => {
    receiver.setDefault({ kind: 'status', status: 503 });
    await start(configFor());
    expect((await post(url, pgEvent(pg({ lsn: 1000 })))).status).toBe(200);
    // Acknowledged means stored: the event is in the buffer before any delivery succeeded.
    const entries = await redis.xrange(ingestKeys(prefix, 'legacy').buffer('public.orders'), '-', '+');
    expect(entries).toHaveLength(1);
    expect(await buffered()).toBeGreaterThan(0);
    await until('a failed attempt', () => receiver.requests.length > 0);
    receiver.setDefault({ kind: 'ok' });
    await until('the delivery', () => records('bronze.legacy_orders').length === 1);
    await until('the buffer to empty', async () => (await buffered()) === 0);
  });

  it('over the byte budget answers 429 with Retry-After, and accepts again once deliveries free the budget', async () => {
    receiver.setDefault({ kind: 'status', status: 503 });
    await start(configFor({ maxBufferedBytes: 1024 * 1024 }));
    const big = (id: number, lsn: number): string => pgEvent(pg({ lsn, after: { ...pgRow(id), body: JSON.stringify('x'.repeat(300_000)) } }));
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 10 && !refused; i++) {
      const a = await post(url, big(i + 1, 1000 + i));
      statuses.push(a.status);
      if (a.status !== 200) refused = a;
    }
    expect(refused?.status).toBe(429);
    expect(Number(refused?.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(String(refused?.body.error)).toContain('maxBufferedBytes');
    const accepted = statuses.filter((s) => s === 200).length;
    expect(accepted).toBeGreaterThan(0);
    receiver.setDefault({ kind: 'ok' });
    await until('the accepted events', () => records('bronze.legacy_orders').length === accepted);
    await until('the budget to free', async () => (await buffered()) === 0);
    expect((await post(url, big(99, 2000))).status).toBe(200);
  });

  it('takes a bearer token or a Standard Webhooks signature, and nothing else', async () => {
    await start(configFor({ http: { token: WEBHOOK_SECRET } }));
    const body = pgEvent(pg({ lsn: 1000 }));
    const now = Math.floor(Date.now() / 1000);
    const signed = (ts: number, text = body): Record<string, string> => ({
      authorization: '',
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook(WEBHOOK_SECRET, 'msg_1', ts, text),
    });
    expect((await post(url, body, { authorization: '' })).status).toBe(401);
    expect((await post(url, body, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await post(url, body, { authorization: `Bearer ${WEBHOOK_SECRET}` })).status).toBe(200);
    expect((await post(url, body, signed(now))).status).toBe(200);
    // A signature over another body, or too old to be fresh, is refused.
    expect((await post(url, body, signed(now, `${body} `))).status).toBe(401);
    expect((await post(url, body, signed(now - 3600))).status).toBe(401);
    expect((await post(`${url}/other`, body, { authorization: `Bearer ${WEBHOOK_SECRET}` })).status).toBe(404);
    expect((await post(`${url}/legacy`, body, { authorization: `Bearer ${WEBHOOK_SECRET}` })).status).toBe(200);
  });

  it('sends events of a table the config does not name to the dead-letter queue, and delivers them once it does', async () => {
    await start(configFor());
    expect((await post(url, pgEvent(pg({ table: 'invoices', lsn: 1000 })))).status).toBe(200);
    await until('the dead letter', async () => (await listDeadLetters(runtime!.ctx.pushQueue)).length === 1);
    const [letter] = await listDeadLetters(runtime!.ctx.pushQueue);
    expect(letter!.reason).toContain(
      '[TABLE_NOT_CONFIGURED] 1 event(s) for table public.invoices arrived on source legacy, which does not configure it',
    );
    expect(await buffered()).toBeGreaterThan(0);
    // Configure the table and retry the job: the event, kept in Redis, is delivered.
    await runtime!.stop();
    await start(
      configFor({}, [
        { name: 'public.orders', primaryKey: ['id'] },
        { name: 'public.invoices', primaryKey: ['id'] },
      ]),
    );
    const [job] = await runtime!.ctx.pushQueue.getFailed();
    await job!.retry('failed');
    await until('the delivery', () => records('bronze.legacy_invoices').length === 1);
    await until('the buffer to empty', async () => (await buffered()) === 0);
  });
});
