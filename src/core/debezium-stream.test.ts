import { describe, expect, it } from 'vitest';
import { decodeStreamEntry } from './debezium-stream.js';

describe('entries of the Debezium Server Redis sink', () => {
  it('extended format: key, value and headers', () => {
    expect(decodeStreamEntry(['key', '{"id":1}', 'value', '{"op":"c"}', 'TRACEPARENT', 'x'], 'default')).toEqual({
      key: '{"id":1}',
      value: '{"op":"c"}',
    });
  });

  it('compact format: one field named by the key', () => {
    expect(decodeStreamEntry(['{"id":1}', '{"op":"c"}'], 'default')).toEqual({ key: '{"id":1}', value: '{"op":"c"}' });
  });

  it('the null key and null value placeholders mean no key and a tombstone', () => {
    expect(decodeStreamEntry(['default', '{"op":"c"}'], 'default')).toEqual({ key: null, value: '{"op":"c"}' });
    expect(decodeStreamEntry(['{"id":1}', 'default'], 'default')).toEqual({ key: '{"id":1}', value: null });
    expect(decodeStreamEntry(['key', '{"id":1}', 'value', 'NULL'], 'NULL')).toEqual({ key: '{"id":1}', value: null });
  });
});
