import { describe, expect, it } from 'vitest';
import { ChangeCollector, type RelationKeys } from './changes.js';
import { AppError } from './errors.js';
import { changeOrdering } from './lsn.js';

const RELATIONS = new Map<string, RelationKeys>([
  ['public.orders', { primaryKey: ['id'] }],
  ['public.lines', { primaryKey: ['order_id', 'line'] }],
]);

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

describe('ChangeCollector', () => {
  it('turns inserts, updates and deletes of watched relations into key-level events in transaction order', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/16B3748');
    c.insert('public.orders', { id: '1', total: '9.50' });
    c.update('public.lines', { order_id: '1', line: '2', qty: '3' }, null);
    c.delete('public.orders', { id: '7' });
    expect(c.commit()).toEqual([
      { relation: 'public.orders', op: 'insert', pk: ['1'], ordering: changeOrdering('0/16B3748', 1) },
      { relation: 'public.lines', op: 'update', pk: ['1', '2'], ordering: changeOrdering('0/16B3748', 2) },
      { relation: 'public.orders', op: 'delete', pk: ['7'], ordering: changeOrdering('0/16B3748', 3) },
    ]);
  });

  it('never applies a change of a dropped table to the table re-created under its name (another relation id)', () => {
    const c = new ChangeCollector(new Map<string, RelationKeys>([['public.orders', { primaryKey: ['id'], id: '16500' }]]));
    c.begin('0/20');
    c.delete('public.orders', { id: '1' }, '16400');
    c.update('public.orders', { id: '2' }, null, '16400');
    c.insert('public.orders', { id: '3' }, '16500');
    expect(c.ignored).toBe(2);
    expect(c.commit()).toEqual([{ relation: 'public.orders', op: 'insert', pk: ['3'], ordering: changeOrdering('0/20', 1) }]);
  });

  it('ignores changes of relations it does not watch', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/1');
    c.insert('public.audit', { id: '1' });
    c.update('public.audit', { id: '1' }, { id: '2' });
    c.delete('public.audit', { id: '1' });
    // Not even a missing key in an unwatched relation is an error.
    c.delete('public.audit', null);
    c.insert('public.orders', { id: '5' });
    expect(c.commit().map((e) => [e.relation, e.pk, e.ordering])).toEqual([['public.orders', ['5'], changeOrdering('0/1', 1)]]);
  });

  it('turns a primary-key change into a delete of the old key and an insert of the new one', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/2');
    c.update('public.lines', { order_id: '1', line: '3', qty: '1' }, { order_id: '1', line: '2' });
    expect(c.commit()).toEqual([
      { relation: 'public.lines', op: 'delete', pk: ['1', '2'], ordering: changeOrdering('0/2', 1) },
      { relation: 'public.lines', op: 'insert', pk: ['1', '3'], ordering: changeOrdering('0/2', 2) },
    ]);
  });

  it('keeps an update whose old row (REPLICA IDENTITY FULL) has the same key an update', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/3');
    c.update('public.orders', { id: '4', total: '2' }, { id: '4', total: '1' });
    expect(c.commit().map((e) => [e.op, e.pk])).toEqual([['update', ['4']]]);
  });

  it('keeps the key of an update whose unchanged TOASTed columns arrived without values', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/3');
    c.update('public.orders', { id: '4', body: undefined }, null);
    expect(c.commit().map((e) => [e.op, e.pk])).toEqual([['update', ['4']]]);
  });

  it('refuses a change outside a transaction as INTERNAL', () => {
    const c = new ChangeCollector(RELATIONS);
    expect(thrown(() => c.insert('public.orders', { id: '1' })).code).toBe('INTERNAL');
    c.begin('0/4');
    c.insert('public.orders', { id: '1' });
    c.commit();
    const err = thrown(() => c.delete('public.orders', { id: '1' }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('outside a transaction');
  });

  it('refuses a change that arrived without its key as SOURCE_SCHEMA naming the relation, the key and REPLICA IDENTITY', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/5');
    const del = thrown(() => c.delete('public.orders', { total: '1' }));
    expect(del.code).toBe('SOURCE_SCHEMA');
    expect(del.message).toBe(
      'a delete of public.orders arrived without its primary key (id); the table needs REPLICA IDENTITY DEFAULT with a primary key, or REPLICA IDENTITY FULL',
    );
    const upd = thrown(() => c.update('public.lines', { order_id: '1', line: null }, null));
    expect(upd.code).toBe('SOURCE_SCHEMA');
    expect(upd.message).toMatch(/^an update of public\.lines arrived without its primary key \(order_id, line\); .*REPLICA IDENTITY/);
    const oldKey = thrown(() => c.update('public.lines', { order_id: '1', line: '2' }, { order_id: '1' }));
    expect(oldKey.code).toBe('SOURCE_SCHEMA');
    expect(thrown(() => c.insert('public.orders', { total: '1' })).code).toBe('SOURCE_SCHEMA');
  });

  it('refuses a delete that arrived with no old key at all as SOURCE_SCHEMA instead of an event without a key', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/6');
    const err = thrown(() => c.delete('public.orders', null));
    expect(err.code).toBe('SOURCE_SCHEMA');
    expect(err.message).toMatch(/^a delete of public\.orders arrived without its primary key \(id\); .*REPLICA IDENTITY/);
    expect(c.commit()).toEqual([]);
  });

  it('starts each transaction afresh: positions restart and nothing of the previous one is handed over again', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/10');
    c.insert('public.orders', { id: '1' });
    c.insert('public.orders', { id: '2' });
    expect(c.inTransaction).toBe(true);
    expect(c.commit()).toHaveLength(2);
    expect(c.inTransaction).toBe(false);
    c.begin('0/20');
    c.insert('public.orders', { id: '3' });
    expect(c.commit()).toEqual([{ relation: 'public.orders', op: 'insert', pk: ['3'], ordering: changeOrdering('0/20', 1) }]);
  });

  it('gives orderings that increase within a transaction and sort by commit LSN across transactions', () => {
    const c = new ChangeCollector(RELATIONS);
    const orderings: string[] = [];
    for (const lsn of ['0/FFFFFFF0', '0/FFFFFFFF', '1/0', '1/A', 'A/0', '10/0']) {
      c.begin(lsn);
      for (let i = 0; i < 12; i++) c.insert('public.orders', { id: String(i) });
      orderings.push(...c.commit().map((e) => e.ordering));
    }
    expect(orderings).toHaveLength(72);
    for (let i = 1; i < orderings.length; i++) expect(orderings[i - 1]! < orderings[i]!).toBe(true);
  });

  it('hands over the changes of a transaction so far, the rest at commit, numbering on across both', () => {
    const c = new ChangeCollector(RELATIONS);
    c.begin('0/30');
    c.insert('public.orders', { id: '1' });
    c.insert('public.orders', { id: '2' });
    expect(c.pending).toBe(2);
    expect(c.take().map((e) => e.ordering)).toEqual([changeOrdering('0/30', 1), changeOrdering('0/30', 2)]);
    expect(c.pending).toBe(0);
    expect(c.inTransaction).toBe(true);
    c.delete('public.orders', { id: '1' });
    expect(c.commit()).toEqual([{ relation: 'public.orders', op: 'delete', pk: ['1'], ordering: changeOrdering('0/30', 3) }]);
  });
});
