/**
 * A CDC liveness check (`npx tsx test/chaos/cdc-cycles.ts`): pushsync's CDC reader on a Sentinel group, with a
 * PostgreSQL restart and a Sentinel failover close together (in an order and gap drawn from the seed), then a
 * SIGKILL of every worker, cycle after cycle; after each cycle a newly inserted marker row must arrive within 90 s.
 * Stops at the first cycle whose marker does not arrive and prints what pushsync knows: status, the slot, the CDC
 * state and lease in Redis, the extract schedules and the workers' warning, error and stream lines.
 * `CHAOS_CYCLES` (10), `CHAOS_SEED` (1), `CHAOS_LOG_DIR`, `CHAOS_HOLD_SECONDS` (keep a stalled run up).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ChaosPostgres } from './services.js';
import { SENTINEL_MASTER, TestSentinelGroup } from '../helpers/redis-ha.js';
import { startReceiver } from '../helpers/receiver.js';
import { Fleet, pushsyncStatus } from './fleet.js';
import { prng } from '../helpers/prng.js';

const CYCLES = Number(process.env.CHAOS_CYCLES ?? 10);
const SEED = Number(process.env.CHAOS_SEED ?? 1);
const log = (msg: string): void => void process.stdout.write(`[cycles ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

async function main(): Promise<void> {
  const random = prng(SEED);
  const dir = mkdtempSync(join(tmpdir(), 'cdc-cycles-'));
  const logDir = process.env.CHAOS_LOG_DIR ?? join(dir, 'logs');
  const sentinels = await TestSentinelGroup.start(2, 3);
  const pgServer = await ChaosPostgres.start({ logical: true });
  const receiver = await startReceiver('k');
  const admin = await pgServer.client();
  await admin.query(`CREATE TABLE items (id bigint PRIMARY KEY, v int, updated_at timestamptz NOT NULL DEFAULT now())`);
  await admin.end();
  writeFileSync(
    join(dir, 'pushsync.yaml'),
    `redis: { sentinel: { nodes: [${sentinels.nodes.join(', ')}], masterName: ${SENTINEL_MASTER} }, prefix: cycles, waitReplicas: 1 }
destination: { url: ${receiver.url}, apiKey: k, attempts: 40, backoff: { base: 200ms, cap: 2s, jitter: 0.5 }, timeout: 5s }
extract: { concurrency: 2, maxPendingBatches: 10, leaseTtl: 3s, attempts: 20 }
sources:
  - name: app
    kind: postgres
    url: ${pgServer.url}
    mode: cdc
    cdc: { every: 1s, maxRunTime: 20s }
    tables:
      - { name: items, target: bronze.items }
log: { level: info }
`,
  );
  const fleet = new Fleet(join(dir, 'pushsync.yaml'), logDir);
  fleet.start('scheduler', ['scheduler']);
  fleet.start('w1', ['extract', 'push']);
  fleet.start('w2', ['extract', 'push']);
  let nextId = 1;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      const c = await pgServer.client().catch(() => undefined);
      if (c) {
        for (let i = 0; i < 20 && writing; i++) {
          const id = nextId++;
          const ok = await c.query(`INSERT INTO items (id, v) VALUES ($1, 0)`, [id]).then(
            () => true,
            () => false,
          );
          if (!ok) break;
          await sleep(30 + Math.floor(random() * 100));
        }
        await c.end().catch(() => {});
      } else await sleep(200);
    }
  })();
  const arrived = (id: number): boolean =>
    (receiver.stored.get('bronze.items') ?? []).some((r) => (JSON.parse(r) as { id: string }).id === String(id));
  const marker = async (): Promise<number> => {
    for (;;) {
      const c = await pgServer.client().catch(() => undefined);
      if (c) {
        const id = 1_000_000 + nextId++;
        const ok = await c.query(`INSERT INTO items (id, v) VALUES ($1, 1)`, [id]).then(
          () => true,
          () => false,
        );
        await c.end().catch(() => {});
        if (ok) return id;
      }
      await sleep(200);
    }
  };
  let code = 0;
  try {
    const first = await marker();
    const t0 = Date.now();
    while (!arrived(first) && Date.now() - t0 < 120_000) await sleep(200);
    if (!arrived(first)) throw new Error('nothing arrived at the start');
    log('first marker arrived');
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const order = random();
      const gap = Math.floor(random() * 3000);
      const killGap = Math.floor(random() * 4000);
      log(`cycle ${cycle}: order ${order.toFixed(2)} gap ${gap} killGap ${killGap}`);
      const failover = async (): Promise<void> => {
        const { killed, promoted } = await sentinels.killMaster();
        log(`promoted ${promoted} in place of ${killed}`);
        await sleep(1000);
        await sentinels.revive(killed);
        log(`${killed} back as a replica`);
      };
      let f: Promise<void>;
      if (order < 0.5) {
        f = failover();
        await sleep(gap);
        log('restart postgres');
        await pgServer.restart();
      } else {
        log('restart postgres');
        await pgServer.restart();
        await sleep(gap);
        f = failover();
      }
      await f;
      await sleep(killGap);
      log('SIGKILL every worker');
      await Promise.all([fleet.kill('w1'), fleet.kill('w2')]);
      await sleep(300);
      fleet.start('w1', ['extract', 'push']);
      fleet.start('w2', ['extract', 'push']);
      const id = await marker();
      const t = Date.now();
      while (!arrived(id) && Date.now() - t < 90_000) await sleep(250);
      if (arrived(id)) {
        log(`cycle ${cycle}: marker ${id} arrived after ${Date.now() - t} ms`);
        continue;
      }
      log(`cycle ${cycle}: marker ${id} did not arrive in 90 s: STALL`);
      code = 1;
      log(`status:
${pushsyncStatus(join(dir, 'pushsync.yaml'))}`);
      const c = await pgServer.client();
      log(JSON.stringify((await c.query(`SELECT * FROM pg_replication_slots`)).rows));
      log(JSON.stringify((await c.query(`SELECT pid, application_name, state, backend_type, wait_event FROM pg_stat_activity`)).rows));
      await c.end();
      const master = await sentinels.masterPort();
      const r = new Redis({ port: master, host: '127.0.0.1' });
      for (const k of await r.keys('cycles:cdc:*')) log(`${k}: ${JSON.stringify(await r.hgetall(k))}`);
      for (const k of await r.keys('cycles:lock:*')) log(`${k}: ${await r.get(k)} pttl ${await r.pttl(k)}`);
      log(`extract schedulers: ${JSON.stringify(await r.zrange('cycles:extract:repeat', 0, -1, 'WITHSCORES'))}`);
      r.disconnect();
      for (const file of readdirSync(logDir).filter((f) => f.endsWith('.log'))) {
        const lines = readFileSync(join(logDir, file), 'utf8')
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l) || l.includes('stream'));
        log(`${file}: last of ${lines.length}`);
        for (const l of lines.slice(-40)) process.stdout.write(`  ${l.slice(0, 500)}\n`);
      }
      const hold = Number(process.env.CHAOS_HOLD_SECONDS ?? 0);
      if (hold > 0) {
        log(`holding ${hold}s: ${dir}`);
        await sleep(hold * 1000);
      }
      break;
    }
  } finally {
    writing = false;
    await writer;
    await fleet.stopAll();
    await receiver.close();
    await sentinels.stop();
    await pgServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  log(code === 0 ? 'no stall' : 'stalled');
  process.exit(code);
}

main().catch((err: unknown) => {
  process.stderr.write(`cdc-cycles failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
