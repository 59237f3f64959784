import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, tableSpec } from './config.js';
import { AppError } from './core/errors.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function withTable(fields: Record<string, unknown>, top: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    destination: { apiKey: 'k' },
    sources: [
      { name: 'app', kind: 'postgres', url: 'postgres://u@db/app', tables: [{ name: 'public.customers', watermark: 'updated_at', ...fields }] },
    ],
    ...top,
  };
}

function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(raw, env);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return (err as AppError).details?.problems as string[];
  }
  throw new Error('expected the config to be refused');
}

describe('the config of what leaves', () => {
  it('reads columns, every form of mask, where, onFilteredOut and transform into the table spec', () => {
    const cfg = parseConfig(
      withTable(
        {
          columns: { exclude: ['ssn'] },
          masks: {
            email: 'hash',
            phone: { redact: '***' },
            note: null,
            name: { truncate: 3 },
            born_at: { truncate: 'month' },
            card: { replace: { pattern: '\\d(?=\\d{4})', with: '*' } },
          },
          where: "region <> 'EU'",
          onFilteredOut: 'skip',
          transform: '/opt/t.mjs',
        },
        { masking: { key: '${PSEUDONYM_KEY}' } },
      ),
      { PSEUDONYM_KEY: '0123456789abcdef0123' },
    );
    expect(cfg.masking).toEqual({ key: '0123456789abcdef0123' });
    const t = cfg.sources[0]!.tables[0]!;
    expect(t.onFilteredOut).toBe('skip');
    expect(tableSpec(t)).toEqual({
      source: 'app',
      name: 'public.customers',
      primaryKey: undefined,
      watermark: 'updated_at',
      softDelete: undefined,
      columns: { exclude: ['ssn'] },
      masks: {
        email: { kind: 'hash' },
        phone: { kind: 'redact', text: '***' },
        note: { kind: 'null' },
        name: { kind: 'truncate', chars: 3 },
        born_at: { kind: 'truncateTime', unit: 'month' },
        card: { kind: 'replace', pattern: '\\d(?=\\d{4})', with: '*' },
      },
      where: "region <> 'EU'",
    });
  });

  it('keeps the spec of a table without rules as it was', () => {
    const t = parseConfig(withTable({}), {}).sources[0]!.tables[0]!;
    expect(Object.keys(tableSpec(t))).toEqual(['source', 'name', 'primaryKey', 'watermark', 'softDelete']);
  });

  it('refuses include with exclude, an unknown mask, a bad pattern, a hash without masking.key and a short key', () => {
    expect(problems(withTable({ columns: { include: ['a'], exclude: ['b'] } }))).toEqual([
      'sources[0].tables[0].columns: use { include: [col, ...] } or { exclude: [col, ...] }',
    ]);
    expect(problems(withTable({ masks: { a: 'sha1' } }))[0]).toMatch(/^sources\[0\]\.tables\[0\]\.masks\.a: use hash, null/);
    expect(problems(withTable({ masks: { a: { replace: { pattern: '(' } } } }))[0]).toMatch(
      /masks\.a: replace\.pattern is not a valid regular expression/,
    );
    expect(problems(withTable({ masks: { email: 'hash' } }))).toEqual([
      'sources[0].tables[0].masks.email: hash needs masking.key (e.g. masking: { key: ${PSEUDONYM_KEY} })',
    ]);
    expect(problems(withTable({}, { masking: { key: 'short' } }))).toEqual([
      'masking.key: must be at least 16 characters (e.g. openssl rand -hex 32)',
    ]);
  });

  it('refuses a where that is not one SQL condition, and onFilteredOut without a filter', () => {
    expect(problems(withTable({ where: "region <> 'EU'; DELETE FROM customers" }))).toEqual([
      "sources[0].tables[0].where: must be one SQL condition: found ';' at position 15; a condition cannot end the statement",
    ]);
    expect(problems(withTable({ onFilteredOut: 'skip' }))).toEqual([
      'sources[0].tables[0].onFilteredOut: applies only to a table with where or transform',
    ]);
  });

  it('refuses a query that is not one SELECT, a query table without a primary key, and one in mode cdc', () => {
    expect(problems(withTable({ query: 'DELETE FROM orders', primaryKey: ['id'] }))).toEqual([
      'sources[0].tables[0].query: must be one SELECT statement: it starts with "DELETE"; a query starts with SELECT or WITH',
    ]);
    expect(problems(withTable({ query: 'SELECT 1; SELECT 2', primaryKey: ['id'] }))[0]).toBe(
      "sources[0].tables[0].query: must be one SELECT statement: found ';' at position 9; the query must be one statement",
    );
    expect(problems(withTable({ query: 'SELECT id, updated_at FROM orders' }))).toEqual([
      'sources[0].tables[0].primaryKey: required for a query table (output columns that are unique and not null)',
    ]);
    expect(problems(withTable({ query: 'SELECT id FROM orders', primaryKey: ['id'], mode: 'cdc', watermark: undefined }))).toEqual([
      'sources[0].tables[0].query: a query table is read by its watermark; it cannot be in mode cdc',
    ]);
  });

  it('reads columns, masks, where, onFilteredOut and query of a MySQL table as it reads them for Postgres, in watermark and cdc mode', () => {
    const mysqlTable = (fields: Record<string, unknown>, mode: 'watermark' | 'cdc' = 'watermark'): Record<string, unknown> => ({
      destination: { apiKey: 'k' },
      masking: { key: '0123456789abcdef0123' },
      sources: [
        {
          name: 'shop',
          kind: 'mysql',
          url: 'mysql://u:p@db/shop',
          mode,
          ...(mode === 'cdc' ? { cdc: { slot: 'pushsync_shop' } } : {}),
          tables: [{ name: 'customers', ...(mode === 'watermark' ? { watermark: 'updated_at' } : {}), ...fields }],
        },
      ],
    });
    const rules = { columns: { exclude: ['ssn'] }, masks: { email: 'hash' }, where: "country = 'DE'", onFilteredOut: 'delete' };
    for (const mode of ['watermark', 'cdc'] as const) {
      const cfg = parseConfig(mysqlTable(rules, mode), {});
      const spec = tableSpec(cfg.sources[0]!.tables[0]!);
      expect(spec).toMatchObject({ columns: { exclude: ['ssn'] }, masks: { email: { kind: 'hash' } }, where: "country = 'DE'" });
      expect(cfg.sources[0]!.tables[0]!.onFilteredOut).toBe('delete');
    }
    const query = parseConfig(mysqlTable({ name: 'q', query: 'SELECT id, updated_at FROM customers', primaryKey: ['id'] }), {});
    expect(tableSpec(query.sources[0]!.tables[0]!).query).toBe('SELECT id, updated_at FROM customers');
    expect(problems(mysqlTable({ query: 'SELECT id FROM customers; DELETE FROM customers', primaryKey: ['id'] }))).toEqual([
      "sources[0].tables[0].query: must be one SELECT statement: found ';' at position 25; the query must be one statement",
    ]);
    expect(problems(mysqlTable({ query: 'SELECT id FROM customers', primaryKey: ['id'] }, 'cdc'))).toContain(
      'sources[0].tables[0].query: a query table is read by its watermark; it cannot be in mode cdc',
    );
    // What MySQL's lexer reads otherwise than the scanner is refused at load, for every configured SQL text.
    expect(problems(mysqlTable({ where: "`region` = 'EU'", softDelete: { condition: 'gone = 1 # x' } }))).toEqual([
      "sources[0].tables[0].softDelete.condition: must be one SQL condition: found '#' at position 10; MySQL reads '#' as a comment",
      "sources[0].tables[0].where: must be one SQL condition: found '`' at position 1; quote identifiers with double quotes (pushsync's sessions use ANSI_QUOTES)",
    ]);
    expect(problems(mysqlTable({ name: 'q', query: 'SELECT $$x$$ AS id, updated_at FROM customers', primaryKey: ['id'] }))).toEqual([
      "sources[0].tables[0].query: must be one SELECT statement: found '$' at position 8; MySQL reads '$' in names, where the condition scanner reads dollar quotes",
    ]);
    // The same text is fine for Postgres, whose lexer the scanner follows.
    expect(() => parseConfig(withTable({ where: 'x = $$a$$' }), {})).not.toThrow();
  });

  it('resolves a transform path against the config file directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushsync-cfg-'));
    const path = join(dir, 'pushsync.json');
    writeFileSync(path, JSON.stringify(withTable({ transform: './transforms/customers.mjs' })));
    expect(loadConfig(path, {}).sources[0]!.tables[0]!.transform).toBe(join(dir, 'transforms/customers.mjs'));
  });
});
