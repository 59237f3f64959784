import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { joinRows, KINDS, splitRows } from './dev-sink-rows.js';
import { DevSinkStore, widen, widenAll } from './dev-sink-store.js';

const TABLE = 'bronze.rows';

describe('dev sink store', () => {
  let store: DevSinkStore;

  beforeEach(async () => {
    store = await DevSinkStore.open(':memory:');
  });
  afterEach(async () => {
    await store.close();
  });

  const columns = async (): Promise<Record<string, string>> => {
    const rows = await store.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'rows' ORDER BY ordinal_position`,
    );
    return Object.fromEntries(rows.map((r) => [String(r.column_name), String(r.data_type)]));
  };

  it('keeps the last value of a key a row repeats, and types the column by that value alone', async () => {
    const result = await store.append(TABLE, ['{"id":1,"a":"text","a":7}', '{"id":2,"a":8}']);
    expect(result).toMatchObject({ stored: 2, rejected: [] });
    expect(await columns()).toMatchObject({ id: 'BIGINT', a: 'BIGINT' });
    expect(await store.query(`SELECT id, a FROM ${TABLE} ORDER BY id`)).toEqual([
      { id: '1', a: '7' },
      { id: '2', a: '8' },
    ]);
  });

  it('rejects rows whose keys differ only in case or are empty, without the columns only they had', async () => {
    const result = await store.append(TABLE, ['{"id":1,"x":1}', '{"id":2,"new":1,"Id":3}', '{"id":4,"":1,"other":2}', '{"id":5,"x":2}']);
    expect(result.stored).toBe(2);
    expect(result.rejected.map((r) => [r.index, r.code])).toEqual([
      [1, 'KEY_CASE_COLLISION'],
      [2, 'EMPTY_KEY'],
    ]);
    expect(Object.keys(await columns())).toEqual(['id', 'x', '_received_at', '_request_id']);
    expect(await store.query(`SELECT id, x FROM ${TABLE} ORDER BY id`)).toEqual([
      { id: '1', x: '1' },
      { id: '5', x: '2' },
    ]);
  });

  it('drops the values of reserved keys with a warning and sets its own', async () => {
    const result = await store.append(TABLE, ['{"id":1,"_request_id":"mine"}'], { requestId: 'req-1' });
    expect(result.warnings).toEqual([expect.stringContaining('_request_id')]);
    expect(await store.query(`SELECT id, _request_id FROM ${TABLE}`)).toEqual([{ id: '1', _request_id: 'req-1' }]);
  });

  it('stores keys in any order and missing keys as null, strings unescaped and nested values as written', async () => {
    await store.append(TABLE, [
      '{"id":1,"s":"plain","doc":{"p": 1.10}}',
      '{"doc":[1, "two"],"s":"tab\\there \\"q\\" \\\\ \\u00e9","id":2}',
      '{"id":3}',
      '{"s":"\\\\","id":4,"doc":"a string in a JSON column"}',
    ]);
    expect(await columns()).toMatchObject({ id: 'BIGINT', s: 'VARCHAR', doc: 'JSON' });
    expect(await store.query(`SELECT id, s, doc::VARCHAR AS doc FROM ${TABLE} ORDER BY id`)).toEqual([
      { id: '1', s: 'plain', doc: '{"p": 1.10}' },
      { id: '2', s: 'tab\there "q" \\ é', doc: '[1, "two"]' },
      { id: '3', s: null, doc: null },
      { id: '4', s: '\\', doc: '"a string in a JSON column"' },
    ]);
  });

  it('types a column that held only nulls by its first real value, and widens on a later one', async () => {
    await store.append(TABLE, ['{"id":1,"n":null}']);
    expect(await columns()).toMatchObject({ n: 'VARCHAR' });
    const result = await store.append(TABLE, ['{"id":2,"n":5}', '{"id":3,"n":12345678901234567890}', '{"id":4,"n":null}']);
    expect(result.warnings).toEqual([]);
    expect(await columns()).toMatchObject({ n: 'HUGEINT' });
    const widened = await store.append(TABLE, ['{"id":5,"n":"NaN"}', '{"id":6,"n":true}']);
    expect(widened.warnings).toEqual([expect.stringContaining('widened from HUGEINT to VARCHAR')]);
    expect(await store.query(`SELECT id, n FROM ${TABLE} ORDER BY id`)).toEqual([
      { id: '1', n: null },
      { id: '2', n: '5' },
      { id: '3', n: '12345678901234567890' },
      { id: '4', n: null },
      { id: '5', n: 'NaN' },
      { id: '6', n: 'true' },
    ]);
  });

  it('stores batches in the order their turns were taken, not the order they became ready', async () => {
    let readyFirst!: () => void;
    const first = new Promise<void>((resolve) => (readyFirst = resolve)).then(() => ({
      target: TABLE,
      batch: split(['{"id":1}']),
    }));
    const stored = [
      store.appendBatch(first, { requestId: 'first' }),
      store.appendBatch(Promise.resolve({ target: TABLE, batch: split(['{"id":2}']) }), { requestId: 'second' }),
      store.appendBatch(Promise.reject(new Error('refused')), { requestId: 'refused' }),
      store.appendBatch(Promise.resolve({ target: TABLE, batch: split(['{"id":3}']) }), { requestId: 'third' }),
    ];
    await new Promise((resolve) => setTimeout(resolve, 50));
    readyFirst();
    const results = await Promise.allSettled(stored);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value.snapshotId : 'failed'))).toEqual([1, 2, 'failed', 3]);
    expect(await store.query(`SELECT id, _request_id FROM ${TABLE} ORDER BY rowid`)).toEqual([
      { id: '1', _request_id: 'first' },
      { id: '2', _request_id: 'second' },
      { id: '3', _request_id: 'third' },
    ]);
  });

  it('stores concurrent appends in order while some of them add and widen columns', async () => {
    const batches = [
      ['{"id":1,"n":1}', '{"id":2,"n":2}'],
      ['{"id":3,"n":3}'],
      ['{"id":4,"n":4,"extra":"x"}'],
      ['{"id":5,"n":5}'],
      ['{"id":6,"n":6.5}'],
      ['{"id":7,"n":7}', '{"id":8}'],
      ['{"id":9,"n":"nine"}'],
      ['{"id":10,"n":10}'],
    ];
    const results = await Promise.all(batches.map((rows, i) => store.append(TABLE, rows, { requestId: `r${i}` })));
    expect(results.map((r) => r.snapshotId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await columns()).toMatchObject({ id: 'BIGINT', n: 'VARCHAR', extra: 'VARCHAR' });
    const rows = await store.query(`SELECT id, n, extra, _request_id AS r FROM ${TABLE} ORDER BY rowid`);
    expect(rows.map((r) => [r.id, r.n, r.extra, r.r])).toEqual([
      // BIGINT, then DOUBLE, then VARCHAR: each widening casts what the column held.
      ['1', '1.0', null, 'r0'],
      ['2', '2.0', null, 'r0'],
      ['3', '3.0', null, 'r1'],
      ['4', '4.0', 'x', 'r2'],
      ['5', '5.0', null, 'r3'],
      ['6', '6.5', null, 'r4'],
      ['7', '7.0', null, 'r5'],
      ['8', null, null, 'r5'],
      ['9', 'nine', null, 'r6'],
      ['10', '10', null, 'r7'],
    ]);
  });

  it('keeps checkpointing while concurrent appends overlap their commits: the log stays near its threshold', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pushsync-devsink-store-'));
    const file = join(dir, 'sink.duckdb');
    const threshold = 1024 * 1024;
    const onFile = await DevSinkStore.open(file, { checkpointBytes: threshold });
    try {
      const rows = Array.from({ length: 1000 }, (_, i) => `{"id":${i},"s":"${'x'.repeat(200)}${i}"}`);
      await onFile.append(TABLE, rows.slice(0, 1));
      let largest = 0;
      const log = (): number => (existsSync(`${file}.wal`) ? statSync(`${file}.wal`).size : 0);
      // About 200 kB of log per append: 4 MB in all, checkpointed along the way.
      await Promise.all(Array.from({ length: 20 }, () => onFile.append(TABLE, rows).then(() => (largest = Math.max(largest, log())))));
      expect(largest).toBeGreaterThan(threshold / 2);
      expect(largest).toBeLessThan(2 * threshold);
      expect(await onFile.query(`SELECT count(*)::INTEGER AS n FROM ${TABLE}`)).toEqual([{ n: 20_001 }]);
    } finally {
      await onFile.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives each key its column after a rejected row dropped the columns it introduced', () => {
    const batch = split(['{"a":1,"b":2}', '{"c":1,"":2}', '{"d":1,"c":2}', '{"c":3,"a":4}']);
    expect(batch.columns.map((c) => c.column)).toEqual(['a', 'b', 'd', 'c']);
    expect(batch.rejected.map((r) => [r.index, r.code])).toEqual([[1, 'EMPTY_KEY']]);
    // Per accepted row, each value's text by the column it went to.
    const values = Array.from({ length: batch.rows }, (_, r) => {
      const found: Record<string, string> = {};
      for (let m = r === 0 ? 0 : batch.memberEnds[r - 1]!; m < batch.memberEnds[r]!; m += 1) {
        const slot = batch.members[3 * m]!;
        found[batch.columns[slot]!.column] = batch.text.slice(batch.members[3 * m + 1], batch.members[3 * m + 2]);
      }
      return found;
    });
    expect(values).toEqual([
      { a: '1', b: '2' },
      { d: '1', c: '2' },
      { c: '3', a: '4' },
    ]);
  });

  it('widens a column to the same type whatever order the kinds of its values come in', () => {
    const types = ['VARCHAR', 'BIGINT', 'HUGEINT', 'DOUBLE', 'BOOLEAN', 'JSON', 'DATE'];
    const sequences: number[][] = [[]];
    for (let length = 1; length <= 3; length += 1) {
      for (const s of sequences.filter((q) => q.length === length - 1)) for (let k = 0; k < KINDS.length; k += 1) sequences.push([...s, k]);
    }
    for (const type of types) {
      for (const sequence of sequences) {
        const mask = sequence.reduce((m, k) => m | (1 << k), 0);
        expect(sequence.reduce((t, k) => widen(t, KINDS[k]!), type)).toBe(widenAll(type, mask));
      }
    }
  });
});

function split(rows: string[]): ReturnType<typeof splitRows> {
  const { text, rowStarts } = joinRows(rows);
  return splitRows(text, rowStarts);
}
