import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { STREAM_LIMITS, type StreamLimits } from '../core/batching.js';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import { parseTarget } from './dev-sink-input.js';
import { RequestPreparer } from './dev-sink-preparer.js';
import { serveInspection } from './dev-sink-query.js';
import { refuse } from './dev-sink-request.js';
import { DevSinkStore } from './dev-sink-store.js';

/**
 * A local stand-in for Definite's Stream API (contract in STREAM_API.md) that stores what it receives in DuckDB,
 * so the whole pipeline runs without a Definite account. It enforces the documented limits and answers in the
 * documented shape, including partial failures (`success: true` with `rejected_rows > 0`), so clients can be
 * tested against every answer the real endpoint gives. Design notes: docs/dev-sink.md.
 */

export interface DevSinkOptions {
  /** 0 picks a free port. */
  port: number;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** DuckDB file, or ':memory:'. */
  dbPath: string;
  /** Clients must send `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /** Lower limits for tests. @defaultValue STREAM_LIMITS */
  limits?: Partial<StreamLimits>;
  logger?: Logger;
}

export interface DevSink {
  /** The endpoint to configure as the destination URL, e.g. http://127.0.0.1:8787/v2/stream. */
  url: string;
  port: number;
  store: DevSinkStore;
  /** Stops accepting requests, lets those in flight finish, then releases the DuckDB file. */
  close(): Promise<void>;
}

const PATHS = new Set(['/v2/stream', '/stream']);

interface Context {
  store: DevSinkStore;
  preparer: RequestPreparer;
  limits: StreamLimits;
  keyDigest: Buffer;
  logger: Logger | undefined;
}

/** The client went away before its body arrived: nothing to answer, nothing wrong with the sink. */
const CLIENT_CLOSED = 'CLIENT_CLOSED';
const clientClosed = (cause?: unknown): AppError =>
  new AppError('DEST_UNAVAILABLE', 'client closed the request', { cause, details: { reason: CLIENT_CLOSED } });

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

function checkAuth(req: IncomingMessage, keyDigest: Buffer): void {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  // Digests have equal lengths, so the comparison takes the same time whatever the key's length.
  if (!match || !timingSafeEqual(digest(match[1]!.trim()), keyDigest)) {
    throw refuse(401, 'UNAUTHORIZED', 'missing or invalid bearer token');
  }
}

function checkHeaders(req: IncomingMessage): 'gzip' | 'identity' {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw refuse(415, 'UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json, got ${type || 'none'}`);
  }
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding === 'gzip' || encoding === 'x-gzip') return 'gzip';
  if (encoding === 'identity' || encoding === '') return 'identity';
  throw refuse(415, 'UNSUPPORTED_ENCODING', `content-encoding ${encoding} is not supported (use gzip or none)`);
}

/**
 * Reads the body up to `cap` bytes. An oversized body is still read to its end (and dropped) before the 413 goes
 * out: answering while the client is still uploading makes many clients see a reset instead of the status.
 */
function readBody(req: IncomingMessage, cap: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= cap) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.on('end', () => {
      if (size > cap) reject(refuse(413, 'BODY_TOO_LARGE', `request body exceeds ${cap} bytes`));
      else resolve(Buffer.concat(chunks));
    });
    // A connection closed mid-body: 'error' (aborted) or only 'close' without 'end', depending on timing.
    req.on('error', (err) => reject(clientClosed(err)));
    req.on('close', () => {
      if (!req.complete) reject(clientClosed());
    });
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: Context, requestId: string): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  if (await serveInspection(req, res, ctx.store, () => checkAuth(req, ctx.keyDigest))) return;
  if (!PATHS.has(path)) throw refuse(404, 'NOT_FOUND', `no endpoint at ${path}; POST to /v2/stream`);
  if (req.method !== 'POST') throw refuse(405, 'METHOD_NOT_ALLOWED', `${req.method ?? ''} is not allowed; use POST`);
  checkAuth(req, ctx.keyDigest);
  const encoding = checkHeaders(req);
  // Incompressible data grows a little under gzip: allow that margin on the wire, enforce the limit unpacked.
  const cap = encoding === 'gzip' ? ctx.limits.maxBytes + Math.ceil(ctx.limits.maxBytes / 100) + 1024 : ctx.limits.maxBytes;
  const body = await readBody(req, cap);
  // Checked and split on the worker; the request's turn at the store is taken now, in the order bodies arrived.
  const preparing = ctx.preparer.prepare(body, encoding === 'gzip');
  const storing = ctx.store.appendBatch(
    preparing.then(({ table, batch }) => ({ target: table, batch })),
    { requestId, receivedAt: new Date() },
  );
  const [prepared, result] = await Promise.all([preparing, storing]);
  const { errors } = prepared;
  const warnings = [...prepared.warnings, ...result.warnings];
  const target = parseTarget(prepared.table);
  if (errors.length > 0)
    ctx.logger?.info({ requestId, table: prepared.table, rejectedRows: errors.length, firstError: errors[0] }, 'dev sink rejected rows');
  sendJson(res, 200, {
    success: true,
    request_id: requestId,
    stream_id: `devsink:${target.key}`,
    table: prepared.table,
    accepted: true,
    successful_rows: result.stored,
    rejected_rows: errors.length,
    partitions: result.stored > 0 ? 1 : 0,
    ...(prepared.wait ? { snapshot_id: result.snapshotId } : {}),
    warnings,
    errors,
  });
}

/**
 * Answers a request that did not succeed. A refusal says why; anything else is a 500 whose body names only the
 * request id: the reason (driver text, file paths) goes to the log, never to the client.
 */
function fail(res: ServerResponse, err: unknown, requestId: string, logger: Logger | undefined): void {
  const details = isAppError(err) ? err.details : undefined;
  if (details?.reason === CLIENT_CLOSED) {
    logger?.info({ requestId }, 'client closed the request');
    return;
  }
  if (typeof details?.status !== 'number') {
    logger?.error({ err, requestId }, 'dev sink failed to store a request');
    const message = `the dev sink could not store this request; its log has the reason under request id ${requestId}`;
    sendJson(res, 500, { success: false, request_id: requestId, errors: [{ code: 'INTERNAL', message }] });
    return;
  }
  const headers: Record<string, string> = details.status === 405 ? { allow: 'POST' } : {};
  const entry = { code: details.reason, message: (err as Error).message, ...(details.where as Record<string, unknown>) };
  sendJson(res, details.status, { success: false, request_id: requestId, errors: [entry] }, headers);
}

export async function startDevSink(options: DevSinkOptions): Promise<DevSink> {
  const host = options.host ?? '127.0.0.1';
  const limits: StreamLimits = { ...STREAM_LIMITS, ...options.limits };
  const store = await DevSinkStore.open(options.dbPath);
  const preparer = new RequestPreparer(limits);
  preparer.warmUp();
  const ctx: Context = { store, preparer, limits, keyDigest: digest(options.apiKey), logger: options.logger };

  const server: Server = createServer((req, res) => {
    const requestId = randomUUID();
    handle(req, res, ctx, requestId).catch((err: unknown) => fail(res, err, requestId, ctx.logger));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await store.close();
    await preparer.close();
    throw new AppError('CONFIG_INVALID', `dev sink cannot listen on ${host}:${options.port}: ${(err as Error).message}`, { cause: err });
  }
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}/v2/stream`,
    port,
    store,
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        await store.close();
        await preparer.close();
      })();
      return closing;
    },
  };
}
