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

/**
 * The silver and point-in-time SQL of `pushsync views`, run in real DuckDB over what the dev sink stored from a
 * Debezium workload: snapshot, inserts, updates whose unchanged TOASTed columns arrive as the unavailable
 * placeholder, real NULLs, deletes and re-inserts, sent in shuffled batches. Silver must equal the workload's
 * final state, every carried-forward value included.
 */
const COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'body', type: 'string' },
  { name: 'note', type: 'string' },
  { name: 'n', type: 'int64' },
];

interface Row {
  id: string;
  body: string | null;
  note: string | null;
  n: string | null;
}

type Cell = string | null | typeof UNAVAILABLE;

interface Step {
  event: string;
  ordering: string;
}

const hex16 = (n: number): string => n.toString(16).padStart(16, '0');
const cell = (v: Cell): string => JSON.stringify(v);

/** A seeded workload and the state it leaves, after every step. */
function workload(seed: number): { steps: Step[]; states: Array<Map<string, Row>> } {
  const random = prng(seed);
  const state = new Map<string, Row>();
  const steps: Step[] = [];
  const states: Array<Map<string, Row>> = [];
  const emit = (event: string, ordering: string): void => {
    steps.push({ event, ordering });
    states.push(new Map([...state].map(([k, v]) => [k, { ...v }])));
  };
  const row = (r: Row, over: Partial<Record<keyof Row, Cell>> = {}): Record<string, string> => ({
    id: r.id,
    body: cell(over.body ?? r.body),
    note: cell(over.note ?? r.note),
    n: r.n ?? 'null',
  });
  for (let id = 1; id <= 40; id++) {
    const r: Row = { id: String(id), body: `body ${id} v0 ${'x'.repeat(200)}`, note: `note ${id}`, n: String(9007199254740993n + BigInt(id)) };
    state.set(r.id, r);
    emit(pgEvent({ op: 'r', table: 'items', columns: COLUMNS, lsn: 1000, after: row(r), snapshot: id === 40 ? 'last' : 'true' }), `~${hex16(1000)}`);
  }
  let lsn = 2000;
  for (let i = 0; i < 400; i++) {
    lsn += 10;
    const id = String(1 + Math.floor(random() * 40));
    const before = state.get(id);
    const ordering = `~${hex16(lsn)}:${hex16(lsn)}`;
    const at = { table: 'items', columns: COLUMNS, lsn, lastCommitLsn: lsn - 5 };
    const dice = random();
    if (!before) {
      const r: Row = { id, body: `body ${id} re ${i}`, note: dice < 0.5 ? null : `note ${id} re ${i}`, n: String(i) };
      state.set(id, r);
      emit(pgEvent({ ...at, op: 'c', after: row(r) }), ordering);
    } else if (dice < 0.35) {
      // Only the note changed: the TOASTed body arrives as the placeholder.
      const r = { ...before, note: `note ${id} u${i}` };
      state.set(id, r);
      emit(pgEvent({ ...at, op: 'u', after: row(r, { body: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.45) {
      // A real NULL next to an unavailable value.
      const r = { ...before, note: null };
      state.set(id, r);
      emit(pgEvent({ ...at, op: 'u', after: row(r, { body: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.6) {
      const r = { ...before, body: `body ${id} u${i} ${'y'.repeat(100)}` };
      state.set(id, r);
      emit(pgEvent({ ...at, op: 'u', after: row(r, { note: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.8) {
      const r = { ...before, body: `body ${id} full ${i}`, note: `note ${id} full ${i}`, n: String(-i) };
      state.set(id, r);
      emit(pgEvent({ ...at, op: 'u', after: row(r) }), ordering);
    } else {
      state.delete(id);
      emit(pgEvent({ ...at, op: 'd', before: { id, body: 'null', note: 'null', n: 'null' }, after: null }), ordering);
    }
  }
  return { steps, states };
}

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
            tables: [{ name: 'public.items', primaryKey: ['id'], batchRows: 60 }],
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
  const sorted = (state: Map<string, Row>): Row[] => [...state.values()].sort((a, b) => Number(a.id) - Number(b.id));

  it('carries unavailable values forward, keeps real NULLs, drops deletes, and answers as of a point in time', async () => {
    const { steps, states } = workload(13);
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
