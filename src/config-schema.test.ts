import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { configJsonSchema } from './config.js';

const ROOT = new URL('..', import.meta.url).pathname;

/** YAML as pushsync reads it: `${VAR}` references are set aside before parsing (they may stand in flow style). */
function parseWithRefs(text: string): unknown {
  const refs: string[] = [];
  const doc = parseYaml(text.replace(/\$\{[^}]*\}/g, (ref) => `ENVREF${refs.push(ref) - 1}X`)) as unknown;
  const restore = (v: unknown): unknown => {
    if (typeof v === 'string') return v.replace(/ENVREF(\d+)X/g, (_m, i: string) => refs[Number(i)]!);
    if (Array.isArray(v)) return v.map(restore);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, restore(x)]));
    return v;
  };
  return restore(doc);
}

/** The README's full configuration example: the ```yaml block under "## Configuration" that starts with `redis:`. */
function readmeExample(): unknown {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'));
  const block = /```yaml\n(redis:[\s\S]*?)```/.exec(section)![1]!;
  return parseWithRefs(block);
}

describe('the config file JSON Schema (pushsync config schema)', () => {
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(configJsonSchema());

  it('accepts the demo config and the README example, `${VAR}` references included', () => {
    for (const doc of [parseWithRefs(readFileSync(`${ROOT}demo/pushsync.demo.yaml`, 'utf8')), readmeExample()]) {
      const ok = validate(doc);
      expect(ok ? [] : validate.errors).toEqual([]);
    }
  });

  it('refuses unknown keys, wrong types and out-of-range values, naming where', () => {
    const bad = {
      destination: { apiKey: 'k', attempts: 1000, colour: 'blue' },
      extract: { leaseTtl: 'soon' },
      sources: [{ name: 'app', kind: 'postgres', url: 'postgres://h/db', tables: [{ name: 't', batchRows: 'many' }] }],
    };
    expect(validate(bad)).toBe(false);
    const where = new Set((validate.errors ?? []).map((e) => e.instancePath));
    for (const path of ['/destination', '/destination/attempts', '/extract/leaseTtl', '/sources/0/tables/0/batchRows']) expect(where).toContain(path);
  });

  it('states each default where the option is, and applies it (no restated defaults in parent objects)', () => {
    const schema = configJsonSchema() as { properties: Record<string, { properties: Record<string, { default?: unknown }> }> };
    expect(schema.properties.extract!.properties.leaseTtl!.default).toBe(30_000);
    expect(schema.properties.destination!.properties.attempts!.default).toBe(12);
    const text = readFileSync(`${ROOT}src/config.ts`, 'utf8');
    // A parent object's default is `{}` (prefault), never a copy of its children's values.
    expect(text.match(/\.default\(\{[^}]/g) ?? []).toEqual([]);
  });
});

describe('config option documentation', () => {
  const text = readFileSync(`${ROOT}src/config.ts`, 'utf8');
  const schemaText = text.slice(text.indexOf('const tableSchema'), text.indexOf('export function configJsonSchema'));
  const lines = schemaText.split('\n');
  // An option is a `key: <schema>` line inside z.object({...}) of the schemas.
  const options = lines
    .map((line, i) => ({
      line,
      i,
      key: /^\s+([a-zA-Z]+): (?:z\.|duration|every|cdcEvery|text|cron|qualifiedName|slotName|postgresUrl|sqlCondition|atLeast|cdcSchema|tableSchema|sourceSchema)/.exec(
        line,
      )?.[1],
    }))
    .filter((o): o is { line: string; i: number; key: string } => o.key !== undefined);

  it('finds the options', () => {
    expect(options.length).toBeGreaterThan(40);
  });

  it.each(options.map((o) => [o.key, o] as const))('%s has a TSDoc comment, with @defaultValue when it has a default', (_key, o) => {
    let j = o.i - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    expect(lines[j]!.trim().endsWith('*/'), `${o.key}: ${o.line.trim()}`).toBe(true);
    let start = j;
    while (start > 0 && !lines[start]!.includes('/**')) start--;
    const doc = lines.slice(start, j + 1).join('\n');
    // The option's own statement: up to the next line at its indentation (the next option, its comment, or `})`).
    const indent = /^\s*/.exec(o.line)![0].length;
    let end = o.i + 1;
    while (end < lines.length && (/^\s*/.exec(lines[end]!)![0].length > indent || lines[end]!.trim() === '')) end++;
    const statement = lines.slice(o.i, end).join('\n');
    // Nested options carry their own comments: look only at what is not inside a nested object.
    const own = statement.replace(/\.object\(\{[\s\S]*\}\)/, '');
    if (/\.default\(/.test(own)) expect(doc, o.key).toMatch(/@defaultValue/);
  });
});
