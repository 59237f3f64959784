/**
 * The chaos suite (`npm run test:chaos -- --seed N`): pushsync processes syncing a table under concurrent writers,
 * long transactions, bulk updates sharing one timestamp, soft deletes, a misbehaving destination with an outage,
 * SIGKILLed workers, and restarts of Redis and PostgreSQL. `--mode cdc` syncs by logical replication instead, adds hard
 * deletes, and twice near the end commits a long transaction right after an idle moment (when the reader has just
 * acknowledged a keepalive) and SIGKILLs the workers before the next flush. At the end the current state rebuilt from everything the
 * destination stored must equal the source. Prints `lost=N wrong=N extra=N duplicates=N` and fails unless lost,
 * wrong and extra are 0. The fault schedule is deterministic under the seed.
 *
 * `--redis sentinel` runs on a Sentinel group (a master, two replicas, three sentinels) and, instead of restarting
 * Redis, twice SIGKILLs the master mid-sync so the sentinels promote a replica (the killed node returns as a replica); `--redis cluster` runs on a
 * 3-master Redis Cluster with a replica per master and SIGKILLs the master of pushsync's slot.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { ChaosPostgres, ChaosRedis } from './services.js';
import { SENTINEL_MASTER, TestRedisCluster, TestSentinelGroup } from '../helpers/redis-ha.js';
import { startChaosReceiver, type ChaosReceiver } from './receiver.js';
import { Fleet, pushsyncStatus } from './fleet.js';
import { prng } from '../helpers/prng.js';
import { WriterLoop } from './writer-loop.js';
import { lateCommitKills, runSchedule, workerKills, type ChaosEvent } from './schedule.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const seedArg = process.argv.indexOf('--seed');
const SEED = Number(seedArg > 0 ? process.argv[seedArg + 1] : (process.env.CHAOS_SEED ?? 1));
const modeArg = process.argv.indexOf('--mode');
const MODE = (modeArg > 0 ? process.argv[modeArg + 1] : (process.env.CHAOS_MODE ?? 'watermark')) as 'watermark' | 'cdc';
if (MODE !== 'watermark' && MODE !== 'cdc') throw new Error(`--mode must be watermark or cdc, not ${String(MODE)}`);
const readArg = process.argv.indexOf('--backfill-read');
/** `--backfill-read copy`: the Postgres source reads with `backfillRead: copy` (COPY text turned into JSON by pushsync). */
const BACKFILL_READ = readArg > 0 ? process.argv[readArg + 1] : (process.env.CHAOS_BACKFILL_READ ?? 'json');
if (BACKFILL_READ !== 'json' && BACKFILL_READ !== 'copy') throw new Error(`--backfill-read must be json or copy, not ${String(BACKFILL_READ)}`);
const redisArg = process.argv.indexOf('--redis');
const REDIS = (redisArg > 0 ? process.argv[redisArg + 1] : (process.env.CHAOS_REDIS ?? 'single')) as 'single' | 'sentinel' | 'cluster';
if (!['single', 'sentinel', 'cluster'].includes(REDIS)) throw new Error(`--redis must be single, sentinel or cluster, not ${String(REDIS)}`);
const WRITE_SECONDS = Number(process.env.CHAOS_WRITE_SECONDS ?? 40);
/**
 * `CHAOS_LOG_DIR=<dir>`: where the workers log, at info level, into `<dir>/<worker>.log`. By default they log there
 * too, in the run's temporary directory, and a run that does not converge prints the end of each worker's log.
 */
const LOG_DIR = process.env.CHAOS_LOG_DIR;
/** Lines of each worker's log a run that does not converge prints. */
const LOG_TAIL_LINES = 60;
const INITIAL_ROWS = 5000;
/**
 * Ids from LATE_BASE - 100 on are touched only by late transactions: no later write repairs a late transaction's
 * rows (a CDC record is read when sent, so any later change of a row would re-send it and mask a lost commit).
 */
const LATE_BASE = 1_000_000_000;

const log = (msg: string): void => void process.stdout.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface Rec {
  _op: string;
  _event_id: string;
  _ordering: string | null;
  _extracted_at: string;
  id: string;
  v: number | null;
  note: string | null;
  updated_at: string;
}

