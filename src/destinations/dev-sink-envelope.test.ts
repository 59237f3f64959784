import { describe, expect, it } from 'vitest';
import { scanEnvelope } from './dev-sink-envelope.js';
import { envelopeParts, forEachMember } from './dev-sink-scan.js';

/** A pseudo-random JSON value with escapes, backslashes before quotes, nesting and whitespace where JSON allows it. */
function randomJson(next: () => number, depth = 0): string {
  const sp = (): string => [' ', '', '\n', '\t ', ''][Math.floor(next() * 5)]!;
  const strings = ['"a"', '""', '"\\\\"', '"x\\"y"', '"data"', '"d\\u0061ta"', '"config"', '"é😀"', '"{[,]}:"'];
  const scalars = ['0', '-1.5e+3', '12345678901234567890', 'true', 'false', 'null', ...strings];
  const pick = next();
  if (depth > 3 || pick < 0.4) return scalars[Math.floor(next() * scalars.length)]!;
  const n = Math.floor(next() * 4);
  if (pick < 0.7) return `[${sp()}${Array.from({ length: n }, () => randomJson(next, depth + 1)).join(`${sp()},${sp()}`)}${sp()}]`;
  const members = Array.from({ length: n }, () => `${strings[Math.floor(next() * strings.length)]!}${sp()}:${sp()}${randomJson(next, depth + 1)}`);
  return `{${sp()}${members.join(`${sp()},${sp()}`)}${sp()}}`;
}

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

/** What the separate scans find: the parts, each row's span, and the members of each object row. */
function separately(text: string): unknown {
  const parts = envelopeParts(text);
  return {
    data: parts.data,
    config: parts.config,
    rows: parts.rows,
    members: parts.rows.map((row) => {
      const found: string[][] = [];
      if (row.charCodeAt(0) === 0x7b) forEachMember(row, 0, (a, b, c, d) => void found.push([row.slice(a, b), row.slice(c, d)]));
      return found;
    }),
  };
}

function together(text: string): unknown {
  const scan = scanEnvelope(text)!;
  const slice = (a: number, b: number): string | undefined => (a === -1 ? undefined : text.slice(a, b));
  return {
    data: slice(scan.dataStart, scan.dataEnd),
    config: slice(scan.configStart, scan.configEnd),
    rows: scan.rowStarts.map((start, r) => text.slice(start, scan.rowEnds[r])),
    members: scan.rowStarts.map((_, r) => {
      const found: string[][] = [];
      for (let m = r === 0 ? 0 : scan.memberEnds[r - 1]!; m < scan.memberEnds[r]!; m += 1) {
        const [a, b, c, d] = scan.members.subarray(4 * m, 4 * m + 4);
        found.push([text.slice(a, b), text.slice(c, d)]);
      }
      return found;
    }),
  };
}

describe('envelope scanner', () => {
  it('finds the parts, rows and row members the separate scans find, on random envelopes', () => {
    const next = seeded(11);
    const keys = ['"data"', '"config"', '"d\\u0061ta"', '"other"'];
    for (let k = 0; k < 3000; k += 1) {
      const members = Array.from({ length: 1 + Math.floor(next() * 4) }, () => {
        const key = keys[Math.floor(next() * keys.length)]!;
        const rows = Array.from({ length: Math.floor(next() * 4) }, () => randomJson(next, 1));
        const value = next() < 0.7 ? `[ ${rows.join(' , ')} ]` : randomJson(next);
        return `${key} : ${value}`;
      });
      const text = ` { ${members.join(', ')} } `;
      JSON.parse(text);
      expect([text, together(text)]).toEqual([text, separately(text)]);
    }
  });

  it('takes a single object as the one row, and keeps only the last data', () => {
    expect(together('{"data":{"a":1,"b":[{"c":2}]},"config":{"table":"s.t"}}')).toEqual({
      data: '{"a":1,"b":[{"c":2}]}',
      config: '{"table":"s.t"}',
      rows: ['{"a":1,"b":[{"c":2}]}'],
      members: [
        [
          ['"a"', '1'],
          ['"b"', '[{"c":2}]'],
        ],
      ],
    });
    expect(together('{"data":[{"x":1}],"data":[{"y":2},3]}')).toMatchObject({ rows: ['{"y":2}', '3'], members: [[['"y"', '2']], []] });
  });
});
