import { describe, expect, it } from 'vitest';
import { scanEnvelope } from './dev-sink-envelope.js';
import { envelopeParts, forEachMember } from './dev-sink-scan.js';
import { prng } from '../../test/helpers/prng.js';
import { randomJson } from '../../test/helpers/random-json.js';

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
    const next = prng(11);
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
