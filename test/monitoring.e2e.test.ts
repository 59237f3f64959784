import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import { parse, stringify } from 'yaml';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { freePort, spawnPushsync } from './helpers/cli.js';
import { eventually } from './helpers/wait.js';
import { createMysqlDatabase, MYSQL_BINLOG_URL, type MysqlDatabase } from './helpers/mysql.js';

/**
 * The monitoring files of deploy/ against a real Prometheus (Debian's package; .ci/run installs it) scraping a
 * running pushsync: every dashboard query and alert expression must evaluate and return series.
 */
const DEPLOY = new URL('../deploy/', import.meta.url).pathname;
const PROMETHEUS_CONFIG = join(DEPLOY, 'prometheus/prometheus.yml');
const ALERTS = join(DEPLOY, 'prometheus/alerts.yml');
const DASHBOARD = join(DEPLOY, 'grafana/pushsync-dashboard.json');

interface QueryResult {
  status: string;
  error?: string;
  data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

function promtool(...args: string[]): { code: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8' });
  if (run.error) throw new Error(`promtool not found (apt-get install prometheus): ${run.error.message}`);
  return { code: run.status, output: `${run.stdout}${run.stderr}` };
}

/** The expression without its final threshold comparison: what the alert measures. */
function measured(expr: string): string {
  return expr.replace(/\s*(>=|<=|==|!=|>|<)\s*[0-9.e+]+\s*$/, '');
}

describe('monitoring: Prometheus scrape config, alert rules and the Grafana dashboard', () => {
  const schema = uniqueName('mon');
  const slot = uniqueName('slot');
  const prefix = uniqueName('mon');
  const metricsToken = 'scrape-token-0123456789';
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-monitoring-'));
  let client: pg.Client;
  let shop: MysqlDatabase;
  let receiver: Server;
  let pushsync: ChildProcess;
  let prometheus: ChildProcess;
  let promUrl: string;
  let pushsyncLog = '';

  const query = async (expr: string): Promise<QueryResult> => {
    const res = await request(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.body.json()) as QueryResult;
  };
  const series = async (expr: string): Promise<number> => (await query(expr)).data?.result.length ?? 0;

  beforeAll(async () => {
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(`CREATE TABLE refused (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await client.query(
      `INSERT INTO orders (id) SELECT generate_series(1, 30); INSERT INTO refused (id) VALUES (1); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 5) g`,
    );

    // A MySQL source in binlog mode, for the binlog lag series.
    shop = await createMysqlDatabase(MYSQL_BINLOG_URL);
    await shop.client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await shop.client.query(`INSERT INTO items VALUES (1, 'v')`);

    // A destination that refuses one target (400: straight to the dead-letter queue) and accepts the others.
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const { data, config } = JSON.parse(body) as { data: unknown[]; config: { table: string } };
        const refused = config.table === 'bronze.app_refused';
        res.writeHead(refused ? 400 : 200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            refused
              ? { success: false, errors: ['refused by the test'] }
              : { success: true, request_id: 'r', successful_rows: data.length, rejected_rows: 0, errors: [], warnings: [] },
          ),
        );
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const receiverPort = (receiver.address() as { port: number }).port;

    const port = await freePort();
    const configPath = join(dir, 'pushsync.yaml');
    writeFileSync(
      configPath,
      stringify({
        redis: { url: REDIS_URL, prefix },
        destination: { url: `http://127.0.0.1:${receiverPort}/v2/stream`, apiKey: 'k', attempts: 1 },
        // Default extract slots: the two change data capture readers get slots of their own (extractSlots), so the
        // watermark tables still run.
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            cdc: { slot, publication: slot, flushInterval: '50ms' },
            tables: [
              { name: `${schema}.orders`, watermark: 'updated_at', every: '1s', batchRows: 10, target: 'bronze.app_orders' },
              { name: `${schema}.refused`, watermark: 'updated_at', every: '1s', target: 'bronze.app_refused' },
              { name: `${schema}.items`, mode: 'cdc', target: 'bronze.app_items' },
            ],
          },
          {
            name: 'shop',
            kind: 'mysql',
            url: shop.url,
            mode: 'cdc',
            cdc: { slot, flushInterval: '50ms' },
            tables: [{ name: 'items', target: 'bronze.shop_items' }],
          },
        ],
        web: { port, metricsToken },
        log: { level: 'warn', format: 'json' },
      }),
    );
    pushsync = spawnPushsync(['--config', configPath, 'start']);
    pushsync.stdout!.on('data', (d: Buffer) => (pushsyncLog += d.toString()));
    pushsync.stderr!.on('data', (d: Buffer) => (pushsyncLog += d.toString()));

    // The shipped scrape config, pointed at this pushsync, scraping every second, with the metrics token.
    const shipped = parse(readFileSync(PROMETHEUS_CONFIG, 'utf8')) as {
      global: Record<string, string>;
      rule_files: string[];
      scrape_configs: Array<Record<string, unknown>>;
    };
    shipped.global = { scrape_interval: '1s', evaluation_interval: '1s' };
    shipped.rule_files = [ALERTS];
    shipped.scrape_configs[0] = {
      ...shipped.scrape_configs[0],
      authorization: { credentials: metricsToken },
      static_configs: [{ targets: [`127.0.0.1:${port}`] }],
    };
    const testConfig = join(dir, 'prometheus.yml');
    writeFileSync(testConfig, stringify(shipped));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    prometheus = spawn(
      'prometheus',
      [`--config.file=${testConfig}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
      { stdio: 'ignore' },
    );
    prometheus.on('error', (err) => {
      throw new Error(`prometheus could not start (apt-get install prometheus): ${err.message}`);
    });

    // Every kind of series present: rows pushed, a dead letter, an error, a slot's lag, and enough samples for rate().
    await eventually(
      async () => {
        try {
          return (
            (await series('up{job="pushsync"} == 1')) === 1 &&
            (await series('pushsync_rows_pushed_total > 0')) > 0 &&
            (await series('pushsync_queue_jobs{queue="push",state="failed"} > 0')) > 0 &&
            (await series('pushsync_errors_total')) > 0 &&
            (await series('pushsync_cdc_slot_lag_bytes')) > 0 &&
            (await series('pushsync_cdc_lag_seconds')) > 0 &&
            // rate() needs two samples of a series in its window, the newest series (an error's) included.
            (await series('min(count_over_time({__name__=~"pushsync_(rows_pushed_total|errors_total|push_duration_seconds_bucket)"}[1m])) >= 3')) > 0
          );
        } catch {
          return false; // Prometheus still starting
        }
      },
      250,
      50_000,
    );
  }, 90_000);

  afterAll(async () => {
    prometheus?.kill('SIGTERM');
    if (pushsync && pushsync.exitCode === null) {
      const exited = new Promise((resolve) => pushsync.once('exit', resolve));
      pushsync.kill('SIGTERM');
      await exited;
    }
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`).catch(() => {});
    await shop?.drop();
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await dropRedisPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes promtool check config and promtool check rules', () => {
    const config = promtool('check', 'config', PROMETHEUS_CONFIG);
    expect(config.output).toContain('is valid prometheus config file');
    expect(config.code).toBe(0);
    const rules = promtool('check', 'rules', ALERTS);
    expect(rules.output).toContain('SUCCESS');
    expect(rules.code).toBe(0);
  });

  it('scrapes pushsync with the metrics token, and finds no NaN value in what it scraped', async () => {
    expect(await series('up{job="pushsync"} == 1'), pushsyncLog).toBe(1);
    const scraped = (await query('{job="pushsync", __name__=~"pushsync_.+"}')).data!.result;
    expect(scraped.length).toBeGreaterThan(50);
    for (const s of scraped) expect(Number.isFinite(Number(s.value[1])), `${JSON.stringify(s.metric)} = ${s.value[1]}`).toBe(true);
    for (const s of scraped.filter((x) => x.metric.__name__!.includes('eventloop_lag'))) expect(Number(s.value[1])).toBeLessThan(1e9);
  });

  it('evaluates every dashboard query to at least one series', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr.replaceAll('$__rate_interval', '1m') })));
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    for (const { title, expr } of exprs) {
      const result = await query(expr);
      expect({ title, status: result.status, error: result.error }).toEqual({ title, status: 'success', error: undefined });
      expect(result.data!.result.length, `${title}: ${expr}`).toBeGreaterThan(0);
    }
  });

  it('evaluates every alert expression, each measuring existing series, and fires the dead-letter alert', async () => {
    const groups = (parse(readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups;
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'PushsyncDeadLetterQueueNotEmpty',
        'PushsyncSyncLagHigh',
        'PushsyncReplicationSlotLagHigh',
        'PushsyncBinlogLagHigh',
        'PushsyncErrorRateHigh',
        'PushsyncTablePaused',
      ]),
    );
    for (const rule of rules) {
      const result = await query(rule.expr);
      expect({ alert: rule.alert, status: result.status, error: result.error }).toEqual({ alert: rule.alert, status: 'success', error: undefined });
      expect(await series(measured(rule.expr)), `${rule.alert}: ${measured(rule.expr)}`).toBeGreaterThan(0);
    }
    // Prometheus itself evaluates the rules: every one healthy, the dead-letter alert pending (its `for` runs).
    await eventually(
      async () => {
        const res = await request(`${promUrl}/api/v1/rules?type=alert`);
        const body = (await res.body.json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; state: string }> }> } };
        const evaluated = body.data.groups.flatMap((g) => g.rules);
        return (
          evaluated.length === rules.length &&
          evaluated.every((r) => r.health === 'ok') &&
          evaluated.some((r) => r.name === 'PushsyncDeadLetterQueueNotEmpty' && r.state !== 'inactive')
        );
      },
      250,
      20_000,
    );
  });
});
