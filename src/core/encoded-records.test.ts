import { describe, expect, it } from 'vitest';
import { EncodedRecords } from './encoded-records.js';
import { prng } from '../../test/helpers/prng.js';

function encode(records: string[], capacity?: number): EncodedRecords {
  const e = new EncodedRecords(capacity);
  for (const r of records) e.commit(e.stage(r));
  return e;
}

describe('EncodedRecords', () => {
  it('holds the records as their UTF-8 bytes separated by commas, each readable again as its text', () => {
    const records = ['{"a":"é€😀"}', '{}', '{"b":"x,y"}'];
    const e = encode(records, 1);
    expect(e.count).toBe(3);
    expect(e.bytes().toString('utf8')).toBe(records.join(','));
    expect(e.byteLength).toBe(Buffer.byteLength(records.join(',')));
    expect(e.texts()).toEqual(records);
    expect(e.bytes(1, 3).toString('utf8')).toBe(records.slice(1).join(','));
    expect(e.bytes(0, 1).toString('utf8')).toBe(records[0]);
    expect(e.bytes(2, 2).length).toBe(0);
  });

  it('forgets a staged record that was not committed: the next one takes its place', () => {
    const e = new EncodedRecords(2);
    e.commit(e.stage('{"a":1}'));
    e.stage('{"never":"sent, longer than what replaces it"}');
    e.commit(e.stage('{"b":2}'));
    expect(e.texts()).toEqual(['{"a":1}', '{"b":2}']);
    expect(e.bytes().toString('utf8')).toBe('{"a":1},{"b":2}');
  });

  it('keeps any mix of record sizes and characters exactly, in order, however often it grows', () => {
    const random = prng(7);
    const alphabet = ['a', 'é', '€', '😀', '"', '\\\\', ','];
    const records = Array.from({ length: 500 }, (_, i) => {
      const n = Math.floor(random() * 300);
      let text = '';
      for (let k = 0; k < n; k++) text += alphabet[Math.floor(random() * alphabet.length)];
      return JSON.stringify({ i, text });
    });
    const e = encode(records, 16);
    expect(e.texts()).toEqual(records);
    expect(e.bytes().equals(Buffer.from(records.join(',')))).toBe(true);
  });
});
