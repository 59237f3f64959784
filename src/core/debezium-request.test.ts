import { describe, expect, it } from 'vitest';
import { writeLossless } from './json-lossless.js';
import { eventsOfRequest } from './debezium-request.js';

const values = (body: string, headers: Record<string, string> = {}): string[] =>
  eventsOfRequest({ body, headers }).map((e) => writeLossless(e.value));

describe('the events of an ingest request', () => {
  it('one event per request (Debezium Server), an array (Kafka Connect), or newline-delimited events', () => {
    expect(values('{"op":"c"}')).toEqual(['{"op":"c"}']);
    expect(values('[{"op":"c"},null,{"op":"d"}]')).toEqual(['{"op":"c"}', 'null', '{"op":"d"}']);
    expect(values('{"op":"c"}\n{"op":"u"}\n')).toEqual(['{"op":"c"}', '{"op":"u"}']);
  });

  it('reads array elements that hold an event as a JSON string', () => {
    expect(values('["{\\"op\\":\\"c\\",\\"n\\":12345678901234567890}"]')).toEqual(['{"op":"c","n":12345678901234567890}']);
  });

  it('a binary-mode CloudEvent: the body is the data, the ce- headers its attributes', () => {
    const [e] = eventsOfRequest({
      body: '{"after":{"id":1}}',
      headers: { 'ce-specversion': '1.0', 'ce-iodebeziumop': 'c', 'content-type': 'application/json' },
    });
    expect(e!.cloudEvent).toEqual({ specversion: '1.0', iodebeziumop: 'c' });
  });

  it('refuses an empty or unreadable body, naming it', () => {
    expect(() => values('')).toThrow('the body holds no event');
    expect(() => values('{"op":')).toThrow(/^body: not valid JSON/);
    expect(() => values('["{broken"]')).toThrow(/^event 0: not valid JSON/);
  });
});
