import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { eventsOfRequest } from '../core/debezium-request.js';
import { AppError, isAppError } from '../core/errors.js';
import { verifyWebhook } from '../core/webhook-signature.js';
import type { Logger } from '../observability/logger.js';
import type { DebeziumIngest } from '../queue/ingest.js';
import { authorized } from './auth.js';

/** The ingest endpoint of Debezium sources (role `ingest`): `POST /ingest/debezium[/<source>]`. */
export const INGEST_PATH = '/ingest/debezium';

export interface IngestEndpoint {
  ingest: DebeziumIngest;
  /** Bearer token, also the Standard Webhooks secret; undefined only on a loopback host. */
  token: string | undefined;
}

/** Largest request body accepted; a Kafka Connect batch of 10 MB with room to spare. */
const MAX_BODY = '32mb';
const MAX_BODY_BYTES = 32 * 1024 * 1024;

function retryAfterSeconds(e: AppError): string {
  return String(Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000)));
}

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

type Headers = IncomingHttpHeaders;

/**
 * Acknowledgement rules: 200 only once every event of the request is stored in Redis; a malformed event refuses
 * the whole request with 400 naming the event and the field (nothing of it is stored); a full buffer answers 429
 * and an unreachable Redis 503, both with `Retry-After`, so the producer sends the same events again.
 */
async function answer(
  endpoints: ReadonlyMap<string, IngestEndpoint>,
  name: string | undefined,
  body: string,
  headers: Headers,
  logger: Logger,
): Promise<Answer> {
  const endpoint = name === undefined ? (endpoints.size === 1 ? [...endpoints.values()][0] : undefined) : endpoints.get(name);
  if (!endpoint) {
    return {
      status: 404,
      body: {
        error:
          name === undefined ? `several sources take events: post to ${INGEST_PATH}/<source>` : `no Debezium source ${name} takes events over HTTP`,
      },
    };
  }
  if (!allowed(headers, body, endpoint.token)) return { status: 401, headers: { 'www-authenticate': 'Bearer' }, body: { error: 'unauthorized' } };
  const source = endpoint.ingest.source.name;
  try {
    return { status: 200, body: await endpoint.ingest.ingest(eventsOfRequest({ body, headers }, endpoint.ingest.reuse), 'reject') };
  } catch (err) {
    const e = isAppError(err) ? err : new AppError('INTERNAL', String((err as Error)?.message ?? err), { cause: err, retryable: true });
    if (e.code === 'EVENT_INVALID') {
      logger.warn({ source, code: e.code, err: e.message }, 'ingest request refused');
      return { status: 400, body: { error: e.message, event: e.details?.event ?? null, field: e.details?.field ?? null } };
    }
    if (e.code === 'INGEST_FULL') return { status: 429, headers: { 'retry-after': retryAfterSeconds(e) }, body: { error: e.message } };
    logger.warn({ source, code: e.code, err: e.message }, 'ingest request not stored');
    return {
      status: e.retryable ? 503 : 500,
      headers: { 'retry-after': retryAfterSeconds(e) },
      body: { error: `[${e.code}] not stored; send the events again` },
    };
  }
}

/** The source named by `/ingest/debezium[/<source>]`, undefined for the bare path, null when the path is another. */
function sourceOfPath(url: string | undefined): string | undefined | null {
  if (url === undefined || !url.startsWith(INGEST_PATH)) return null;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path === INGEST_PATH || path === `${INGEST_PATH}/`) return undefined;
  const rest = path.slice(INGEST_PATH.length);
  if (!rest.startsWith('/') || rest.indexOf('/', 1) !== -1) return null;
  try {
    return decodeURIComponent(rest.slice(1));
  } catch {
    return null;
  }
}

/**
 * The hot path of Debezium Server's HTTP sink, one event per request: served straight from node:http, without
 * express's routing and body parsing, which cost more than the event's own work. Returns false for anything it
 * does not take (another path or method, a compressed body): the express router (`ingestRouter`) serves those, with
 * the same answers.
 */
export function fastIngestHandler(
  endpoints: ReadonlyMap<string, IngestEndpoint>,
  logger: Logger,
  responseHeaders: Readonly<Record<string, string>>,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const send = (res: ServerResponse, a: Answer): void => {
    const text = JSON.stringify(a.body);
    res.writeHead(a.status, {
      ...responseHeaders,
      ...a.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  };
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const name = sourceOfPath(req.url);
    if (name === null) return false;
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      send(res, { status: 413, body: { error: `request body over ${MAX_BODY}; send fewer events per request` } });
      req.resume();
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) over = true;
      else chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (over) return send(res, { status: 413, body: { error: `request body over ${MAX_BODY}; send fewer events per request` } });
      let body: string;
      try {
        body = decoder.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      } catch {
        return send(res, { status: 400, body: { error: 'unreadable request body (send UTF-8 JSON)' } });
      }
      answer(endpoints, name, body, req.headers, logger).then(
        (a) => send(res, a),
        (err: unknown) => {
          logger.error({ err: (err as Error).message }, 'web request failed');
          send(res, { status: 500, body: { error: 'internal error' } });
        },
      );
    });
    return true;
  };
}

/** The same endpoint through express: what the fast path leaves to it (compressed bodies). */
export function ingestRouter(endpoints: ReadonlyMap<string, IngestEndpoint>, logger: Logger): Router {
  const router = express.Router();
  const handler = async (req: Request, res: Response): Promise<void> => {
    const param = req.params.source;
    const name = Array.isArray(param) ? param[0] : param;
    const body = typeof req.body === 'string' ? req.body : '';
    const a = await answer(endpoints, name, body, req.headers, logger);
    if (a.headers) res.set(a.headers);
    res.status(a.status).json(a.body);
  };
  const text = express.text({ type: () => true, limit: MAX_BODY });
  router.post([INGEST_PATH, `${INGEST_PATH}/:source`], text, (req, res, next) => void handler(req, res).catch(next));
  router.use(INGEST_PATH, (err: Error & { status?: number; type?: string }, _req: Request, res: Response, next: NextFunction) => {
    if (err.type === 'entity.too.large') res.status(413).json({ error: `request body over ${MAX_BODY}; send fewer events per request` });
    else if (err.status === 400 || err.status === 415) res.status(400).json({ error: 'unreadable request body (send UTF-8 JSON)' });
    else next(err);
  });
  return router;
}

/** A bearer token (or basic auth with the token as password), or a Standard Webhooks signature keyed by it. */
function allowed(headers: Headers, body: string, token: string | undefined): boolean {
  if (token === undefined) return true;
  if (authorized(headers.authorization, { token })) return true;
  const h = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  return verifyWebhook(
    token,
    { id: h('webhook-id'), timestamp: h('webhook-timestamp'), signature: h('webhook-signature') },
    body,
    Math.floor(Date.now() / 1000),
  );
}
