import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName, logicalItemsTable } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState } from './helpers/current-state.js';

const ROOT = new URL('..', import.meta.url).pathname;

interface Rec {
  _op: string;
  _ordering: string;
  _extracted_at: string;
  id: number;
  v: string | null;
}

/** The current state downstream: each live key's `v`. */
function currentValues(records: Rec[]): Map<number, string | null> {
  return new Map([...currentState(records)].map(([id, r]) => [id, r.v]));
}

/**
 * The CDC reader is killed with SIGKILL while changes stream, and restarted: nothing is lost, and the slot is never
 * confirmed past what was enqueued.
 */
describe('a CDC reader killed mid-stream and restarted', () => {
  const schema = uniqueName('crash');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-crash-'));
  let client: pg.Client;
  let receiver: Receiver;
  let configPath: string;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    client = await logicalItemsTable(schema, 300);
    receiver = await startReceiver('k');
    configPath = join(dir, 'pushsync.yaml');
    writeFileSync(
      configPath,
      `redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: k, backoff: { base: 20ms, cap: 200ms } }
extract: { leaseTtl: 2s }
sources:
  - name: app
    kind: postgres
    url: ${LOGICAL_PG_URL}
    mode: cdc
    cdc: { slot: ${slot}, publication: ${slot}, every: 200ms, maxRunTime: 5s, batchKeys: 50, flushInterval: 50ms }
    tables:
      - { name: ${schema}.items, batchRows: 100 }
web: { port: 0 }
log: { level: warn }
`,
    );
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await sleep(500);
    await client
      .query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, [slot])
      .catch(() => {});
    await sleep(200);
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`).catch(() => {});
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  function start(): ChildProcess {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', configPath, 'start'], {
      cwd: ROOT,
      stdio: 'ignore',
    });
    return proc;
  }

  const records = (): Rec[] => (receiver.stored.get('bronze.app_items') ?? []).map((r) => JSON.parse(r) as Rec);

  async function sourceState(): Promise<Map<number, string | null>> {
    const { rows } = await client.query<{ id: number; v: string | null }>(`SELECT id, v FROM items`);
    return new Map(rows.map((r) => [r.id, r.v]));
  }

  async function streaming(): Promise<void> {
    // The reader is streaming once the snapshot arrived and the slot is held by a connection.
    for (let i = 0; i < 200; i++) {
      const { rows } = await client.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      if (rows[0]?.active === true && records().length >= 300) return;
      await sleep(100);
    }
    throw new Error('the CDC reader did not start streaming');
  }

  it('loses nothing across SIGKILL and restart while rows change', async () => {
    child = start();
    await streaming();
    // Writers keep changing rows while the reader is killed twice.
    let round = 0;
    const write = async (): Promise<void> => {
      round += 1;
      await client.query(`UPDATE items SET v = 'v${round}' WHERE id % 3 = ${round % 3}`);
      await client.query(`INSERT INTO items VALUES (${1000 + round}, 'new')`);
      await client.query(`DELETE FROM items WHERE id = ${round * 7}`);
    };
    for (let kill = 0; kill < 2; kill++) {
      const before = records().length;
      for (let i = 0; i < 5; i++) {
        await write();
        await sleep(100);
      }
      // Kill once changes are flowing, with more still unread.
      for (let i = 0; i < 100 && records().length === before; i++) await sleep(20);
      await write();
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      for (let i = 0; i < 3; i++) await write();
      child = start();
    }
    await streaming();
    for (let i = 0; i < 3; i++) await write();

    const expected = await sourceState();
    let actual = currentValues(records());
    // A push job held by a killed process is handed on once its lease lapses (WORKER_LEASES): up to ~25 s.
    for (let i = 0; i < 320 && JSON.stringify([...actual].sort()) !== JSON.stringify([...expected].sort()); i++) {
      await sleep(250);
      actual = currentValues(records());
    }
    const wrong = [...new Set([...actual.keys(), ...expected.keys()])].filter((k) => actual.get(k) !== expected.get(k));
    if (wrong.length > 0)
      console.log(
        JSON.stringify(
          records().filter((r) => wrong.includes(r.id)),
          null,
          0,
        ),
      );
    expect([...actual].sort((a, b) => a[0] - b[0])).toEqual([...expected].sort((a, b) => a[0] - b[0]));
    expect(records().some((r) => r._op === 'update')).toBe(true);
    expect(records().some((r) => r._op === 'delete')).toBe(true);
  }, 120_000);
});
