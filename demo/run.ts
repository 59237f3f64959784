/**
 * `npm run demo`: the main job on the bundled demo, against the local Redis and PostgreSQL, with the dev sink as the
 * destination. Loads the demo shop, syncs it, changes rows, syncs again, then shows what arrived in the dev sink's
 * DuckDB file next to whether the current state there equals the source. `npm run demo -- --source mariadb` does the
 * same with the shop in the local MariaDB (demo/mariadb/).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { DevSinkStore } from '../src/destinations/dev-sink-store.js';
import { silverViewSql, silverName } from '../src/core/views.js';
import { deletePrefix } from '../src/queue/redis.js';

const ROOT = new URL('..', import.meta.url).pathname;
const SOURCE = process.argv.includes('--source') ? process.argv[process.argv.indexOf('--source') + 1] : 'postgres';
if (SOURCE !== 'postgres' && SOURCE !== 'mariadb') throw new Error(`--source must be postgres or mariadb, got ${SOURCE}`);
const MARIADB = SOURCE === 'mariadb';
const ADMIN_URL = process.env.DEMO_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASE_URL =
  process.env.DATABASE_URL ??
  (MARIADB ? 'mysql://pushsync_test:pushsync_test@127.0.0.1:3306/pushsync_demo' : 'postgres://postgres@127.0.0.1:5432/pushsync_demo');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = 'pushsync-demo';
const SINK_PORT = Number(process.env.DEMO_SINK_PORT ?? 8787);
const OUT = `${ROOT}.tmp/demo`;
const DB_FILE = `${OUT}/devsink.duckdb`;
const CONFIG = `${ROOT}demo/${MARIADB ? 'pushsync.mariadb.yaml' : 'pushsync.demo.yaml'}`;
const env = {
  ...process.env,
  DATABASE_URL,
  REDIS_URL,
  PUSHSYNC_PREFIX: PREFIX,
  DEFINITE_STREAM_URL: `http://127.0.0.1:${SINK_PORT}/v2/stream`,
  DEFINITE_API_KEY: 'demo-key',
  LOG_LEVEL: 'warn',
};

/** What is compared per table: key columns first. */
const SCHEMA = MARIADB ? '' : 'demo.';
const TABLES = [
  { source: `${SCHEMA}customers`, target: 'bronze.shop_customers', key: ['id'], columns: ['id', 'name', 'email'], where: 'TRUE' },
  { source: `${SCHEMA}orders`, target: 'bronze.shop_orders', key: ['id'], columns: ['id', 'status', 'amount'], where: 'deleted_at IS NULL' },
  {
    source: `${SCHEMA}order_items`,
    target: 'bronze.shop_order_items',
    key: ['order_id', 'line'],
    columns: ['order_id', 'line', 'sku', 'quantity', 'unit_price'],
    where: 'TRUE',
  },
];

/** The MariaDB demo database, as the test user; statements of the bundled SQL files one by one. */
async function mariadb(database?: string): Promise<mysql.Connection> {
  const u = new URL(DATABASE_URL);
  return mysql.createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database,
  });
}

function statements(file: string): string[] {
  const text = readFileSync(`${ROOT}demo/mariadb/${file}`, 'utf8').replace(/^--.*$/gm, '');
  return text
    .split(';')
    .map((x) => x.trim())
    .filter(Boolean);
}

async function prepareMariadb(): Promise<void> {
  const dbName = new URL(DATABASE_URL).pathname.slice(1);
  const admin = await mariadb();
  await admin.query(`CREATE DATABASE IF NOT EXISTS \`${dbName.replace(/`/g, '``')}\``);
  await admin.end();
  const db = await mariadb(dbName);
  for (const sql of statements('schema.sql')) await db.query(sql);
  await db.end();
}

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function pushsync(...args: string[]): void {
  const res = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, '--config', CONFIG, ...args], { env, stdio: 'inherit' });
  if (res.status !== 0) throw new Error(`pushsync ${args.join(' ')} exited with ${res.status}`);
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on port ${port}`);
}

async function prepareDatabase(): Promise<void> {
  if (MARIADB) return prepareMariadb();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const dbName = new URL(DATABASE_URL).pathname.slice(1);
  const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbName]);
  if (rows.length === 0) await admin.query(`CREATE DATABASE "${dbName.replace(/"/g, '""')}"`);
  await admin.end();
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  await db.query(readFileSync(`${ROOT}demo/schema.sql`, 'utf8'));
  await db.end();
}

async function clearRedis(): Promise<void> {
  const redis = new Redis(REDIS_URL);
  await deletePrefix(redis, PREFIX);
  await redis.quit();
}

async function writeChanges(rounds: number): Promise<void> {
  if (MARIADB) {
    const db = await mariadb(new URL(DATABASE_URL).pathname.slice(1));
    for (let i = 0; i < rounds; i++) for (const sql of statements('writer.sql')) await db.query(sql);
    await db.end();
    return;
  }
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  const sql = readFileSync(`${ROOT}demo/writer.sql`, 'utf8');
  for (let i = 0; i < rounds; i++) await db.query(sql);
  await db.end();
}

