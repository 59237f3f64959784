import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline } from '../src/main.js';
import { startWebServer } from '../src/http/server.js';
import { createLogger } from '../src/observability/logger.js';
import { pipelineStatus } from '../src/queue/status.js';
import { closePipeline } from '../src/main.js';
import type { TableStatus } from '../src/core/table-status.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { runPushsync } from './helpers/cli.js';
import { syncPass } from './helpers/pass.js';

interface Line {
  level: number;
  msg: string;
  table?: string;
  rows?: number;
  total?: number;
  exact?: boolean;
  percent?: number;
  rowsPerSecond?: number;
  etaSeconds?: number | null;
  pending?: number;
  bound?: number;
}

/** A backfill people can follow: progress lines, backpressure once per change, `status`, `GET /status`, job progress. */
describe('backfill progress and status', () => {
  const prefix = uniqueName('prog');
  const ROWS = 3000;
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let config: Config;
  let raw: Record<string, unknown>;
  const lines: Line[] = [];

  beforeAll(async () => {
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), note text)`);
    await db.client.query(`INSERT INTO orders (id, note) SELECT g, 'n' || g FROM generate_series(1, ${ROWS}) g`);
    receiver = await startReceiver('k');
    // Slow enough that the run lasts several progress intervals and the backlog reaches its bound.
    receiver.setDefault({ kind: 'slow', ms: 40 });
    raw = {
      redis: { url: REDIS_URL, prefix },
      destination: { url: receiver.url, apiKey: 'k', concurrency: 1 },
      extract: { maxPendingBatches: 3, progressInterval: '100ms' },
      sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.orders`, watermark: 'updated_at', batchRows: 100 }] }],
      web: { auth: { token: 'status-token-0123456789' } },
    };
    config = parseConfig(raw, {});
    const logger = createLogger('info', {}, { write: (l: string) => void lines.push(JSON.parse(l) as Line) });
    const summary = await syncPass(config, { logger, timeoutMs: 50_000 });
    expect(summary.failed).toEqual([]);
  }, 60_000);
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  it("logs the backfill's progress every interval with rows, the exact total of a small table, percent, rate and ETA, then a done line", () => {
    const progress = lines.filter((l) => l.msg.startsWith('backfill progress'));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    for (const p of progress) {
      expect(p).toMatchObject({ level: 30, table: `${db.schema}.orders`, total: ROWS, exact: true });
      expect(p.rows).toBeLessThanOrEqual(ROWS);
      expect(p.percent).toBeGreaterThanOrEqual(0);
      expect(typeof p.rowsPerSecond).toBe('number');
      expect(p.msg).toMatch(new RegExp(`^backfill progress: [\\d,]+ of 3,000 rows \\(\\d+\\.\\d%\\), [\\d,]+ rows/s`));
    }
    expect(progress.map((p) => p.rows)).toEqual([...progress.map((p) => p.rows!)].sort((a, b) => a - b));
    const done = lines.filter((l) => l.msg.startsWith('backfill done'));
    expect(done).toEqual([expect.objectContaining({ rows: ROWS, percent: 100 })]);
  });

  it('reports backpressure at info once per change of state, with the pending count and the bound', () => {
    const said = lines.filter((l) => l.msg.startsWith('backpressure'));
    expect(said.length).toBeGreaterThanOrEqual(1);
    // 30 pages against a bound of 3: not one line per page, and paused and released alternate.
    expect(said.length).toBeLessThan(ROWS / 100);
    said.forEach((l, i) => {
      expect(l).toMatchObject({ level: 30, bound: 3 });
      expect(typeof l.pending).toBe('number');
      expect(l.msg.startsWith('backpressure released')).toBe(i % 2 === 1);
    });
  });

  it("shows the run's progress on its extract job, as the dashboard shows it", async () => {
    const ctx = createPipeline(config, createLogger('silent'), { bounded: true });
    try {
      const jobs = await ctx.extractQueue.getCompleted();
      expect(jobs.map((j) => j.progress)).toContainEqual(expect.objectContaining({ rows: ROWS, total: ROWS, percent: 100 }));
    } finally {
      await closePipeline(ctx);
    }
  });

  it('prints the status as a table and as JSON: state, last run, lag, batches, last success, backfill', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'pushsync-status-')), 'pushsync.yaml');
    writeFileSync(path, stringify({ ...raw, sources: [{ ...(raw.sources as object[])[0], url: '${DATABASE_URL}' }] }));
    const json = await runPushsync(['--config', path, 'status', '--json']);
    expect(json.stderr).toBe('');
    const status = JSON.parse(json.stdout) as { tables: TableStatus[]; deadLetters: number };
    expect(status.deadLetters).toBe(0);
    expect(status.tables).toEqual([
      expect.objectContaining({
        source: 'app',
        table: `${db.schema}.orders`,
        mode: 'watermark',
        state: 'current',
        pendingBatches: 0,
        failedBatches: 0,
        lastRun: expect.objectContaining({ rows: ROWS }),
        backfill: expect.objectContaining({ rows: ROWS, total: ROWS, done: true }),
      }),
    ]);
    expect(status.tables[0]!.position).toMatch(/^read up to updated_at \d{4}-.*, key \(3000\)$/);
    expect(status.tables[0]!.lastSuccessAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(status.tables[0]!.lagSeconds).toBeGreaterThanOrEqual(0);

    const text = await runPushsync(['--config', path, 'status']);
    expect(text.code).toBe(0);
    const [header, row] = text.stdout.split('\n');
    expect(header).toMatch(/^TABLE\s+MODE\s+STATE\s+LAST RUN ROWS\s+RATE\s+LAG\s+PENDING\s+FAILED\s+LAST SUCCESS$/);
    expect(row).toMatch(new RegExp(`^app\\.${db.schema}\\.orders\\s+watermark\\s+current\\s+3,000\\s+[\\d,]+/s\\s+\\S+\\s+0\\s+0\\s+.+ ago$`));
    expect(text.stdout).toContain(`app.${db.schema}.orders → bronze.app_orders: read up to updated_at`);
    expect(text.stdout).toContain('dead-letter queue: 0 failed push job(s)');
  });

  it("answers GET /status with the same JSON, only with the dashboard's credentials", async () => {
    const ctx = createPipeline(config, createLogger('silent'), { bounded: true });
    const web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: 'status-token-0123456789' },
      metrics: ctx.metrics,
      readiness: [],
      status: () => pipelineStatus(ctx),
      logger: ctx.logger,
    });
    try {
      const anonymous = await request(`${web.url}/status`);
      expect(anonymous.statusCode).toBe(401);
      expect(await anonymous.body.text()).not.toContain('orders');
      const res = await request(`${web.url}/status`, { headers: { authorization: 'Bearer status-token-0123456789' } });
      expect(res.statusCode).toBe(200);
      const body = (await res.body.json()) as { tables: TableStatus[] };
      expect(body.tables[0]).toMatchObject({ table: `${db.schema}.orders`, state: 'current', backfill: { rows: ROWS, done: true } });
    } finally {
      await web.close();
      await closePipeline(ctx);
    }
  });
});
