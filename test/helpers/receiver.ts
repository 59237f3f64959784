import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { arrayElements, objectMembers } from '../../src/core/json-scan.js';

/**
 * A real HTTP server speaking the Stream API's response shape, for tests. It records every request and can be
 * scripted to fail the next requests in the ways a real endpoint does.
 */
export type Behaviour =
  | { kind: 'ok' }
  /** Store the batch and answer 200 after `ms`: a slow destination. */
  | { kind: 'slow'; ms: number }
  | { kind: 'status'; status: number; retryAfter?: string; body?: unknown }
  /** Close the socket without answering, before storing. */
  | { kind: 'reset' }
  /** Store the batch, then close the socket without answering: the ambiguous failure. */
  | { kind: 'store-then-reset' }
  /** Answer 200 but report the first N rows as rejected (they are not stored). */
  | { kind: 'reject-rows'; count: number }
  /**
   * A careless server: answers `status` with a body that echoes the request's credentials in every text field
   * (errors, warnings, request id, a dump of the headers), the key also URL-encoded and in base64. With status 200
   * it reports `rejectRows` rows as rejected (default 1). `plain` sends the echo as a text/plain page instead.
   */
  | { kind: 'echo-auth'; status: number; rejectRows?: number; plain?: boolean };

export interface ReceivedRequest {
  table: string;
  body: string;
  rows: string[];
  headers: IncomingMessage['headers'];
  /** When the body had arrived (`performance.now()`). */
  at: number;
}

export interface Receiver {
  url: string;
  requests: ReceivedRequest[];
  /** Stored rows (raw JSON texts), by target table. */
  stored: Map<string, string[]>;
  script(...behaviours: Behaviour[]): void;
  /** Fails every request while set, e.g. an outage window. */
  setDefault(behaviour: Behaviour): void;
  close(): Promise<void>;
}

function respond(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export async function startReceiver(apiKey = 'test-key'): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const stored = new Map<string, string[]>();
  const queue: Behaviour[] = [];
  let fallback: Behaviour = { kind: 'ok' };
  let counter = 0;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${apiKey}`) return respond(res, 401, { success: false, errors: ['bad key'] });
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      const body = raw.toString('utf8');
      const parsed = JSON.parse(body) as { data: unknown[]; config: { table: string } };
      // Raw row texts sliced from the body: JSON.parse would round big numbers the test must see exactly.
      const data = objectMembers(body).find((m) => m.rawKey === '"data"')!;
      const rows = arrayElements(body.slice(data.valueStart, data.valueEnd)).map(([a, b]) => body.slice(data.valueStart + a, data.valueStart + b));
      const table = parsed.config.table;
      requests.push({ table, body, rows, headers: req.headers, at: performance.now() });
      const behaviour = queue.shift() ?? fallback;
      const store = (from = 0): void => {
        const list = stored.get(table) ?? [];
        list.push(...rows.slice(from));
        stored.set(table, list);
      };
      counter += 1;
      const ok = {
        success: true,
        request_id: `r${counter}`,
        stream_id: 's',
        table,
        accepted: true,
        successful_rows: rows.length,
        rejected_rows: 0,
        partitions: 1,
        warnings: [],
        errors: [],
      };
      switch (behaviour.kind) {
        case 'ok':
          store();
          return respond(res, 200, ok);
        case 'slow':
          store();
          return void setTimeout(() => respond(res, 200, ok), behaviour.ms);
        case 'status':
          return respond(
            res,
            behaviour.status,
            behaviour.body ?? { success: false, errors: [`scripted ${behaviour.status}`] },
            behaviour.retryAfter ? { 'retry-after': behaviour.retryAfter } : {},
          );
        case 'reset':
          return req.socket.destroy();
        case 'store-then-reset':
          store();
          return req.socket.destroy();
        case 'reject-rows':
          store(behaviour.count);
          return respond(res, 200, {
            ...ok,
            successful_rows: rows.length - behaviour.count,
            rejected_rows: behaviour.count,
            errors: [{ row: 0, error: 'scripted rejection' }],
          });
        case 'echo-auth': {
          const auth = req.headers.authorization ?? '';
          if (behaviour.plain) {
            res.writeHead(behaviour.status, { 'content-type': 'text/plain' });
            return res.end(`Bad request.\nAuthorization: ${auth}\nkey=${apiKey}\n`);
          }
          const echo = {
            request_id: `req for ${auth}`,
            errors: [`invalid credentials: ${auth}`, { row: 0, error: `rejected for key ${apiKey}`, authorization: auth, apiKey }],
            warnings: [
              `token ${apiKey} is deprecated`,
              `query was ?api_key=${encodeURIComponent(apiKey)}`,
              `basic ${Buffer.from(apiKey).toString('base64')}`,
            ],
            debug: { headers: req.headers },
          };
          if (behaviour.status !== 200) return respond(res, behaviour.status, { success: false, ...echo });
          const rejectRows = behaviour.rejectRows ?? 1;
          store(rejectRows);
          return respond(res, 200, { ...ok, ...echo, successful_rows: rows.length - rejectRows, rejected_rows: rejectRows });
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v2/stream`,
    requests,
    stored,
    script: (...b) => queue.push(...b),
    setDefault: (b) => {
      fallback = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