interface Verdict {
  lost: number;
  wrong: number;
  extra: number;
  duplicates: number;
  examples: string[];
}

async function verdict(client: pg.Client, stored: string[]): Promise<Verdict> {
  const records = stored.map((r) => JSON.parse(r) as Rec);
  const newest = new Map<string, Rec>();
  for (const r of records) {
    const prev = newest.get(r.id);
    const newer =
      !prev ||
      (r._ordering ?? '') > (prev._ordering ?? '') ||
      ((r._ordering ?? '') === (prev._ordering ?? '') && r._extracted_at >= prev._extracted_at);
    if (newer) newest.set(r.id, r);
  }
  const { rows } = await client.query<{ id: string; v: number | null; note: string | null; ts: string }>(
    `SELECT id::text, v, note, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS ts FROM items WHERE deleted_at IS NULL`,
  );
  const source = new Map(rows.map((r) => [r.id, r]));
  const v: Verdict = { lost: 0, wrong: 0, extra: 0, duplicates: records.length - new Set(records.map((r) => r._event_id)).size, examples: [] };
  const ts = (text: string): string => {
    const m = /^(.{19})(?:\.(\d+))?\+00:00$/.exec(text);
    return m ? `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}` : text;
  };
  for (const [id, s] of source) {
    const r = newest.get(id);
    if (!r || r._op === 'delete') {
      v.lost += 1;
      if (v.examples.length < 5) v.examples.push(`lost ${id}`);
    } else if (r.v !== s.v || r.note !== s.note || ts(r.updated_at) !== s.ts) {
      v.wrong += 1;
      if (v.examples.length < 5)
        v.examples.push(`wrong ${id}: got v=${r.v} note=${r.note} at ${r.updated_at}, source v=${s.v} note=${s.note} at ${s.ts}`);
    }
  }
  for (const [id, r] of newest) {
    if (r._op !== 'delete' && !source.has(id)) {
      v.extra += 1;
      if (v.examples.length < 5) v.examples.push(`extra ${id}`);
    }
  }
  return v;
}

class Writers extends WriterLoop {
  private lateRows = 0;
  private nextId = INITIAL_ROWS + 1;

  /** Runs an operation on a fresh connection; one interrupted by a restart is simply abandoned. */
  private async withClient(fn: (c: pg.Client) => Promise<void>): Promise<void> {
    let c: pg.Client | undefined;
    try {
      c = await this.pgServer.client();
      await fn(c);
      this.ops += 1;
    } catch {
      // The database restarted under us: the source is whatever committed, which is what the check compares.
    } finally {
      await c?.end().catch(() => {});
    }
  }

  constructor(
    private readonly pgServer: ChaosPostgres,
    random: () => number,
    private readonly hardDeletes: boolean,
  ) {
    super(random);
  }

  /**
   * A long transaction that commits right after an idle moment: its rows are written (and flushed) first, then the
   * writers pause so the reader catches up and acknowledges the server's position, then it commits, and `afterCommit`
   * runs at once (it kills the reader before its next flush).
   */
  async lateCommitAfterIdle(idleMs: number, afterCommit: () => Promise<void>): Promise<void> {
    const c = await this.pgServer.client();
    try {
      const from = LATE_BASE - 100 + this.int(90);
      const first = LATE_BASE + this.lateRows;
      this.lateRows += 5;
      await c.query('BEGIN');
      await c.query(`UPDATE items SET v = v + 1000, note = 'late' WHERE id BETWEEN $1::bigint AND $1::bigint + 10`, [from]);
      await c.query(`INSERT INTO items (id, v, note) SELECT g, 0, 'late-new' FROM generate_series($1::bigint, $2::bigint) g`, [first, first + 4]);
      await this.pause();
      // A committed transaction flushes the WAL, so the reader sees (and acknowledges past) the late rows' records.
      await this.withClient((x) => x.query(`SELECT pg_current_xact_id()`).then(() => undefined));
      await sleep(idleMs);
      await c.query('COMMIT');
      this.ops += 1;
      await afterCommit();
    } finally {
      this.resume();
      await c.end().catch(() => {});
    }
  }

