import { describe, expect, it } from 'vitest';
import { arrayElements, objectMembers } from '../core/json-scan.js';
import { arraySpans, envelopeParts, forEachMember } from './dev-sink-scan.js';

/** A pseudo-random JSON value with escapes, backslashes before quotes, nesting and whitespace where JSON allows it. */
function randomJson(next: () => number, depth = 0): string {
  const sp = (): string => [' ', '', '\n', '\t ', ''][Math.floor(next() * 5)]!;
  const strings = ['"a"', '""', '"\\\\"', '"x\\"y"', '"\\\\\\""', '"é😀"', '"\\u0041\\n"', '"{[,]}:"'];
  const scalars = ['0', '-1.5e+3', '12345678901234567890', 'true', 'false', 'null', ...strings];
  const pick = next();
  if (depth > 3 || pick < 0.5) return scalars[Math.floor(next() * scalars.length)]!;
  const n = Math.floor(next() * 4);
  if (pick < 0.75) return `[${sp()}${Array.from({ length: n }, () => randomJson(next, depth + 1)).join(`${sp()},${sp()}`)}${sp()}]`;
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

describe('dev sink scanners', () => {
  it('find the same members and elements as the character-by-character scanners, on random JSON', () => {
    const next = seeded(42);
    for (let k = 0; k < 2000; k += 1) {
      const row = `{ "k" : ${randomJson(next)} , "m":${randomJson(next)}}`;
      JSON.parse(row);
      const spans: Array<[string, string]> = [];
      forEachMember(row, 0, (keyStart, keyEnd, a, b) => {
        spans.push([row.slice(keyStart, keyEnd), row.slice(a, b)]);
      });
      expect(spans).toEqual(objectMembers(row).map((m) => [m.rawKey, row.slice(m.valueStart, m.valueEnd)]));
      const list = `[${randomJson(next)} , ${randomJson(next)},${randomJson(next)} ]`;
      expect(arraySpans(list, 0).spans).toEqual(arrayElements(list));
    }
  });

  it('take the rows and the config from the last data and config keys of an envelope', () => {
    expect(envelopeParts('{"config":{"data":[9]},"data":[{"a":"]"} , {"b":[1,{"c":2}]}]}')).toEqual({
      data: '[{"a":"]"} , {"b":[1,{"c":2}]}]',
      rows: ['{"a":"]"}', '{"b":[1,{"c":2}]}'],
      config: '{"data":[9]}',
    });
    expect(envelopeParts('{ "data" : { "a" : 1 } , "config" : {} , "config":{"t":1} }')).toEqual({
      data: '{ "a" : 1 }',
      rows: ['{ "a" : 1 }'],
      config: '{"t":1}',
    });
    expect(envelopeParts('{"data":[{"a":1}],"\\u0064ata":[]}')).toEqual({ data: '[]', rows: [], config: undefined });
    expect(envelopeParts('{"data":null}')).toEqual({ data: 'null', rows: ['null'], config: undefined });
    expect(envelopeParts(' { } ')).toEqual({ data: undefined, rows: [], config: undefined });
  });
});
