import { describe, expect, it } from 'vitest';
import { scanEnvelope } from './dev-sink-envelope.js';
import { isJson, isJsonString, stringEnds } from './dev-sink-json.js';

const parses = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

/** Pieces JSON is made of, and the near misses that break it. */
const PIECES = [
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
  ' ',
  '\n',
  '\t',
  '\r',
  '"',
  '\\',
  'a',
  'é',
  '\u0001',
  '\u2028',
  '\ud800',
  'u',
  '0',
  '1',
  '-',
  '+',
  '.',
  'e',
  'E',
];
const TOKENS = [
  'true',
  'false',
  'null',
  'tru',
  'nul',
  '"\\u00e9"',
  '"\\u00g9"',
  '"\\x"',
  '"\\/"',
  '01',
  '-0',
  '1.',
  '.5',
  '1e',
  '1e+5',
  '-',
  '2E-3',
  '"a"',
];

function randomValue(next: () => number, depth: number): string {
  const pick = next();
  if (depth > 3 || pick < 0.45) return TOKENS[Math.floor(next() * TOKENS.length)]!;
  const n = Math.floor(next() * 4);
  const items = Array.from({ length: n }, () => randomValue(next, depth + 1));
  if (pick < 0.7) return `[${items.join(',')}]`;
  return `{${items.map((v, i) => `"k${i}" : ${v}`).join(' ,')}}`;
}

function mutate(text: string, next: () => number): string {
  const at = Math.floor(next() * (text.length + 1));
  const piece = PIECES[Math.floor(next() * PIECES.length)]!;
  const how = next();
  if (how < 0.4) return text.slice(0, at) + piece + text.slice(at);
  if (how < 0.7) return text.slice(0, at) + text.slice(at + 1);
  return text.slice(0, at) + piece + text.slice(at + 1);
}

describe('isJson', () => {
  it('agrees with JSON.parse on random valid and broken texts', () => {
    const next = seeded(7);
    let valid = 0;
    for (let k = 0; k < 20_000; k += 1) {
      let text = randomValue(next, 0);
      const mutations = Math.floor(next() * 3);
      for (let m = 0; m < mutations; m += 1) text = mutate(text, next);
      if (next() < 0.2) text = ` ${text}\n`;
      const expected = parses(text);
      if (expected) valid += 1;
      expect([text, isJson(text)]).toEqual([text, expected]);
      // The envelope scanner checks the same way, envelope or not.
      expect([text, scanEnvelope(text) !== undefined]).toEqual([text, expected]);
      const envelope = `{"config":{},"data":${text}}`;
      expect([envelope, scanEnvelope(envelope) !== undefined]).toEqual([envelope, expected]);
    }
    // Both kinds were tried in numbers.
    expect(valid).toBeGreaterThan(2000);
    expect(valid).toBeLessThan(18_000);
  });

  it('handles the edges: empty text, trailing text, deep nesting, escapes, control characters', () => {
    for (const text of ['', ' ', '{}', '[]', '{} {}', '[1,]', '{"a":1,}', '{"a" 1}', '"\\u12"', '"a\tb"', '"a\\tb"', '1 2', '-01', '0.0e-0']) {
      expect([text, isJson(text)]).toEqual([text, parses(text)]);
      expect([text, scanEnvelope(text) !== undefined]).toEqual([text, parses(text)]);
    }
    expect(isJson(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)).toBe(true);
    expect(scanEnvelope(`{"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)).toBeDefined();
    expect(isJson(`${'['.repeat(100_000)}${']'.repeat(99_999)}`)).toBe(false);
  });
});

describe('stringEnds', () => {
  it('ends every literal of a text where isJsonString does', () => {
    const texts = [
      '["a","b\\"c","d\\\\","e","\\u0041\\/"]',
      '{"k":"v","k2":"no backslash","k3":"one\\nline","k4":"plain"}',
      '["tab\there","x"]',
      '["unterminated',
      '["bad \\x escape","y"]',
    ];
    for (const text of texts) {
      const end = stringEnds(text);
      for (let i = 0; i < text.length; i += 1) {
        if (text[i] !== '"') continue;
        expect([text, i, end(i)]).toEqual([text, i, isJsonString(text, i)]);
      }
    }
  });
});
