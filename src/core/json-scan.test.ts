import { describe, expect, it } from 'vitest';
import { arrayElements, jsonDepth, objectMembers } from './json-scan.js';

function nested(depth: number): string {
  let text = '1';
  for (let i = 0; i < depth; i++) text = i % 2 === 0 ? `[${text}]` : `{"k":${text}}`;
  return text;
}

describe('jsonDepth', () => {
  it.each([
    ['1', 0],
    ['"text"', 0],
    ['null', 0],
    ['{}', 1],
    ['[]', 1],
    ['{"a":[1]}', 2],
    ['[[],[[]],{}]', 3],
    ['{"a":{"b":{"c":{}}},"d":[]}', 4],
  ])('measures %s as depth %i', (text, depth) => {
    expect(jsonDepth(text)).toBe(depth);
  });

  it('counts every level of a deeply nested value', () => {
    for (const depth of [1, 9, 10, 11, 50]) expect(jsonDepth(nested(depth))).toBe(depth);
  });

  it('ignores brackets, braces, quotes and escapes inside strings', () => {
    expect(jsonDepth('{"a":"[[[{{{"}')).toBe(1);
    expect(jsonDepth('{"a\\"[":"\\\\","b":"]]]\\"}}}"}')).toBe(1);
    expect(jsonDepth('["\\\\\\"[", ["x"]]')).toBe(2);
    expect(jsonDepth('{"\\u005b":"\\u007b"}')).toBe(1);
  });

  it('measures only the slice it is given', () => {
    const text = '{"a":[[1]],"b":2}';
    const start = text.indexOf('[');
    expect(jsonDepth(text, start, text.indexOf(',"b"'))).toBe(2);
  });
});

describe('objectMembers', () => {
  it('gives each member raw key and the exact span of its value', () => {
    const text = '{"id":12345678901234567890,"name":"a, \\"b\\" }","tags":["x","}"],"obj":{"k":[1,{"z":null}]},"n":null,"f":-1.5e3}';
    const members = objectMembers(text).map((m) => [m.rawKey, text.slice(m.valueStart, m.valueEnd)]);
    expect(members).toEqual([
      ['"id"', '12345678901234567890'],
      ['"name"', '"a, \\"b\\" }"'],
      ['"tags"', '["x","}"]'],
      ['"obj"', '{"k":[1,{"z":null}]}'],
      ['"n"', 'null'],
      ['"f"', '-1.5e3'],
    ]);
  });

  it('handles whitespace around keys, colons and values the way Postgres prints json', () => {
    const text = '{ "a" : 1 , "b"\t:\n[ 2 ] ,"c": "x" }';
    const members = objectMembers(text).map((m) => [m.rawKey, text.slice(m.valueStart, m.valueEnd)]);
    expect(members).toEqual([
      ['"a"', '1'],
      ['"b"', '[ 2 ]'],
      ['"c"', '"x"'],
    ]);
  });

  it('keeps escaped quotes inside keys', () => {
    const [member] = objectMembers('{"we\\"ird":true}');
    expect(member!.rawKey).toBe('"we\\"ird"');
    expect(JSON.parse(member!.rawKey)).toBe('we"ird');
  });

  it('returns no members for an empty object', () => {
    expect(objectMembers('{}')).toEqual([]);
    expect(objectMembers(' { } ')).toEqual([]);
  });

  it('refuses text that is not an object', () => {
    expect(() => objectMembers('[1]')).toThrow(SyntaxError);
  });
});

describe('arrayElements', () => {
  it('gives the span of each element, nested or not', () => {
    const text = '[1, "a]b", [2,[3]], {"k":"]"}, null, "\\"]"]';
    const spans = arrayElements(text).map(([s, e]) => text.slice(s, e));
    expect(spans).toEqual(['1', '"a]b"', '[2,[3]]', '{"k":"]"}', 'null', '"\\"]"']);
  });

  it('starts at the given offset', () => {
    const text = '{"data":[10,20]}';
    const spans = arrayElements(text, text.indexOf('[')).map(([s, e]) => text.slice(s, e));
    expect(spans).toEqual(['10', '20']);
  });

  it('returns no elements for an empty array', () => {
    expect(arrayElements('[]')).toEqual([]);
    expect(arrayElements('[ ]')).toEqual([]);
  });

  it('refuses text that is not an array', () => {
    expect(() => arrayElements('{"a":1}')).toThrow(SyntaxError);
  });
});
