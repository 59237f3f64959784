import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Agent, errors as undiciErrors, request } from 'undici';
import { AppError } from '../core/errors.js';
import { parseRetryAfter } from '../core/backoff.js';
import { requestBodyBytes, requestBodyOf, type RequestConfig } from '../core/batching.js';
import { capEntries, createRedactor, truncateText, type Redactor } from '../core/redact.js';
import type { Destination, SendResult } from '../core/ports.js';
import type { EncodedRecords } from '../core/encoded-records.js';

const gzipAsync = promisify(gzip);

export interface StreamApiOptions {
  /** Full endpoint URL, e.g. https://api.definite.app/v2/stream. */
  url: string;
  apiKey: string;
  /** Per-request limit for headers and body. @defaultValue 60000 ms */
  timeoutMs: number;
  compression: 'none' | 'gzip';
  /** zlib level of gzip bodies. @defaultValue 1 */
  gzipLevel?: number;
  wait: boolean;
  tags: Record<string, string>;
  /** Keep-alive connections to the endpoint. @defaultValue 8 */
  connections?: number;
}

/** Network-level failures after which the request may or may not have reached the server: always retry. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** HTTP statuses worth retrying; everything else that is not 2xx or 413 fails the job at once. */
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * Bounds on what a response may leave behind. Everything the server said passes through the redactor and these
 * caps before it enters an AppError, so the messages, job logs and log lines made from it never hold the key.
 */
const MESSAGE_CHARS = 300;
const ENTRY_CHARS = 500;
const ERRORS_CHARS = 4000;
const WARNINGS_CHARS = 2000;
const MAX_ENTRIES = 20;
const REQUEST_ID_CHARS = 200;

interface StreamResponse {
  success?: unknown;
  request_id?: unknown;
  successful_rows?: unknown;
  rejected_rows?: unknown;
  errors?: unknown;
  warnings?: unknown;
}

/** The Stream API client: one keep-alive pool, JSON envelope, optional gzip, typed errors by status. */
export class StreamApiClient implements Destination {
  private readonly agent: Agent;
  private readonly auth: string;
  private readonly redactor: Redactor;

  constructor(private readonly options: StreamApiOptions) {
    this.agent = new Agent({ connections: options.connections ?? 8, keepAliveTimeout: 30_000, pipelining: 1 });
    this.auth = `Bearer ${options.apiKey}`;
    this.redactor = createRedactor([options.apiKey]);
  }

  async send(target: string, records: readonly string[]): Promise<SendResult> {
    return this.post(target, requestBodyBytes(records, this.requestConfig(target)), records.length);
  }

  async sendEncoded(target: string, records: EncodedRecords, from: number, to: number): Promise<SendResult> {
    return this.post(target, requestBodyOf(records, from, to, this.requestConfig(target)), to - from);
  }

  private requestConfig(target: string): RequestConfig {
    return { table: target, mode: 'append', wait: this.options.wait, tags: { source: 'pushsync', ...this.options.tags } };
  }

