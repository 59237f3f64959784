import { isUtf8 } from 'node:buffer';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { STREAM_LIMITS, type StreamLimits } from '../core/batching.js';
import { AppError, isAppError } from '../core/errors.js';
import { jsonDepth, objectMembers, shallowerThanBrackets } from '../core/json-scan.js';
import type { Logger } from '../observability/logger.js';
import { DevSinkStore, parseTarget } from './dev-sink-store.js';
import { serveInspection } from './dev-sink-query.js';
import { fieldProblem, invalidUtf8Offset, tableNameProblem } from './dev-sink-input.js';
import { isJson } from './dev-sink-json.js';
import { envelopeParts, skipSpace } from './dev-sink-scan.js';

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

const gunzipAsync = promisify(gunzip);
const PATHS = new Set(['/v2/stream', '/stream']);

interface RowError {
  row: number;
  code: string;
  message: string;
}

interface Context {
  store: DevSinkStore;
  limits: StreamLimits;
  keyDigest: Buffer;
  logger: Logger | undefined;
}

/**
 * A refused request: `reason` is the stable code clients see in `errors[]`, `where` adds facts to that entry (the
 * row and field, or the byte offset, at fault).
 */
function refuse(status: number, reason: string, message: string, where: Record<string, unknown> = {}): AppError {
  const code = status === 401 ? 'DEST_AUTH' : status === 413 ? 'DEST_TOO_LARGE' : 'DEST_REJECTED';
  return new AppError(code, message, { details: { status, reason, where } });
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

/** The body as text; invalid UTF-8 is refused, never stored as U+FFFD. */
function decodeUtf8(bytes: Buffer, compressed: boolean): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  const offset = invalidUtf8Offset(bytes);
  const of = compressed ? ' of the uncompressed body' : '';
  const hex = bytes[offset]!.toString(16).padStart(2, '0');
  throw refuse(400, 'INVALID_UTF8', `body is not valid UTF-8: byte 0x${hex} at offset ${offset}${of} starts no valid sequence`, { offset });
}

