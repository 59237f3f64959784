import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { parseConfig } from '../src/config.js';
import { pointInTimeSql, silverName, silverViewSql, type ViewSpec } from '../src/core/views.js';
import { startDevSink, type DevSink } from '../src/destinations/dev-sink.js';
import { createLogger } from '../src/observability/logger.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { prng } from './helpers/prng.js';
import { UNAVAILABLE, pgEvent, type Column } from './helpers/debezium-events.js';
import { debeziumWorkload, sortedRows, type WorkloadRow as Row } from './helpers/debezium-workload.js';

/**
 * The silver and point-in-time SQL of `pushsync views`, run in real DuckDB over what the dev sink stored from a
 * Debezium workload: snapshot, inserts, updates whose unchanged TOASTed columns arrive as the unavailable
 * placeholder, real NULLs, deletes and re-inserts, sent in shuffled batches. Silver must equal the workload's
 * final state, every carried-forward value included.
 */
describe('the silver view over Debezium records equals the workload final state', () => {
  const prefix = uniqueName('dbzv');
  const dir = mkdtempSync(join(tmpdir(), 'pushsync-dbz-views-'));
  const target = 'bronze.legacy_items';
  const spec: ViewSpec = { label: 'legacy.public.items', target, primaryKey: ['id'], carryForward: true };
  let sink: DevSink;
  let runtime: Runtime;

  beforeAll(async () => {
    sink = await startDevSink({ port: 0, dbPath: join(dir, 'sink.duckdb'), apiKey: 'k' });
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: sink.url, apiKey: 'k' },
        sources: [
          {
            name: 'legacy',
            kind: 'debezium',
            http: {},
            flushInterval: '50ms',
            tables: [
              { name: 'public.items', primaryKey: ['id'], batchRows: 60 },
              { name: 'public.late', primaryKey: ['id'] },
            ],
          },
        ],
        web: { port: 0 },
      },
      {},
    );
    runtime = await startRuntime(createPipeline(config, createLogger('silent')), { roles: ['scheduler', 'extract', 'push', 'ingest'], httpPort: 0 });
  });
  afterAll(async () => {
    await runtime.stop();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
    await dropRedisPrefix(prefix);
  });

  const rows = async (sql: string): Promise<Row[]> =>
    (await sink.store.query(sql)).map((r) => ({
      id: String(r.id),
      body: (r.body as string | null) ?? null,
      note: (r.note as string | null) ?? null,
      n: (r.n as string | null) ?? null,
    }));
  const sorted = sortedRows;

  it('regression: a change whose transaction was open when the initial snapshot began beats its snapshot row in silver', async () => {
    // Debezium's initial snapshot reads at S = 0x5000: rows 1..3 as they were then. Transaction A began before S
    // (its update of row 2 is at LSN 0x4000) and committed after it, so the snapshot shows row 2's old value and
    // the stream, right after the snapshot, brings A with no previous commit reported (sequence [null, "16384"]).
    // Transaction B follows (previous commit 0x5100) with an update of row 3 at LSN 0x4f00, also below S.
    const columns: Column[] = [
      { name: 'id', type: 'int32', optional: false },
      { name: 'body', type: 'string' },
    ];
    const S = 0x5000;
    const late = 'bronze.legacy_late';
    const events = [
      pgEvent({ op: 'r', table: 'late', columns, lsn: S, lastCommitLsn: null, snapshot: 'first', after: { id: '1', body: '"one"' } }),
      pgEvent({ op: 'r', table: 'late', columns, lsn: S, lastCommitLsn: null, snapshot: 'true', after: { id: '2', body: '"two, before A"' } }),
      pgEvent({ op: 'r', table: 'late', columns, lsn: S, lastCommitLsn: null, snapshot: 'last', after: { id: '3', body: '"three"' } }),
      pgEvent({ op: 'u', table: 'late', columns, lsn: 0x4000, lastCommitLsn: null, after: { id: '2', body: '"two, by A"' } }),
      pgEvent({ op: 'u', table: 'late', columns, lsn: 0x4f00, lastCommitLsn: 0x5100, after: { id: '3', body: '"three, by B"' } }),
    ];
    // One event per request, as Debezium Server's HTTP sink sends them.
    for (const body of events) {
      const res = await request(`${runtime.web!.url}/ingest/debezium`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(`${res.statusCode} ${await res.body.text()}`).toMatch(/^200 /);
    }
    for (let i = 0; i < 600; i++) {
      const [row] = await sink.store.query(`SELECT count(*)::INTEGER AS n FROM ${late}`).catch(() => [{ n: 0 }]);
      if (Number(row!.n) === events.length) break;
      await sleep(50);
    }
    const lateSpec: ViewSpec = { label: 'legacy.public.late', target: late, primaryKey: ['id'], carryForward: true };
    for (const statement of silverViewSql(lateSpec)
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean))
      await sink.store.query(statement);
    const silver = (await sink.store.query(`SELECT id, body FROM ${silverName(late)} ORDER BY id::INTEGER`)).map((r) => [String(r.id), r.body]);
    expect(silver).toEqual([
      ['1', 'one'],
      ['2', 'two, by A'],
      ['3', 'three, by B'],
    ]);
    // The stored orderings: A was raised to the floor S and keeps its own LSN as the second part.
    const orderings = await sink.store.query(`SELECT id, _ordering FROM ${late} WHERE _op = 'update' ORDER BY id::INTEGER`);
    expect(orderings.map((r) => r._ordering)).toEqual([
      `~${'5000'.padStart(16, '0')}:${'4000'.padStart(16, '0')}`,
      `~${'5100'.padStart(16, '0')}:${'4f00'.padStart(16, '0')}`,
    ]);
  });

  it('carries unavailable values forward, keeps real NULLs, drops deletes, and answers as of a point in time', async () => {
    const { steps, states } = debeziumWorkload({ seed: 13, table: 'items', keys: 40, changes: 400 });
    // Kafka Connect batches of up to 25 events, delivered in shuffled order: arrival order must not matter.
    const batches: string[][] = [];
    for (let i = 0; i < steps.length; i += 25) batches.push(steps.slice(i, i + 25).map((s) => s.event));
    const random = prng(7);
    for (let i = batches.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [batches[i], batches[j]] = [batches[j]!, batches[i]!];
    }
    for (const b of batches) {
      const res = await request(`${runtime.web!.url}/ingest/debezium`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `[${b.join(',')}]`,
      });
      expect(`${res.statusCode} ${await res.body.text()}`).toMatch(/^200 /);
    }
    for (let i = 0; i < 600; i++) {
      const [row] = await sink.store.query(`SELECT count(*)::INTEGER AS n FROM ${target}`).catch(() => [{ n: 0 }]);
      if (Number(row!.n) === steps.length) break;
      await sleep(50);
    }
    expect(Number((await sink.store.query(`SELECT count(*)::INTEGER AS n FROM ${target}`))[0]!.n)).toBe(steps.length);
    // The placeholder never reached the destination as a value.
    expect(
      Number((await sink.store.query(`SELECT count(*)::INTEGER AS n FROM ${target} WHERE body = '${UNAVAILABLE}' OR note = '${UNAVAILABLE}'`))[0]!.n),
    ).toBe(0);

    for (const statement of silverViewSql(spec)
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean))
      await sink.store.query(statement);
    const silver = await rows(`SELECT id, body, note, n FROM ${silverName(target)} ORDER BY id::BIGINT`);
    const expected = sorted(states[states.length - 1]!);
    expect(silver.length).toBe(expected.length);
    expect(silver).toEqual(expected);
    // A real NULL next to a carried-forward body is in the result, so the test can tell the two apart.
    expect(expected.some((r) => r.note === null)).toBe(true);

    // As of the 250th step, the state then.
    const mid = 250;
    const past = await rows(`SELECT id, body, note, n FROM (${pointInTimeSql(spec, steps[mid]!.ordering).replace(/;\s*$/, '')}) ORDER BY id::BIGINT`);
    expect(past).toEqual(sorted(states[mid]!));
  });
});
