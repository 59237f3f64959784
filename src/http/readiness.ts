import type { Request, Response } from 'express';
import type { Logger } from '../observability/logger.js';

/** One dependency /readyz asks about. */
export interface ReadinessCheck {
  name: string;
  /** Throws when not ready. */
  check: () => Promise<void>;
}

const CHECK_TIMEOUT_MS = 5000;

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

/**
 * GET /readyz: 200 when every check passes, else 503 naming the checks that failed. Why a check failed (driver
 * messages name hosts and ports) is told only to a request carrying the dashboard's credentials, and to the log.
 */
export function readinessHandler(checks: ReadinessCheck[], logger: Logger, authenticated: (req: Request) => boolean) {
  // The log says when a check starts failing, fails differently or recovers, not on every probe.
  const lastFailure = new Map<string, string>();
  const note = (name: string, failure: string | undefined): void => {
    const before = lastFailure.get(name);
    if (failure === before) return;
    if (failure === undefined) {
      lastFailure.delete(name);
      logger.info({ check: name }, 'readiness check passes again');
    } else {
      lastFailure.set(name, failure);
      logger.warn({ check: name, err: failure }, 'readiness check failed');
    }
  };
  return async (req: Request, res: Response): Promise<void> => {
    const results = await Promise.all(
      checks.map(async (c) => {
        try {
          await withTimeout(c.check(), CHECK_TIMEOUT_MS);
          note(c.name, undefined);
          return { name: c.name, ok: true, why: 'ok' };
        } catch (err) {
          const why = (err as Error).message || 'failed';
          note(c.name, why);
          return { name: c.name, ok: false, why };
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    const detailed = !ready && authenticated(req);
    const shown = results.map((r) => [r.name, r.ok ? 'ok' : detailed ? r.why : 'unavailable'] as const);
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks: Object.fromEntries(shown) });
  };
}
