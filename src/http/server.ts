import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import { AppError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { authorized, hasAuth, type WebAuth } from './auth.js';

/** Health, readiness, Prometheus metrics and, with the web role, the Bull Board dashboard. */
export interface ReadinessCheck {
  name: string;
  /** Throws when not ready. */
  check: () => Promise<void>;
}

export interface WebOptions {
  host: string;
  port: number;
  auth: WebAuth;
  metrics: Metrics;
  /** Refreshes gauges computed from shared state before a scrape. */
  collect?: () => Promise<void>;
  readiness: ReadinessCheck[];
  /** Queues shown in Bull Board; none: no dashboard. */
  queues?: Queue[];
  logger: Logger;
}

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const CHECK_TIMEOUT_MS = 5000;
export const DASHBOARD_PATH = '/admin/queues';

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

export async function startWebServer(o: WebOptions): Promise<WebServer> {
  const dashboard = (o.queues?.length ?? 0) > 0;
  if (dashboard && !LOOPBACK.has(o.host) && !hasAuth(o.auth)) {
    throw new AppError('CONFIG_INVALID', `web.host ${o.host} is not loopback: the dashboard needs web.auth.token or web.auth.username/password`);
  }
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const results = await Promise.all(
      o.readiness.map(async (c) => {
        try {
          await withTimeout(c.check(), CHECK_TIMEOUT_MS);
          return [c.name, 'ok'] as const;
        } catch (err) {
          // Driver messages name hosts, never credentials; URLs are never passed to checks.
          return [c.name, (err as Error).message || 'failed'] as const;
        }
      }),
    );
    const ready = results.every(([, r]) => r === 'ok');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks: Object.fromEntries(results) });
  });

  app.get('/metrics', async (_req, res) => {
    if (o.collect) {
      try {
        await o.collect();
      } catch (err) {
        o.logger.warn({ err: (err as Error).message }, 'could not refresh shared gauges for /metrics');
      }
    }
    res.set('content-type', o.metrics.registry.contentType);
    res.send(await o.metrics.registry.metrics());
  });

  if (dashboard) {
    const adapter = new ExpressAdapter();
    adapter.setBasePath(DASHBOARD_PATH);
    createBullBoard({ queues: o.queues!.map((q) => new BullMQAdapter(q, { readOnlyMode: false })), serverAdapter: adapter });
    const guard = (req: Request, res: Response, next: NextFunction): void => {
      if (authorized(req.headers.authorization, o.auth)) return next();
      res.set('WWW-Authenticate', 'Basic realm="pushsync"').status(401).json({ error: 'authentication required' });
    };
    app.use(DASHBOARD_PATH, guard, adapter.getRouter() as express.Router);
    app.get('/', (_req, res) => res.redirect(DASHBOARD_PATH));
  }

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(o.port, o.host, () => resolve(s));
    s.once('error', (err) => reject(new AppError('CONFIG_INVALID', `cannot listen on ${o.host}:${o.port}: ${err.message}`, { cause: err })));
  });
  const { port } = server.address() as AddressInfo;
  const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