  protected async step(): Promise<void> {
    const roll = this.random();
    const span = this.nextId;
    if (roll < 0.3) {
      const first = this.nextId;
      const count = 1 + this.int(50);
      this.nextId += count;
      await this.withClient((c) =>
        c
          .query(`INSERT INTO items (id, v, note) SELECT g, 0, 'new' FROM generate_series($1::bigint, $2::bigint) g`, [first, first + count - 1])
          .then(() => undefined),
      );
    } else if (this.hardDeletes && roll < 0.4) {
      const from = 1 + this.int(span);
      await this.withClient((c) => c.query(`DELETE FROM items WHERE id BETWEEN $1::bigint AND $1::bigint + 2`, [from]).then(() => undefined));
    } else if (roll < 0.6) {
      const from = 1 + this.int(span);
      await this.withClient((c) =>
        c.query(`UPDATE items SET v = v + 1, note = 'upd' WHERE id BETWEEN $1::bigint AND $1::bigint + 20`, [from]).then(() => undefined),
      );
    } else if (roll < 0.7) {
      const from = 1 + this.int(span);
      await this.withClient((c) =>
        c
          .query(`UPDATE items SET deleted_at = now() WHERE id BETWEEN $1::bigint AND $1::bigint + 3 AND deleted_at IS NULL`, [from])
          .then(() => undefined),
      );
    } else if (roll < 0.78) {
      // Thousands of rows sharing one updated_at: a bulk update in one statement.
      const from = 1 + this.int(Math.max(1, span - 3000));
      await this.withClient((c) =>
        c.query(`UPDATE items SET v = v + 10, note = 'bulk' WHERE id BETWEEN $1::bigint AND $1::bigint + 2999`, [from]).then(() => undefined),
      );
    } else if (roll < 0.86) {
      // A long transaction: its rows carry its start time, and it commits after others did and were synced.
      const from = 1 + this.int(span);
      const holdMs = 2000 + this.int(4000);
      const first = this.nextId;
      this.nextId += 5;
      await this.withClient(async (c) => {
        await c.query('BEGIN');
        await c.query(`UPDATE items SET v = v + 100, note = 'long' WHERE id BETWEEN $1::bigint AND $1::bigint + 10`, [from]);
        await c.query(`INSERT INTO items (id, v, note) SELECT g, 0, 'long-new' FROM generate_series($1::bigint, $2::bigint) g`, [first, first + 4]);
        await sleep(holdMs);
        await c.query('COMMIT');
      });
    } else {
      await sleep(50 + this.int(200));
    }
  }
}

