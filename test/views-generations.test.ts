import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordEncoder, type Operation } from '../src/core/record.js';
import { pointInTimeSql, silverName, silverViewSql, type ViewSpec } from '../src/core/views.js';
import { DevSinkStore } from '../src/destinations/dev-sink-store.js';

/**
 * The SQL of `pushsync views` across table generations, run in DuckDB over records stored the way the dev sink
 * stores them: a table dropped and created again (keys only the old table had, rows with older watermarks, an empty
 * new table), a re-read of the same table, bronze written before `_generation` existed, and columns added and
 * dropped.
 */
describe('silver and point in time across table generations (DuckDB)', () => {
  let store: DevSinkStore;
  let n = 0;

  beforeAll(async () => {
    store = await DevSinkStore.open(':memory:');
  });
  afterAll(async () => {
    await store.close();
  });

  interface Version {
    op?: Operation;
    id?: number;
    v?: string | null;
    at: string | null;
    generation?: number;
    extra?: Record<string, unknown>;
  }

  /** Records as pushsync encodes them; `generation: undefined` writes what versions before generations wrote. */
  function encode(versions: Version[]): string[] {
    return versions.map((x, i) => {
      const row = x.id === undefined ? {} : { id: x.id, v: x.v ?? null, ...x.extra };
      const text = recordEncoder(x.op ?? 'upsert', {
        source: 'app',
        table: 'public.t',
        extractedAt: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`,
        generation: x.generation,
      })(JSON.stringify(row), x.at);
      if (x.generation !== undefined) return text;
      return text.replace(/,"_generation":0/, '');
    });
  }

  async function bronze(versions: Version[]): Promise<ViewSpec> {
    const target = `bronze.gen_${++n}`;
    await store.append(target, encode(versions));
    return { label: target, target, primaryKey: ['id'] };
  }

  async function run(sql: string): Promise<Array<[number, string | null]>> {
    const statements = sql
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean);
    let rows: Record<string, unknown>[] = [];
    for (const s of statements) rows = await store.query(s);
    return rows.map((r) => [Number(r.id), (r.v as string | null) ?? null]);
  }

  async function silver(spec: ViewSpec): Promise<Array<[number, string | null]>> {
    await run(silverViewSql(spec));
    return run(`SELECT id, v FROM ${silverName(spec.target)} ORDER BY id`);
  }

  const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const marker = (generation: number, at: string | null = null): Version => ({ op: 'table_recreated', at, generation });

  it('keeps only the newest generation: keys only the dropped table had are gone, rows with older watermarks win', async () => {
    const spec = await bronze([
      ...range(1, 10).map((id) => ({ id, v: `old${id}`, at: `2026-05-01T00:00:${String(id).padStart(2, '0')}.000000Z`, generation: 0 })),
      ...range(1, 3).map((id) => ({ op: 'delete' as const, id, at: '2026-05-02T00:00:00.000000Z', generation: 0 })),
      marker(1),
      ...range(5, 15).map((id) => ({ id, v: `new${id}`, at: `2020-01-01T00:00:${String(id).padStart(2, '0')}.000000Z`, generation: 1 })),
    ]);
    expect(await silver(spec)).toEqual(range(5, 15).map((id) => [id, `new${id}`]));
  });

  it('an empty re-created table empties silver: the marker alone starts the generation', async () => {
    const spec = await bronze([...range(1, 5).map((id) => ({ id, v: `old${id}`, at: '2026-05-01T00:00:00.000000Z', generation: 0 })), marker(1)]);
    expect(await silver(spec)).toEqual([]);
  });

  it('a re-read of the same table (a backfill) keeps every key and orders the versions by _ordering as before', async () => {
    const spec = await bronze([
      ...range(1, 4).map((id) => ({ id, v: `a${id}`, at: '2026-05-01T00:00:00.000000Z', generation: 0 })),
      { id: 2, v: 'newer', at: '2026-05-03T00:00:00.000000Z', generation: 0 },
      // The backfill re-reads keys 1..3 as they are now; key 4 is not re-read, key 2's newer version stays newest.
      { id: 1, v: 'a1', at: '2026-05-01T00:00:00.000000Z', generation: 0 },
      { id: 2, v: 'newer', at: '2026-05-03T00:00:00.000000Z', generation: 0 },
      { id: 3, v: 'a3', at: '2026-05-01T00:00:00.000000Z', generation: 0 },
    ]);
    expect(await silver(spec)).toEqual([
      [1, 'a1'],
      [2, 'newer'],
      [3, 'a3'],
      [4, 'a4'],
    ]);
  });

  it('works over bronze written before _generation existed, alone and followed by a re-creation', async () => {
    const old = range(1, 6).map((id) => ({ id, v: `old${id}`, at: '2026-05-01T00:00:00.000000Z' }));
    const untouched = await bronze(old);
    const columns = await store.query(`SELECT column_name FROM duckdb_columns() WHERE table_name = '${untouched.target.split('.')[1]}'`);
    expect(columns.map((c) => c.column_name)).not.toContain('_generation');
    expect(await silver(untouched)).toEqual(range(1, 6).map((id) => [id, `old${id}`]));

    const recreated = await bronze([...old, marker(1), { id: 9, v: 'new9', at: '2020-01-01T00:00:00.000000Z', generation: 1 }]);
    expect(await silver(recreated)).toEqual([[9, 'new9']]);
    // Records of the generation the old rows belong to, after the upgrade, count with them.
    const upgraded = await bronze([...old, { id: 7, v: 'after upgrade', at: '2026-05-02T00:00:00.000000Z', generation: 0 }]);
    expect((await silver(upgraded)).map(([id]) => id)).toEqual(range(1, 7));
  });

  it('compares generations as numbers, also where the destination stored them as text', async () => {
    const target = `bronze.gen_${++n}`;
    const records = encode([
      { id: 1, v: 'nine', at: '2026-05-01T00:00:00.000000Z', generation: 9 },
      { id: 2, v: 'ten', at: '2020-05-01T00:00:00.000000Z', generation: 10 },
    ]).map((r) => r.replace(/"_generation":(\d+)/, '"_generation":"$1"'));
    await store.append(target, records);
    expect(await silver({ label: target, target, primaryKey: ['id'] })).toEqual([[2, 'ten']]);
  });

  it('keeps working with a column older versions lack and a column newer versions no longer send', async () => {
    const spec = await bronze([
      { id: 1, v: 'a', at: '2026-05-01T00:00:00.000000Z', generation: 0, extra: { dropped: 'x' } },
      { id: 2, v: 'b', at: '2026-05-01T00:00:00.000000Z', generation: 0, extra: { dropped: 'y' } },
      { id: 1, v: 'a2', at: '2026-05-02T00:00:00.000000Z', generation: 0, extra: { added: 5 } },
    ]);
    await run(silverViewSql(spec));
    const rows = await store.query(`SELECT id, v, dropped, added FROM ${silverName(spec.target)} ORDER BY id`);
    expect(rows.map((r) => [Number(r.id), r.v, r.dropped ?? null, r.added === null ? null : Number(r.added)])).toEqual([
      [1, 'a2', null, 5],
      [2, 'b', 'y', null],
    ]);
  });

  it('point in time takes the newest generation with versions at or before it (CDC orderings grow across generations)', async () => {
    const spec = await bronze([
      { id: 1, v: 'old1', at: '~0000000001000000:0000000001', generation: 0 },
      { id: 2, v: 'old2', at: '~0000000001000000:0000000002', generation: 0 },
      marker(1, '~0000000002000000'),
      { op: 'snapshot', id: 2, v: 'new2', at: '~0000000002000000', generation: 1 },
      { op: 'insert', id: 3, v: 'new3', at: '~0000000003000000:0000000001', generation: 1 },
    ]);
    const at = async (asOf: string): Promise<Array<[number, string | null]>> =>
      run(`SELECT id, v FROM (${pointInTimeSql(spec, asOf).replace(/;\s*$/, '')}) ORDER BY id`);
    expect(await at('~0000000001500000')).toEqual([
      [1, 'old1'],
      [2, 'old2'],
    ]);
    expect(await at('~0000000002000000')).toEqual([[2, 'new2']]);
    expect(await at('~0000000009000000')).toEqual([
      [2, 'new2'],
      [3, 'new3'],
    ]);
    expect(await silver(spec)).toEqual([
      [2, 'new2'],
      [3, 'new3'],
    ]);
  });

  it('carries Debezium columns forward within the newest generation only: never from a dropped table', async () => {
    const target = `bronze.gen_${++n}`;
    const enc = (op: Operation, generation: number, at: string, row: Record<string, unknown>): string =>
      recordEncoder(op, { source: 'app', table: 'public.t', extractedAt: '2026-01-01T00:00:00.000Z', generation })(JSON.stringify(row), at);
    await store.append(target, [
      enc('insert', 0, '~01', { _unavailable: [], id: 1, v: 'old', body: 'old body' }),
      enc('table_recreated', 1, '~02', {}),
      enc('update', 1, '~03', { _unavailable: ['body'], id: 1, v: 'new', body: null }),
      enc('insert', 1, '~04', { _unavailable: [], id: 2, v: 'new', body: 'new body' }),
      enc('update', 1, '~05', { _unavailable: ['body'], id: 2, v: 'newer', body: null }),
    ]);
    const spec: ViewSpec = { label: target, target, primaryKey: ['id'], carryForward: true };
    await run(silverViewSql(spec));
    const rows = await store.query(`SELECT id, v, body FROM ${silverName(target)} ORDER BY id`);
    expect(rows.map((r) => [Number(r.id), r.v, r.body])).toEqual([
      [1, 'new', null],
      [2, 'newer', 'new body'],
    ]);
  });
});
