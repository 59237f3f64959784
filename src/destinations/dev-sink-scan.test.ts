import { describe, expect, it } from 'vitest';
import { arrayElements, objectMembers } from '../core/json-scan.js';
import { arraySpans, envelopeParts, forEachMember } from './dev-sink-scan.js';
import { prng } from '../../test/helpers/prng.js';
import { randomJson } from '../../test/helpers/random-json.js';

describe('dev sink scanners', () => {
  it('find the same members and elements as the character-by-character scanners, on random JSON', () => {
    const next = prng(42);
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
