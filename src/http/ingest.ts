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

function retryAfterSeconds(e: AppError): string {
  return String(Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000)));
}

/**
 * Acknowledgement rules: 200 only once every event of the request is stored in Redis; a malformed event refuses
 * the whole request with 400 naming the event and the field (nothing of it is stored); a full buffer answers 429
 * and an unreachable Redis 503, both with `Retry-After`, so the producer sends the same events again.
 */
export function ingestRouter(endpoints: ReadonlyMap<string, IngestEndpoint>, logger: Logger): Router {
  const router = express.Router();
  const only = endpoints.size === 1 ? [...endpoints.values()][0] : undefined;
  const handler = async (req: Request, res: Response): Promise<void> => {
    const param = req.params.source;
    const name = Array.isArray(param) ? param[0] : param;
    const endpoint = name === undefined ? only : endpoints.get(name);
    if (!endpoint) {
      res.status(404).json({
        error:
          name === undefined ? `several sources take events: post to ${INGEST_PATH}/<source>` : `no Debezium source ${name} takes events over HTTP`,
      });
      return;
    }
    const body = typeof req.body === 'string' ? req.body : '';
    if (!allowed(req, body, endpoint.token)) {
      res.set('www-authenticate', 'Bearer').status(401).json({ error: 'unauthorized' });
      return;
    }
    const source = endpoint.ingest.source.name;
    try {
      const outcome = await endpoint.ingest.ingest(eventsOfRequest({ body, headers: req.headers }, endpoint.ingest.reuse), 'reject');
      res.status(200).json(outcome);
    } catch (err) {
      const e = isAppError(err) ? err : new AppError('INTERNAL', String((err as Error)?.message ?? err), { cause: err, retryable: true });
      if (e.code === 'EVENT_INVALID') {
        logger.warn({ source, code: e.code, err: e.message }, 'ingest request refused');
        res.status(400).json({ error: e.message, event: e.details?.event ?? null, field: e.details?.field ?? null });
      } else if (e.code === 'INGEST_FULL') {
        res.set('retry-after', retryAfterSeconds(e)).status(429).json({ error: e.message });
      } else {
        logger.warn({ source, code: e.code, err: e.message }, 'ingest request not stored');
        res
          .set('retry-after', retryAfterSeconds(e))
          .status(e.retryable ? 503 : 500)
          .json({ error: `[${e.code}] not stored; send the events again` });
      }
    }
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
function allowed(req: Request, body: string, token: string | undefined): boolean {
  if (token === undefined) return true;
  if (authorized(req.headers.authorization, { token })) return true;
  const h = (name: string): string | undefined => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  return verifyWebhook(
    token,
    { id: h('webhook-id'), timestamp: h('webhook-timestamp'), signature: h('webhook-signature') },
    body,
    Math.floor(Date.now() / 1000),
  );
}
