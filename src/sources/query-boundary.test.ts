import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Statements reach node-postgres only through postgres-query.ts, which forces the extended protocol (one statement
 * per text). A `pool.query(…)` or `client.query(…)` anywhere else could fall back to the simple protocol.
 */
const SRC = new URL('..', import.meta.url).pathname;
const ALLOWED = new Set(['sources/postgres-query.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

describe('the Postgres query boundary', () => {
  const files = sourceFiles(SRC).map((f) => relative(SRC, f));

  it('has source files to check', () => {
    expect(files).toContain('sources/postgres.ts');
  });

  it.each(files.filter((f) => !ALLOWED.has(f)))('%s hands no statement to the driver directly', (file) => {
    const text = readFileSync(join(SRC, file), 'utf8');
    expect(text.match(/\b(?:pool|client)\s*\.\s*query\s*\(/g) ?? []).toEqual([]);
  });
});

/** The MySQL source reaches mysql2 through mysql-query.ts only, which keeps one statement per query and no driver-side interpolation. */
const MYSQL_DRIVER_FILES = new Set(['sources/mysql-query.ts']);

describe('the MySQL query boundary', () => {
  const files = sourceFiles(SRC).map((f) => relative(SRC, f));

  it.each(files.filter((f) => !MYSQL_DRIVER_FILES.has(f)))('%s does not import mysql2', (file) => {
    const text = readFileSync(join(SRC, file), 'utf8');
    expect(text.match(/from\s+'mysql2(?:\/[^']*)?'/g) ?? []).toEqual([]);
  });
});
