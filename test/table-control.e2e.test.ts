import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { parseConfig, type Config } from '../src/config.js';
import { closePipeline, createPipeline, startRuntime } from '../src/main.js';
import { startWebServer } from '../src/http/server.js';
import { createLogger } from '../src/observability/logger.js';
import { pipelineStatus } from '../src/queue/status.js';
import { backfillTable, pauseTable, resetTable, resumeTable, tableByName } from '../src/queue/table-admin.js';
import type { TableStatus } from '../src/core/table-status.js';
import pg from 'pg';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { runPushsync } from './helpers/cli.js';
import { syncPass } from './helpers/pass.js';
import { eventually } from './helpers/wait.js';

/** Pausing, resuming and re-reading one table while the others keep syncing. */
describe('table control: pause, resume, backfill', () => {
  const prefix = uniqueName('ctl');
  const TOKEN = 'control-token-0123456789';
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let config: Config;
  let path: string;
  let a: string;

  const ids = (target: string): number[] => (receiver.stored.get(target) ?? []).map((r) => (JSON.parse(r) as { id: number }).id);
  const pass = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);
  const status = async (): Promise<TableStatus[]> => {
    const run = await runPushsync(['--config', path, 'status', '--json']);
    expect(run.stderr).toBe('');
    return (JSON.parse(run.stdout) as { tables: TableStatus[] }).tables;
  };

  beforeAll(async () => {
    db = await createSchema();
    for (const t of ['a', 'b']) {
      await db.client.query(`CREATE TABLE ${t} (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
      await db.client.query(`INSERT INTO ${t} (id) SELECT generate_series(1, 20)`);
    }
    receiver = await startReceiver('k');
    const raw = {
      redis: { url: REDIS_URL, prefix },
      destination: { url: receiver.url, apiKey: '${DEFINITE_API_KEY:-k}' },
      sources: [
        {
          name: 'app',
          kind: 'postgres',
          url: '${DATABASE_URL:-' + PG_URL + '}',
          tables: [
            { name: `${db.schema}.a`, watermark: 'updated_at', batchRows: 5, target: 'bronze.ctl_a' },
            { name: `${db.schema}.b`, watermark: 'updated_at', batchRows: 5, target: 'bronze.ctl_b' },
          ],
        },
      ],
      web: { auth: { token: TOKEN } },
    };
    config = parseConfig(raw, {});
    path = join(mkdtempSync(join(tmpdir(), 'pushsync-ctl-')), 'pushsync.yaml');
    writeFileSync(path, stringify(raw));
    a = `app.${db.schema}.a`;

    await pass();
    expect([ids('bronze.ctl_a').length, ids('bronze.ctl_b').length]).toEqual([20, 20]);
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it("pause stops one table's extraction, visible in status, while the other keeps syncing; resume goes on from where it stopped", async () => {
    const paused = await runPushsync(['--config', path, 'pause', '--table', a, '--reason', 'masking rule under review']);
    expect(paused.stdout).toBe(`paused ${a}\n`);
    await db.client.query(`INSERT INTO a (id) VALUES (21); INSERT INTO b (id) VALUES (21)`);
    await pass();
    expect(ids('bronze.ctl_a')).not.toContain(21);
    expect(ids('bronze.ctl_b')).toContain(21);
    const [sa, sb] = await status();
    expect(sa).toMatchObject({ state: 'paused', paused: { reason: 'masking rule under review' } });
    expect(sb).toMatchObject({ state: 'current', paused: null });
    const text = await runPushsync(['--config', path, 'status']);
    expect(text.stdout).toMatch(new RegExp(`^${a.replaceAll('.', '\\.')}\\s+watermark\\s+paused`, 'm'));
    expect(text.stdout).toContain(`: masking rule under review (pushsync resume --table ${a})`);

    const resumed = await runPushsync(['--config', path, 'resume', '--table', a]);
    expect(resumed.stdout).toBe(`resumed ${a}\n`);
    await pass();
    expect(ids('bronze.ctl_a').filter((id) => id === 21)).toHaveLength(1);
    expect(ids('bronze.ctl_a')).toHaveLength(21);
  });

  it("pauses and resumes over HTTP with the dashboard's credentials, refusing anonymous and cross-site requests", async () => {
    const ctx = createPipeline(config, createLogger('silent'), { bounded: true });
    const web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: TOKEN },
      metrics: ctx.metrics,
      readiness: [],
      status: () => pipelineStatus(ctx),
      tableControl: { pause: (n, r) => pauseTable(ctx, tableByName(ctx.config, n), r), resume: (n) => resumeTable(ctx, tableByName(ctx.config, n)) },
      logger: ctx.logger,
    });
    const post = async (action: string, headers: Record<string, string>, table = a): Promise<{ status: number; body: string }> => {
      const res = await request(`${web.url}/tables/${encodeURIComponent(table)}/${action}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: '{"reason":"from a script"}',
      });
      return { status: res.statusCode, body: await res.body.text() };
    };
    try {
      expect((await post('pause', {})).status).toBe(401);
      const basic = `Basic ${Buffer.from(`ops:${TOKEN}`).toString('base64')}`;
      expect((await post('pause', { authorization: basic, origin: 'https://evil.example' })).status).toBe(403);
      expect(await post('pause', { authorization: `Bearer ${TOKEN}` }, 'app.nope')).toMatchObject({
        status: 400,
        body: expect.stringContaining('no configured table app.nope'),
      });
      expect((await post('pause', { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
      expect((await pipelineStatus(ctx)).tables[0]).toMatchObject({ state: 'paused', paused: { reason: 'from a script' } });
      expect((await post('resume', { authorization: basic, origin: web.url })).status).toBe(200);
      expect((await pipelineStatus(ctx)).tables[0]!.paused).toBeNull();
    } finally {
      await web.close();
      await closePipeline(ctx);
    }
  });

  it('backfill re-reads one table from its start under a new generation while the other only syncs its changes', async () => {
    const before = { a: ids('bronze.ctl_a').length, b: ids('bronze.ctl_b').length };
    const run = await runPushsync(['--config', path, 'backfill', '--table', a]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`backfilling ${a} from its start`);
    expect((await status())[0]).toMatchObject({ state: 'backfilling', position: expect.stringMatching(/^not started/) });
    await db.client.query(`UPDATE b SET updated_at = now() WHERE id = 1`);
    await pass();
    const resent = ids('bronze.ctl_a').slice(before.a);
    // Every row of a again (new generation: new push jobs, not absorbed by the completed ones of the first read).
    expect([...new Set(resent)].sort((x, y) => x - y)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    expect(ids('bronze.ctl_b').slice(before.b)).toEqual([1]);
    expect((await status())[0]).toMatchObject({ state: 'current', backfill: expect.objectContaining({ rows: 21, done: true }) });
  });

  it('a backfill of a reconciled table keeps the keys reconciliation knows: rows deleted before it still get their deletes', async () => {
    await db.client.query(`CREATE TABLE c (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
    await db.client.query(`INSERT INTO c (id) SELECT generate_series(1, 10)`);
    const reconciled = parseConfig(
      {
        redis: { url: REDIS_URL, prefix: `${prefix}c` },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: [
              { name: `${db.schema}.c`, watermark: 'updated_at', batchRows: 5, target: 'bronze.ctl_c', reconcile: { every: '1h', maxWait: '1s' } },
            ],
          },
        ],
      },
      {},
    );
    const records = (): Array<{ id: number; _op: string }> =>
      (receiver.stored.get('bronze.ctl_c') ?? []).map((r) => JSON.parse(r) as { id: number; _op: string });
    try {
      expect((await syncPass(reconciled, { timeoutMs: 30_000 })).failed).toEqual([]);
      // A hard delete, then a backfill before the next reconciliation.
      await db.client.query(`DELETE FROM c WHERE id IN (3, 7)`);
      const ctx = createPipeline(reconciled, createLogger('silent'));
      await backfillTable(ctx, tableByName(reconciled, `app.${db.schema}.c`));
      await closePipeline(ctx);
      expect((await syncPass(reconciled, { timeoutMs: 30_000, reconcile: true })).failed).toEqual([]);
      expect(
        records()
          .filter((r) => r._op === 'delete')
          .map((r) => r.id)
          .sort((x, y) => x - y),
      ).toEqual([3, 7]);
    } finally {
      await dropRedisPrefix(`${prefix}c`);
    }
  });

  it("a backfill asked for while another reader holds the table's lease starts once the lease is free, not at the next scheduled run", async () => {
    // Workers of a long-running process, no scheduler: nothing but the backfill's own job can start a run.
    const ctx = createPipeline(config, createLogger('silent'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    try {
      const before = ids('bronze.ctl_a').length;
      // Another reader's lease (a scheduled run under way elsewhere), lapsing in 1.5 s.
      await ctx.redis.set(ctx.keys.lock('app', `${db.schema}.a`), 'another-reader', 'PX', 1500);
      await backfillTable(ctx, tableByName(config, a));
      await eventually(async () => new Set(ids('bronze.ctl_a').slice(before)).size === 21, 100, 30_000);
      expect([...new Set(ids('bronze.ctl_a').slice(before))].sort((x, y) => x - y)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    } finally {
      await runtime.stop();
      await closePipeline(ctx);
    }
  });

  it('a run under way when a reset clears the table does not mark it caught up: status says backfilling until the re-read ends', async () => {
    const ctx = createPipeline(config, createLogger('silent'));
    const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    const table = tableByName(config, a);
    try {
      // The run takes its lease and state, then waits for the table (its page query) while the reset happens.
      await locker.query(`BEGIN; LOCK TABLE ${db.schema}.a IN ACCESS EXCLUSIVE MODE`);
      const job = await ctx.extractQueue.add('run under way', { v: 1, kind: 'table', source: 'app', table: table.name, reason: 'schedule' });
      await eventually(
        async () => (await db.client.query(`SELECT 1 FROM pg_locks WHERE relation = '${db.schema}.a'::regclass AND NOT granted`)).rowCount === 1,
        50,
        30_000,
      );
      await resetTable(ctx, table);
      await locker.query('ROLLBACK');
      await eventually(async () => (await job.getState()) === 'completed', 50, 30_000);
      // It read nothing new from the position it loaded before the reset, and reached the table's end: before, it
      // recorded that end, and the re-read that follows showed as current, with no progress.
      expect(await ctx.redis.hget(ctx.keys.state('app', table.name), 'caughtUpAt')).toBeNull();
      expect((await pipelineStatus(ctx)).tables[0]).toMatchObject({ state: 'backfilling', position: expect.stringMatching(/^not started/) });
    } finally {
      await locker.end();
      await runtime.stop();
      await closePipeline(ctx);
    }
    const before = ids('bronze.ctl_a').length;
    await pass();
    expect([...new Set(ids('bronze.ctl_a').slice(before))]).toHaveLength(21);
    expect((await status())[0]).toMatchObject({ state: 'current', backfill: expect.objectContaining({ rows: 21, done: true }) });
  });
});
