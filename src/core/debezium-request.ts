import { AppError } from './errors.js';
import { parseLossless, parseLosslessSequence, type JsonValue, type ReusedValues } from './json-lossless.js';
import type { DebeziumInput } from './debezium.js';

/**
 * The change events in one HTTP request, as the producers send them:
 * - Debezium Server's HTTP sink: one event per request (JSON, with or without the schema/payload envelope; or a
 *   CloudEvent, `application/cloudevents+json`);
 * - a CloudEvent in binary mode: the event's data as the body, its attributes as `ce-` headers;
 * - Kafka Connect HTTP sink connectors: a JSON array of events per request (or events separated by newlines);
 *   an element that is a string holding JSON (a connector that stringifies values) is read as that JSON.
 */
export interface IngestRequest {
  body: string;
  /** Header names in lower case, as node:http gives them. */
  headers: Record<string, string | string[] | undefined>;
}

function header(h: IngestRequest['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export function eventsOfRequest(r: IngestRequest, reuse?: ReusedValues): DebeziumInput[] {
  if (header(r.headers, 'ce-specversion') !== undefined) {
    const cloudEvent: Record<string, string> = {};
    for (const [name, v] of Object.entries(r.headers)) {
      if (name.startsWith('ce-') && v !== undefined) cloudEvent[name.slice(3)] = Array.isArray(v) ? v[0]! : v;
    }
    return [{ value: parseEvent(r.body, 'body', reuse), cloudEvent }];
  }
  const values = parseTop(r.body, reuse);
  const events: DebeziumInput[] = [];
  for (const v of values) {
    if (Array.isArray(v)) for (const e of v) events.push({ value: stringified(e, events.length, reuse) });
    else events.push({ value: v });
  }
  if (events.length === 0) throw new AppError('EVENT_INVALID', 'the body holds no event', { details: { field: 'body' } });
  return events;
}

function parseTop(body: string, reuse: ReusedValues | undefined): JsonValue[] {
  try {
    return parseLosslessSequence(body, reuse);
  } catch (err) {
    throw new AppError('EVENT_INVALID', `body: ${(err as Error).message}`, { details: { field: 'body' } });
  }
}

function parseEvent(text: string, where: string, reuse?: ReusedValues): JsonValue {
  try {
    return parseLossless(text, reuse);
  } catch (err) {
    throw new AppError('EVENT_INVALID', `${where}: ${(err as Error).message}`, { details: { field: where } });
  }
}

function stringified(v: JsonValue, index: number, reuse: ReusedValues | undefined): JsonValue {
  if (typeof v === 'string' && /^\s*[{[]/.test(v)) return parseEvent(v, `event ${index}`, reuse);
  return v;
}