  private async post(target: string, bytes: Buffer, count: number): Promise<SendResult> {
    const headers: Record<string, string> = { authorization: this.auth, 'content-type': 'application/json' };
    let body = bytes;
    if (this.options.compression === 'gzip') {
      body = await gzipAsync(bytes, { level: this.options.gzipLevel ?? 1 });
      headers['content-encoding'] = 'gzip';
    }
    const started = performance.now();
    let status: number;
    let responseText: string;
    let retryAfter: string | undefined;
    try {
      const res = await request(this.options.url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.agent,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfter = Array.isArray(ra) ? ra[0] : ra;
      responseText = await res.body.text();
    } catch (err) {
      throw translateNetworkError(err, target, this.redactor);
    }
    const latencyMs = performance.now() - started;
    return interpret({ status, text: responseText, retryAfter }, { sent: count, target, latencyMs }, this.redactor);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function translateNetworkError(err: unknown, target: string, redactor: Redactor): AppError {
  const code = (err as { code?: string }).code ?? '';
  const reason = redactor.excerpt(oneLine((err as Error).message ?? String(err)), MESSAGE_CHARS);
  const message = `request for ${target} failed before a response: ${reason}`;
  if (TIMEOUT_CODES.has(code)) return new AppError('DEST_TIMEOUT', message, { retryable: true, cause: err, details: { errno: code } });
  if (NETWORK_CODES.has(code) || err instanceof undiciErrors.UndiciError) {
    return new AppError('DEST_UNAVAILABLE', message, { retryable: true, cause: err, details: { errno: code } });
  }
  // Unknown failures of the transport are still transient from the pipeline's point of view: retrying only risks
  // duplicates, which event ids make removable.
  return new AppError('DEST_UNAVAILABLE', message, { retryable: true, cause: err });
}

function parseBody(text: string): StreamResponse | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? (value as StreamResponse) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A list the server sent (errors[], warnings[]), redacted and capped; a body that is not JSON stands in as one
 * excerpt when `raw` is given.
 */
function serverList(list: unknown, raw: string | undefined, maxChars: number, redactor: Redactor): unknown[] {
  if (Array.isArray(list))
    return capEntries(
      list.slice(0, MAX_ENTRIES).map((e) => redactor.value(e, ENTRY_CHARS)),
      maxChars,
      ENTRY_CHARS,
    );
  return raw ? [redactor.excerpt(raw, maxChars)] : [];
}

export interface RawResponse {
  status: number;
  text: string;
  retryAfter: string | undefined;
}

export interface SentRequest {
  sent: number;
  target: string;
  latencyMs: number;
}

/**
 * Turns a response into the send's result or an AppError by status and body. Invariant: no text of the response
 * reaches an error unless it went through `redactor` (which knows the key) and the caps above.
 */
export function interpret(res: RawResponse, req: SentRequest, redactor: Redactor): SendResult {
  const { status } = res;
  const { sent, target, latencyMs } = req;
  const body = parseBody(res.text);
  const requestId = typeof body?.request_id === 'string' ? redactor.excerpt(body.request_id, REQUEST_ID_CHARS) : undefined;
  const errors = serverList(body?.errors, body ? undefined : res.text, ERRORS_CHARS, redactor);
  const warnings = serverList(body?.warnings, undefined, WARNINGS_CHARS, redactor);
  const details = { status, requestId, errors, ...(warnings.length > 0 ? { warnings } : {}), target };
  if (status >= 200 && status < 300) {
    if (!body) {
      throw new AppError('DEST_BAD_RESPONSE', `HTTP ${status} for ${target} with a body that is not JSON`, { retryable: true, details });
    }
    const rejected = typeof body.rejected_rows === 'number' ? body.rejected_rows : 0;
    if (body.success === false) {
      throw new AppError('DEST_REJECTED', `destination reported success=false for ${target}`, { details });
    }
    if (rejected > 0) {
      throw new AppError('DEST_ROWS_REJECTED', `destination rejected ${rejected} of ${sent} rows for ${target}`, {
        details: { ...details, rejectedRows: rejected, successfulRows: typeof body.successful_rows === 'number' ? body.successful_rows : undefined },
      });
    }
    if (typeof body.successful_rows === 'number' && body.successful_rows < sent) {
      throw new AppError(
        'DEST_BAD_RESPONSE',
        `destination stored ${body.successful_rows} of ${sent} rows for ${target} without reporting rejections`,
        {
          retryable: true,
          details,
        },
      );
    }
    return { rows: sent, requestId, latencyMs };
  }
  const retryAfterMs = parseRetryAfter(res.retryAfter);
  if (status === 413) throw new AppError('DEST_TOO_LARGE', `HTTP 413 for ${target}: request of ${sent} rows too large`, { details });
  if (status === 429) throw new AppError('DEST_RATE_LIMITED', `HTTP 429 for ${target}`, { retryable: true, retryAfterMs, details });
  if (status === 401 || status === 403) throw new AppError('DEST_AUTH', `HTTP ${status} for ${target}: check destination.apiKey`, { details });
  if (RETRYABLE_STATUS.has(status) || status >= 500) {
    throw new AppError('DEST_UNAVAILABLE', `HTTP ${status} for ${target}`, { retryable: true, retryAfterMs, details });
  }
  throw new AppError('DEST_REJECTED', `HTTP ${status} for ${target}: ${summary(errors)}`, { details });
}

/** The first server error on one line, already redacted, for the job's failure reason. */
function summary(errors: unknown[]): string {
  const first = errors[0];
  if (first === undefined) return 'no reason given';
  return truncateText(oneLine(typeof first === 'string' ? first : JSON.stringify(first)), MESSAGE_CHARS);
}

/** Control characters and runs of white space as single spaces: a failure reason stays one line. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim();
}
