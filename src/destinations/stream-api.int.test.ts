import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamApiClient } from './stream-api.js';
import { AppError } from '../core/errors.js';
import { startReceiver, type Receiver } from '../../test/helpers/receiver.js';

function client(url: string, overrides: Partial<ConstructorParameters<typeof StreamApiClient>[0]> = {}): StreamApiClient {
  return new StreamApiClient({ url, apiKey: 'k', timeoutMs: 2000, compression: 'none', wait: false, tags: {}, ...overrides });
}

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected the send to fail');
}

describe('StreamApiClient against a real HTTP endpoint', () => {
  let receiver: Receiver;
  let c: StreamApiClient;

  beforeEach(async () => {
    receiver = await startReceiver('k');
    c = client(receiver.url);
  });
  afterEach(async () => {
    await c.close();
    await receiver.close();
  });

  it('sends the JSON envelope with bearer auth and resolves with the row count', async () => {
    const result = await c.send('bronze.t', ['{"a":1}', '{"a":12345678901234567890}']);
    expect(result.rows).toBe(2);
    expect(result.requestId).toBe('r1');
    const req = receiver.requests[0]!;
    expect(req.headers.authorization).toBe('Bearer k');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.rows).toEqual(['{"a":1}', '{"a":12345678901234567890}']);
    expect(JSON.parse(req.body).config).toEqual({ table: 'bronze.t', mode: 'append', wait: false, tags: { source: 'pushsync' } });
  });

  it('gzips the body when compression is on', async () => {
    await c.close();
    c = client(receiver.url, { compression: 'gzip' });
    await c.send('bronze.t', ['{"a":1}']);
    expect(receiver.requests[0]!.headers['content-encoding']).toBe('gzip');
    expect(receiver.stored.get('bronze.t')).toEqual(['{"a":1}']);
  });

  it('classifies 429 as retryable and keeps the Retry-After delay', async () => {
    receiver.script({ kind: 'status', status: 429, retryAfter: '7' });
    const e = await failure(c.send('bronze.t', ['{}']));
    expect(e.code).toBe('DEST_RATE_LIMITED');
    expect(e.retryable).toBe(true);
    expect(e.retryAfterMs).toBe(7000);
  });

  it('classifies 5xx and connection resets as retryable', async () => {
    receiver.script({ kind: 'status', status: 503 }, { kind: 'reset' });
    const a = await failure(c.send('bronze.t', ['{}']));
    expect([a.code, a.retryable]).toEqual(['DEST_UNAVAILABLE', true]);
    const b = await failure(c.send('bronze.t', ['{}']));
    expect([b.code, b.retryable]).toEqual(['DEST_UNAVAILABLE', true]);
  });

  it('fails at once on 400, 401, 403 and 422, keeping the server errors', async () => {
    receiver.script(
      { kind: 'status', status: 400, body: { success: false, errors: ['table name invalid'] } },
      { kind: 'status', status: 403 },
      { kind: 'status', status: 422 },
    );
    const bad = await failure(c.send('bronze.t', ['{}']));
    expect([bad.code, bad.retryable]).toEqual(['DEST_REJECTED', false]);
    expect(bad.details?.errors).toEqual(['table name invalid']);
    expect((await failure(c.send('bronze.t', ['{}']))).code).toBe('DEST_AUTH');
    expect((await failure(c.send('bronze.t', ['{}']))).code).toBe('DEST_REJECTED');
    await c.close();
    c = client(receiver.url, { apiKey: 'wrong' });
    const auth = await failure(c.send('bronze.t', ['{}']));
    expect([auth.code, auth.retryable]).toEqual(['DEST_AUTH', false]);
  });

  it('reports 413 as DEST_TOO_LARGE so the caller can split', async () => {
    receiver.script({ kind: 'status', status: 413 });
    const e = await failure(c.send('bronze.t', ['{}', '{}']));
    expect([e.code, e.retryable]).toEqual(['DEST_TOO_LARGE', false]);
  });

  it('treats success with rejected rows as a failure that keeps the server errors', async () => {
    receiver.script({ kind: 'reject-rows', count: 1 });
    const e = await failure(c.send('bronze.t', ['{"a":1}', '{"a":2}']));
    expect([e.code, e.retryable]).toEqual(['DEST_ROWS_REJECTED', false]);
    expect(e.details).toMatchObject({ rejectedRows: 1, errors: [{ row: 0, error: 'scripted rejection' }] });
  });

  it('throws errors that hold no trace of the key when the server echoes the Authorization header', async () => {
    const key = 'sk_live/Echoed+Key=77';
    await c.close();
    await receiver.close();
    receiver = await startReceiver(key);
    c = client(receiver.url, { apiKey: key });
    receiver.script(
      { kind: 'echo-auth', status: 401 },
      { kind: 'echo-auth', status: 422 },
      { kind: 'echo-auth', status: 200, rejectRows: 1 },
      { kind: 'echo-auth', status: 400, plain: true },
      { kind: 'echo-auth', status: 503 },
    );
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const e = await failure(c.send('bronze.t', ['{"a":1}', '{"a":2}']));
      codes.push(e.code);
      const kept = `${e.toString()} ${JSON.stringify(e.details)}`;
      for (const form of [key, encodeURIComponent(key), Buffer.from(key).toString('base64')]) expect(kept, e.code).not.toContain(form);
      expect(kept).toContain('[redacted]');
    }
    expect(codes).toEqual(['DEST_AUTH', 'DEST_REJECTED', 'DEST_ROWS_REJECTED', 'DEST_REJECTED', 'DEST_UNAVAILABLE']);
  });

  it('caps what a huge error body leaves in the message and the details', async () => {
    const huge = {
      success: false,
      errors: [`first: ${'x'.repeat(100_000)}`, ...Array.from({ length: 500 }, (_, i) => ({ row: i, error: 'y'.repeat(1000) }))],
    };
    receiver.script({ kind: 'status', status: 400, body: huge }, { kind: 'status', status: 502, body: 'z'.repeat(1_000_000) });
    const bad = await failure(c.send('bronze.t', ['{}']));
    expect(bad.code).toBe('DEST_REJECTED');
    expect(bad.message.length).toBeLessThan(400);
    expect(JSON.stringify(bad.details).length).toBeLessThan(6000);
    expect((bad.details?.errors as unknown[]).at(-1)).toMatch(/^… \d+ more$/);
    const down = await failure(c.send('bronze.t', ['{}']));
    expect(JSON.stringify(down.details).length).toBeLessThan(6000);
  });
});

describe('StreamApiClient timeouts and bad responses', () => {
  let server: Server;
  let url: string;
  let mode: 'hang' | 'not-json' = 'hang';

  beforeEach(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (mode === 'not-json') {
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html>proxy page</html>');
        }
        // 'hang': never answer
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/stream`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('times out a request that gets no answer, as retryable', async () => {
    mode = 'hang';
    const c = client(url, { timeoutMs: 200 });
    const e = await failure(c.send('bronze.t', ['{}']));
    expect([e.code, e.retryable]).toEqual(['DEST_TIMEOUT', true]);
    await c.close();
  });

  it('treats a 2xx body that is not JSON as a retryable bad response', async () => {
    mode = 'not-json';
    const c = client(url);
    const e = await failure(c.send('bronze.t', ['{}']));
    expect([e.code, e.retryable]).toEqual(['DEST_BAD_RESPONSE', true]);
    await c.close();
  });
});
