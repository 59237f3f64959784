import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { collect, runPushsync, spawnPushsync } from './helpers/cli.js';
import { currentState } from './helpers/current-state.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { SENTINEL_MASTER, TestRedisCluster, TestSentinelGroup } from './helpers/redis-ha.js';
import { createSchema, PG_URL, uniqueName } from './helpers/services.js';
import { parseConfig } from '../src/config.js';
import { closeRedis, createRedis, waitForReplicas } from '../src/queue/redis.js';
import { eventually } from './helpers/wait.js';

/**
 * pushsync on a Redis without a single point of failure: a 3-master Redis Cluster and a Sentinel group (a master,
 * a replica, three sentinels), both started here from redis-server. `sync --once` and `start` deliver a table
 * exactly through each.
 */

interface Received {
  id: string;
  _op: string;
  _ordering: string;
  _extracted_at: string;
  note: string | null;
  amount: string | null;
}

/** The source's rows as the records must carry them: `_ordering` is the watermark in UTC with microseconds. */
async function sourceRows(client: pg.Client, table: string): Promise<Map<string, { ordering: string; note: string | null; amount: string | null }>> {
  const { rows } = await client.query<{ id: string; ordering: string; note: string | null; amount: string | null }>(
    `SELECT id::text, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ordering, note, amount::text FROM ${table}`,
  );
  return new Map(rows.map((r) => [r.id, { ordering: r.ordering, note: r.note, amount: r.amount }]));
}

