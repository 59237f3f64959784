import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** The domain core stays free of frameworks and drivers: it imports only itself and Node's standard library. */
describe('the core module boundary', () => {
  const dir = new URL('.', import.meta.url).pathname;
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));

  it('has source files to check', () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)('%s imports only core modules and node: built-ins', (file) => {
    const text = readFileSync(`${dir}${file}`, 'utf8');
    const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
    const outside = specifiers.filter((s) => !s.startsWith('./') && !s.startsWith('node:'));
    expect(outside).toEqual([]);
  });
});
