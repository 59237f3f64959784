import { describe, expect, it } from 'vitest';
import { changeOrdering, snapshotOrdering } from './lsn.js';
import { sortableWatermark } from './ordering.js';
import { epochPrefix, withOrderingEpoch } from './ordering-epoch.js';
import type { ChangeSource, ChangeStreamEvent } from './ports.js';

/** A change source whose stream hands out `events` when opened; every other call answers something fixed. */
function scriptedSource(events: ChangeStreamEvent[]): ChangeSource & { acknowledged: string[] } {
  const acknowledged: string[] = [];
  return {
    acknowledged,
    name: 'app',
    stream: 'replication slot s',
    prerequisites: async () => [],
    keyProblems: async () => [],
    prepare: async () => {},
    relationIds: async () => new Map([['public.t', '42']]),
    status: async () => ({ exists: true, confirmed: '0/10', lagBytes: 0, active: false, lost: false }),
    create: async () => '0/10',
    currentPosition: async () => '0/20',
    comparePositions: (a, b) => a.localeCompare(b),
    confirmedPast: () => false,
    snapshotOrdering: (start) => snapshotOrdering(start),
    open: async (_relations, onEvent) => {
      for (const e of events) onEvent(e);
      return {
        acknowledge: async (p) => void acknowledged.push(p),
        requestPosition: async () => {},
        stop: async () => {},
        done: Promise.resolve(),
      };
    },
    drop: async () => {},
    close: async () => {},
  };
}

describe('ordering epochs', () => {
  it('leaves the first stream’s orderings as they are and prefixes later ones', () => {
    expect(epochPrefix(0)).toBe('');
    expect(epochPrefix(1)).toBe('~~000001');
    expect(epochPrefix(123456)).toBe('~~123456');
    for (const bad of [-1, 1.5, 1_000_000, Number.NaN]) expect(() => epochPrefix(bad)).toThrow(/ordering epoch .* is not a count/);
  });

  it('sorts every ordering of a later epoch after every ordering of an earlier one, and keeps the order within one', () => {
    // The highest orderings the first stream could have handed out, of every form, and values a watermark table
    // moved to CDC could have sent.
    const earlier = [
      changeOrdering('FFFFFFFF/FFFFFFFF', 4_000_000_000),
      snapshotOrdering('FFFFFFFF/FFFFFFFF'),
      `~9999999999999999999999:${'9'.repeat(10)}`,
      '~ts:999999999999999',
      sortableWatermark('infinity', 'timestamp')!,
      sortableWatermark('5874897-12-31', 'date')!,
      sortableWatermark('9999-12-31 23:59:59.999999', 'timestamp')!,
      sortableWatermark('9223372036854775807', 'integer')!,
    ];
    const later = [snapshotOrdering('0/0'), changeOrdering('0/1', 1), changeOrdering('0/1', 2), changeOrdering('1/0', 1)].map(
      (o) => epochPrefix(1) + o,
    );
    for (const e of earlier) for (const l of later) expect(l > e, `${l} > ${e}`).toBe(true);
    expect([...later].sort()).toEqual(later);
    expect(epochPrefix(2) + snapshotOrdering('0/0') > epochPrefix(1) + changeOrdering('FFFFFFFF/FFFFFFFF', 1)).toBe(true);
  });

  it('passes on every optional capability of the source, the visibility check of streamed transactions among them', async () => {
    const asked: string[][] = [];
    const source = { ...scriptedSource([]), visible: async (ids: readonly string[]) => (asked.push([...ids]), ids.length < 2) };
    const later = withOrderingEpoch(source, 3);
    expect(await later.visible?.(['7'])).toBe(true);
    expect(await later.visible?.(['7', '8'])).toBe(false);
    expect(asked).toEqual([['7'], ['7', '8']]);
    expect((await later.relationIds?.([]))?.get('public.t')).toBe('42');
    // A source without the capability gets none.
    expect(withOrderingEpoch(scriptedSource([]), 3).visible).toBeUndefined();
  });

  it('is the source itself in epoch 0', () => {
    const source = scriptedSource([]);
    expect(withOrderingEpoch(source, 0)).toBe(source);
  });

  it('stamps the orderings of snapshots, changes and relation descriptions, never the positions', async () => {
    const change = { relation: 'public.t', op: 'update' as const, pk: ['1'], ordering: changeOrdering('0/30', 1) };
    const events: ChangeStreamEvent[] = [
      { kind: 'relation', relation: 'public.t', id: '42', columns: [{ name: 'id', type: '23/-1' }], from: changeOrdering('0/30', 1) },
      { kind: 'relation', relation: 'public.t', id: '42', columns: [], from: null },
      { kind: 'changes', changes: [change] },
      { kind: 'transaction', changes: [{ ...change, ordering: changeOrdering('0/30', 2) }], end: '0/30' },
      { kind: 'idle', position: '0/40' },
      { kind: 'truncate', relations: ['public.t'] },
      { kind: 'resnapshot', relation: 'public.t', reason: 'why' },
    ];
    const inner = scriptedSource(events);
    const source = withOrderingEpoch(inner, 3);
    expect(source.snapshotOrdering('0/10')).toBe(`~~000003${snapshotOrdering('0/10')}`);
    expect(await source.relationIds!([{ schema: 'public', relname: 't' }])).toEqual(new Map([['public.t', '42']]));
    expect(await source.create()).toBe('0/10');
    const seen: ChangeStreamEvent[] = [];
    const stream = await source.open(
      new Map(),
      (e) => seen.push(e),
      () => {},
      { lease: { hsetWhileHeld: async () => true } },
    );
    await stream.acknowledge('0/30');
    expect(inner.acknowledged).toEqual(['0/30']);
    expect(seen).toEqual([
      { ...events[0], from: `~~000003${changeOrdering('0/30', 1)}` },
      events[1],
      { kind: 'changes', changes: [{ ...change, ordering: `~~000003${changeOrdering('0/30', 1)}` }] },
      { kind: 'transaction', changes: [{ ...change, ordering: `~~000003${changeOrdering('0/30', 2)}` }], end: '0/30' },
      events[4],
      events[5],
      events[6],
    ]);
    // The source's own events are not changed under it.
    expect(change.ordering).toBe(changeOrdering('0/30', 1));
  });
});
