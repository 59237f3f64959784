/**
 * The chaos suite with a MariaDB source (`npm run test:chaos -- --source mariadb --mode watermark|cdc --seed N`):
 * pushsync syncs a table of a private MariaDB under concurrent writers, long transactions that commit late, bulk
 * updates giving thousands of rows one second-precision TIMESTAMP, soft and hard deletes (in watermark mode found by
 * reconciliation), a misbehaving destination with an outage, SIGKILLed workers, and restarts of Redis and MariaDB.
 * `--mode cdc` reads the binlog and twice commits a long transaction right after an idle moment, SIGKILLing every
 * worker before the next flush. At the end the current state rebuilt from everything the destination stored must
 * equal the source: prints `lost=N wrong=N extra=N duplicates=N` and fails unless lost, wrong and extra are 0.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type mysql from 'mysql2/promise';
import { ChaosRedis } from './services.js';
import { ChaosMariadb } from './mariadb-server.js';
import { startChaosReceiver } from './receiver.js';
import { Fleet } from './fleet.js';
import { lateCommitKills, runSchedule, workerKills, type ChaosEvent } from './schedule.js';
import { prng } from '../helpers/prng.js';
import { WriterLoop } from './writer-loop.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const INITIAL_ROWS = 5000;
/** Ids from LATE_BASE - 100 on are touched only by late transactions (see run.ts). */
const LATE_BASE = 1_000_000_000;

