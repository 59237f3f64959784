import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

/** Every Markdown file of the project: README, docs/, bench/. */
function markdownFiles(): string[] {
  const files = ['README.md'];
  for (const dir of ['docs', 'bench']) {
    for (const f of readdirSync(join(ROOT, dir))) if (f.endsWith('.md')) files.push(join(dir, f));
  }
  return files;
}

describe('documentation', () => {
  it('carries no unresolved merge conflict', () => {
    const found: string[] = [];
    for (const f of markdownFiles()) {
      readFileSync(join(ROOT, f), 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/^(<{7}|={7}|>{7})( |$)/.test(line)) found.push(`${f}:${i + 1}: ${line}`);
        });
    }
    expect(found).toEqual([]);
  });
});
