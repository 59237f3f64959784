/**
 * `npm run bench:debezium`: ingest throughput of Debezium change events, in events/s.
 *
 * 1. HTTP as Debezium Server's HTTP sink sends: one event per request, one request at a time.
 * 1b. The same, `BENCH_DBZ_CONNECTIONS` requests at a time (several producers, or a sink with parallel requests): the
 *     appends of concurrent requests share Redis round trips (group commit).
 * 2. HTTP as a Kafka Connect HTTP sink sends: JSON arrays of `BENCH_DBZ_BATCH` events, `BENCH_DBZ_CONNECTIONS` at a time.
 * 3. Redis Streams as Debezium Server's Redis sink writes them: the stream is filled first, then read through the
 *    consumer group.
 *
 * For each: "ingested" is events acknowledged (2xx, or XACK) per second of wall time from the first event sent (or
 * read) until the last acknowledgement; "delivered" until the destination (bench/receiver.ts, a child process) has
 * counted every event. The pipeline (ingest, cutting, push) runs in this process with its defaults.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { deletePrefix } from '../src/queue/redis.js';
import { startReceiverChild, type ReceiverChild } from './receiver-child.js';
import { decimalBytes, keyEvent, pgEvent, type Column } from '../test/helpers/debezium-events.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SINGLE = Number(process.env.BENCH_DBZ_SINGLE ?? 3000);
const EVENTS = Number(process.env.BENCH_DBZ_EVENTS ?? 50_000);
const BATCH = Number(process.env.BENCH_DBZ_BATCH ?? 500);
const CONNECTIONS = Number(process.env.BENCH_DBZ_CONNECTIONS ?? 4);
const PREFIX = `pushsync_bench_dbz_${process.pid}`;
const STREAM = `benchsrv${process.pid}.public.orders`;

const COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'account', type: 'int32' },
  { name: 'amount', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } },
  { name: 'status', type: 'string' },
  { name: 'note', type: 'string' },
  { name: 'payload', type: 'string', semantic: 'io.debezium.data.Json' },
  { name: 'created_at', type: 'int64', semantic: 'io.debezium.time.MicroTimestamp' },
  { name: 'updated_at', type: 'string', semantic: 'io.debezium.time.ZonedTimestamp' },
];

/** A Postgres connector update event with the schema envelope, about 3 KB, as Debezium's JSON converter writes it. */
function event(i: number): string {
  return pgEvent({
    op: 'u',
    columns: COLUMNS,
    lsn: 1_000_000 + i * 64,
    lastCommitLsn: 1_000_000 + i * 64 - 8,
    after: {
      id: String(i),
      account: String(i % 1000),
      amount: decimalBytes(BigInt(i) * 137n),
      status: '"shipped"',
      note: JSON.stringify(`order ${i} note with some text`),
      payload: JSON.stringify(`{"sku": "S-${i}", "qty": ${i % 7}, "tags": ["a", "b"]}`),
      created_at: String(1_709_296_496_123_456 + i),
      updated_at: '"2024-03-01T12:34:56.123456Z"',
    },
  });
}

function config(receiver: ReceiverChild): Config {
  return parseConfig(
    {
      redis: { url: REDIS_URL, prefix: PREFIX },
      destination: { url: receiver.url, apiKey: 'bench' },
      sources: [
        {
          name: 'bench',
          kind: 'debezium',
          http: {},
          redisStreams: { url: REDIS_URL, streams: [STREAM] },
          maxBufferedBytes: 1024 * 1024 * 1024,
          flushInterval: '200ms',
          tables: [{ name: 'public.orders', primaryKey: ['id'] }],
        },
      ],
      web: { port: 0 },
    },
    {},
  );
}

async function start(cfg: Config): Promise<Runtime> {
  return startRuntime(createPipeline(cfg, createLogger('warn')), { roles: ['scheduler', 'extract', 'push', 'ingest'], httpPort: 0 });
}