async function main(): Promise<void> {
  const random = prng(SEED);
  const faultRandom = prng(SEED * 7919 + 1);
  const started = Date.now();
  log(`seed ${SEED}, mode ${MODE}, redis ${REDIS}`);
  const dir = mkdtempSync(join(tmpdir(), 'chaos-'));
  const redis = REDIS === 'single' ? await ChaosRedis.start() : undefined;
  const sentinels = REDIS === 'sentinel' ? await TestSentinelGroup.start(2, 3) : undefined;
  const cluster = REDIS === 'cluster' ? await TestRedisCluster.start(3, 1) : undefined;
  const redisConfig = sentinels
    ? `{ sentinel: { nodes: [${sentinels.nodes.join(', ')}], masterName: ${SENTINEL_MASTER} }, prefix: chaos, waitReplicas: 1 }`
    : cluster
      ? `{ cluster: { nodes: [${cluster.nodes.join(', ')}] }, prefix: chaos, waitReplicas: 1 }`
      : `{ url: ${redis!.url}, prefix: chaos }`;
  const pgServer = await ChaosPostgres.start({ logical: MODE === 'cdc' });
  const receiver: ChaosReceiver = await startChaosReceiver(faultRandom, 'chaos-key');
  const logDir = LOG_DIR ?? join(dir, 'logs');
  const fleet = new Fleet(join(dir, 'pushsync.yaml'), logDir);
  let exitCode = 1;
  try {
    const admin = await pgServer.client();
    await admin.query(`
      CREATE TABLE items (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), v int, note text, deleted_at timestamptz);
      CREATE INDEX ON items (updated_at, id);
      CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
      CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
      INSERT INTO items (id, v, note) SELECT g, 0, 'initial' FROM generate_series(1, ${INITIAL_ROWS}) g;
      INSERT INTO items (id, v, note) SELECT g, 0, 'reserved' FROM generate_series(${LATE_BASE - 100}, ${LATE_BASE - 1}) g;`);
    await admin.end();
    writeFileSync(
      join(dir, 'pushsync.yaml'),
      `redis: ${redisConfig}
destination:
  url: ${receiver.url}
  apiKey: chaos-key
  attempts: 40
  backoff: { base: 200ms, cap: 2s, jitter: 0.5 }
  timeout: 5s
  concurrency: 4
extract: { concurrency: 2, maxPendingBatches: 10, leaseTtl: 3s, attempts: 20 }
sources:
  - name: app
    kind: postgres
    url: ${pgServer.url}
    backfillRead: ${BACKFILL_READ}
${
  MODE === 'cdc'
    ? `    mode: cdc
    cdc: { every: 1s, maxRunTime: 20s }
    tables:
      - { name: items, batchRows: 250, softDelete: { column: deleted_at } }`
    : `    tables:
      - { name: items, watermark: updated_at, every: 1s, batchRows: 250, softDelete: { column: deleted_at } }`
}
log: { level: info }
`,
    );
    fleet.start('scheduler', ['scheduler']);
    fleet.start('w1', ['extract', 'push']);
    fleet.start('w2', ['extract', 'push']);
    const writers = new Writers(pgServer, random, MODE === 'cdc');
    writers.start(3);
    // The fault schedule, fixed by the seed: drawn now, timed from when pushsync delivers its first rows (below).
    const events: ChaosEvent[] = workerKills(random, fleet);
    if (redis) events.push({ fraction: 0.3, name: 'restart redis', run: () => redis.restart(1000) });
    if (sentinels) {
      for (const fraction of [0.3, 0.55]) {
        events.push({
          fraction,
          name: 'SIGKILL the Redis master (sentinel failover)',
          run: async () => {
            const started = Date.now();
            const { killed, promoted } = await sentinels.killMaster();
            log(`sentinels promoted 127.0.0.1:${promoted} in place of 127.0.0.1:${killed} after ${Date.now() - started} ms`);
            await sleep(1000);
            await sentinels.revive(killed);
            log(`127.0.0.1:${killed} back as a replica`);
          },
        });
      }
    }
    if (cluster) {
      events.push({
        fraction: 0.3,
        name: "SIGKILL the master of pushsync's cluster slot (cluster failover)",
        run: async () => {
          const started = Date.now();
          const killed = await cluster.masterOf('{chaos}');
          await cluster.kill(killed);
          let promoted = killed;
          while (promoted === killed && Date.now() - started < 30_000) {
            await sleep(200);
            promoted = await cluster.masterOf('{chaos}').catch(() => killed);
          }
          log(`cluster promoted 127.0.0.1:${promoted} in place of 127.0.0.1:${killed} after ${Date.now() - started} ms`);
        },
      });
    }
    events.push({ fraction: 0.5, name: 'restart postgres', run: () => pgServer.restart() });
    const memory: number[] = [];
    events.push({
      fraction: 0.65,
      name: 'destination outage (8 s)',
      run: async () => {
        receiver.setOutage(true);
        for (let i = 0; i < 16; i++) {
          if (redis) memory.push(await redis.usedMemory().catch(() => 0));
          await sleep(500);
        }
        receiver.setOutage(false);
      },
    });
    if (MODE === 'cdc') events.push(...lateCommitKills(random, fleet, (idleMs, after) => writers.lateCommitAfterIdle(idleMs, after)));
    // On a busy machine pushsync's processes take a while to start, and faults that all land before it works test
    // nothing. The writers started at once, so the initial read still overlaps with writes.
    const launched = Date.now();
    while (receiver.rows.length === 0 && Date.now() < launched + 180_000) await sleep(100);
    log(`first rows delivered after ${Math.round((Date.now() - launched) / 1000)} s`);
    const clock = Date.now();
    await runSchedule(events, clock, WRITE_SECONDS * 1000, log);
    await sleep(Math.max(0, clock + WRITE_SECONDS * 1000 - Date.now()));
    await writers.stop();
    const stoppedAt = Date.now();
    log(`writers stopped after ${writers.ops} operations; waiting for pushsync to catch up`);

    const check = await pgServer.client();
    let v = await verdict(check, receiver.rows);
    const deadline = Date.now() + 150_000;
    let retried = false;
    while ((v.lost > 0 || v.wrong > 0 || v.extra > 0) && Date.now() < deadline) {
      await sleep(2000);
      if (!retried && Date.now() > deadline - 90_000) {
        retried = true;
        const res = spawnSync(
          process.execPath,
          ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', join(dir, 'pushsync.yaml'), 'dlq', 'retry', '--all'],
          { cwd: ROOT, timeout: 60_000 },
        );
        log(`dead-letter queue: ${res.stdout.toString().trim()}`);
      }
      v = await verdict(check, receiver.rows);
    }
    await check.end();
    if (v.lost + v.wrong + v.extra > 0) {
      // What pushsync itself says of the run: the reader, the queues and the dead letters, for the next reader of this log.
      log(`status:
${pushsyncStatus(join(dir, 'pushsync.yaml'))}`);
      // The workers' own account, from its end: warnings and errors, and the change stream opening and ending.
      for (const file of readdirSync(logDir).filter((f) => f.endsWith('.log'))) {
        const lines = readFileSync(join(logDir, file), 'utf8')
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l) || l.includes('stream'));
        log(`${file}, last ${Math.min(LOG_TAIL_LINES, lines.length)} of ${lines.length} warning, error and stream lines:`);
        for (const l of lines.slice(-LOG_TAIL_LINES)) process.stdout.write(`  ${l.slice(0, 600)}\n`);
      }
      // CHAOS_HOLD_SECONDS=N keeps the services and workers of a failed run up for N s, to be looked at by hand.
      const hold = Number(process.env.CHAOS_HOLD_SECONDS ?? 0);
      if (hold > 0) {
        log(`holding for ${hold} s: config ${join(dir, 'pushsync.yaml')}, postgres ${pgServer.url}`);
        await sleep(hold * 1000);
      }
    }
    log(`${v.lost + v.wrong + v.extra === 0 ? 'converged' : 'gave up'} ${Math.round((Date.now() - stoppedAt) / 1000)} s after the writers stopped`);
    log(`destination answers: ${JSON.stringify(receiver.faults)}; rows stored: ${receiver.rows.length}`);
    if (memory.length > 0) {
      log(`redis used_memory during outage: min=${Math.min(...memory)} max=${Math.max(...memory)} bytes (maxPendingBatches=10)`);
    }
    for (const e of v.examples) log(e);
    log(`run took ${Math.round((Date.now() - started) / 1000)} s`);
    process.stdout.write(`lost=${v.lost} wrong=${v.wrong} extra=${v.extra} duplicates=${v.duplicates}\n`);
    exitCode = v.lost === 0 && v.wrong === 0 && v.extra === 0 ? 0 : 1;
  } finally {
    await fleet.stopAll();
    await receiver.close();
    await redis?.stop();
    await sentinels?.stop();
    await cluster?.stop();
    await pgServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(exitCode);
}

const sourceArg = process.argv.indexOf('--source');
const SOURCE = sourceArg > 0 ? process.argv[sourceArg + 1] : (process.env.CHAOS_SOURCE ?? 'postgres');
if (SOURCE !== 'postgres' && SOURCE !== 'mariadb') throw new Error(`--source must be postgres or mariadb, not ${String(SOURCE)}`);
(SOURCE === 'mariadb' ? import('./mariadb.js').then((m) => m.runMariadbChaos(SEED, MODE, WRITE_SECONDS)) : main()).catch((err: unknown) => {
  process.stderr.write(`chaos suite failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