describe.each(['cluster', 'sentinel'] as const)('pushsync on Redis %s', (mode) => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let cluster: TestRedisCluster | undefined;
  let sentinels: TestSentinelGroup | undefined;
  let dir: string;
  let configPath: string;
  const prefix = uniqueName('ha');
  const target = `bronze.ha_${mode}`;
  const env = (): Record<string, string> => ({ DEFINITE_API_KEY: 'ha-key', DATABASE_URL: PG_URL });

  beforeAll(async () => {
    [db, receiver] = await Promise.all([createSchema(), startReceiver('ha-key')]);
    if (mode === 'cluster') cluster = await TestRedisCluster.start(3);
    else sentinels = await TestSentinelGroup.start(1, 3);
    await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, updated_at timestamptz NOT NULL, note text, amount numeric)`);
    await db.client.query(`CREATE INDEX ON items (updated_at, id)`);
    await db.client.query(
      `INSERT INTO items SELECT g, '2026-01-01'::timestamptz + g * interval '1 microsecond', 'n' || g, g * 1.25 FROM generate_series(1, 1500) g`,
    );
    dir = mkdtempSync(join(tmpdir(), 'pushsync-ha-'));
    const redis =
      mode === 'cluster'
        ? `redis: { cluster: { nodes: [${cluster!.nodes[0]}] }, prefix: ${prefix} }`
        : `redis: { sentinel: { nodes: [${sentinels!.nodes.join(', ')}], masterName: ${SENTINEL_MASTER} }, prefix: ${prefix} }`;
    configPath = join(dir, 'pushsync.yaml');
    writeFileSync(
      configPath,
      `${redis}
destination: { url: ${receiver.url}, apiKey: \${DEFINITE_API_KEY}, backoff: { base: 10ms, cap: 200ms } }
sources:
  - name: app
    kind: postgres
    url: \${DATABASE_URL}
    tables:
      - { name: ${db.schema}.items, watermark: updated_at, every: 1s, batchRows: 100, target: ${target} }
`,
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all([cluster?.stop(), sentinels?.stop(), receiver?.close()]);
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function received(): Received[] {
    return (receiver.stored.get(target) ?? []).map((t) => {
      const r = JSON.parse(t) as Received;
      return { ...r, id: String(r.id) };
    });
  }

  async function stateProblems(): Promise<string[]> {
    const source = await sourceRows(db.client, `${db.schema}.items`);
    const state = currentState(received());
    const problems: string[] = [];
    for (const [id, row] of source) {
      const got = state.get(id);
      if (!got) problems.push(`row ${id} missing`);
      else if (got._ordering !== row.ordering || got.note !== row.note || got.amount !== row.amount) problems.push(`row ${id} differs`);
    }
    for (const id of state.keys()) if (!source.has(id)) problems.push(`row ${id} extra`);
    return problems;
  }

  it('sync --once delivers the table exactly, twice over, with every key of pushsync in Redis', async () => {
    const first = await runPushsync(['--config', configPath, 'sync', '--once'], env());
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`→ ${target}: extracted=1500 pushed=1500`);
    expect(await stateProblems()).toEqual([]);

    await db.client.query(`UPDATE items SET note = 'changed', amount = amount + 1, updated_at = now() WHERE id % 7 = 0`);
    await db.client.query(`INSERT INTO items SELECT g, now(), 'late', 0.5 FROM generate_series(1501, 1600) g`);
    const second = await runPushsync(['--config', configPath, 'sync', '--once'], env());
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`extracted=${214 + 100} pushed=${214 + 100}`);
    expect(await stateProblems()).toEqual([]);

    if (cluster) {
      // The prefix is a hash tag: all of pushsync's keys (queues, cursors, pending sets) sit in its one slot.
      const owner = await cluster.masterOf(`{${prefix}}`);
      const sizes = await Promise.all(
        cluster.servers.map(async (n) => {
          const r = new Redis({ port: n.port, host: '127.0.0.1' });
          try {
            const slot = (await r.cluster('KEYSLOT', `{${prefix}}`)) as number;
            return { port: n.port, keys: await r.dbsize(), inSlot: n.port === owner ? ((await r.cluster('COUNTKEYSINSLOT', slot)) as number) : 0 };
          } finally {
            r.disconnect();
          }
        }),
      );
      const held = sizes.find((n) => n.port === owner)!;
      expect(held.inSlot).toBeGreaterThan(5);
      expect(held.keys).toBe(held.inSlot);
      expect(sizes.filter((n) => n.port !== owner).map((n) => n.keys)).toEqual([0, 0]);
    } else {
      // What the master holds reached the replica.
      const master = await sentinels!.masterPort();
      const replica = sentinels!.servers.find((s) => s.port !== master)!.port;
      const r = new Redis({ port: replica, host: '127.0.0.1' });
      try {
        await eventually(async () => (await r.exists(`${prefix}:cursor:app:${db.schema}.items`)) === 1, 100, 10_000);
      } finally {
        r.disconnect();
      }
    }
  }, 120_000);

  it('waits for replicas to hold its writes when redis.waitReplicas asks, and fails retryably when they cannot', async () => {
    const redisSection = cluster
      ? { cluster: { nodes: cluster.nodes }, prefix }
      : { sentinel: { nodes: sentinels!.nodes, masterName: SENTINEL_MASTER }, prefix };
    const config = parseConfig(
      {
        redis: redisSection,
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: 'items', watermark: 'updated_at' }] }],
      },
      {},
    );
    const redis = createRedis(config.redis, { connectTimeoutMs: 5000 });
    try {
      const key = `${config.redis.prefix}:wait-test`;
      await redis.set(key, '1');
      // The sentinel group has one replica; the cluster none.
      const replicas = cluster ? 0 : 1;
      if (replicas > 0) await waitForReplicas(redis, { replicas, timeoutMs: 5000 }, key);
      const started = Date.now();
      await expect(waitForReplicas(redis, { replicas: replicas + 1, timeoutMs: 300 }, key)).rejects.toMatchObject({
        code: 'REDIS_UNAVAILABLE',
        retryable: true,
        message: expect.stringContaining(`only ${replicas} of ${replicas + 1} Redis replicas`),
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      await redis.del(key);
    } finally {
      await closeRedis(redis);
    }
  });

  it('start keeps the table in sync and stops cleanly on SIGTERM', async () => {
    await db.client.query(`UPDATE items SET note = 'again', updated_at = now() WHERE id % 5 = 0`);
    const child = spawnPushsync(['--config', configPath, 'start', '--role', 'scheduler', 'extract', 'push'], env());
    const done = collect(child);
    try {
      await eventually(async () => (await stateProblems()).length === 0, 250, 60_000);
      await db.client.query(`UPDATE items SET note = 'while running', updated_at = now() WHERE id <= 50`);
      await eventually(async () => (await stateProblems()).length === 0, 250, 60_000);
    } finally {
      child.kill('SIGTERM');
    }
    const run = await done;
    expect(run.code).toBe(0);
    expect(await stateProblems()).toEqual([]);
  }, 150_000);
});
