import { describe, expect, it } from 'vitest';
import { announcement, classifyTypeChange, diffShapes, needsAttention, sameShape, type RelationShape } from './table-shape.js';

const base: RelationShape = {
  identity: '16384',
  columns: [
    { name: 'id', type: 'integer', ordinal: 1 },
    { name: 'v', type: 'text', ordinal: 2 },
    { name: 'updated_at', type: 'timestamp with time zone', ordinal: 3 },
  ],
};
const withColumns = (columns: RelationShape['columns'], identity = base.identity): RelationShape => ({ identity, columns });

describe('diffShapes', () => {
  it('finds nothing between equal shapes, whatever nullability says', () => {
    const other = withColumns(base.columns.map((c) => ({ ...c, nullable: false })));
    expect(diffShapes(base, other)).toEqual([]);
    expect(sameShape(base, other)).toBe(true);
  });

  it('reports an added column, generated or not', () => {
    const after = withColumns([
      ...base.columns,
      { name: 'extra', type: 'text', ordinal: 4 },
      { name: 'g', type: 'integer', generated: true, ordinal: 5 },
    ]);
    expect(diffShapes(base, after)).toEqual([
      { kind: 'column_added', column: 'extra', type: 'text', generated: false },
      { kind: 'column_added', column: 'g', type: 'integer', generated: true },
    ]);
  });

  it('reports a dropped column', () => {
    const after = withColumns([base.columns[0]!, base.columns[2]!]);
    expect(diffShapes(base, after)).toEqual([{ kind: 'column_dropped', column: 'v', type: 'text' }]);
  });

  it('reports a rename as a drop plus an add, linked when the column number shows it', () => {
    const after = withColumns([base.columns[0]!, { name: 'w', type: 'text', ordinal: 2 }, base.columns[2]!]);
    expect(diffShapes(base, after)).toEqual([
      { kind: 'column_dropped', column: 'v', type: 'text', renamedTo: 'w' },
      { kind: 'column_added', column: 'w', type: 'text', generated: false, renamedFrom: 'v' },
    ]);
    const noOrdinals = (s: RelationShape): RelationShape => withColumns(s.columns.map(({ ordinal: _o, ...c }) => c));
    expect(diffShapes(noOrdinals(base), noOrdinals(after)).map((c) => c.kind)).toEqual(['column_dropped', 'column_added']);
    expect(diffShapes(noOrdinals(base), noOrdinals(after))).not.toContainEqual(expect.objectContaining({ renamedFrom: 'v' }));
  });

  it('reports a type change with its verdict', () => {
    const after = withColumns([{ name: 'id', type: 'bigint', ordinal: 1 }, { name: 'v', type: 'integer', ordinal: 2 }, base.columns[2]!]);
    const changes = diffShapes(base, after);
    expect(changes).toMatchObject([
      { kind: 'type_changed', column: 'id', from: 'integer', to: 'bigint', verdict: 'widening' },
      { kind: 'type_changed', column: 'v', from: 'text', to: 'integer', verdict: 'incompatible' },
    ]);
    expect(changes.map(needsAttention)).toEqual([false, true]);
  });

  it('reports a new identity as a re-created table, then its column differences, with no renames', () => {
    const after = withColumns([base.columns[0]!, { name: 'w', type: 'text', ordinal: 2 }, { ...base.columns[2]!, ordinal: 3 }], '16999');
    expect(diffShapes(base, after)).toEqual([
      { kind: 'table_recreated', from: '16384', to: '16999' },
      { kind: 'column_dropped', column: 'v', type: 'text' },
      { kind: 'column_added', column: 'w', type: 'text', generated: false },
    ]);
    expect(diffShapes(base, withColumns(base.columns, '16999'))).toEqual([{ kind: 'table_recreated', from: '16384', to: '16999' }]);
    expect(sameShape(base, withColumns(base.columns, '16999'))).toBe(false);
  });

  it('treats an unknown identity as no evidence of re-creation', () => {
    expect(diffShapes(withColumns(base.columns, null), base)).toEqual([]);
  });

  it('sees a change of column order', () => {
    const after = withColumns([base.columns[1]!, base.columns[0]!, base.columns[2]!]);
    expect(sameShape(base, after)).toBe(false);
  });
});

