import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { request } from 'undici';
import { silverName, silverViewSql } from '../src/core/views.js';
import { parseConfig } from '../src/config.js';
import { closePipeline, createPipeline } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { pipelineStatus } from '../src/queue/status.js';
import type { TableStatus } from '../src/core/table-status.js';
import { startDevSink, type DevSink } from '../src/destinations/dev-sink.js';
import { collect, freePort, runPushsync, spawnPushsync, type Run } from './helpers/cli.js';
import { createSchema, dropRedisPrefix, REDIS_URL, PG_URL, uniqueName } from './helpers/services.js';
import { eventually, sleep } from './helpers/wait.js';

/**
 * Schema changes made while a long-running `pushsync start` syncs watermark tables: after each, the silver view that
 * `pushsync views` prints, run in DuckDB over what the dev sink stored, equals the source table, no push job fails,
 * and the change is announced (status, the announcement target, a log line).
 */
type Value = string | null;

describe('schema changes while pushsync start runs (watermark mode)', { timeout: 300_000 }, () => {
  const prefix = uniqueName('schema');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-schema-'));
  const ANNOUNCED = 'bronze.pushsync_schema_changes';
  let db: Awaited<ReturnType<typeof createSchema>>;
  let sink: DevSink;
  let path: string;
  let port: number;
  let child: ReturnType<typeof spawnPushsync>;
  let done: Promise<Run>;
  let log = '';
  /** Reads status in this process (as GET /status does): the CLI is run where its output is what is tested. */
  let ctx: ReturnType<typeof createPipeline>;

  const table = (name: string, extra: Record<string, unknown> = {}) => ({
    name: `${db.schema}.${name}`,
    watermark: 'updated_at',
    every: '1s',
    batchRows: 20,
    target: `bronze.s_${name}`,
    ...extra,
  });
  const target = (name: string): string => `bronze.s_${name}`;

  /** The silver view over what the sink stored, `columns` cast to text, by id. */
  async function silver(name: string, columns: string[]): Promise<Value[][]> {
    for (const s of silverViewSql({ label: name, target: target(name), primaryKey: ['id'] })
      .split(';')
      .map((x) => x.trim())
      .filter(Boolean))
      await sink.store.query(s);
    const rows = await sink.store.query(
      `SELECT ${columns.map((c) => `CAST("${c}" AS VARCHAR) AS "${c}"`).join(', ')} FROM ${silverName(target(name))} ORDER BY CAST(id AS BIGINT)`,
    );
    return rows.map((r) => columns.map((c) => (r[c] as Value) ?? null));
  }

  async function source(name: string, columns: string[]): Promise<Value[][]> {
    const { rows } = await db.client.query<Record<string, Value>>(
      `SELECT ${columns.map((c) => `"${c}"::text AS "${c}"`).join(', ')} FROM ${name} ORDER BY ${name}.id`,
    );
    return rows.map((r) => columns.map((c) => r[c] ?? null));
  }

  async function silverEqualsSource(name: string, columns: string[], withinMs = 120_000): Promise<void> {
    let last: [Value[][], Value[][]] = [[], []];
    await eventually(
      async () => {
        const tables = (await sink.store.query(`SELECT table_name FROM duckdb_tables() WHERE schema_name = 'bronze'`)).map((r) => r.table_name);
        if (!tables.includes(`s_${name}`)) return false;
        last = [await silver(name, columns).catch(() => []), await source(name, columns)];
        return JSON.stringify(last[0]) === JSON.stringify(last[1]);
      },
      250,
      withinMs,
    ).catch(() => undefined);
    expect(last[0]).toEqual(last[1]);
  }

  async function announced(name: string): Promise<Array<Record<string, unknown>>> {
    const tables = (await sink.store.query(`SELECT table_name FROM duckdb_tables() WHERE schema_name = 'bronze'`)).map((r) => r.table_name);
    if (!tables.includes('pushsync_schema_changes')) return [];
    return sink.store.query(
      `SELECT kind, "column", old_type, new_type, verdict, sent, note, applies_from, _source, _table FROM ${ANNOUNCED} WHERE "table" = '${db.schema}.${name}' ORDER BY detected_at, kind`,
    );
  }

  async function status(): Promise<{ tables: TableStatus[]; deadLetters: number }> {
    return pipelineStatus(ctx);
  }
  const tableStatus = async (name: string): Promise<TableStatus> => (await status()).tables.find((t) => t.table === `${db.schema}.${name}`)!;

  const rows = async (name: string): Promise<number> => {
    const tables = (await sink.store.query(`SELECT table_name FROM duckdb_tables() WHERE schema_name = 'bronze'`)).map((r) => r.table_name);
    if (!tables.includes(`s_${name}`)) return 0;
    const [r] = await sink.store.query(`SELECT count(*)::INT AS n FROM ${target(name)}`);
    return Number(r!.n);
  };

  beforeAll(async () => {
    db = await createSchema();
    const create = async (name: string, n: number, columns = ', v text'): Promise<void> => {
      await db.client.query(`CREATE TABLE ${name} (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()${columns})`);
      await db.client.query(`CREATE INDEX ON ${name} (updated_at, id)`);
      await db.client.query(`INSERT INTO ${name} (id, v) SELECT g, 'v' || g FROM generate_series(1, ${n}) g`);
    };
    await create('t_add', 100);
    await create('t_fill', 40);
    await create('t_drop', 100);
    await create('t_rename', 40);
    await create('t_type', 40, ', v text, n int, s varchar(20), amount numeric(10,2)');
    await db.client.query(`UPDATE t_type SET n = id * 1000, s = 'text-' || id, amount = id / 7.0`);
    await create('t_mid', 300);
    await create('t_recreate', 50);
    await create('t_regen', 10);
    await create('t_query', 20);
    await create('t_freeze', 30);
    await create('t_allow', 30);
    sink = await startDevSink({ port: 0, dbPath: join(dir, 'sink.duckdb'), apiKey: 'k' });
    port = await freePort();
    const config = {
      redis: { url: REDIS_URL, prefix },
      destination: { url: sink.url, apiKey: 'k', concurrency: 2, backoff: { base: '200ms', cap: '1s' } },
      extract: { maxPendingBatches: 2 },
      sources: [
        {
          name: 'app',
          kind: 'postgres',
          url: PG_URL,
          tables: [
            table('t_add'),
            table('t_fill', { onAddedColumn: 'backfill' }),
            table('t_drop'),
            table('t_rename', { onAddedColumn: 'backfill' }),
            table('t_type'),
            table('t_mid', { onAddedColumn: 'backfill', batchRows: 5 }),
            table('t_recreate', { reconcile: { every: '2s', maxWait: '1s' } }),
            table('t_regen'),
            // A custom SQL table reading every column of a table: its result changes with the table.
            {
              name: 'q_items',
              query: `SELECT q.*, 'tagged' AS tag FROM ${db.schema}.t_query q`,
              primaryKey: ['id'],
              watermark: 'updated_at',
              every: '1s',
              batchRows: 20,
              target: 'bronze.s_q_items',
            },
            table('t_freeze', { schemaChanges: 'freeze' }),
            table('t_allow', { columns: { include: ['id', 'updated_at', 'v'] } }),
          ],
        },
      ],
      web: { port },
      log: { format: 'json', level: 'info' },
    };
    path = join(dir, 'pushsync.yaml');
    writeFileSync(path, stringify(config));
    ctx = createPipeline(parseConfig(config, {}), createLogger('silent'));
    child = spawnPushsync(['--config', path, 'start', '--port', String(port)]);
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    done = collect(child);
    for (const name of ['t_add', 't_fill', 't_drop', 't_rename', 't_type', 't_mid', 't_recreate', 't_regen', 't_freeze', 't_allow'])
      await silverEqualsSource(name, ['id', 'v'], 180_000);
  }, 300_000);

  afterAll(async () => {
    child?.kill('SIGTERM');
    await done;
    if (process.env.PUSHSYNC_TEST_KEEP_LOG) writeFileSync(process.env.PUSHSYNC_TEST_KEEP_LOG, log);
    if (ctx) await closePipeline(ctx);
    await sink?.close();
    await db?.drop();
    await dropRedisPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('ADD COLUMN then UPDATE: the new column is sent from the next read, without a restart, and announced', async () => {
    await db.client.query(`ALTER TABLE t_add ADD COLUMN extra text`);
    await db.client.query(`UPDATE t_add SET extra = 'E' || id, updated_at = clock_timestamp() WHERE id <= 10`);
    await silverEqualsSource('t_add', ['id', 'v', 'extra']);
    const sent = await sink.store.query(`SELECT id, extra FROM ${target('t_add')} WHERE extra IS NOT NULL ORDER BY id`);
    expect(sent.map((r) => r.extra)).toEqual(Array.from({ length: 10 }, (_, i) => `E${i + 1}`));
    await eventually(async () => (await announced('t_add')).length > 0, 200, 60_000);
    expect(await announced('t_add')).toMatchObject([
      { kind: 'column_added', column: 'extra', old_type: null, new_type: 'text', sent: true, _source: 'app' },
    ]);
    const s = await tableStatus('t_add');
    expect(s.schemaChanges).toMatchObject([{ kind: 'column_added', column: 'extra' }]);
    expect(s.failedBatches).toBe(0);
  });

  it('ADD COLUMN with a default and a generated column, onAddedColumn: backfill: every older row is sent again with them', async () => {
    await db.client.query(`ALTER TABLE t_fill ADD COLUMN d int NOT NULL DEFAULT 7`);
    await db.client.query(`ALTER TABLE t_fill ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED`);
    await silverEqualsSource('t_fill', ['id', 'v', 'd', 'g']);
    await eventually(async () => (await announced('t_fill')).length >= 2, 200, 60_000);
    expect((await announced('t_fill')).map((a) => [a.kind, a.column])).toEqual([
      ['column_added', 'd'],
      ['column_added', 'g'],
    ]);
  });

  it('DROP COLUMN then UPDATE: no push job fails, the column stops being sent and the rows flow on', async () => {
    await db.client.query(`ALTER TABLE t_drop DROP COLUMN v`);
    await db.client.query(`UPDATE t_drop SET updated_at = clock_timestamp() WHERE id <= 10`);
    await eventually(async () => Number((await sink.store.query(`SELECT count(*) AS n FROM ${target('t_drop')}`))[0]!.n) >= 110, 200, 90_000);
    await silverEqualsSource('t_drop', ['id']);
    // Bronze keeps the dropped column: records sent after the drop hold NULL in it, older ones their values.
    const latest = await silver('t_drop', ['id', 'v']);
    expect(latest.filter(([id]) => Number(id) <= 10).every(([, v]) => v === null)).toBe(true);
    expect(latest.find(([id]) => id === '50')).toEqual(['50', 'v50']);
    await eventually(async () => (await announced('t_drop')).length > 0, 200, 60_000);
    expect(await announced('t_drop')).toMatchObject([{ kind: 'column_dropped', column: 'v', old_type: 'text', new_type: null, sent: false }]);
    const s = await tableStatus('t_drop');
    expect(s.failedBatches).toBe(0);
    expect(s.state).not.toBe('failing');
  });

  it('RENAME COLUMN is a drop plus an add (backfilled here, so the silver view has every value under the new name)', async () => {
    await db.client.query(`ALTER TABLE t_rename RENAME COLUMN v TO w`);
    await silverEqualsSource('t_rename', ['id', 'w']);
    await eventually(async () => (await announced('t_rename')).length >= 2, 200, 60_000);
    expect(await announced('t_rename')).toMatchObject([
      { kind: 'column_added', column: 'w', new_type: 'text' },
      { kind: 'column_dropped', column: 'v', old_type: 'text' },
    ]);
  });

  it('ALTER TYPE: widening passes with its announcement; narrowing is flagged at warning level with the column and what to do', async () => {
    await db.client.query(`ALTER TABLE t_type ALTER COLUMN n TYPE bigint, ALTER COLUMN amount TYPE numeric(12,2)`);
    await eventually(async () => (await announced('t_type')).length >= 2, 200, 60_000);
    await db.client.query(`ALTER TABLE t_type ALTER COLUMN s TYPE varchar(6) USING left(s, 6), ALTER COLUMN amount TYPE numeric(12,1)`);
    // The ALTER rewrote values without moving updated_at: what the announcement advises, a re-read, sends them.
    const backfill = await runPushsync(['--config', path, 'backfill', '--table', `app.${db.schema}.t_type`]);
    expect(backfill.stderr).toBe('');
    await silverEqualsSource('t_type', ['id', 'v', 'n', 's', 'amount']);
    await eventually(async () => (await announced('t_type')).length >= 4, 200, 60_000);
    const changes = await announced('t_type');
    const verdicts = Object.fromEntries(changes.map((c) => [`${c.column}:${c.new_type}`, c.verdict]));
    expect(verdicts).toMatchObject({
      'n:bigint': 'widening',
      'amount:numeric(12,2)': 'widening',
      's:character varying(6)': 'narrowing',
      'amount:numeric(12,1)': 'narrowing',
    });
    const warnings = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; schemaChange?: { column: string } })
      .filter((l) => l.schemaChange && l.msg.includes('t_type'));
    expect(
      warnings
        .filter((l) => l.level === 40)
        .map((l) => l.schemaChange!.column)
        .sort(),
    ).toEqual(['amount', 's']);
    expect(
      warnings
        .filter((l) => l.level === 30)
        .map((l) => l.schemaChange!.column)
        .sort(),
    ).toEqual(['amount', 'n']);
    expect(warnings.find((l) => l.level === 40)!.msg).toMatch(/new target/);
  });

  it('ADD COLUMN while a backfill is half done: the read goes on and every row ends with the new column', async () => {
    const first = await rows('t_mid');
    const backfill = await runPushsync(['--config', path, 'backfill', '--table', `app.${db.schema}.t_mid`]);
    expect(backfill.stderr).toBe('');
    await eventually(async () => (await rows('t_mid')) >= first + 50, 50, 120_000);
    expect(await rows('t_mid')).toBeLessThan(first + 300);
    expect((await tableStatus('t_mid')).state).toBe('backfilling');
    await db.client.query(`ALTER TABLE t_mid ADD COLUMN d int NOT NULL DEFAULT 7`);
    await silverEqualsSource('t_mid', ['id', 'v', 'd'], 180_000);
    expect((await tableStatus('t_mid')).failedBatches).toBe(0);
  });

  it('DROP and CREATE the table again: a new table, read again from its start; keys only the old one had are deleted by reconciliation', async () => {
    await db.client.query(`DROP TABLE t_recreate`);
    // Pushsync keeps trying while the table is gone (retryable), and takes the new one as a new table.
    await sleep(1500);
    await db.client.query(`CREATE TABLE t_recreate (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    await db.client.query(`INSERT INTO t_recreate (id, v) SELECT g, 'new' || g FROM generate_series(1, 30) g`);
    await silverEqualsSource('t_recreate', ['id', 'v'], 120_000);
    await eventually(async () => (await announced('t_recreate')).some((a) => a.kind === 'table_recreated'), 200, 60_000);
  });

  it('DROP and CREATE again with older watermarks, no reconcile: silver is the new table exactly, under a new generation', async () => {
    await db.client.query(`DROP TABLE t_regen`);
    await db.client.query(`CREATE TABLE t_regen (id int PRIMARY KEY, updated_at timestamptz NOT NULL, v text)`);
    // Keys 1..4 only the old table had; 5..10 in both, with watermarks older than every version of the old table.
    await db.client.query(
      `INSERT INTO t_regen SELECT g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second', 'new' || g FROM generate_series(5, 15) g`,
    );
    await silverEqualsSource('t_regen', ['id', 'v'], 120_000);
    const now = await silver('t_regen', ['id', 'updated_at']);
    expect(now.map(([id]) => Number(id))).toEqual(Array.from({ length: 11 }, (_, i) => i + 5));
    expect(now.every(([, at]) => at!.startsWith('2020-01-01'))).toBe(true);
    const generations = await sink.store.query(
      `SELECT _generation::INT AS g, _op, count(*)::INT AS n FROM ${target('t_regen')} GROUP BY ALL ORDER BY g, _op`,
    );
    expect(generations.filter((r) => r.g === 1)).toEqual([
      { g: 1, _op: 'table_recreated', n: 1 },
      { g: 1, _op: 'upsert', n: expect.any(Number) as number },
    ]);
    expect(generations.filter((r) => r.g === 0).every((r) => r._op === 'upsert')).toBe(true);
    await eventually(async () => (await announced('t_regen')).some((a) => a.kind === 'table_recreated'), 200, 60_000);
    const [announcement] = await sink.store.query(
      `SELECT _generation::INT AS g FROM ${ANNOUNCED} WHERE "table" = '${db.schema}.t_regen' AND kind = 'table_recreated'`,
    );
    expect(announcement).toEqual({ g: 1 });
    // A backfill re-reads the same relation: its generation stays, and so does every key.
    const backfill = await runPushsync(['--config', path, 'backfill', '--table', `app.${db.schema}.t_regen`]);
    expect(backfill.stderr).toBe('');
    await eventually(
      async () => Number((await sink.store.query(`SELECT count(*) AS n FROM ${target('t_regen')} WHERE _generation = 1`))[0]!.n) >= 23,
      200,
      90_000,
    );
    await silverEqualsSource('t_regen', ['id', 'v']);
    expect((await tableStatus('t_regen')).failedBatches).toBe(0);
  });

  it('a custom SQL table follows a column added to and dropped from its result: no job fails, nothing is left out', async () => {
    const queried = async (): Promise<Value[][]> => {
      const rows = await sink.store.query(`SELECT table_name FROM duckdb_tables() WHERE table_name = 's_q_items'`);
      if (rows.length === 0) return [];
      for (const s of silverViewSql({ label: 'q_items', target: 'bronze.s_q_items', primaryKey: ['id'] })
        .split(';')
        .map((x) => x.trim())
        .filter(Boolean))
        await sink.store.query(s);
      const out = await sink.store.query(`SELECT CAST(id AS VARCHAR) AS id, v, extra, tag FROM silver.s_q_items ORDER BY CAST(id AS BIGINT)`);
      return out.map((r) => [r.id, r.v, r.extra, r.tag] as Value[]);
    };
    const expected = async (): Promise<Value[][]> =>
      (await db.client.query<{ id: string; v: Value; extra: Value }>(`SELECT id::text, v, extra FROM t_query ORDER BY t_query.id`)).rows.map((r) => [
        r.id,
        r.v,
        r.extra,
        'tagged',
      ]);
    const sameAsSource = async (): Promise<void> => {
      let last: [Value[][], Value[][]] = [[], []];
      await eventually(
        async () => {
          last = [await queried().catch(() => []), await expected()];
          return JSON.stringify(last[0]) === JSON.stringify(last[1]);
        },
        250,
        90_000,
      ).catch(() => undefined);
      expect(last[0]).toEqual(last[1]);
    };
    await db.client.query(`ALTER TABLE t_query ADD COLUMN extra text`);
    await db.client.query(`UPDATE t_query SET extra = 'E' || id, updated_at = clock_timestamp()`);
    await sameAsSource();
    const announcements = async (): Promise<Array<Record<string, unknown>>> =>
      sink.store.query(`SELECT kind, "column" FROM ${ANNOUNCED} WHERE "table" = 'q_items' ORDER BY detected_at`);
    await eventually(async () => (await announcements()).length > 0, 200, 60_000).catch(() => undefined);
    expect(await announcements()).toEqual([{ kind: 'column_added', column: 'extra' }]);
    // A dropped column stops being sent; older versions keep it in bronze, the rows read after the drop lack it.
    await db.client.query(`ALTER TABLE t_query DROP COLUMN v`);
    await db.client.query(`UPDATE t_query SET extra = 'F' || id, updated_at = clock_timestamp() WHERE id <= 5`);
    await eventually(async () => (await queried()).filter(([, , extra]) => extra?.startsWith('F')).length === 5, 250, 90_000);
    const now = await queried();
    expect(now.filter(([id]) => Number(id) <= 5).every(([, v]) => v === null)).toBe(true);
    expect(now.find(([id]) => id === '6')).toEqual(['6', 'v6', 'E6', 'tagged']);
    const s = (await status()).tables.find((t) => t.table === 'q_items')!;
    expect(s.failedBatches).toBe(0);
  });

  it('freeze: a change pauses the table (status says so) until pushsync schema accept; then it flows on', async () => {
    await db.client.query(`ALTER TABLE t_freeze ADD COLUMN extra text`);
    await db.client.query(`UPDATE t_freeze SET extra = 'E' || id, updated_at = clock_timestamp() WHERE id <= 5`);
    await eventually(async () => (await tableStatus('t_freeze')).state === 'paused', 250, 90_000);
    const frozen = await tableStatus('t_freeze');
    expect(frozen.paused).toMatchObject({ schema: true });
    const text = await runPushsync(['--config', path, 'status']);
    expect(text.stdout).toContain(`frozen by a schema change`);
    expect(text.stdout).toContain(`pushsync schema accept --table app.${db.schema}.t_freeze`);
    await sleep(3000);
    expect(await rows('t_freeze')).toBe(30);
    const resume = await runPushsync(['--config', path, 'resume', '--table', `app.${db.schema}.t_freeze`]);
    expect(resume.stderr).toContain('schema accept');
    const accept = await runPushsync(['--config', path, 'schema', 'accept', '--table', `app.${db.schema}.t_freeze`]);
    expect(accept.stdout).toBe(`accepted the new shape of app.${db.schema}.t_freeze\n`);
    await silverEqualsSource('t_freeze', ['id', 'v', 'extra']);
    expect((await tableStatus('t_freeze')).state).not.toBe('paused');
  });

  it('with columns.include, an added column is announced but never sent until listed', async () => {
    await db.client.query(`ALTER TABLE t_allow ADD COLUMN secret text`);
    await db.client.query(`UPDATE t_allow SET secret = 'S' || id, updated_at = clock_timestamp() WHERE id <= 5`);
    await eventually(async () => (await rows('t_allow')) >= 35, 200, 90_000);
    const columns = (await sink.store.query(`SELECT column_name FROM duckdb_columns() WHERE table_name = 's_t_allow'`)).map((r) => r.column_name);
    expect(columns).not.toContain('secret');
    await eventually(async () => (await announced('t_allow')).length > 0, 200, 60_000);
    expect(await announced('t_allow')).toMatchObject([{ kind: 'column_added', column: 'secret', sent: false }]);
  });

  it('counts every change in pushsync_schema_changes_total and leaves nothing in the dead-letter queue', async () => {
    const metrics = await (await request(`http://127.0.0.1:${port}/metrics`)).body.text();
    expect(metrics).toMatch(new RegExp(`pushsync_schema_changes_total\\{source="app",table="${db.schema}.t_add",kind="column_added"\\} 1`));
    expect(metrics).toMatch(new RegExp(`pushsync_schema_changes_total\\{source="app",table="${db.schema}.t_drop",kind="column_dropped"\\} 1`));
    expect((await status()).deadLetters).toBe(0);
  });
});
