import express, { type NextFunction, type Request, type Response } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { WebAuth } from '../core/web-access.js';
import { authorized } from './auth.js';
import { DASHBOARD_CSP, securityHeaders } from './web-headers.js';

export const DASHBOARD_PATH = '/admin/queues';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Bull Board's route that replaces a job's data; its router ignores case and a trailing slash. */
const EDIT_JOB_DATA = /\/update-data\/?$/i;
/** Bull Board's route behind "Add job" and a job's "Duplicate": a hand-made job, e.g. a completed push job again. */
const ADD_JOB = /^\/api\/queues\/[^/]+\/add\/?$/i;
/** Retrying every completed job of a queue, and retrying one job (whose state decides). */
const RETRY_COMPLETED = /^\/api\/queues\/[^/]+\/retry\/completed\/?$/i;
const RETRY_JOB = /^\/api\/queues\/([^/]+)\/([^/]+)\/retry\/?$/i;

/**
 * Bull Board hides retry on completed jobs when told to, but its API retries any failed or completed job it is
 * asked to: the refusal has to be here.
 */
async function retriesCompleted(req: Request, queues: Queue[]): Promise<boolean> {
  if (RETRY_COMPLETED.test(req.path)) return true;
  const m = RETRY_JOB.exec(req.path);
  if (!m) return false;
  const queue = queues.find((q) => q.name === decodeURIComponent(m[1]!));
  const job = await queue?.getJob(decodeURIComponent(m[2]!));
  return (await job?.getState()) === 'completed';
}

function hostOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    return new URL(url).host || undefined; // `Origin: null` parses to no host
  } catch {
    return undefined;
  }
}

/**
 * Basic auth is cached by the browser and sent with any request to the dashboard, also one a foreign page makes
 * (a form or a text/plain fetch, which need no CORS preflight). A request that changes something must therefore
 * come from the dashboard's own page: its Origin, or its Referer when a browser sends no Origin, names this host.
 * Compared by host (name and port) against Host, or X-Forwarded-Host behind a proxy: a foreign page cannot set
 * either header without a preflight, which is never granted.
 */
export function sameOrigin(req: Request): boolean {
  const from = req.headers.origin !== undefined ? hostOf(req.headers.origin) : hostOf(req.headers.referer);
  if (from === undefined) return false;
  const forwarded = req.headers['x-forwarded-host'];
  const hosts = [req.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',').map((h) => h.trim()) : [])];
  return hosts.some((h) => h !== undefined && h.toLowerCase() === from.toLowerCase());
}

export interface DashboardOptions {
  queues: Queue[];
  auth: WebAuth;
  /** Show queues and jobs only: Bull Board hides its controls and every changing request is refused. */
  readOnly: boolean;
}

/**
 * Bull Board behind auth, a same-origin check and, when read-only, a refusal of every changing request. Editing a
 * job's data is never allowed: a push job's payload is a contract (its range and resume point), and a hand-edited
 * one can skip rows. A completed job cannot be retried either: its rows were delivered; nor duplicated, nor a job
 * added by hand, which would do the same.
 */
export function dashboardRouter(o: DashboardOptions): express.Router {
  const adapter = new ExpressAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  const queueOptions = o.readOnly ? { readOnlyMode: true } : { readOnlyMode: false, allowRetries: true, allowCompletedRetries: false };
  createBullBoard({ queues: o.queues.map((q) => new BullMQAdapter(q, queueOptions)), serverAdapter: adapter });
  const board = adapter.getRouter() as express.Express;
  board.disable('x-powered-by'); // Bull Board serves from an express app of its own

  const router = express.Router();
  router.use(securityHeaders(DASHBOARD_CSP));
  router.use((req: Request, res: Response, next: NextFunction) => {
    if (authorized(req.headers.authorization, o.auth)) return next();
    res.set('WWW-Authenticate', 'Basic realm="pushsync"').status(401).json({ error: 'authentication required' });
  });
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    if (SAFE_METHODS.has(req.method)) return next();
    if (!sameOrigin(req)) {
      res.status(403).json({ error: 'cross-site request refused: changes are accepted only from the dashboard page itself' });
      return;
    }
    if (o.readOnly) {
      res.status(403).json({ error: 'the dashboard is read-only (web.readOnly: true)' });
      return;
    }
    if (ADD_JOB.test(req.path)) {
      res
        .status(403)
        .json({ error: 'adding or duplicating jobs by hand is disabled: pushsync makes its jobs (use pushsync backfill to re-read a table)' });
      return;
    }
    try {
      if (await retriesCompleted(req, o.queues)) {
        res.status(403).json({ error: 'a completed job cannot be retried: its rows were delivered (use pushsync backfill to re-read a table)' });
        return;
      }
    } catch (err) {
      next(err);
      return;
    }
    if (EDIT_JOB_DATA.test(req.path)) {
      res.status(403).json({ error: "editing job data is disabled: a push job's range and resume point must stay as pushsync wrote them" });
      return;
    }
    next();
  });
  router.use(board);
  return router;
}
