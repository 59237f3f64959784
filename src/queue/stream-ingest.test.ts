import { describe, expect, it } from 'vitest';
import { compareEntryIds } from './stream-ingest.js';

describe('compareEntryIds', () => {
  it('orders Redis stream entry ids by time, then sequence, as numbers and not as text', () => {
    const ids = ['1700000000000-10', '999-0', '1700000000000-9', '1700000000001-0', '1700000000000-0'];
    expect([...ids].sort(compareEntryIds)).toEqual(['999-0', '1700000000000-0', '1700000000000-9', '1700000000000-10', '1700000000001-0']);
    expect(compareEntryIds('5-1', '5-1')).toBe(0);
  });
});
