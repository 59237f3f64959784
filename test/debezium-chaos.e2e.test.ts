import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { silverName, silverViewSql } from '../src/core/views.js';
import { DevSinkStore } from '../src/destinations/dev-sink-store.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Behaviour, type Receiver } from './helpers/receiver.js';
import { prng } from './helpers/prng.js';
import { debeziumWorkload, sortedRows, type Workload, type WorkloadRow } from './helpers/debezium-workload.js';

/**
 * A stand-in producer sends a workload's changes the way Debezium does (over HTTP one event per request, retried
 * until acknowledged; into a Redis stream for the Redis sink) while two pushsync processes are SIGKILLed and
 * restarted and the destination fails in every way it can, then recovers. At the end the silver view, run in DuckDB
 * over everything the destination stored, must equal the workload's final state for both tables.
 */
const ROOT = new URL('..', import.meta.url).pathname;
const TOKEN = 'chaos-ingest-token-0123456789';
const SEED = Number(process.env.CHAOS_SEED ?? 5);
const MAX_KILLS = 6;
/** Pause between two events of one producer: about 30 s of changes. */
const PACE_MS = 50;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface Verdict {
  lost: number;
  wrong: number;
  extra: number;
  duplicates: number;
  examples: string[];
}

/** Loads what the destination stored into DuckDB (as the dev sink stores it), runs the silver SQL, compares. */
async function verdict(receiver: Receiver, tables: Array<{ target: string; expected: WorkloadRow[] }>): Promise<Verdict> {
  const v: Verdict = { lost: 0, wrong: 0, extra: 0, duplicates: 0, examples: [] };
  const store = await DevSinkStore.open(':memory:');
  try {
    for (const { target, expected } of tables) {
      const stored = receiver.stored.get(target) ?? [];
      v.duplicates += stored.length - new Set(stored.map((r) => (JSON.parse(r) as { _event_id: string })._event_id)).size;
      if (stored.length === 0) {
        v.lost += expected.length;
        continue;
      }
      await store.append(target, stored);
      for (const statement of silverViewSql({ label: target, target, primaryKey: ['id'], carryForward: true })
        .split(';')
        .map((s) => s.trim())
        .filter(Boolean)) {
        await store.query(statement);
      }
      const rows = await store.query(`SELECT id, body, note, n FROM ${silverName(target)}`);
      const actual = new Map(
        rows.map((r) => [
          String(r.id),
          { id: String(r.id), body: (r.body as string) ?? null, note: (r.note as string) ?? null, n: (r.n as string) ?? null },
        ]),
      );
      for (const e of expected) {
        const a = actual.get(e.id);
        if (!a) {
          v.lost += 1;
          if (v.examples.length < 5) v.examples.push(`${target}: lost ${e.id}`);
        } else if (JSON.stringify(a) !== JSON.stringify(e)) {
          v.wrong += 1;
          if (v.examples.length < 5) v.examples.push(`${target}: wrong ${e.id}: ${JSON.stringify(a)} != ${JSON.stringify(e)}`);
        }
        actual.delete(e.id);
      }
      v.extra += actual.size;
      for (const id of [...actual.keys()].slice(0, 5 - Math.min(5, v.examples.length))) v.examples.push(`${target}: extra ${id}`);
    }
  } finally {
    await store.close();
  }
  return v;
}

