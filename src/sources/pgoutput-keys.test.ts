import { describe, expect, it } from 'vitest';
import { changedRelation, decodeChange, relationLayout } from './pgoutput-keys.js';

type Value = string | null | 'unchanged';

/** A TupleData as the server writes it: text values, nulls, and unchanged TOAST placeholders. */
function tuple(values: Value[]): Buffer {
  const parts = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const v of values) {
    if (v === null) parts.push(Buffer.from('n'));
    else if (v === 'unchanged') parts.push(Buffer.from('u'));
    else {
      const bytes = Buffer.from(v, 'utf8');
      const size = Buffer.alloc(4);
      size.writeUInt32BE(bytes.length);
      parts.push(Buffer.from('t'), size, bytes);
    }
  }
  return Buffer.concat(parts);
}

function message(tag: string, oid: number, ...parts: Array<string | Buffer>): Buffer {
  const head = Buffer.alloc(5);
  head.write(tag, 0);
  head.writeUInt32BE(oid, 1);
  return Buffer.concat([head, ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))]);
}

// id is the primary key and the replica identity; note is any other column, __proto__ a column named so.
const COLUMNS = [
  { name: 'id', identity: true },
  { name: 'note', identity: false },
  { name: '__proto__', identity: false },
];
const LAYOUT = relationLayout('public.orders', '16400', COLUMNS, ['id']);

describe('pgoutput change decoding', () => {
  it('keeps only the primary-key columns of an insert, as text', () => {
    const m = decodeChange(message('I', 16400, 'N', tuple(['é42', 'a long note', 'x'])), LAYOUT);
    expect(m).toEqual({ tag: 'insert', relation: 'public.orders', id: '16400', row: { id: 'é42' } });
  });

  it('takes an update key tuple (K) as the old key, its non-identity placeholders not being values', () => {
    const layout = relationLayout('public.orders', '16400', COLUMNS, ['id', 'note']);
    const m = decodeChange(message('U', 16400, 'K', tuple(['1', null, null]), 'N', tuple(['2', 'n', null])), layout);
    expect(m).toEqual({ tag: 'update', relation: 'public.orders', id: '16400', oldKey: { id: '1' }, row: { id: '2', note: 'n' } });
  });

  it('reads a value left unchanged in TOAST from the old row (REPLICA IDENTITY FULL), and nothing without one', () => {
    const full = decodeChange(message('U', 16400, 'O', tuple(['1', 'x', null]), 'N', tuple(['unchanged', 'y', null])), LAYOUT);
    expect(full).toMatchObject({ oldKey: { id: '1' }, row: { id: '1' } });
    const bare = decodeChange(message('U', 16400, 'N', tuple(['unchanged', 'y', null])), LAYOUT);
    expect(bare).toMatchObject({ oldKey: null, row: { id: undefined } });
    expect(Object.keys((bare as { row: object }).row)).toEqual(['id']);
  });

  it('decodes deletes by key and by old row, a null key value of a full row staying null', () => {
    expect(decodeChange(message('D', 16400, 'K', tuple(['7', null, null])), LAYOUT)).toEqual({
      tag: 'delete',
      relation: 'public.orders',
      id: '16400',
      oldKey: { id: '7' },
    });
    expect(decodeChange(message('D', 16400, 'O', tuple([null, 'x', 'y'])), LAYOUT)).toMatchObject({ oldKey: { id: null } });
  });

  it('keeps a column named __proto__ as a column when it is part of the key', () => {
    const layout = relationLayout('public.orders', '16400', COLUMNS, ['__proto__']);
    const m = decodeChange(message('I', 16400, 'N', tuple(['1', 'n', 'p'])), layout) as { row: Record<string, unknown> };
    expect(Object.keys(m.row)).toEqual(['__proto__']);
    expect(m.row['__proto__']).toBe('p');
  });

  it('decodes nothing of a relation that is not watched', () => {
    const layout = relationLayout('public.audit', '16500', COLUMNS, undefined);
    expect(decodeChange(message('I', 16500, 'N', tuple(['1', 'n', 'p'])), layout)).toMatchObject({ relation: 'public.audit', row: {} });
  });

  it('refuses a message cut short instead of reading past its end', () => {
    const whole = message('I', 16400, 'N', tuple(['12345', 'note', 'x']));
    expect(() => decodeChange(whole.subarray(0, whole.length - 3), LAYOUT)).toThrow(/unexpected end/);
  });

  it('names the relation of change messages only', () => {
    expect(changedRelation(message('I', 16400))).toBe(16400);
    expect(changedRelation(message('U', 7))).toBe(7);
    expect(changedRelation(Buffer.from('B12345678'))).toBeNull();
  });
});
