import { describe, expect, it } from 'vitest';
import { configIdent, planTable, yamlScalar, type TableFacts } from './init-plan.js';

const table = (over: Partial<TableFacts> = {}): TableFacts => ({
  schema: 'public',
  name: 'orders',
  inDefaultSchema: true,
  rowEstimate: 10,
  primaryKey: ['id'],
  notNull: ['id'],
  timestamps: [],
  indexes: [],
  ...over,
});
const ts = (name: string, over: Partial<TableFacts['timestamps'][number]> = {}): TableFacts['timestamps'][number] => ({
  name,
  type: 'timestamp with time zone',
  default: null,
  onUpdate: false,
  setByTrigger: null,
  ...over,
});

describe('init plans', () => {
  it('prefers a watermark a trigger keeps current over a creation time', () => {
    const plan = planTable('postgres', table({ timestamps: [ts('created_at', { default: 'now()' }), ts('modified', { setByTrigger: 'touch' })] }));
    expect(plan.watermark?.name).toBe('modified');
    expect(plan.warnings).toEqual([]);
  });

  it('takes updated_at over created_at when neither is kept current, and warns that DEFAULT now() covers INSERT only', () => {
    const plan = planTable('postgres', table({ timestamps: [ts('created_at', { default: 'now()' }), ts('updated_at', { default: 'now()' })] }));
    expect(plan.watermark?.name).toBe('updated_at');
    expect(plan.warnings.join(' ')).toContain('its DEFAULT now() sets it on INSERT only');
  });

  it('warns when the only candidate reads like a creation time', () => {
    const plan = planTable('mysql', table({ timestamps: [ts('created_at', { type: 'datetime' })] }));
    expect(plan.warnings.join(' ')).toContain('reads like a creation time');
    expect(plan.comments.flatMap((c) => c.sql)).toContain(
      'ALTER TABLE public.orders MODIFY created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP;',
    );
  });

  it('finds no index needed when one starts with (watermark, key), and names the one to create otherwise', () => {
    const indexed = planTable(
      'postgres',
      table({ timestamps: [ts('updated_at', { setByTrigger: 't' })], indexes: [{ name: 'ix', columns: ['updated_at', 'id'], unique: false }] }),
    );
    expect(indexed.comments.flatMap((c) => c.sql)).toEqual([]);
    const bare = planTable('postgres', table({ timestamps: [ts('updated_at', { setByTrigger: 't' })] }));
    expect(bare.comments.flatMap((c) => c.sql)).toEqual([
      'CREATE INDEX CONCURRENTLY orders_updated_at_pushsync_idx ON public.orders (updated_at, id);',
    ]);
  });

  it('uses a unique index of NOT NULL columns as the key, and leaves a keyless table out', () => {
    const unique = planTable(
      'postgres',
      table({ primaryKey: null, notNull: ['code'], timestamps: [ts('t')], indexes: [{ name: 'u', columns: ['code'], unique: true }] }),
    );
    expect(unique.primaryKey).toEqual(['code']);
    expect(unique.leftOut).toBeNull();
    const none = planTable(
      'postgres',
      table({ primaryKey: null, notNull: [], timestamps: [ts('t')], indexes: [{ name: 'u', columns: ['code'], unique: true }] }),
    );
    expect(none.leftOut).toMatch(/^no primary key/);
  });

  it('quotes names the source would fold, and YAML scalars YAML would read as something else', () => {
    expect(configIdent('postgres', 'UpdatedAt')).toBe('"UpdatedAt"');
    expect(configIdent('mysql', 'UpdatedAt')).toBe('UpdatedAt');
    expect(yamlScalar('"UpdatedAt"')).toBe('"\\"UpdatedAt\\""');
    expect(yamlScalar('yes')).toBe('"yes"');
    expect(yamlScalar('pagila.actor')).toBe('pagila.actor');
  });
});
