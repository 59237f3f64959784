import { describe, expect, it } from 'vitest';
import { DebeziumRules } from './debezium-rules.js';
import type { DebeziumChange } from './debezium.js';
import { hashText } from './masks.js';

const KEY = Buffer.from('a-masking-key-0123456789', 'utf8');

const change = (over: Partial<DebeziumChange> = {}): DebeziumChange => ({
  kind: 'change',
  table: 'public.orders',
  op: 'update',
  ordering: '1',
  position: '1',
  columns: new Map([
    ['id', '7'],
    ['Email', '"a@example.org"'],
    ['notes', '"private"'],
  ]),
  unavailable: ['blob', 'notes'],
  key: new Map([['id', '7']]),
  ...over,
});

describe('DebeziumRules', () => {
  it('is null without rules', () => {
    expect(DebeziumRules.of({}, KEY)).toBeNull();
    expect(DebeziumRules.of({ masks: {} }, KEY)).toBeNull();
  });

  it('drops excluded columns from the row and _unavailable, masks in any case, and hashes the key alike in row and key', () => {
    const r = DebeziumRules.of({ columns: { exclude: ['NOTES'] }, masks: { email: { kind: 'hash' }, id: { kind: 'hash' } } }, KEY)!;
    const out = r.apply(change(), ['id'], 'event 0');
    expect([...out.columns]).toEqual([
      ['id', JSON.stringify(hashText(KEY, '7'))],
      ['Email', JSON.stringify(hashText(KEY, 'a@example.org'))],
    ]);
    expect(out.unavailable).toEqual(['blob']);
    expect([...out.key!]).toEqual([['id', JSON.stringify(hashText(KEY, '7'))]]);
    // Deterministic: the same input gives the same output.
    expect([...r.apply(change(), ['id'], 'event 1').columns]).toEqual([...out.columns]);
  });

  it('matches a double-quoted name exactly', () => {
    const r = DebeziumRules.of({ columns: { exclude: ['"email"'] } }, KEY)!;
    expect([...r.apply(change(), ['id'], 'event 0').columns.keys()]).toEqual(['id', 'Email', 'notes']);
    const exact = DebeziumRules.of({ columns: { exclude: ['"Email"'] } }, KEY)!;
    expect([...exact.apply(change(), ['id'], 'event 0').columns.keys()]).toEqual(['id', 'notes']);
  });

  it('keeps only included columns', () => {
    const r = DebeziumRules.of({ columns: { include: ['id', 'email'] } }, KEY)!;
    expect([...r.apply(change(), undefined, 'event 0').columns.keys()]).toEqual(['id', 'Email']);
  });

  it('fails an event whose key columns (from the event key) are left out or masked other than by hash', () => {
    const left = DebeziumRules.of({ columns: { include: ['email'] } }, KEY)!;
    expect(() => left.apply(change(), undefined, 'event 3')).toThrow(/event 3: primary-key column id of public.orders is left out by columns/);
    const redacted = DebeziumRules.of({ masks: { id: { kind: 'redact', text: 'x' } } }, KEY)!;
    expect(() => redacted.apply(change(), undefined, 'event 4')).toThrow(
      /event 4: primary-key column id of public.orders can only be masked with hash/,
    );
  });
});
