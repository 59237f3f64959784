import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { runOnce, type OnceSummary } from '../src/queue/run-once.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { redisDump } from './helpers/leak-scan.js';
import { FAILURES_TO_OPEN } from '../src/core/destination-circuit.js';

// Characters that URL-encoding changes, so the encoded form differs from the key itself.
const API_KEY = 'super-secret/api+key=4242';
const KEY_FORMS = [API_KEY, encodeURIComponent(API_KEY), Buffer.from(API_KEY).toString('base64')];

describe('push failures: retries, splitting, the dead-letter queue', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let prefix: string;
  let config: Config;
  let runtime: Runtime | undefined;

  beforeAll(async () => {
    db = await createSchema();
  });
  afterAll(async () => {
    await db.drop();
  });

  beforeEach(async () => {
    receiver = await startReceiver(API_KEY);
    prefix = uniqueName('ps');
    await db.client.query(
      `DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, updated_at timestamptz NOT NULL, doc jsonb, blob text)`,
    );
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: '${TEST_API_KEY}', backoff: { base: 20, cap: 100, jitter: 0 }, attempts: 3 },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.items`, watermark: 'updated_at', batchRows: 50 }] }],
      },
      { TEST_API_KEY: API_KEY },
    );
  });
  afterEach(async () => {
    await runtime?.stop();
    runtime = undefined;
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  let logLines: string[] = [];
  async function syncOnce(): Promise<OnceSummary> {
    logLines = [];
    const ctx = createPipeline(config, createLogger('debug', {}, { write: (line: string) => void logLines.push(line) }));
    runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
    const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, { timeoutMs: 30_000, pollMs: 50 });
    return summary;
  }

  const ids = (): number[] => (receiver.stored.get('bronze.app_items') ?? []).map((r) => (JSON.parse(r) as { id: number }).id).sort((a, b) => a - b);

  it('retries 503, 429 with Retry-After and connection resets until every batch is delivered', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 120) g`);
    receiver.script(
      { kind: 'status', status: 503 },
      { kind: 'status', status: 429, retryAfter: '0' },
      { kind: 'reset' },
      { kind: 'store-then-reset' },
    );
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    // Every row arrived; the ambiguous failure (stored, then the connection dropped) re-sent one batch.
    expect(new Set(ids())).toEqual(new Set(Array.from({ length: 120 }, (_, i) => i + 1)));
    expect(receiver.requests.length).toBeGreaterThanOrEqual(3 + 4);
  });

  it('while the destination is down, only a probe per interval reads rows and sends; every row arrives once it is back', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 1000) g`);
    // 20 push jobs of 50 rows, 12 attempts each with backoff from 20 ms: without the circuit nearly every attempt of the
    // outage reaches the destination; with it, the first failures and then one probe per `backoff.base` (200 ms).
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: '${TEST_API_KEY}', backoff: { base: 200, cap: 400, jitter: 0 }, attempts: 12 },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.items`, watermark: 'updated_at', batchRows: 50 }] }],
      },
      { TEST_API_KEY: API_KEY },
    );
    receiver.setDefault({ kind: 'status', status: 503 });
    let backAt = Infinity;
    const back = setTimeout(() => {
      backAt = performance.now();
      receiver.setDefault({ kind: 'ok' });
    }, 3000);
    const summary = await syncOnce().finally(() => clearTimeout(back));
    expect(summary.failed).toEqual([]);
    expect(ids()).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    const sent = receiver.requests.filter((r) => r.rows.length > 0);
    const refused = sent.filter((r) => r.at < backAt);
    expect(sent.length - refused.length).toBe(20);
    // Before the circuit opens: a request per concurrent push slot, and one more for each of the failures that
    // open it but the last (each frees a slot first). Then a probe at most every 200 ms of the outage as it really
    // lasted: a timer on a loaded machine fires late, and the first request comes after start-up.
    const outage = backAt - refused[0]!.at;
    expect(refused.length).toBeGreaterThanOrEqual(FAILURES_TO_OPEN);
    expect(refused.length).toBeLessThanOrEqual(config.destination.concurrency + FAILURES_TO_OPEN - 1 + Math.floor(outage / 200) + 1);
    expect(logLines.some((l) => l.includes('not attempted: the destination failed the last'))).toBe(true);
  });

  it('splits a batch the server calls too large (413) and delivers both halves', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 40) g`);
    receiver.script({ kind: 'status', status: 413 });
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(ids()).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(receiver.requests.map((r) => r.rows.length)).toEqual([40, 20, 20]);
  });

  it('sends a push job added by hand to the configured target, whatever target its payload names', async () => {
    await db.client.query(`INSERT INTO items SELECT g, '2024-01-01 00:00:00+00', NULL, NULL FROM generate_series(1, 5) g`);
    const ctx = createPipeline(config, createLogger('silent'));
    runtime = await startRuntime(ctx, { roles: ['push'] });
    const range = { phase: 'pk', lo: null, hi: { wm: '2024-01-01 00:00:00+00', pk: ['5'] } };
    const job = await ctx.pushQueue.add('by-hand', {
      v: 1,
      source: 'app',
      table: `${db.schema}.items`,
      target: 'bronze.elsewhere',
      rows: 5,
      cutAt: new Date().toISOString(),
      range,
    });
    for (let i = 0; i < 200 && !(await job.isCompleted()) && !(await job.isFailed()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await job.isCompleted()).toBe(true);
    expect(receiver.stored.has('bronze.elsewhere')).toBe(false);
    expect(ids()).toEqual([1, 2, 3, 4, 5]);
  });

  it('sends JSON nested deeper than 10 levels as a string and keeps shallower JSON as JSON', async () => {
    const deep = '{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":1}}}}}}}}}}}';
    await db.client.query(`INSERT INTO items VALUES (1, now(), $1::jsonb, NULL), (2, now(), '{"n": 12345678901234567890}', NULL)`, [deep]);
    expect((await syncOnce()).failed).toEqual([]);
    const rows = receiver.stored.get('bronze.app_items')!;
    const one = JSON.parse(rows.find((r) => r.includes('"id":1'))!) as { doc: unknown };
    expect(typeof one.doc).toBe('string');
    expect(JSON.parse(one.doc as string)).toEqual(JSON.parse(deep));
    expect(rows.find((r) => r.includes('"id":2'))).toContain('"doc":{"n": 12345678901234567890}');
  });

  it('fails the job of a row with a field over 1 MB, naming the key, while the rest of the table is delivered', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, 'x' FROM generate_series(1, 30) g`);
    await db.client.query(`UPDATE items SET blob = repeat('y', 1100000) WHERE id = 7`);
    const summary = await syncOnce();
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(/^\[ROW_TOO_LARGE\].*"blob".*\["7"\]/);
    expect(ids()).toEqual(Array.from({ length: 30 }, (_, i) => i + 1).filter((i) => i !== 7));
  });

  it('puts a batch the server rejects into the failed set with its reason, and a retry from there delivers it', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 10) g`);
    receiver.setDefault({ kind: 'status', status: 400, body: { success: false, errors: ['schema mismatch on column doc'] } });
    const summary = await syncOnce();
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toContain('[DEST_REJECTED]');
    expect(summary.failed[0]!.reason).toContain('schema mismatch on column doc');
    expect(ids()).toEqual([]);

    const queue = runtime!.ctx.pushQueue;
    const [dead] = await queue.getFailed();
    expect(dead!.failedReason).toContain('DEST_REJECTED');
    receiver.setDefault({ kind: 'ok' });
    await dead!.retry('failed');
    for (let i = 0; i < 100 && ids().length < 10; i++) await new Promise((r) => setTimeout(r, 50));
    expect(ids()).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('keeps the API key out of Redis and the logs: no job, cursor or log line contains it', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 60) g`);
    receiver.script({ kind: 'status', status: 400 });
    await syncOnce();
    expect(logLines.some((l) => l.includes('DEST_REJECTED'))).toBe(true);
    for (const line of logLines) expect(line).not.toContain(API_KEY);
    const dump = await redisDump(prefix);
    expect(dump.length).toBeGreaterThan(0);
    for (const [key, value] of dump) expect(value, key).not.toContain(API_KEY);
  });

  it('stores no trace of the API key when the server echoes the Authorization header in its answers', async () => {
    await db.client.query(`INSERT INTO items SELECT g, now(), NULL, NULL FROM generate_series(1, 250) g`);
    // Five push jobs of 50 rows; the one answered 503 is retried and gets whatever answer is next.
    receiver.script(
      { kind: 'echo-auth', status: 401 },
      { kind: 'echo-auth', status: 503 },
      { kind: 'echo-auth', status: 200, rejectRows: 2 },
      { kind: 'echo-auth', status: 400, plain: true },
      { kind: 'echo-auth', status: 422 },
    );
    const summary = await syncOnce();
    const reasons = summary.failed.map((f) => f.reason).sort();
    expect(reasons).toEqual([
      expect.stringMatching(/^\[DEST_AUTH\]/),
      expect.stringMatching(/^\[DEST_REJECTED\] HTTP 400 .*Bad request\./),
      expect.stringMatching(/^\[DEST_REJECTED\] HTTP 422 .*invalid credentials/),
      expect.stringMatching(/^\[DEST_ROWS_REJECTED\]/),
    ]);
    const dump = await redisDump(prefix);
    const jobLogs = dump.filter(([key]) => key.endsWith(':logs'));
    expect(jobLogs.length).toBeGreaterThanOrEqual(4);
    expect(logLines.some((l) => l.includes('DEST_ROWS_REJECTED'))).toBe(true);
    for (const form of KEY_FORMS) {
      for (const [key, value] of dump) expect(value, `${key} holds ${form}`).not.toContain(form);
      for (const line of logLines) expect(line).not.toContain(form);
    }
    // What the server said is still kept, with the secrets taken out.
    expect(reasons.join('\n')).toContain('invalid credentials: Bearer [redacted]');
    expect(jobLogs.map(([, v]) => v).join('\n')).toContain('rejected for key [redacted]');
  });
});
