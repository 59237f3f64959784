import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { runPushsync } from './helpers/cli.js';
import { createMysqlDatabase, textRows, type MysqlDatabase } from './helpers/mysql.js';

/**
 * `pushsync init` on the Pagila fixture (loaded into a database of its own) plus three tables of this test's: one
 * whose watermark only a DEFAULT sets, one keyed by a unique index only, one with no key at all. The written file is
 * then used as it is (only a Redis prefix of the test's own added) by `sync --once`, which must deliver every row of
 * every table it lists.
 */
const FIXTURE = new URL('../../shared/fixtures/pagila/', import.meta.url).pathname;
const SAKILA = new URL('../../shared/fixtures/sakila/', import.meta.url).pathname;
const PASSWORD = 'not-in-the-file-7f3a';

describe.runIf(existsSync(`${FIXTURE}pagila-schema.sql`))('pushsync init', () => {
  const dbName = uniqueName('initdb');
  const base = new URL(PG_URL);
  const withPassword = `postgres://${base.username || 'postgres'}:${PASSWORD}@${base.host}/${dbName}`;
  const prefix = uniqueName('ps');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-init-'));
  const variable = `${dbName.toUpperCase()}_DB_PASSWORD`;
  let admin: pg.Client;
  let client: pg.Client;
  let receiver: Receiver;
  let written = '';
  let stdout = '';

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    const url = PG_URL.replace(/\/[^/]*$/, `/${dbName}`);
    const psql = (args: string[]): void =>
      void execFileSync('psql', [url, '-q', '-v', 'ON_ERROR_STOP=1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    psql(['-c', 'CREATE SCHEMA pagila']);
    psql(['-f', `${FIXTURE}pagila-schema.sql`]);
    psql(['-f', `${FIXTURE}pagila-data.sql`]);
    client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`
      CREATE TABLE public.orders (id bigint PRIMARY KEY, total numeric(12,2), created_at timestamptz NOT NULL DEFAULT now(),
                                  updated_at timestamptz NOT NULL DEFAULT now());
      CREATE INDEX orders_updated ON public.orders (updated_at, id);
      INSERT INTO public.orders (id, total) SELECT g, g * 1.5 FROM generate_series(1, 250) g;
      CREATE TABLE public.tags (code text NOT NULL, label text, changed_at timestamp NOT NULL DEFAULT now());
      CREATE UNIQUE INDEX tags_code ON public.tags (code);
      INSERT INTO public.tags (code, label) VALUES ('a', 'A'), ('b', 'B');
      CREATE TABLE public.audit_log (at timestamptz, line text);
      INSERT INTO public.audit_log VALUES (now(), 'x');`);
    receiver = await startReceiver('k');
    const run = await runPushsync(['init', '--url', withPassword, '--out', join(dir, 'pushsync.yaml'), '--destination', receiver.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    stdout = run.stdout;
    written = readFileSync(join(dir, 'pushsync.yaml'), 'utf8');
    console.log(`pushsync init printed:\n${stdout}\nand wrote:\n${written}`);
  }, 180_000);

  afterAll(async () => {
    await client?.end();
    await receiver?.close();
    await dropRedisPrefix(prefix);
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes no password: the URL reads it from a variable the output names', () => {
    expect(written).not.toContain(PASSWORD);
    expect(stdout).not.toContain(PASSWORD);
    expect(written).toContain(`url: "postgres://${base.username || 'postgres'}:\${${variable}}@${base.host}/${dbName}"`);
    expect(written).toContain(`#   ${variable}: the database password`);
    expect(stdout).toContain(`export ${variable}=`);
    expect(written).toContain('apiKey: ${DEFINITE_API_KEY}');
  });

  it('names each table with its key and watermark, and says what keeps the watermark current', () => {
    const section = (name: string): string => {
      const lines = written.split('\n');
      const at = lines.findIndex((l) => l.includes(`name: ${name}`));
      expect(at, name).toBeGreaterThan(0);
      let start = at;
      while (start > 0 && lines[start - 1]!.trim() !== '') start -= 1;
      return lines.slice(start, at + 3).join('\n');
    };
    expect(section('pagila.film_actor')).toMatch(/primary key \(actor_id, film_id\)[\s\S]*kept current on UPDATE by trigger last_updated/);
    expect(section('pagila.film_actor')).toContain(
      'CREATE INDEX CONCURRENTLY film_actor_last_update_pushsync_idx ON pagila.film_actor (last_update, actor_id, film_id);',
    );
    // DEFAULT now() alone: said so, with the trigger that would fix it; created_at is not taken for a change time.
    const orders = section('orders');
    expect(orders).toContain('watermark: updated_at');
    expect(orders.replace(/\n\s*# (?!\s)/g, ' ')).toMatch(/WARNING: no trigger keeps updated_at current: its DEFAULT now\(\) sets it on INSERT only/);
    expect(orders).toContain('CREATE TRIGGER orders_updated_at_current BEFORE UPDATE ON public.orders');
    expect(orders).toContain('index orders_updated serves its pages');
    expect(section('tags')).toContain('primaryKey: [code]');
    expect(section('tags')).toContain('from unique index tags_code');
    expect(section('audit_log')).toMatch(/LEFT OUT: no primary key[\s\S]*# - name: audit_log/);
    expect(section('pagila.payment')).toMatch(/LEFT OUT: its only timestamp column \(payment_date\) is part of the primary key/);
    expect(stdout).toMatch(/^warn orders: key \(id\), watermark updated_at NOT kept current on UPDATE$/m);
    expect(stdout).toMatch(/^skip pagila\.payment: /m);
  });

  it('writes a file that passes config validation and that sync --once delivers every listed table with', async () => {
    const path = join(dir, 'pushsync.yaml');
    // The one change: a Redis prefix of this test's own on the shared Redis.
    writeFileSync(path, written.replace('redis:\n', `redis:\n  prefix: ${prefix}\n`));
    const env = { [variable]: PASSWORD, DEFINITE_API_KEY: 'k', REDIS_URL };
    const config = loadConfig(path, env);
    const tables = config.sources[0]!.tables;
    expect(tables.map((t) => t.name).sort()).toEqual(
      [
        ...['actor', 'address', 'category', 'city', 'country', 'customer', 'film', 'film_actor', 'film_category'].map((t) => `pagila.${t}`),
        ...['inventory', 'language', 'rental', 'staff', 'store'].map((t) => `pagila.${t}`),
        'orders',
        'tags',
      ].sort(),
    );
    const run = await runPushsync(['-c', path, 'sync', '--once', '--timeout', '2m'], env);
    expect(run.stderr.split('\n').filter((l) => /"level":(50|60)|FAILED/.test(l))).toEqual([]);
    expect(run.code).toBe(0);
    const counts: string[] = [];
    for (const t of tables) {
      const [{ n }] = (await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${t.name}`)).rows as [{ n: string }];
      const got = receiver.stored.get(t.target)?.length ?? 0;
      counts.push(`${t.name}: ${n} rows, ${got} received`);
      expect(got, t.name).toBe(Number(n));
    }
    console.log(counts.join('\n'));
  }, 180_000);

  it('--tables writes only those; an unknown name is refused with the tables there are; an existing file is kept', async () => {
    const out = join(dir, 'two.yaml');
    const two = await runPushsync(['init', '--url', withPassword, '--tables', 'pagila.actor,orders', '--out', out]);
    expect(two.code).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(text.match(/^ {6}- name: /gm)).toHaveLength(2);
    expect(text).toContain('url: "http://127.0.0.1:8787/v2/stream"');
    const again = await runPushsync(['init', '--url', withPassword, '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${out} exists; pass --force`);
    const unknown = await runPushsync(['init', '--url', withPassword, '--tables', 'nosuch', '--out', '-']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--tables: no table nosuch that this user may read; tables: .*pagila\.actor/);
    expect(unknown.stderr).not.toContain(PASSWORD);
  }, 60_000);
});

describe.runIf(existsSync(`${SAKILA}sakila-schema.sql`))('pushsync init on MariaDB (Sakila)', () => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-init-'));

  beforeAll(async () => {
    db = await createMysqlDatabase();
    const u = new URL(db.url);
    const load = (sql: string): void =>
      void execFileSync('mariadb', ['-h', u.hostname, '-P', u.port || '3306', '-u', decodeURIComponent(u.username), db.database], {
        input: sql,
        env: { ...process.env, MYSQL_PWD: decodeURIComponent(u.password) },
        stdio: ['pipe', 'ignore', 'pipe'],
      });
    for (const file of ['sakila-schema.sql', 'sakila-data.sql']) load(readFileSync(`${SAKILA}${file}`, 'utf8').replace(/\bsakila\b/g, db.database));
    load(`CREATE TABLE shipments (id INT PRIMARY KEY, changed DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));
          INSERT INTO shipments (id) VALUES (1), (2), (3);`);
    receiver = await startReceiver('k');
  }, 180_000);

  afterAll(async () => {
    await receiver?.close();
    await dropRedisPrefix(prefix);
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says ON UPDATE keeps last_update current, warns where only a DEFAULT sets it, and the file syncs every table it lists', async () => {
    const path = join(dir, 'pushsync.yaml');
    const init = await runPushsync(['init', '--url', db.url, '--out', path, '--destination', receiver.url]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    const written = readFileSync(path, 'utf8');
    const password = decodeURIComponent(new URL(db.url).password);
    expect(written).not.toContain(`:${password}@`);
    expect(written).toMatch(/# last_update is kept current on UPDATE by ON UPDATE CURRENT_TIMESTAMP\n[\s\S]*?- name: payment\n/);
    // Comments wrap; read them as one line.
    const flat = written.replace(/\n\s*# (?!\s)/g, ' ');
    expect(flat).toMatch(/WARNING: no trigger or ON UPDATE keeps changed current: its DEFAULT current_timestamp\(3\) sets it on INSERT only/i);
    expect(written).toContain(
      `ALTER TABLE ${db.database}.shipments MODIFY changed DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3);`,
    );
    expect(written).toMatch(/LEFT OUT: no timestamp column to use as watermark[\s\S]*# - name: film_text/);
    const variable = /\$\{([A-Z0-9_]+_DB_PASSWORD)\}/.exec(written)![1]!;
    writeFileSync(path, written.replace('redis:\n', `redis:\n  prefix: ${prefix}\n`));
    const env = { [variable]: password, DEFINITE_API_KEY: 'k', REDIS_URL };
    const tables = loadConfig(path, env).sources[0]!.tables;
    expect(tables).toHaveLength(16);
    const run = await runPushsync(['-c', path, 'sync', '--once', '--timeout', '2m'], env);
    expect(run.code).toBe(0);
    for (const t of tables) {
      const [[n]] = (await textRows(db.client, `SELECT COUNT(*) FROM \`${db.database}\`.\`${t.name}\``)) as [[string]];
      expect(receiver.stored.get(t.target)?.length ?? 0, t.name).toBe(Number(n));
    }
  }, 180_000);
});