async function bodyText(req: IncomingMessage, encoding: 'gzip' | 'identity', maxBytes: number): Promise<string> {
  if (encoding === 'identity') return decodeUtf8(await readBody(req, maxBytes), false);
  // Incompressible data grows a little under gzip: allow that margin on the wire, enforce the limit unpacked.
  const packed = await readBody(req, maxBytes + Math.ceil(maxBytes / 100) + 1024);
  let unpacked: Buffer;
  try {
    unpacked = await gunzipAsync(packed, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw refuse(413, 'BODY_TOO_LARGE', `request body exceeds ${maxBytes} bytes uncompressed`);
    }
    throw refuse(400, 'BAD_GZIP', `body is not valid gzip: ${(err as Error).message}`);
  }
  return decodeUtf8(unpacked, true);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Envelope {
  table: string;
  mode: 'append' | 'merge';
  primaryKey: string | undefined;
  wait: boolean;
  /** The raw text of each row, sliced from the body: what is stored. */
  rowTexts: string[];
}

function parseEnvelope(text: string, limits: StreamLimits): Envelope {
  // Checked without building the rows as objects; JSON.parse runs only to say what is wrong.
  if (!isJson(text)) {
    try {
      JSON.parse(text);
    } catch (err) {
      throw refuse(400, 'MALFORMED_JSON', `body is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (text.charCodeAt(skipSpace(text, 0)) !== 0x7b) throw refuse(400, 'INVALID_REQUEST', 'body must be a JSON object with data and config');
  const parts = envelopeParts(text);
  const config: unknown = parts.config === undefined ? undefined : JSON.parse(parts.config);
  if (!isObject(config)) throw refuse(400, 'INVALID_REQUEST', 'config is required and must be an object');
  const table = config.table;
  if (typeof table !== 'string' || table === '') throw refuse(400, 'INVALID_TABLE', 'config.table is required ("schema.table")');
  const nameProblem = tableNameProblem(table);
  if (nameProblem) throw refuse(400, 'INVALID_TABLE', nameProblem);
  try {
    parseTarget(table);
  } catch (err) {
    throw refuse(400, 'INVALID_TABLE', `config.table: ${(err as Error).message}`);
  }
  const mode = config.mode ?? 'append';
  if (mode !== 'append' && mode !== 'merge') throw refuse(400, 'INVALID_MODE', 'config.mode must be "append" or "merge"');
  if (config.wait !== undefined && typeof config.wait !== 'boolean') throw refuse(400, 'INVALID_REQUEST', 'config.wait must be a boolean');
  let primaryKey: string | undefined;
  if (mode === 'merge') {
    const pk = Array.isArray(config.primary_key) && config.primary_key.length === 1 ? config.primary_key[0] : config.primary_key;
    if (typeof pk !== 'string' || pk === '') {
      throw refuse(400, 'INVALID_PRIMARY_KEY', 'merge needs config.primary_key: exactly one column name (composite keys are not supported)');
    }
    primaryKey = pk;
  }
  if (parts.data === undefined) throw refuse(400, 'INVALID_REQUEST', 'data is required: an object or an array of objects');
  const first = parts.data.charCodeAt(0);
  if (first !== 0x7b && first !== 0x5b) throw refuse(400, 'INVALID_REQUEST', 'data must be an object or an array of objects');
  const rows = parts.rows;
  // 413 rather than 400: the client's reaction to a too-large request (split it) is the right one here too.
  if (rows.length > limits.maxRows) throw refuse(413, 'TOO_MANY_ROWS', `${rows.length} rows exceed the ${limits.maxRows}-row limit`);
  return { table, mode, primaryKey, wait: config.wait === true, rowTexts: rows };
}

/** Why a row breaks the per-record limits, or undefined when it fits. */
function rowProblem(text: string, limits: StreamLimits): Omit<RowError, 'row'> | undefined {
  if (text.charCodeAt(0) !== 0x7b) return { code: 'NOT_AN_OBJECT', message: 'row is not a JSON object' };
  // Counting brackets settles most rows; the exact depth scan runs only for rows with more brackets than the limit.
  const depth = shallowerThanBrackets(text, limits.maxDepth) ? undefined : jsonDepth(text);
  if (depth !== undefined && depth > limits.maxDepth) {
    return { code: 'TOO_DEEP', message: `row is nested ${depth} levels deep (the row counting as 1), over the limit of ${limits.maxDepth}` };
  }
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: below that bound no field can be over the limit.
  if (text.length * 3 > limits.maxFieldBytes) {
    for (const m of objectMembers(text)) {
      const bytes = Buffer.byteLength(text.slice(m.valueStart, m.valueEnd));
      if (bytes > limits.maxFieldBytes) {
        return { code: 'FIELD_TOO_LARGE', message: `field ${m.rawKey} is ${bytes} bytes, over the ${limits.maxFieldBytes}-byte limit` };
      }
    }
  }
  return undefined;
}

/**
 * Merge requests: every row needs the key (else that row is rejected), and a key twice in one request fails the
 * whole request, as the API documents. Keys are compared by their raw text so that big integers differing only
 * beyond 2^53 stay distinct.
 */
function checkMergeKeys(envelope: Envelope, rejected: Map<number, RowError>): void {
  const pk = envelope.primaryKey!;
  const seen = new Map<string, number>();
  envelope.rowTexts.forEach((text, row) => {
    if (text.charCodeAt(0) !== 0x7b) return;
    const parsed = JSON.parse(text) as Record<string, unknown>;
    if (parsed[pk] === null || parsed[pk] === undefined) {
      if (!rejected.has(row)) rejected.set(row, { row, code: 'PRIMARY_KEY_MISSING', message: `primary key ${pk} is missing or null` });
      return;
    }
    const m = objectMembers(text)
      .filter((x) => JSON.parse(x.rawKey) === pk)
      .pop()!;
    const raw = text.slice(m.valueStart, m.valueEnd);
    const identity = raw.startsWith('"') ? `s${JSON.parse(raw) as string}` : `v${raw}`;
    const first = seen.get(identity);
    if (first !== undefined) {
      throw refuse(400, 'DUPLICATE_PRIMARY_KEY', `primary key ${pk} = ${raw.slice(0, 200)} appears in rows ${first} and ${row}`);
    }
    seen.set(identity, row);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: Context, requestId: string): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  if (await serveInspection(req, res, ctx.store, () => checkAuth(req, ctx.keyDigest))) return;
  if (!PATHS.has(path)) throw refuse(404, 'NOT_FOUND', `no endpoint at ${path}; POST to /v2/stream`);
  if (req.method !== 'POST') throw refuse(405, 'METHOD_NOT_ALLOWED', `${req.method ?? ''} is not allowed; use POST`);
  checkAuth(req, ctx.keyDigest);
  const encoding = checkHeaders(req);
  const text = await bodyText(req, encoding, ctx.limits.maxBytes);
  const envelope = parseEnvelope(text, ctx.limits);
  envelope.rowTexts.forEach((rowText, row) => {
    // A valid UTF-8 body carries a NUL or a lone surrogate only as a \u escape: other rows need no parse.
    const problem = fieldProblem(rowText.includes('\\u') ? JSON.parse(rowText) : undefined, rowText, row);
    if (problem) throw refuse(400, problem.code, problem.message, { row: problem.row, field: problem.field });
  });

  const rejected = new Map<number, RowError>();
  envelope.rowTexts.forEach((rowText, row) => {
    const problem = rowProblem(rowText, ctx.limits);
    if (problem) rejected.set(row, { row, ...problem });
  });
  const warnings: string[] = [];
  if (envelope.mode === 'merge') {
    checkMergeKeys(envelope, rejected);
    // DuckLake has no unique keys either; the dev sink keeps every version and leaves "latest per key" to views.
    warnings.push('the dev sink stores merge requests as appends: every version of a key is kept');
  }

  const valid: number[] = [];
  envelope.rowTexts.forEach((_, row) => {
    if (!rejected.has(row)) valid.push(row);
  });
  const result = await ctx.store.append(
    envelope.table,
    valid.map((row) => envelope.rowTexts[row]!),
    { requestId, receivedAt: new Date() },
  );
  for (const r of result.rejected) rejected.set(valid[r.index]!, { row: valid[r.index]!, code: r.code, message: r.message });
  warnings.push(...result.warnings);

  const errors = [...rejected.values()].sort((a, b) => a.row - b.row);
  const target = parseTarget(envelope.table);
  if (errors.length > 0)
    ctx.logger?.info({ requestId, table: envelope.table, rejectedRows: errors.length, firstError: errors[0] }, 'dev sink rejected rows');
  sendJson(res, 200, {
    success: true,
    request_id: requestId,
    stream_id: `devsink:${target.key}`,
    table: envelope.table,
    accepted: true,
    successful_rows: result.stored,
    rejected_rows: errors.length,
    partitions: result.stored > 0 ? 1 : 0,
    ...(envelope.wait ? { snapshot_id: result.snapshotId } : {}),
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
  const ctx: Context = { store, limits, keyDigest: digest(options.apiKey), logger: options.logger };

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
      })();
      return closing;
    },
  };
}
