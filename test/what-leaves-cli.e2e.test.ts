import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const ROOT = new URL('..', import.meta.url).pathname;
const PSEUDONYM_KEY = 'cli-pseudonym-key-0123456789';
const hmac = (text: string): string => createHmac('sha256', PSEUDONYM_KEY).update(text, 'utf8').digest('hex');

function pushsync(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the commands that show what leaves: preview, manifest, check', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let dir: string;
  const prefix = uniqueName('ps');
  const env = { PSEUDONYM_KEY, DATABASE_URL: PG_URL, DEFINITE_API_KEY: 'k' };

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    dir = mkdtempSync(join(tmpdir(), 'pushsync-leave-cli-'));
    await db.client.query(
      `CREATE TABLE customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL, email text, phone text, ssn text, born_at date, card text, region text)`,
    );
    await db.client.query(
      `INSERT INTO customers VALUES (1, '2024-03-01 10:00:00+00', 'ada@example.org', '+44 20 7946 0001', '078-05-1120', '1815-12-10', '4111111111111111', 'US'),
                                   (2, '2024-03-01 10:00:01+00', 'bob@example.org', '+33 1 23 45 67 89', '219-09-9999', '1990-07-04', '5500005555555559', 'EU'),
                                   (3, '2024-03-01 10:00:02+00', 'cy@example.org', NULL, '457-55-5462', '2001-02-03', '340000000000009', 'US')`,
    );
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, customer_id int, updated_at timestamptz NOT NULL)`);
    await db.client.query(`INSERT INTO orders SELECT g, 1 + g % 3, now() FROM generate_series(1, 20) g`);
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  const config = (tables: string): string => {
    const path = join(dir, `${uniqueName('cfg')}.yaml`);
    writeFileSync(
      path,
      `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: \${DEFINITE_API_KEY} }
masking: { key: \${PSEUDONYM_KEY} }
sources:
  - name: app
    kind: postgres
    url: \${DATABASE_URL}
    tables:
${tables}
`,
    );
    return path;
  };

  const customers = (): string => `
      - name: ${db.schema}.customers
        watermark: updated_at
        columns: { exclude: [ssn] }
        masks:
          id: hash
          email: hash
          phone: { redact: "***" }
          born_at: { truncate: month }
          card: { replace: { pattern: "\\\\d(?=\\\\d{4})", with: "*" } }
        where: "region <> 'EU'"`;

  it('preview prints the masked records of the first rows as JSON lines and writes nothing', async () => {
    const run = await pushsync(['--config', config(customers()), 'preview', '--table', `app.${db.schema}.customers`, '--limit', '3'], env);
    console.log(`pushsync preview --table app.${db.schema}.customers --limit 3\n${run.stdout}`);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toEqual({
      _op: 'upsert',
      _event_id: expect.stringMatching(/^[0-9a-f]{32}$/),
      _ordering: '2024-03-01T10:00:00.000000Z',
      _generation: 0,
      _extracted_at: expect.any(String),
      _source: 'app',
      _table: `${db.schema}.customers`,
      id: hmac('1'),
      updated_at: '2024-03-01T10:00:00+00:00',
      email: hmac('ada@example.org'),
      phone: '***',
      born_at: '1815-12-01',
      card: '************1111',
      region: 'US',
    });
    expect(lines[1]).toMatchObject({ id: hmac('3'), phone: null, card: '***********0009' });
    expect(run.stdout).not.toMatch(/078-05-1120|ada@example|bob@|5500005555555559/);
    expect(receiver.requests).toEqual([]);
  });

  it('manifest lists every column that leaves with its rule, every column that never leaves, the filter and the metadata, as md and json', async () => {
    const path = config(customers());
    const md = await pushsync(['--config', path, 'manifest'], env);
    console.log(`pushsync manifest\n${md.stdout}`);
    expect(md.code).toBe(0);
    expect(md.stdout).toContain(`## app.${db.schema}.customers → bronze.app_customers`);
    expect(md.stdout).toContain('| id (key) | integer | hashed (HMAC-SHA-256 keyed by masking.key, hex) | pushsync |');
    expect(md.stdout).toContain('| phone | text | redacted to "***" | source SQL |');
    expect(md.stdout).toContain('| born_at | date | truncated to the month (UTC) | source SQL |');
    expect(md.stdout).toContain('| region | text | as is | – |');
    expect(md.stdout).toContain('| ssn | text | not read, unless a condition below names it |');
    expect(md.stdout).toContain("Row filter: only rows where `region <> 'EU'` (onFilteredOut: delete).");
    expect(md.stdout).toContain('| _event_id |');
    const json = await pushsync(['--config', path, 'manifest', '--format', 'json'], env);
    const doc = JSON.parse(json.stdout) as {
      tables: Array<{ leaves: Array<{ name: string; mask: unknown }>; neverLeaves: Array<{ name: string }> }>;
    };
    expect(doc.tables[0]!.leaves.map((c) => c.name)).toEqual(['id', 'updated_at', 'email', 'phone', 'born_at', 'card', 'region']);
    expect(doc.tables[0]!.leaves[2]!.mask).toEqual({ kind: 'hash' });
    expect(doc.tables[0]!.neverLeaves.map((c) => c.name)).toEqual(['ssn']);
    expect(json.stdout).not.toContain(PSEUDONYM_KEY);
  });

  it('check warns, with the plan line, when a page of a query table would scan a whole relation', async () => {
    const path = config(`
      - name: order_customers
        query: "SELECT o.id, o.updated_at, c.region FROM ${db.schema}.orders o JOIN ${db.schema}.customers c ON c.id = o.customer_id"
        primaryKey: [id]
        watermark: updated_at`);
    const run = await pushsync(['--config', path, 'check'], env);
    expect(run.stdout).toContain('ok   app.order_customers');
    expect(run.stdout).toMatch(/warn app\.order_customers: a page of the query would scan a whole relation \(.*Seq Scan on (orders|customers)/);
  });

  it('check warns, with the plan line and the index to create, when the page query is not an index range scan on (watermark, key)', async () => {
    await db.client.query(`CREATE TABLE ${db.schema}.unindexed (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
    await db.client.query(`INSERT INTO ${db.schema}.unindexed SELECT g, now() FROM generate_series(1, 20) g`);
    const path = config(`
      - name: ${db.schema}.unindexed
        watermark: updated_at`);
    const before = await pushsync(['--config', path, 'check'], env);
    expect(before.stdout).toMatch(
      new RegExp(
        `warn app\\.${db.schema}\\.unindexed: the page query is not an index range scan on \\(updated_at, id\\) \\(plan: [^)]*Scan[^)]*on unindexed t.*` +
          `create the index: CREATE INDEX CONCURRENTLY ON .*unindexed \\("updated_at", "id"\\)`,
      ),
    );
    await db.client.query(`CREATE INDEX ON ${db.schema}.unindexed (updated_at, id)`);
    const after = await pushsync(['--config', path, 'check'], env);
    expect(after.stdout).toContain(`ok   app.${db.schema}.unindexed`);
    expect(after.stdout).not.toContain('index range scan');
  });

  it('refuses at start a mask that does not fit the column, with exit code 2, before anything is enqueued', async () => {
    const path = config(`
      - name: ${db.schema}.customers
        watermark: updated_at
        masks: { email: { truncate: month } }`);
    const run = await pushsync(['--config', path, 'sync', '--once'], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `[CONFIG_INVALID] app.${db.schema}.customers: masks.email: truncate: month applies to timestamp and date columns; email is text`,
    );
    expect(receiver.requests).toEqual([]);
  });
});