describe('classifyTypeChange', () => {
  const cases: Array<[string, string, 'widening' | 'narrowing' | 'incompatible']> = [
    ['integer', 'bigint', 'widening'],
    ['smallint', 'integer', 'widening'],
    ['smallint', 'bigint', 'widening'],
    ['bigint', 'integer', 'narrowing'],
    ['integer', 'smallint', 'narrowing'],
    ['integer', 'numeric', 'widening'],
    ['integer', 'numeric(12,0)', 'widening'],
    ['integer', 'numeric(12,4)', 'narrowing'],
    ['character varying(10)', 'character varying(20)', 'widening'],
    ['character varying(20)', 'character varying(10)', 'narrowing'],
    ['character varying(10)', 'text', 'widening'],
    ['character varying(10)', 'character varying', 'widening'],
    ['text', 'character varying(10)', 'narrowing'],
    ['text', 'character varying', 'widening'],
    ['numeric(12,2)', 'numeric(14,2)', 'widening'],
    ['numeric(12,2)', 'numeric(13,3)', 'widening'],
    ['numeric(12,2)', 'numeric', 'widening'],
    ['numeric(12,2)', 'numeric(12,1)', 'narrowing'],
    ['numeric(12,2)', 'numeric(11,2)', 'narrowing'],
    ['numeric(12,2)', 'numeric(12,3)', 'narrowing'],
    ['numeric', 'numeric(12,2)', 'narrowing'],
    ['real', 'double precision', 'widening'],
    ['double precision', 'real', 'narrowing'],
    ['integer', 'text', 'incompatible'],
    ['text', 'integer', 'incompatible'],
    ['integer', 'double precision', 'incompatible'],
    ['timestamp without time zone', 'timestamp with time zone', 'incompatible'],
    ['timestamp with time zone', 'timestamp without time zone', 'incompatible'],
    ['timestamp(3) with time zone', 'timestamp with time zone', 'widening'],
    ['timestamp with time zone', 'timestamp(3) with time zone', 'narrowing'],
    ['character(3)', 'character(5)', 'incompatible'],
    ['date', 'timestamp without time zone', 'incompatible'],
    ['integer[]', 'bigint[]', 'widening'],
    ['integer', 'integer[]', 'incompatible'],
    ['bit varying(4)', 'bit varying(8)', 'widening'],
    ['bit varying(8)', 'bit varying(4)', 'narrowing'],
    // MySQL's COLUMN_TYPE spelling
    ['int', 'bigint', 'widening'],
    ['int(11)', 'bigint(20)', 'widening'],
    ['tinyint(4)', 'smallint(6)', 'widening'],
    ['int unsigned', 'bigint', 'widening'],
    ['int unsigned', 'int', 'narrowing'],
    ['int', 'int unsigned', 'incompatible'],
    ['varchar(10)', 'varchar(40)', 'widening'],
    ['varchar(255)', 'text', 'widening'],
    ['text', 'mediumtext', 'widening'],
    ['longtext', 'text', 'narrowing'],
    ['decimal(10,2)', 'decimal(12,2)', 'widening'],
    ['decimal(10,2)', 'decimal(10,1)', 'narrowing'],
    ['datetime', 'datetime(6)', 'widening'],
    ['datetime(6)', 'datetime(3)', 'narrowing'],
    ['float', 'double', 'widening'],
  ];
  it.each(cases)('%s → %s is %s', (from, to, verdict) => {
    const result = classifyTypeChange(from, to);
    expect(result.verdict).toBe(verdict);
    expect(result.why.length).toBeGreaterThan(0);
  });
});

describe('announcement', () => {
  const at = { source: 'app', table: 'public.t', detectedAt: '2026-12-01T11:00:00.000Z', appliesFrom: '2026-12-01T10:59:00.000000Z' };

  it('says what a narrowing change is and what to do, naming the column', () => {
    const [change] = diffShapes(base, withColumns([base.columns[0]!, { name: 'v', type: 'character varying(3)', ordinal: 2 }, base.columns[2]!]));
    const a = announcement(change!, { ...at, sent: () => true });
    expect(a).toMatchObject({
      kind: 'type_changed',
      column: 'v',
      old_type: 'text',
      new_type: 'character varying(3)',
      verdict: 'narrowing',
      sent: true,
    });
    expect(a.note).toContain('column v');
    expect(a.note).toMatch(/new target/);
    expect(a.note).toMatch(/freeze/);
  });

  it('marks an added column the rules withhold as not sent, and a dropped one as not sent', () => {
    const [added] = diffShapes(base, withColumns([...base.columns, { name: 'extra', type: 'text' }]));
    expect(announcement(added!, { ...at, sent: () => false })).toMatchObject({
      kind: 'column_added',
      column: 'extra',
      old_type: null,
      new_type: 'text',
      sent: false,
      applies_from: at.appliesFrom,
    });
    const [dropped] = diffShapes(base, withColumns([base.columns[0]!, base.columns[2]!]));
    expect(announcement(dropped!, { ...at, sent: () => true })).toMatchObject({
      kind: 'column_dropped',
      column: 'v',
      old_type: 'text',
      new_type: null,
      sent: false,
    });
  });

  it('names no column for a re-created table', () => {
    const [recreated] = diffShapes(base, withColumns(base.columns, '1'));
    expect(announcement(recreated!, { ...at, sent: () => true })).toMatchObject({ kind: 'table_recreated', column: null, sent: null });
  });
});
