import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, type MysqlDatabase } from './helpers/mysql.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const ROOT = new URL('..', import.meta.url).pathname;

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

describe('pushsync check and sync --once with a MariaDB source', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  let dir: string;
  const prefix = uniqueName('ps');
  const user = uniqueName('np');

  beforeAll(async () => {
    db = await createMysqlDatabase();
    receiver = await startReceiver('cli-key');
    dir = mkdtempSync(join(tmpdir(), 'pushsync-mysql-cli-'));
    await db.client.query(
      `CREATE TABLE orders (id int unsigned PRIMARY KEY, last_update timestamp NOT NULL DEFAULT '2024-01-01 00:00:00', total decimal(10,2))`,
    );
    await db.client.query(`INSERT INTO orders (id, total) SELECT seq, seq * 1.5 FROM seq_1_to_25`);
    await db.client.query(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY 'pw'`);
    await db.client.query(`GRANT SELECT ON \`${db.database}\`.* TO '${user}'@'127.0.0.1'`);
  });
  afterAll(async () => {
    await db.client.query(`DROP USER IF EXISTS '${user}'@'127.0.0.1'`);
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  function config(): string {
    const path = join(dir, 'mysql.yaml');
    writeFileSync(
      path,
      `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: \${DEFINITE_API_KEY} }
sources:
  - name: shop
    kind: mysql
    url: \${MYSQL_URL}
    tables:
      - { name: orders, watermark: last_update, batchRows: 10 }
`,
    );
    return path;
  }

  it('check passes with PROCESS and warns without it, naming the grant', async () => {
    const ok = await pushsync(['--config', config(), 'check'], { DEFINITE_API_KEY: 'cli-key', MYSQL_URL: db.url });
    expect(ok.stdout).toContain('ok   shop.orders: watermark last_update, primary key (id), 3 columns → bronze.shop_orders');
    expect(ok.stdout).not.toContain('warn');
    expect(ok.stdout).toContain('all checks passed');
    expect(ok.code).toBe(0);

    const limited = new URL(db.url);
    limited.username = user;
    limited.password = 'pw';
    const warned = await pushsync(['--config', config(), 'check'], { DEFINITE_API_KEY: 'cli-key', MYSQL_URL: limited.toString() });
    expect(warned.stdout).toContain('warn source shop: the user lacks the PROCESS privilege');
    expect(warned.stdout).toContain('GRANT PROCESS ON *.* TO <user>');
    expect(warned.stdout).not.toContain('pw@');
  });

  it('check reports a binlog source in binlog terms: position, lag, format, row image, retention and privileges', async () => {
    const binlogDb = await createMysqlDatabase(MYSQL_BINLOG_URL);
    try {
      await binlogDb.client.query(`CREATE TABLE items (id int PRIMARY KEY)`);
      await binlogDb.client.query(
        `CREATE TABLE item_lines (id int PRIMARY KEY, item int, CONSTRAINT of_item FOREIGN KEY (item) REFERENCES items (id) ON DELETE CASCADE)`,
      );
      const path = join(dir, 'binlog.yaml');
      const slot = uniqueName('bl');
      writeFileSync(
        path,
        `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: cli-key }
sources:
  - name: shop
    kind: mysql
    url: ${binlogDb.url}
    mode: cdc
    cdc: { slot: ${slot} }
    tables:
      - { name: items }
      - { name: item_lines }
`,
      );
      const run = await pushsync(['--config', path, 'check'], {});
      expect(run.stdout).toContain(
        `warn source shop: ${binlogDb.database}.item_lines: foreign key of_item references ${binlogDb.database}.items ON DELETE CASCADE; InnoDB changes those rows itself`,
      );
      const line = run.stdout.split('\n').find((l) => l.includes('change data capture')) ?? '';
      expect(line).toMatch(/^ok {3}source shop change data capture: binlog stream /);
      expect(line).toContain(`binlog stream ${slot} will start at the first run`);
      expect(line).toContain('log_bin=ON; binlog_format=ROW; binlog_row_image=FULL');
      expect(line).toMatch(/binlog retention 86400 s \(binlog_expire_logs_seconds=86400, expire_logs_days=1[.0]*\)/);
      expect(line).toContain('privileges ALL PRIVILEGES');
      expect(line).not.toMatch(/WAL|slot/);
      expect(run.code).toBe(0);
    } finally {
      await binlogDb.drop();
    }
  });

  it('sync --once delivers every row and exits 0', async () => {
    const run = await pushsync(['--config', config(), 'sync', '--once'], { DEFINITE_API_KEY: 'cli-key', MYSQL_URL: db.url });
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('shop.orders → bronze.shop_orders: extracted=25 pushed=25');
    expect(run.code).toBe(0);
    expect((receiver.stored.get('bronze.shop_orders') ?? []).map((r) => JSON.parse(r) as { total: string }).map((r) => r.total)).toContain('37.50');
  });

  it('applies a transform to the rows of a MySQL table (transforms run in the pipeline, on any source)', async () => {
    writeFileSync(join(dir, 'transform.mjs'), `export default (r) => ({ ...r, total: null, seen: 'yes' });\n`);
    const path = join(dir, 'transform.yaml');
    writeFileSync(
      path,
      `
redis: { url: ${REDIS_URL}, prefix: ${prefix} }
destination: { url: ${receiver.url}, apiKey: cli-key }
sources:
  - name: shop2
    kind: mysql
    url: ${db.url}
    tables:
      - { name: orders, watermark: last_update, transform: ./transform.mjs, target: bronze.shop_orders_transformed }
`,
    );
    const run = await pushsync(['--config', path, 'sync', '--once'], {});
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rows = (receiver.stored.get('bronze.shop_orders_transformed') ?? []).map(
      (r) => JSON.parse(r) as { id: number; total: unknown; seen: string },
    );
    expect(rows.length).toBe(25);
    expect(rows.every((r) => r.total === null && r.seen === 'yes')).toBe(true);
  });
});
