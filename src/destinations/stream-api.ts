import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Agent, errors as undiciErrors, request } from 'undici';
import { AppError } from '../core/errors.js';
import { parseRetryAfter } from '../core/backoff.js';
import { requestBody, type RequestConfig } from '../core/batching.js';
import type { Destination, SendResult } from '../core/ports.js';

const gzipAsync = promisify(gzip);

export interface StreamApiOptions {
  /** Full endpoint URL, e.g. https://api.definite.app/v2/stream. */
  url: string;
  apiKey: string;
  /** Per-request limit for headers and body. @defaultValue 60000 ms */
  timeoutMs: number;
  compression: 'none' | 'gzip';
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

  constructor(private readonly options: StreamApiOptions) {
    this.agent = new Agent({ connections: options.connections ?? 8, keepAliveTimeout: 30_000, pipelining: 1 });
    this.auth = `Bearer ${options.apiKey}`;
  }

  async send(target: string, records: readonly string[]): Promise<SendResult> {
    const config: RequestConfig = { table: target, mode: 'append', wait: this.options.wait, tags: { source: 'pushsync', ...this.options.tags } };
    const text = requestBody(records, config);
    const headers: Record<string, string> = { authorization: this.auth, 'content-type': 'application/json' };
    let body: string | Buffer = text;
    if (this.options.compression === 'gzip') {
      body = await gzipAsync(text);
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
      throw translateNetworkError(err, target);
    }
    const latencyMs = performance.now() - started;
    return interpret(status, responseText, retryAfter, records.length, target, latencyMs);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function translateNetworkError(err: unknown, target: string): AppError {
  const code = (err as { code?: string }).code ?? '';
  const message = `request for ${target} failed before a response: ${(err as Error).message ?? String(err)}`;
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

/** First few server errors, trimmed, for the failed job's details. */
function serverErrors(body: StreamResponse | undefined, raw: string): unknown[] {
  if (body && Array.isArray(body.errors)) return body.errors.slice(0, 20);
  return raw ? [raw.slice(0, 2000)] : [];
}

export function interpret(
  status: number,
  text: string,
  retryAfterHeader: string | undefined,
  sent: number,
  target: string,
  latencyMs: number,
): SendResult {
  const body = parseBody(text);
  const requestId = typeof body?.request_id === 'string' ? body.request_id : undefined;
  const details = { status, requestId, errors: serverErrors(body, text), target };
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
        details: { ...details, rejectedRows: rejected, successfulRows: body.successful_rows },
      });
    }
    if (typeof body.successful_rows === 'number' && body.successful_rows < sent) {
      throw new AppError('DEST_BAD_RESPONSE', `destination stored ${body.successful_rows} of ${sent} rows for ${target} without reporting rejections`, {
        retryable: true,
        details,
      });
    }
    return { rows: sent, requestId, latencyMs };
  }
  const retryAfterMs = parseRetryAfter(retryAfterHeader);
  if (status === 413) throw new AppError('DEST_TOO_LARGE', `HTTP 413 for ${target}: request of ${sent} rows too large`, { details });
  if (status === 429) throw new AppError('DEST_RATE_LIMITED', `HTTP 429 for ${target}`, { retryable: true, retryAfterMs, details });
  if (status === 401 || status === 403) throw new AppError('DEST_AUTH', `HTTP ${status} for ${target}: check destination.apiKey`, { details });
  if (RETRYABLE_STATUS.has(status) || status >= 500) {
    throw new AppError('DEST_UNAVAILABLE', `HTTP ${status} for ${target}`, { retryable: true, retryAfterMs, details });
  }
  throw new AppError('DEST_REJECTED', `HTTP ${status} for ${target}: ${summary(details.errors)}`, { details });
}

function summary(errors: unknown[]): string {
  const first = errors[0];
  if (first === undefined) return 'no reason given';
  const text = typeof first === 'string' ? first : JSON.stringify(first);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}
