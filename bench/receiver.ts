import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * A Stream API stand-in run as a child process, so that reading request bodies does not compete with the pipeline
 * for its event loop. It counts the rows of every body.
 *
 * `RECEIVER_PARSE=all` parses every body with `JSON.parse`, as a real server would. By default (`sample`) it parses
 * the first body and every `PARSE_EVERY`th after it, and counts the records of the others by the `{"_op":` each of
 * pushsync's records starts with (a native byte search), checking on every parsed body that both counts agree: the
 * destination of a real deployment runs elsewhere, and on a small machine a receiver parsing every byte took a
 * third of the CPU the pipeline, Postgres and it shared. A body the search cannot read (not pushsync's envelope)
 * is parsed.
 *
 * IPC: sends `{ port }` once listening; answers `{ type: 'count' }` with `{ rows, requests, cpuSeconds, wireBytes,
 * bodyBytes }` and `{ type: 'reset' }` by zeroing the counters. `{ type: 'latency', column }` makes it note, for every
 * record it accepts from then on, the milliseconds from that record's `column` (a UTC timestamp the source wrote at
 * commit) until the request was parsed; `{ type: 'latencies' }` answers `{ latencies }` with them.
 *
 * A remote destination is simulated by `RECEIVER_LATENCY_MS` (every answer waits that long after the body arrived)
 * and `RECEIVER_BANDWIDTH` (bytes per second of one link shared by all requests: a body occupies the link for its
 * size on the wire over that rate, after the bodies before it). A gzip body (`Content-Encoding: gzip`) is inflated
 * before it is parsed.
 */
let rows = 0;
let requests = 0;
let counter = 0;
let latencyColumn: string | null = null;
let latencies: number[] = [];

/** A timestamptz as JSON (`2026-12-01T10:54:04.123456+00:00`) or text (`2026-12-01 10:54:04.123456+00`), in ms. */
function epochMs(text: string): number {
  return Date.parse(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
}

const PARSE_EVERY = 8;
const parseAll = (process.env.RECEIVER_PARSE ?? 'sample') === 'all';
const RECORD_START = Buffer.from('{"_op":');
const DATA_START = Buffer.from('{"data":[');
const CONFIG_START = Buffer.from('],"config":');

/** How many records `{"data":[...]` holds by the byte search, and the config after them; undefined: not that form. */
function scanned(bytes: Buffer): { n: number; config: { table: string } } | undefined {
  if (bytes.indexOf(DATA_START) !== 0) return undefined;
  const configAt = bytes.lastIndexOf(CONFIG_START);
  if (configAt < 0 || bytes[bytes.length - 1] !== 0x7d) return undefined;
  let n = 0;
  for (let at = bytes.indexOf(RECORD_START, DATA_START.length); at >= 0 && at < configAt; at = bytes.indexOf(RECORD_START, at + RECORD_START.length))
    n += 1;
  try {
    return { n, config: JSON.parse(bytes.subarray(configAt + CONFIG_START.length, bytes.length - 1).toString('utf8')) as { table: string } };
  } catch {
    return undefined;
  }
}

let wireBytes = 0;
let bodyBytes = 0;
const latencyMs = Number(process.env.RECEIVER_LATENCY_MS ?? 0);
const bandwidth = Number(process.env.RECEIVER_BANDWIDTH ?? 0);
/** While true every request gets 503 (a destination outage); `{ type: 'down', down }` sets it. */
let down = false;
/** When the simulated link is free again (ms, performance.now()). */
let linkFreeAt = 0;

/** How long to hold an answer: the link's queue and transfer time for `bytes`, then the latency. */
function holdMs(bytes: number): number {
  const now = performance.now();
  if (bandwidth > 0) {
    linkFreeAt = Math.max(now, linkFreeAt) + (bytes / bandwidth) * 1000;
    return linkFreeAt - now + latencyMs;
  }
  return latencyMs;
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let body: { data?: unknown; config: { table: string } };
    let n: number;
    if (down) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: false, errors: ['down for the benchmark'] }));
      return;
    }
    const wire = Buffer.concat(chunks);
    const hold = holdMs(wire.length);
    try {
      const bytes = req.headers['content-encoding'] === 'gzip' ? gunzipSync(wire) : wire;
      wireBytes += wire.length;
      bodyBytes += bytes.length;
      const scan = scanned(bytes);
      if (scan !== undefined && !parseAll && latencyColumn === null && requests % PARSE_EVERY !== 0) {
        body = scan;
        n = scan.n;
      } else {
        body = JSON.parse(bytes.toString('utf8')) as typeof body;
        n = Array.isArray(body.data) ? body.data.length : 1;
        if (scan !== undefined && scan.n !== n) throw new Error(`the byte search counted ${scan.n} records, JSON.parse ${n}`);
      }
    } catch (err) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: false, errors: [`body is not JSON: ${(err as Error).message}`] }));
      return;
    }
    if (latencyColumn !== null && Array.isArray(body.data)) {
      const now = Date.now();
      for (const record of body.data as Array<Record<string, unknown>>) {
        const at = record[latencyColumn];
        if (typeof at === 'string') latencies.push(now - epochMs(at));
      }
    }
    rows += n;
    requests += 1;
    counter += 1;
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          success: true,
          request_id: `bench-${counter}`,
          stream_id: 'bench',
          table: body.config.table,
          accepted: true,
          successful_rows: n,
          rejected_rows: 0,
          partitions: 1,
          warnings: [],
          errors: [],
        }),
      );
    };
    if (hold > 0) setTimeout(answer, hold);
    else answer();
  });
});

server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});

process.on('message', (msg: { type: string; column?: string }) => {
  if (msg.type === 'latency') {
    latencyColumn = msg.column ?? null;
    latencies = [];
    process.send?.({ latency: true });
  }
  if (msg.type === 'latencies') process.send?.({ latencies });
  if (msg.type === 'count') {
    const cpu = process.cpuUsage();
    process.send?.({ rows, requests, cpuSeconds: (cpu.user + cpu.system) / 1e6, wireBytes, bodyBytes });
  }
  if (msg.type === 'down') {
    down = (msg as { down?: boolean }).down === true;
    process.send?.({ down });
  }
  if (msg.type === 'reset') {
    rows = 0;
    requests = 0;
    wireBytes = 0;
    bodyBytes = 0;
    linkFreeAt = 0;
    process.send?.({ reset: true });
  }
});
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close();
});