describe('Debezium ingest under chaos', () => {
  const prefix = uniqueName('dbzc');
  const stream = `${uniqueName('dbserver')}.public.items`;
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-dbz-chaos-'));
  let receiver: Receiver;
  let redis: Redis;
  let configPath: string;
  const procs: Array<{ port: number; child?: ChildProcess }> = [];

  beforeAll(async () => {
    receiver = await startReceiver('k');
    redis = new Redis(REDIS_URL);
    configPath = join(dir, 'pushsync.yaml');
    writeFileSync(
      configPath,
      `redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: k, attempts: 100, backoff: { base: 50ms, cap: 1s, jitter: 0.2 }, timeout: 5s }
extract: { leaseTtl: 2s }
sources:
  - name: legacy
    kind: debezium
    http: { token: ${TOKEN} }
    redisStreams: { url: ${REDIS_URL}, streams: [${stream}], group: pushsync, claimIdle: 1s, batch: 20 }
    flushInterval: 100ms
    maxBufferedBytes: 2097152
    tables:
      - { name: public.orders, primaryKey: [id], batchRows: 40 }
      - { name: public.items, batchRows: 40 }
web: { port: 0 }
log: { level: warn }
`,
    );
    for (let i = 0; i < 2; i++) procs.push({ port: await freePort() });
  });
  afterAll(async () => {
    for (const p of procs) p.child?.kill('SIGKILL');
    await receiver.close();
    await redis.del(stream);
    await redis.quit();
    await dropRedisPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  function start(p: { port: number; child?: ChildProcess }): void {
    const log = openSync(join(dir, `pushsync-${p.port}.log`), 'a');
    p.child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', configPath, 'start', '--port', String(p.port)], {
      cwd: ROOT,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
  }
  function kill(p: { child?: ChildProcess }): Promise<void> {
    const child = p.child;
    p.child = undefined;
    if (!child || child.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** Until every process answers its health check (a restart takes a few seconds: tsx compiles the sources). */
  async function ready(): Promise<void> {
    for (let i = 0; i < 300; i++) {
      const up = await Promise.all(
        procs.map((p) =>
          request(`http://127.0.0.1:${p.port}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000 })
            .then(async (r) => (await r.body.dump(), r.statusCode === 200))
            .catch(() => false),
        ),
      );
      if (up.every(Boolean)) return;
      await sleep(100);
    }
    throw new Error('the pushsync processes did not come up');
  }

  /** Debezium Server's HTTP sink: the same event again until some process acknowledges it with a 2xx. */
  async function sendHttp(body: string, attempt = 0): Promise<number> {
    for (let tries = 0; ; tries++) {
      const p = procs[(attempt + tries) % procs.length]!;
      try {
        const res = await request(`http://127.0.0.1:${p.port}/ingest/debezium`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
          body,
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) return tries;
      } catch {
        // refused or reset by a killed process: send again
      }
      await sleep(20);
    }
  }

  it('loses nothing: silver equals the final state after kills, restarts and a failing destination', async () => {
    const random = prng(SEED);
    const orders: Workload = debeziumWorkload({ seed: SEED, table: 'orders', keys: 60, changes: 500 });
    const items: Workload = debeziumWorkload({ seed: SEED + 1, table: 'items', keys: 60, changes: 500, firstLsn: 5000 });
    for (const p of procs) start(p);
    await ready();

    let kills = 0;
    let producing = true;
    const faults: Behaviour[] = [
      { kind: 'status', status: 503 },
      { kind: 'store-then-reset' },
      { kind: 'status', status: 429, retryAfter: '1' },
      { kind: 'reset' },
    ];
    // The fault schedule: once both processes serve, one is killed while the destination fails for a while, then
    // restarted; in turns, while the producers send.
    const chaos = (async () => {
      while (producing && kills < MAX_KILLS) {
        await ready();
        await sleep(500 + Math.floor(random() * 1500));
        if (!producing) break;
        const p = procs[Math.floor(random() * procs.length)]!;
        await kill(p);
        kills += 1;
        receiver.setDefault(faults[Math.floor(random() * faults.length)]!);
        await sleep(300 + Math.floor(random() * 900));
        receiver.setDefault({ kind: 'ok' });
        start(p);
      }
    })();

    // The producers: HTTP one event per request for orders, the Redis sink's stream (extended format) for items.
    // Paced so that the changes keep coming while processes die and come back.
    const httpProducer = (async () => {
      for (const [i, s] of orders.steps.entries()) {
        await sendHttp(s.event, i);
        await sleep(PACE_MS);
      }
    })();
    const streamProducer = (async () => {
      for (const s of items.steps) {
        await redis.xadd(stream, '*', 'key', s.key, 'value', s.event);
        await sleep(PACE_MS);
      }
    })();
    await Promise.all([httpProducer, streamProducer]);
    producing = false;
    await chaos;
    receiver.setDefault({ kind: 'ok' });
    for (const p of procs) if (!p.child) start(p);

    const tables = [
      { target: 'bronze.legacy_orders', expected: sortedRows(orders.states[orders.states.length - 1]!) },
      { target: 'bronze.legacy_items', expected: sortedRows(items.states[items.states.length - 1]!) },
    ];
    // A push job held by a killed process is handed on once its lease lapses (about 25 s), stream entries after claimIdle.
    let v = await verdict(receiver, tables);
    for (let i = 0; i < 60 && (v.lost > 0 || v.wrong > 0 || v.extra > 0); i++) {
      await sleep(1000);
      v = await verdict(receiver, tables);
    }
    const failed = new Queue('push', { connection: { url: REDIS_URL }, prefix });
    const deadLetters = await failed.getFailedCount();
    await failed.close();
    const events = orders.steps.length + items.steps.length;
    const records = [...receiver.stored.values()].reduce((n, rows) => n + rows.length, 0);
    console.log(
      `debezium chaos seed=${SEED}: events=${events} records=${records} kills=${kills} dead_letters=${deadLetters} lost=${v.lost} wrong=${v.wrong} extra=${v.extra} duplicates=${v.duplicates}`,
    );
    if (v.examples.length > 0 || deadLetters > 0) {
      console.log(v.examples.join('\n'));
      for (const f of readdirSync(dir).filter((x) => x.endsWith('.log'))) console.log(`--- ${f}\n${readFileSync(join(dir, f), 'utf8').slice(-3000)}`);
    }
    expect({ lost: v.lost, wrong: v.wrong, extra: v.extra, deadLetters }).toEqual({ lost: 0, wrong: 0, extra: 0, deadLetters: 0 });
    expect(kills).toBeGreaterThan(2);
    // Everything delivered left Redis: the buffer is empty, no stream entry is pending. Entries leave the buffer when
    // the push job that carried them completes; one killed after sending and before completing is run again (sending
    // a duplicate) once its lease lapses, about 25 s.
    const buffered = async (): Promise<number> => Number((await redis.get(`${prefix}:ingest:legacy:bytes`)) ?? 0);
    for (let i = 0; i < 120 && (await buffered()) !== 0; i++) await sleep(500);
    expect(await buffered()).toBe(0);
    expect(Number(((await redis.xpending(stream, 'pushsync')) as [number])[0])).toBe(0);
  }, 300_000);
});
