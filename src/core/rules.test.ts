import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { describeMask, maskProblem, planColumns, type PlanInput } from './rules.js';

const COLUMNS: PlanInput['columns'] = [
  { name: 'id', type: 'bigint', kind: 'number' },
  { name: 'email', type: 'text', kind: 'text' },
  { name: 'ssn', type: 'text', kind: 'text' },
  { name: 'born_at', type: 'date', kind: 'date' },
  { name: 'updated_at', type: 'timestamp with time zone', kind: 'timestamp' },
  { name: 'doc', type: 'jsonb', kind: 'nested' },
];

function plan(extra: Partial<PlanInput>): ReturnType<typeof planColumns> {
  return planColumns({
    table: 'app.public.customers',
    columns: COLUMNS,
    primaryKey: ['id'],
    watermark: 'updated_at',
    resolve: (w) => (COLUMNS.some((c) => c.name === w.toLowerCase()) ? w.toLowerCase() : null),
    ...extra,
  });
}

function refusal(extra: Partial<PlanInput>): AppError {
  try {
    plan(extra);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('CONFIG_INVALID');
    return err as AppError;
  }
  throw new Error('expected a refusal');
}

describe('planColumns', () => {
  it('sends every column as is when no rule is configured', () => {
    const p = plan({});
    expect(p.leaving.map((c) => c.name)).toEqual(COLUMNS.map((c) => c.name));
    expect(p.leaving.every((c) => c.mask === null)).toBe(true);
    expect(p.withheld).toEqual([]);
  });

  it('sends only the included columns, in table order, and withholds the rest', () => {
    const p = plan({ selection: { include: ['EMAIL', 'id'] } });
    expect(p.leaving.map((c) => c.name)).toEqual(['id', 'email']);
    expect(p.withheld.map((c) => c.name)).toEqual(['ssn', 'born_at', 'updated_at', 'doc']);
  });

  it('withholds excluded columns', () => {
    const p = plan({ selection: { exclude: ['ssn', 'doc'] } });
    expect(p.leaving.map((c) => c.name)).toEqual(['id', 'email', 'born_at', 'updated_at']);
    expect(p.withheld.map((c) => c.name)).toEqual(['ssn', 'doc']);
  });

  it('refuses unknown names, naming the table and listing its columns', () => {
    const err = refusal({ selection: { exclude: ['snn'] }, masks: { mail: { kind: 'hash' } } });
    expect(err.message).toBe(
      'app.public.customers: columns.exclude: no column snn; masks.mail: no column mail; the columns of app.public.customers are: id, email, ssn, born_at, updated_at, doc',
    );
  });

  it('refuses a mask of a type it cannot apply to, a masked watermark, a non-hash key mask and a mask on a withheld column, all at once', () => {
    const err = refusal({
      selection: { exclude: ['ssn'] },
      masks: {
        email: { kind: 'truncateTime', unit: 'month' },
        updated_at: { kind: 'null' },
        id: { kind: 'redact', text: 'x' },
        ssn: { kind: 'hash' },
      },
    });
    expect(err.message).toContain('masks.email: truncate: month applies to timestamp and date columns; email is text');
    expect(err.message).toContain('masks.updated_at: the watermark column cannot be masked (_ordering is derived from it)');
    expect(err.message).toContain('masks.id: a primary-key column can only be masked with hash');
    expect(err.message).toContain('masks.ssn: column ssn does not leave');
    expect(err.message).not.toContain('the columns of');
  });

  it('keeps the masks that fit, including a hashed primary key', () => {
    const p = plan({ masks: { id: { kind: 'hash' }, born_at: { kind: 'truncateTime', unit: 'year' }, email: { kind: 'truncate', chars: 3 } } });
    expect(Object.fromEntries(p.leaving.map((c) => [c.name, c.mask]))).toEqual({
      id: { kind: 'hash' },
      email: { kind: 'truncate', chars: 3 },
      ssn: null,
      born_at: { kind: 'truncateTime', unit: 'year' },
      updated_at: null,
      doc: null,
    });
  });
});

describe('maskProblem and describeMask', () => {
  it('applies text truncation to text only, time truncation to timestamps and dates, replace to scalars', () => {
    expect(maskProblem({ kind: 'truncate', chars: 2 }, 'text')).toBeNull();
    expect(maskProblem({ kind: 'truncate', chars: 2 }, 'number')).toMatch(/applies to text columns/);
    expect(maskProblem({ kind: 'truncateTime', unit: 'day' }, 'date')).toBeNull();
    expect(maskProblem({ kind: 'truncateTime', unit: 'day' }, 'text')).toMatch(/timestamp and date/);
    expect(maskProblem({ kind: 'replace', pattern: 'a', with: '' }, 'number')).toBeNull();
    expect(maskProblem({ kind: 'replace', pattern: 'a', with: '' }, 'nested')).toMatch(/scalar/);
    for (const kind of ['text', 'nested', 'number'] as const) expect(maskProblem({ kind: 'hash' }, kind)).toBeNull();
  });

  it('says what each mask does in words', () => {
    expect(describeMask(null)).toBe('as is');
    expect(describeMask({ kind: 'redact', text: '***' })).toBe('redacted to "***"');
    expect(describeMask({ kind: 'truncateTime', unit: 'month' })).toBe('truncated to the month (UTC)');
  });
});