const log = (msg: string): void => void process.stdout.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface Rec {
  _op: string;
  _event_id: string;
  _ordering: string | null;
  _extracted_at: string;
  id: string | number;
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

async function rowsAsText(c: mysql.Connection, sql: string): Promise<Array<Array<string | null>>> {
  const [rows] = await c.query({ sql, rowsAsArray: true, typeCast: (field) => field.string('utf8') });
  return rows as Array<Array<string | null>>;
}

/** Compares the newest record per key with the source, as the server prints it (TIMESTAMP in UTC with +00:00). */
async function verdict(client: mysql.Connection, stored: string[]): Promise<Verdict> {
  const records = stored.map((r) => JSON.parse(r) as Rec);
  const newest = new Map<string, Rec>();
  for (const r of records) {
    const id = String(r.id);
    const prev = newest.get(id);
    const newer =
      !prev ||
      (r._ordering ?? '') > (prev._ordering ?? '') ||
      ((r._ordering ?? '') === (prev._ordering ?? '') && r._extracted_at >= prev._extracted_at);
    if (newer) newest.set(id, r);
  }
  const rows = await rowsAsText(
    client,
    `SELECT CAST(id AS CHAR), CAST(v AS CHAR), note, DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%s+00:00') FROM items WHERE deleted_at IS NULL`,
  );
  const source = new Map(rows.map(([id, v, note, ts]) => [id!, { v: v === null ? null : Number(v), note, ts }]));
  const v: Verdict = { lost: 0, wrong: 0, extra: 0, duplicates: records.length - new Set(records.map((r) => r._event_id)).size, examples: [] };
  for (const [id, s] of source) {
    const r = newest.get(id);
    if (!r || r._op === 'delete') {
      v.lost += 1;
      if (v.examples.length < 5) v.examples.push(`lost ${id}`);
    } else if (r.v !== s.v || r.note !== s.note || r.updated_at !== s.ts) {
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

/** `seq_a_to_b`: MariaDB's sequence engine, rows a … b. */
const seq = (a: number, b: number): string => `seq_${a}_to_${b}`;

class Writers extends WriterLoop {
  private lateRows = 0;
  private nextId = INITIAL_ROWS + 1;
  /** Committed operations by kind, and those abandoned (a restart, a deadlock). */
  readonly done: Record<string, number> = {};
  /** The first id of each committed hard delete (it removes up to three). */
  readonly hardDeletes: number[] = [];

  constructor(
    private readonly server: ChaosMariadb,
    random: () => number,
  ) {
    super(random);
  }

  /** Runs an operation on a fresh connection; one interrupted by a restart or a deadlock is simply abandoned. */
  private async withClient(kind: string, fn: (c: mysql.Connection) => Promise<unknown>): Promise<void> {
    let c: mysql.Connection | undefined;
    try {
      c = await this.server.client();
      await fn(c);
      this.ops += 1;
      this.done[kind] = (this.done[kind] ?? 0) + 1;
    } catch {
      // The source is whatever committed, which is what the check compares.
      this.done.abandoned = (this.done.abandoned ?? 0) + 1;
    } finally {
      c?.destroy();
    }
  }

  /**
   * A long transaction that commits right after an idle moment: the writers pause so the reader catches up and
   * acknowledges the end of the binlog, then it commits, and `afterCommit` runs at once (it kills every reader
   * before its next flush).
   */
  async lateCommitAfterIdle(idleMs: number, afterCommit: () => Promise<void>): Promise<void> {
    const c = await this.server.client();
    try {
      const from = LATE_BASE - 100 + this.int(90);
      const first = LATE_BASE + this.lateRows;
      this.lateRows += 5;
      await c.query('START TRANSACTION');
      await c.query(`UPDATE items SET v = v + 1000, note = 'late' WHERE id BETWEEN ? AND ? + 10`, [from, from]);
      await c.query(`INSERT INTO items (id, v, note) SELECT seq, 0, 'late-new' FROM ${seq(first, first + 4)}`);
      await this.pause();
      await sleep(idleMs);
      await c.query('COMMIT');
      this.ops += 1;
      this.done['late commit'] = (this.done['late commit'] ?? 0) + 1;
      await afterCommit();
    } finally {
      this.resume();
      c.destroy();
    }
  }

  protected async step(): Promise<void> {
    const roll = this.random();
    const span = this.nextId;
    if (roll < 0.3) {
      const first = this.nextId;
      const count = 1 + this.int(50);
      this.nextId += count;
      await this.withClient('insert', (c) => c.query(`INSERT INTO items (id, v, note) SELECT seq, 0, 'new' FROM ${seq(first, first + count - 1)}`));
    } else if (roll < 0.38) {
      const from = 1 + this.int(span);
      await this.withClient('hard delete', async (c) => {
        await c.query(`DELETE FROM items WHERE id BETWEEN ? AND ? + 2`, [from, from]);
        this.hardDeletes.push(from);
      });
    } else if (roll < 0.6) {
      const from = 1 + this.int(span);
      await this.withClient('update', (c) => c.query(`UPDATE items SET v = v + 1, note = 'upd' WHERE id BETWEEN ? AND ? + 20`, [from, from]));
    } else if (roll < 0.7) {
      const from = 1 + this.int(span);
      await this.withClient('soft delete', (c) =>
        c.query(`UPDATE items SET deleted_at = NOW(6) WHERE id BETWEEN ? AND ? + 3 AND deleted_at IS NULL`, [from, from]),
      );
    } else if (roll < 0.78) {
      // Thousands of rows sharing one second-precision updated_at: a bulk update in one statement.
      const from = 1 + this.int(Math.max(1, span - 3000));
      await this.withClient('bulk update', (c) =>
        c.query(`UPDATE items SET v = v + 10, note = 'bulk' WHERE id BETWEEN ? AND ? + 2999`, [from, from]),
      );
    } else if (roll < 0.86) {
      // A long transaction: its rows carry the time of its first statements, and it commits after others did and
      // were synced.
      const from = 1 + this.int(span);
      const holdMs = 2000 + this.int(4000);
      const first = this.nextId;
      this.nextId += 5;
      await this.withClient('long transaction', async (c) => {
        await c.query('START TRANSACTION');
        await c.query(`UPDATE items SET v = v + 100, note = 'long' WHERE id BETWEEN ? AND ? + 10`, [from, from]);
        await c.query(`INSERT INTO items (id, v, note) SELECT seq, 0, 'long-new' FROM ${seq(first, first + 4)}`);
        await sleep(holdMs);
        await c.query('COMMIT');
      });
    } else {
      await sleep(50 + this.int(200));
    }
  }
}

function configYaml(mode: 'watermark' | 'cdc', redisUrl: string, receiverUrl: string, sourceUrl: string): string {
  const tables =
    mode === 'cdc'
      ? `    mode: cdc
    cdc: { every: 1s, maxRunTime: 20s }
    tables:
      - { name: items, batchRows: 250, softDelete: { column: deleted_at } }`
      : `    tables:
      - name: items
        watermark: updated_at
        every: 1s
        batchRows: 250
        softDelete: { column: deleted_at }
        reconcile: { every: 5s, maxWait: 10s }`;
  return `redis: { url: ${redisUrl}, prefix: chaos }
destination:
  url: ${receiverUrl}
  apiKey: chaos-key
  attempts: 40
  backoff: { base: 200ms, cap: 2s, jitter: 0.5 }
  timeout: 5s
  concurrency: 4
extract: { concurrency: 2, maxPendingBatches: 10, leaseTtl: 3s, attempts: 20 }
sources:
  - name: app
    kind: mysql
    url: ${sourceUrl}
${tables}
log: { level: ${process.env.CHAOS_LOG_DIR ? 'info' : 'error'} }
`;
}

export async function runMariadbChaos(seed: number, mode: 'watermark' | 'cdc', writeSeconds: number): Promise<void> {
  const random = prng(seed);
  const faultRandom = prng(seed * 7919 + 1);
  const started = Date.now();
  log(`seed ${seed}, source mariadb, mode ${mode}`);
  const dir = mkdtempSync(join(tmpdir(), 'chaos-'));
  const redis = await ChaosRedis.start();
  const db = await ChaosMariadb.start({ binlog: mode === 'cdc' });
  const receiver = await startChaosReceiver(faultRandom, 'chaos-key');
  const configPath = join(dir, 'pushsync.yaml');
  const logDir = process.env.CHAOS_LOG_DIR;
  const fleet = new Fleet(configPath, logDir);
  let exitCode = 1;
  try {
    const admin = await db.client();
    await admin.query(`
      CREATE TABLE items (
        id bigint PRIMARY KEY,
        updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
        v int,
        note varchar(20),
        deleted_at datetime(6) NULL,
        KEY (updated_at, id)
      );
      INSERT INTO items (id, v, note) SELECT seq, 0, 'initial' FROM ${seq(1, INITIAL_ROWS)};
      INSERT INTO items (id, v, note) SELECT seq, 0, 'reserved' FROM ${seq(LATE_BASE - 100, LATE_BASE - 1)};`);
    admin.destroy();
    writeFileSync(configPath, configYaml(mode, redis.url, receiver.url, db.url));
    fleet.start('scheduler', ['scheduler']);
    fleet.start('w1', ['extract', 'push']);
    fleet.start('w2', ['extract', 'push']);
    // The faults start once pushsync delivers: on a busy machine its processes take a while to start, and the suite
    // is about what happens while it works (hard deletes then remove rows it already sent, for one).
    const backfill = Date.now();
    while (new Set(receiver.rows.map((r) => (JSON.parse(r) as Rec).id)).size < INITIAL_ROWS + 100 && Date.now() < backfill + 180_000)
      await sleep(250);
    log(`initial rows delivered after ${Math.round((Date.now() - backfill) / 1000)} s`);
    const writers = new Writers(db, random);
    writers.start(3);

    // The fault schedule, fixed by the seed, from when the writers start (setting up MariaDB takes a while).
    const writing = Date.now();
    const events: ChaosEvent[] = workerKills(random, fleet);
    events.push({ fraction: 0.3, name: 'restart redis', run: () => redis.restart(1000) });
    events.push({ fraction: 0.5, name: 'restart mariadb', run: () => db.restart(1000) });
    events.push({
      fraction: 0.65,
      name: 'destination outage (8 s)',
      run: async () => {
        receiver.setOutage(true);
        await sleep(8000);
        receiver.setOutage(false);
      },
    });
    if (mode === 'cdc') events.push(...lateCommitKills(random, fleet, (idleMs, after) => writers.lateCommitAfterIdle(idleMs, after)));
    await runSchedule(events, writing, writeSeconds * 1000, log);
    await sleep(Math.max(0, writing + writeSeconds * 1000 - Date.now()));
    await writers.stop();
    log(`writers stopped after ${writers.ops} operations (${JSON.stringify(writers.done)}); waiting for pushsync to catch up`);

    const check = await db.client();
    let v = await verdict(check, receiver.rows);
    // A busy machine may need long to work off thousands of changes through the faulty destination: the progress
    // lines (and, for cdc, the stream's position and lag) tell a slow catch-up from a stuck one.
    const deadline = Date.now() + 300_000;
    let retried = false;
    let progressAt = Date.now();
    const cli = (...args: string[]): string =>
      spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', configPath, ...args], { cwd: ROOT })
        .stdout.toString()
        .trim();
    while ((v.lost > 0 || v.wrong > 0 || v.extra > 0) && Date.now() < deadline) {
      await sleep(2000);
      if (Date.now() - progressAt > 30_000) {
        progressAt = Date.now();
        log(
          `catching up: lost=${v.lost} wrong=${v.wrong} extra=${v.extra}, rows stored ${receiver.rows.length}${mode === 'cdc' ? `; ${cli('cdc', 'status').split('\n')[0]}` : ''}`,
        );
      }
      if (!retried && Date.now() > deadline - 90_000) {
        retried = true;
        log(`dead-letter queue: ${cli('dlq', 'retry', '--all')}`);
      }
      v = await verdict(check, receiver.rows);
    }
    const [[sourceRows, deletedRows]] = (await rowsAsText(check, `SELECT COUNT(*), SUM(deleted_at IS NOT NULL) FROM items`)) as [[string, string]];
    const present = new Set((await rowsAsText(check, `SELECT CAST(id AS CHAR) FROM items`)).map(([id]) => id!));
    const received = new Set(receiver.rows.map((r) => String((JSON.parse(r) as Rec).id)));
    const hardDeleted = [...received].filter((id) => !present.has(id)).length;
    const deletedIds = new Set(writers.hardDeletes.flatMap((f) => [f, f + 1, f + 2].map(String)));
    log(
      `hard-deleted ids ${deletedIds.size}: ${[...deletedIds].filter((id) => present.has(id)).length} present, ${[...deletedIds].filter((id) => received.has(id)).length} received; ${writers.hardDeletes.slice(0, 5).join(',')}`,
    );
    const deletes = receiver.rows.filter((r) => (JSON.parse(r) as Rec)._op === 'delete').length;
    check.destroy();
    log(`destination answers: ${JSON.stringify(receiver.faults)}; rows stored: ${receiver.rows.length}`);
    log(
      `source rows: ${sourceRows} (${deletedRows} soft-deleted), ${hardDeleted} keys sent and since hard-deleted, ${deletes} delete records stored; ${INITIAL_ROWS + 100} at the start`,
    );
    for (const e of v.examples) log(e);
    log(`run took ${Math.round((Date.now() - started) / 1000)} s`);
    process.stdout.write(`lost=${v.lost} wrong=${v.wrong} extra=${v.extra} duplicates=${v.duplicates}\n`);
    exitCode = v.lost === 0 && v.wrong === 0 && v.extra === 0 ? 0 : 1;
  } finally {
    await fleet.stopAll();
    await receiver.close();
    await redis.stop();
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(exitCode);
}