async function delivered(receiver: ReceiverChild, n: number): Promise<void> {
  for (;;) {
    if ((await receiver.counts()).rows >= n) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const rate = (n: number, ms: number): string => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')} events/s`;

function report(what: string, n: number, started: number, acked: number, done: number): void {
  process.stdout.write(
    `${what}: ${n.toLocaleString('en-US')} events, ingested ${rate(n, acked - started)} (${((acked - started) / 1000).toFixed(2)} s), delivered ${rate(n, done - started)} (${((done - started) / 1000).toFixed(2)} s)\n`,
  );
}

async function post(url: string, body: string): Promise<void> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`ingest answered ${res.statusCode}`);
}

/** Sequential POSTs of the same bodies to a server that does nothing: the HTTP round trip of this machine. */
async function bareRoundTrips(bodies: readonly string[]): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const t0 = performance.now();
  for (const b of bodies) {
    const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b });
    await res.body.dump();
  }
  const ms = performance.now() - t0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return ms;
}

async function main(): Promise<void> {
  const receiver = await startReceiverChild();
  const redis = new Redis(REDIS_URL);
  const cfg = config(receiver);
  try {
    // 1. One event per request, sequentially (Debezium Server's HTTP sink).
    let runtime = await start(cfg);
    const url = `${runtime.web!.url}/ingest/debezium`;
    const single = Array.from({ length: SINGLE }, (_, i) => event(i));
    await receiver.reset();
    let t0 = performance.now();
    for (const e of single) await post(url, e);
    let t1 = performance.now();
    await delivered(receiver, SINGLE);
    report('HTTP, one event per request (Debezium Server)', SINGLE, t0, t1, performance.now());
    process.stdout.write(
      `  for scale: the same requests to a node:http server that only answers 200: ${rate(SINGLE, await bareRoundTrips(single))}\n`,
    );

    // 1b. One event per request, CONNECTIONS at a time.
    const parallel = Array.from({ length: SINGLE }, (_, i) => event(SINGLE + EVENTS + EVENTS + i));
    await receiver.reset();
    t0 = performance.now();
    let nextSingle = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (nextSingle < parallel.length) await post(url, parallel[nextSingle++]!);
      }),
    );
    t1 = performance.now();
    await delivered(receiver, SINGLE);
    report(`HTTP, one event per request, ${CONNECTIONS} connections`, SINGLE, t0, t1, performance.now());

    // 2. Arrays of BATCH events over CONNECTIONS connections (Kafka Connect HTTP sink).
    const batches: string[] = [];
    for (let i = 0; i < EVENTS; i += BATCH)
      batches.push(`[${Array.from({ length: Math.min(BATCH, EVENTS - i) }, (_, j) => event(SINGLE + i + j)).join(',')}]`);
    await receiver.reset();
    t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (next < batches.length) await post(url, batches[next++]!);
      }),
    );
    t1 = performance.now();
    await delivered(receiver, EVENTS);
    report(`HTTP, arrays of ${BATCH} events, ${CONNECTIONS} connections (Kafka Connect)`, EVENTS, t0, t1, performance.now());
    await runtime.stop();

    // 3. Redis Streams: fill the stream, then read it through the consumer group.
    for (let i = 0; i < EVENTS; i += 1000) {
      const p = redis.pipeline();
      for (let j = i; j < Math.min(EVENTS, i + 1000); j++)
        p.xadd(STREAM, '*', 'key', keyEvent([COLUMNS[0]!], { id: String(j) }), 'value', event(SINGLE + EVENTS + j));
      await p.exec();
    }
    await receiver.reset();
    t0 = performance.now();
    runtime = await start(cfg);
    let acked = 0;
    for (;;) {
      const groups = (await redis.xinfo('GROUPS', STREAM).catch(() => [])) as Array<Array<string | number>>;
      const g = groups[0]
        ? new Map(Array.from({ length: groups[0].length / 2 }, (_, k) => [String(groups[0]![2 * k]), groups[0]![2 * k + 1]]))
        : undefined;
      if (g && Number(g.get('pending')) === 0 && Number(g.get('entries-read') ?? 0) >= EVENTS) {
        acked = performance.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await delivered(receiver, EVENTS);
    report('Redis Streams, consumer group (Debezium Server Redis sink)', EVENTS, t0, acked, performance.now());
    await runtime.stop();
  } finally {
    await receiver.close();
    await redis.del(STREAM);
    await deletePrefix(redis, PREFIX);
    await redis.quit();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
