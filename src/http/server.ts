import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Queue } from 'bullmq';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { hasAuth, isLoopback, webAccessProblems, type WebAuth } from '../core/web-access.js';
import { authorized } from './auth.js';
import { DASHBOARD_PATH, dashboardRouter, sameOrigin } from './dashboard.js';
import { DATA_CSP, securityHeaderValues, securityHeaders } from './web-headers.js';
import { readinessHandler, type ReadinessCheck } from './readiness.js';
import { INGEST_PATH, fastIngestHandler, ingestRouter, type IngestEndpoint } from './ingest.js';

export type { ReadinessCheck };

/** Health, readiness, Prometheus metrics and, with the web role, the Bull Board dashboard. */
export interface WebOptions {
  host: string;
  port: number;
  auth: WebAuth;
  metrics: Metrics;
  /** `/metrics` answers only `Authorization: Bearer <metricsToken>`. @defaultValue unset: no credentials needed */
  metricsToken?: string;
  /** The pipeline's status for `GET /status` (the dashboard's credentials when auth is configured). */
  status?: () => Promise<unknown>;
  /** Pauses and resumes a table's extraction (`POST /tables/<source.table>/pause|resume`), by `<source>.<table>`. */
  tableControl?: { pause(table: string, reason?: string): Promise<void>; resume(table: string): Promise<boolean> };
  /** Refreshes gauges computed from shared state before a scrape. */
  collect?: () => Promise<void>;
  readiness: ReadinessCheck[];
  /** Queues shown in Bull Board; none: no dashboard. */
  queues?: Queue[];
  /** Bull Board without controls; changing requests are refused. @defaultValue false */
  readOnly?: boolean;
  /** Debezium sources taking events at POST /ingest/debezium (role ingest), by source name. */
  ingest?: ReadonlyMap<string, IngestEndpoint>;
  logger: Logger;
}

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export { DASHBOARD_PATH };

/** An IPv6 address in brackets, as URLs and `host:port` write it. */
function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** What a failed listen means for whoever runs pushsync: which setting to change. */
function listenError(host: string, port: number, err: NodeJS.ErrnoException): AppError {
  const where = `${bracketed(host)}:${port}`;
  const why =
    err.code === 'EADDRINUSE'
      ? `${where} is already in use: stop the process listening there, or set web.port (or start --port) to a free port`
      : err.code === 'EADDRNOTAVAIL'
        ? `${where} is not an address of this machine: set web.host to one of its addresses, or 0.0.0.0`
        : err.code === 'EACCES'
          ? `no permission to listen on ${where}: set web.port to a port above 1023`
          : `cannot listen on ${where} (set by web.host and web.port): ${err.message}`;
  return new AppError('CONFIG_INVALID', why, { cause: err });
}

export async function startWebServer(o: WebOptions): Promise<WebServer> {
  const dashboard = (o.queues?.length ?? 0) > 0;
  const exposure = dashboard ? webAccessProblems(o.host, o.auth) : [];
  if (exposure.length > 0) throw new AppError('CONFIG_INVALID', exposure.join('; '));
  const open = [...(o.ingest ?? new Map<string, IngestEndpoint>())].filter(([, e]) => e.token === undefined).map(([name]) => name);
  if (open.length > 0 && !isLoopback(o.host)) {
    throw new AppError('CONFIG_INVALID', `web.host ${o.host} is not loopback: ${INGEST_PATH} needs http.token on source(s) ${open.join(', ')}`);
  }
  const app = express();
  app.disable('x-powered-by');
  // Every response; the dashboard replaces the policy with its own.
  app.use(securityHeaders(DATA_CSP));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // Only credentials the dashboard was configured with count: with no auth configured, nobody sees the details.
  const authenticated = (req: Request): boolean => hasAuth(o.auth) && authorized(req.headers.authorization, o.auth);
  app.get('/readyz', readinessHandler(o.readiness, o.logger, authenticated));

  app.get('/metrics', async (req, res) => {
    if (o.metricsToken !== undefined && !authorized(req.headers.authorization, { token: o.metricsToken })) {
      res.status(401).set('www-authenticate', 'Bearer realm="pushsync metrics"').json({ error: 'a bearer token is required (web.metricsToken)' });
      return;
    }
    if (o.collect) {
      try {
        await o.collect();
      } catch (err) {
        o.logger.warn({ err: (err as Error).message, stack: (err as Error).stack }, 'could not refresh shared gauges for /metrics');
      }
    }
    res.set('content-type', o.metrics.registry.contentType);
    res.send(await o.metrics.registry.metrics());
  });

  if (o.status) {
    const status = o.status;
    // Positions hold key values: the same credentials as the dashboard.
    app.get('/status', async (req, res) => {
      if (!authorized(req.headers.authorization, o.auth)) {
        res.status(401).set('www-authenticate', 'Basic realm="pushsync"').json({ error: 'credentials required (web.auth)' });
        return;
      }
      res.json(await status());
    });
  }

  if (o.tableControl) {
    const control = o.tableControl;
    // A browser sends cached basic credentials with a foreign page's form too: without a bearer token (which no
    // page can add without a preflight), the request must come from this host's own page.
    app.post('/tables/:table/:action', express.json({ limit: '4kb' }), async (req: Request, res: Response) => {
      const bearer = /^bearer /i.test(req.headers.authorization ?? '');
      if (!authorized(req.headers.authorization, o.auth)) {
        res.status(401).set('www-authenticate', 'Basic realm="pushsync"').json({ error: 'credentials required (web.auth)' });
      } else if (!bearer && !sameOrigin(req)) {
        res.status(403).json({ error: 'cross-site request refused: send Authorization: Bearer <web.auth.token>' });
      } else if (o.readOnly) {
        res.status(403).json({ error: 'read-only (web.readOnly: true)' });
      } else {
        const table = String(req.params.table);
        const action = req.params.action;
        try {
          if (action === 'pause') await control.pause(table, typeof req.body?.reason === 'string' ? req.body.reason : undefined);
          else if (action === 'resume') await control.resume(table);
          else return void res.status(404).json({ error: 'not found: use pause or resume' });
          res.json({ table, paused: action === 'pause' });
        } catch (err) {
          if (!isAppError(err) || err.code !== 'CONFIG_INVALID') throw err;
          res.status(400).json({ error: err.message });
        }
      }
    });
  }

  if (o.ingest && o.ingest.size > 0) app.use(ingestRouter(o.ingest, o.logger));

  if (dashboard) {
    app.use(DASHBOARD_PATH, dashboardRouter({ queues: o.queues!, auth: o.auth, readOnly: o.readOnly ?? false }));
    app.get('/', (_req, res) => res.redirect(DASHBOARD_PATH));
  }
  // Answered here rather than by express's defaults, which replace the security headers and, outside production,
  // send stack traces.
  app.use((_req: Request, res: Response) => {
    res.status(404).json({ error: 'not found' });
  });
  app.use((err: Error, req: Request, res: Response, _next: NextFunction) => {
    o.logger.error({ err: err.message, stack: err.stack, path: req.path }, 'web request failed');
    res.status(500).json({ error: 'internal error' });
  });
  // Not app.listen: express 5 calls its callback on a listen error too, as if the server were up.
  const fast = o.ingest && o.ingest.size > 0 ? fastIngestHandler(o.ingest, o.logger, securityHeaderValues(DATA_CSP)) : undefined;
  const server: Server = createServer(fast ? (req, res) => fast(req, res) || app(req, res) : app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(o.host, o.port, err)));
    server.listen(o.port, o.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${bracketed(o.host)}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