const text = (v: unknown): string => (v === null || v === undefined ? 'NULL' : String(v));

/** The source's rows of a table as text, computed by the source database. */
async function sourceRows(t: (typeof TABLES)[number]): Promise<unknown[][]> {
  if (MARIADB) {
    const db = await mariadb(new URL(DATABASE_URL).pathname.slice(1));
    try {
      const [rows] = await db.query({
        sql: `SELECT ${t.columns.map((c) => `CAST(${c} AS CHAR)`).join(', ')} FROM ${t.source} WHERE ${t.where}`,
        rowsAsArray: true,
      });
      return rows as unknown[][];
    } finally {
      await db.end();
    }
  }
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    return (await db.query({ text: `SELECT ${t.columns.map((c) => `${c}::text`).join(', ')} FROM ${t.source} WHERE ${t.where}`, rowMode: 'array' }))
      .rows as unknown[][];
  } finally {
    await db.end();
  }
}

async function compare(): Promise<number> {
  const store = await DevSinkStore.open(DB_FILE);
  let differences = 0;
  process.stdout.write(
    `${'table'.padEnd(28)}${'bronze rows'.padStart(12)}${'silver rows'.padStart(12)}${'source rows'.padStart(12)}${'differences'.padStart(13)}\n`,
  );
  try {
    for (const t of TABLES) {
      for (const statement of silverViewSql({ label: t.source, target: t.target, primaryKey: t.key })
        .split(';')
        .map((s) => s.trim())
        .filter(Boolean)) {
        await store.query(statement);
      }
      const [bronze] = await store.query(`SELECT count(*)::VARCHAR AS n FROM ${t.target}`);
      const silver = await store.query(`SELECT ${t.columns.map((c) => `${c}::VARCHAR AS ${c}`).join(', ')} FROM ${silverName(t.target)}`);
      const source = { rows: await sourceRows(t) };
      const want = new Set(source.rows.map((r: unknown[]) => r.map(text).join('|')));
      const got = new Set(silver.map((r) => t.columns.map((c) => text(r[c])).join('|')));
      const diff = [...want].filter((x) => !got.has(x)).length + [...got].filter((x) => !want.has(x)).length;
      differences += diff;
      process.stdout.write(
        `${t.target.padEnd(28)}${String(bronze!.n).padStart(12)}${String(silver.length).padStart(12)}${String(source.rows.length).padStart(12)}${String(diff).padStart(13)}\n`,
      );
    }
  } finally {
    await store.close();
  }
  return differences;
}

async function main(): Promise<void> {
  step('build');
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  step(`load the demo shop into ${MARIADB ? 'MariaDB' : 'PostgreSQL'}`);
  await prepareDatabase();
  await clearRedis();
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });

  step(`start the dev sink on port ${SINK_PORT} (DuckDB file ${DB_FILE})`);
  const sink: ChildProcess = spawn(
    process.execPath,
    [`${ROOT}dist/cli.js`, 'dev-sink', '--port', String(SINK_PORT), '--db', DB_FILE, '--api-key', 'demo-key'],
    {
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  try {
    await waitForPort(SINK_PORT);
    step('pushsync check');
    pushsync('check');
    step('pushsync sync --once --reconcile (initial backfill)');
    pushsync('sync', '--once', '--reconcile');
    step('change rows: inserts, updates, soft deletes, hard deletes');
    await writeChanges(3);
    step('pushsync sync --once --reconcile (only what changed)');
    pushsync('sync', '--once', '--reconcile');
    step('look at the data while the sink runs: pushsync dev-sink query and dev-sink export --parquet');
    const sinkUrl = `http://127.0.0.1:${SINK_PORT}`;
    // Orders' id (bigint) and amount (numeric) arrive as text by design: cast them to compute with them.
    pushsync(
      'dev-sink',
      'query',
      '--url',
      sinkUrl,
      'SELECT _op, count(*) AS versions, sum(amount::DECIMAL(12,2)) AS amount, max(id::BIGINT) AS max_id FROM bronze.shop_orders GROUP BY _op ORDER BY _op',
    );
    pushsync('dev-sink', 'export', '--url', sinkUrl, '--parquet', `${OUT}/parquet`);
  } finally {
    sink.kill('SIGTERM');
    await new Promise((r) => sink.once('exit', r));
  }
  step('what arrived: bronze (every version) and the silver view (current state) against the source');
  const differences = await compare();
  process.stdout.write(
    `\n${differences === 0 ? 'current state equals the source' : `${differences} differences`}; query it yourself while a sink runs: pushsync dev-sink query "SQL" (Parquet copies in ${OUT}/parquet)\n`,
  );
  if (differences !== 0) process.exit(1);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
