import { createServer, type Server as NetServer } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Queue, Worker, UnrecoverableError } from 'bullmq';
import { request } from 'undici';
import { parseConfig } from '../config.js';
import { createPipeline, startRuntime } from '../main.js';
import { startExtractWorker } from '../queue/extract-worker.js';
import { startPushWorker } from '../queue/push-worker.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { startWebServer, type WebServer } from './server.js';
import { dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from '../../test/helpers/services.js';

/** A port on 127.0.0.1 that something else already listens on. */
async function takenPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const blocker: NetServer = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address() as { port: number };
  return { port, release: () => new Promise<void>((resolve) => blocker.close(() => resolve())) };
}

async function send(
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; body: string }> {
  const res = await request(url, { method, headers, body });
  return { status: res.statusCode, body: await res.body.text() };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('web server', () => {
  let web: WebServer | undefined;
  let metrics: Metrics;
  let prefix: string;
  let queue: Queue;
  let worker: Worker | undefined;
  const logger = createLogger('silent');

  beforeEach(() => {
    metrics = createMetrics();
    prefix = uniqueName('web');
    queue = new Queue('push', { connection: { url: REDIS_URL }, prefix });
  });
  afterEach(async () => {
    await web?.close();
    web = undefined;
    await worker?.close();
    worker = undefined;
    await queue.close();
    await dropRedisPrefix(prefix);
  });

  it('answers /healthz without auth and /readyz with each check, 503 naming the failing one', async () => {
    let redisDown = false;
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: 't' },
      metrics,
      readiness: [
        {
          name: 'redis',
          check: async () => {
            if (redisDown) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
          },
        },
        { name: 'source:app', check: async () => {} },
      ],
      logger,
    });
    expect((await get(`${web.url}/healthz`)).status).toBe(200);
    const ready = await get(`${web.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready', checks: { redis: 'ok', 'source:app': 'ok' } });
    redisDown = true;
    const notReady = await get(`${web.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.body).checks).toEqual({ redis: 'unavailable', 'source:app': 'ok' });
  });

  it("keeps the failing check's host and port out of an unauthenticated /readyz and puts them in the log", async () => {
    const lines: string[] = [];
    const captured = createLogger('info', {}, { write: (line: string) => void lines.push(line) });
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: 't' },
      metrics,
      readiness: [
        {
          name: 'redis',
          check: async () => {
            throw new Error('connect ECONNREFUSED 127.0.0.1:5439');
          },
        },
        {
          name: 'source:app',
          check: async () => {
            throw new Error('getaddrinfo ENOTFOUND db.internal');
          },
        },
      ],
      logger: captured,
    });
    const anonymous = await get(`${web.url}/readyz`);
    expect(anonymous.status).toBe(503);
    expect(JSON.parse(anonymous.body)).toEqual({ status: 'not ready', checks: { redis: 'unavailable', 'source:app': 'unavailable' } });
    expect(anonymous.body).not.toContain('5439');
    expect(anonymous.body).not.toContain('db.internal');
    expect((await get(`${web.url}/readyz`, { authorization: 'Bearer wrong' })).body).not.toContain('5439');
    const signedIn = await get(`${web.url}/readyz`, { authorization: 'Bearer t' });
    expect(signedIn.status).toBe(503);
    expect(JSON.parse(signedIn.body).checks).toEqual({
      redis: 'connect ECONNREFUSED 127.0.0.1:5439',
      'source:app': 'getaddrinfo ENOTFOUND db.internal',
    });
    const logged = lines.map((l) => JSON.parse(l) as { check?: string; err?: string });
    expect(logged).toContainEqual(expect.objectContaining({ check: 'redis', err: 'connect ECONNREFUSED 127.0.0.1:5439' }));
    expect(logged).toContainEqual(expect.objectContaining({ check: 'source:app', err: 'getaddrinfo ENOTFOUND db.internal' }));
  });

  it('serves Prometheus metrics after refreshing shared gauges', async () => {
    let collected = 0;
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: {},
      metrics,
      collect: async () => {
        collected += 1;
        metrics.syncLag.set({ source: 'app', table: 'public.orders' }, 12.5);
      },
      readiness: [],
      logger,
    });
    metrics.rowsPushed.inc({ source: 'app', table: 'public.orders' }, 42);
    const res = await get(`${web.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.body).toContain('pushsync_rows_pushed_total{source="app",table="public.orders"} 42');
    expect(res.body).toContain('pushsync_sync_lag_seconds{source="app",table="public.orders"} 12.5');
    for (const name of ['pushsync_rows_extracted_total', 'pushsync_push_duration_seconds', 'pushsync_errors_total'])
      expect(res.body).toContain(`# TYPE ${name}`);
    expect(collected).toBe(1);
  });

  it("serves /metrics only with web.metricsToken when one is set, and not for the dashboard's credentials", async () => {
    const metricsToken = 'scrape-0123456789abcdef';
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: 'dashboard-0123456789' },
      metricsToken,
      metrics,
      readiness: [],
      queues: [queue],
      logger,
    });
    const anonymous = await get(`${web.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).not.toContain('pushsync_');
    expect((await get(`${web.url}/metrics`, { authorization: 'Bearer dashboard-0123456789' })).status).toBe(401);
    expect((await get(`${web.url}/metrics`, { authorization: 'Bearer wrong' })).status).toBe(401);
    const scraper = await get(`${web.url}/metrics`, { authorization: `Bearer ${metricsToken}` });
    expect(scraper.status).toBe(200);
    expect(scraper.body).toContain('# TYPE pushsync_rows_pushed_total counter');
    expect((await get(`${web.url}/healthz`)).status).toBe(200);
  });

  it('guards the dashboard with the token (bearer or basic) and shows a failed job from the dead-letter queue', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const denied = await get(`${web.url}/admin/queues`);
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toBe('Basic realm="pushsync"');
    expect((await get(`${web.url}/admin/queues`, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await get(`${web.url}/admin/queues`, { authorization: 'Bearer sekret' })).status).toBe(200);
    expect((await get(`${web.url}/admin/queues`, { authorization: basic('anyone', 'sekret') })).status).toBe(200);

    await queue.add('app.public.orders', { v: 1, range: 'r' }, { attempts: 1 });
    worker = new Worker(
      'push',
      async (): Promise<void> => {
        throw new UnrecoverableError('[DEST_REJECTED] HTTP 400 for bronze.app_orders');
      },
      { connection: { url: REDIS_URL }, prefix },
    );
    for (let i = 0; i < 100 && (await queue.getFailedCount()) === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const api = await get(`${web.url}/admin/queues/api/queues?activeQueue=push&status=failed&page=1`, { authorization: 'Bearer sekret' });
    expect(api.status).toBe(200);
    const body = JSON.parse(api.body) as { queues: Array<{ name: string; jobs: Array<{ failedReason: string }> }> };
    const push = body.queues.find((q) => q.name === 'push')!;
    expect(push.jobs[0]!.failedReason).toBe('[DEST_REJECTED] HTTP 400 for bronze.app_orders');
  });

  it('accepts a configured user name and password', async () => {
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { username: 'ops', password: 'pw' },
      metrics,
      readiness: [],
      queues: [queue],
      logger,
    });
    expect((await get(`${web.url}/admin/queues`, { authorization: basic('ops', 'pw') })).status).toBe(200);
    expect((await get(`${web.url}/admin/queues`, { authorization: basic('ops', 'nope') })).status).toBe(401);
  });

  it('refuses to serve the dashboard on a non-loopback host without auth', async () => {
    await expect(startWebServer({ host: '0.0.0.0', port: 0, auth: {}, metrics, readiness: [], queues: [queue], logger })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });

  it('refuses to serve the dashboard on a non-loopback host with a token shorter than 16 characters', async () => {
    const started = startWebServer({ host: '0.0.0.0', port: 0, auth: { token: 'a' }, metrics, readiness: [], queues: [queue], logger });
    await expect(started).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(/^web\.auth\.token: must be at least 16/) });
  });

  it('refuses a cross-site text/plain POST to the dashboard API with 403 and adds no job', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const res = await send(
      'POST',
      `${web.url}/admin/queues/api/queues/push/add`,
      {
        authorization: basic('anyone', 'sekret'),
        origin: 'http://evil.example',
        'content-type': 'text/plain',
      },
      '{"name":"x","data":{}}',
    );
    expect(res.status).toBe(403);
    expect(await queue.count()).toBe(0);
  });

  it('refuses a mutating dashboard request with no Origin and no Referer, a cross-site Referer or Origin null', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const auth = { authorization: 'Bearer sekret' };
    const url = `${web.url}/admin/queues/api/queues/push/pause`;
    expect((await send('PUT', url, auth)).status).toBe(403);
    expect((await send('PUT', url, { ...auth, referer: 'http://evil.example/admin/queues' })).status).toBe(403);
    expect((await send('PUT', url, { ...auth, origin: 'null' })).status).toBe(403);
    expect((await send('PUT', url, { ...auth, origin: 'http://127.0.0.1.evil.example' })).status).toBe(403);
    expect(await queue.isPaused()).toBe(false);
  });

  it('accepts a same-origin mutating dashboard request, by Origin or by Referer when Origin is absent', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const auth = { authorization: 'Bearer sekret' };
    const base = `${web.url}/admin/queues/api/queues/push`;
    expect((await send('PUT', `${base}/pause`, { ...auth, origin: web.url })).status).toBe(200);
    expect(await queue.isPaused()).toBe(true);
    expect((await send('PUT', `${base}/resume`, { ...auth, referer: `${web.url}/admin/queues/queue/push` })).status).toBe(200);
    expect(await queue.isPaused()).toBe(false);
  });

  it('sends CSP with frame-ancestors none, X-Frame-Options, nosniff and Referrer-Policy, and never X-Powered-By', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const auth = { authorization: 'Bearer sekret' };
    const responses = {
      page: await get(`${web.url}/admin/queues`, auth),
      api: await get(`${web.url}/admin/queues/api/queues`, auth),
      denied: await get(`${web.url}/admin/queues`),
      healthz: await get(`${web.url}/healthz`),
      metrics: await get(`${web.url}/metrics`),
      missing: await get(`${web.url}/nowhere`),
    };
    for (const [name, res] of Object.entries(responses)) {
      expect({ name, poweredBy: res.headers['x-powered-by'] }).toEqual({ name, poweredBy: undefined });
      expect({ name, csp: res.headers['content-security-policy'] }).toEqual({ name, csp: expect.stringContaining("frame-ancestors 'none'") });
      expect({ name, xfo: res.headers['x-frame-options'] }).toEqual({ name, xfo: 'DENY' });
      expect({ name, nosniff: res.headers['x-content-type-options'] }).toEqual({ name, nosniff: 'nosniff' });
      expect({ name, referrer: res.headers['referrer-policy'] }).toEqual({ name, referrer: 'same-origin' });
    }
    expect(responses.page.status).toBe(200);
    expect(responses.page.headers['content-security-policy']).toContain("script-src 'self'");
  });

  it("serves every script and stylesheet of the dashboard page from its own origin, as the page's CSP allows", async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const auth = { authorization: 'Bearer sekret' };
    const page = await get(`${web.url}/admin/queues`, auth);
    const csp = String(page.headers['content-security-policy']);
    const directive = (name: string): string[] =>
      csp
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .find(([n]) => n === name)
        ?.slice(1) ?? [];
    const base = new URL(/<base href="([^"]+)"/.exec(page.body)![1]!, web.url);
    const scripts = [...page.body.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)].map((m) => new URL(m[1]!, base));
    const styles = [...page.body.matchAll(/<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"|<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g)].map(
      (m) => new URL((m[1] ?? m[2])!, base),
    );
    expect(scripts.length).toBeGreaterThan(0);
    expect(styles.length).toBeGreaterThan(0);
    expect(directive('script-src')).toEqual(["'self'"]);
    for (const url of scripts) {
      expect(url.origin).toBe(web.url);
      const res = await get(url.href, auth);
      expect({ url: url.pathname, status: res.status, type: res.headers['content-type'] }).toEqual({
        url: url.pathname,
        status: 200,
        type: expect.stringContaining('javascript'),
      });
    }
    for (const url of styles.filter((u) => u.origin === web!.url)) {
      const res = await get(url.href, auth);
      expect({ url: url.pathname, status: res.status, type: res.headers['content-type'] }).toEqual({
        url: url.pathname,
        status: 200,
        type: expect.stringContaining('text/css'),
      });
    }
    expect(directive('style-src')).toContain("'self'");
    // The page has style attributes and a <style> element, and the UI adds <style> elements at run time.
    expect(page.body).toMatch(/<style>|style="/);
    expect(directive('style-src')).toContain("'unsafe-inline'");
    expect(directive('connect-src')).toContain("'self'");
  });

  it('serves a read-only dashboard when asked: Bull Board shows no controls and changing requests get 403', async () => {
    web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: { token: 'sekret' },
      readOnly: true,
      metrics,
      readiness: [],
      queues: [queue],
      logger,
    });
    const job = await queue.add('app.public.orders', { v: 1 });
    const own = { authorization: 'Bearer sekret', origin: web.url, 'content-type': 'application/json' };
    const api = await get(`${web.url}/admin/queues/api/queues?activeQueue=push&status=waiting&page=1`, own);
    expect(api.status).toBe(200);
    const push = (JSON.parse(api.body) as { queues: Array<{ name: string; readOnlyMode: boolean; allowRetries: boolean }> }).queues.find(
      (q) => q.name === 'push',
    );
    expect(push).toMatchObject({ readOnlyMode: true, allowRetries: false });
    const base = `${web.url}/admin/queues/api/queues`;
    for (const [method, url] of [
      ['PUT', `${base}/push/pause`],
      ['PUT', `${base}/pause`],
      ['POST', `${base}/push/add`],
      ['PUT', `${base}/push/${job.id}/clean`],
      ['PUT', `${base}/push/${job.id}/promote`],
      ['PUT', `${base}/push/retry/failed`],
      ['PUT', `${base}/push/clean/waiting`],
      ['PATCH', `${base}/push/${job.id}/update-data`],
    ] as const) {
      const res = await send(method, url, own, '{"name":"x","data":{}}');
      expect({ method, url, status: res.status }).toEqual({ method, url, status: 403 });
    }
    expect(await queue.isPaused()).toBe(false);
    expect(await queue.count()).toBe(1);
  });

  it('never lets the dashboard edit job data or retry a completed job', async () => {
    web = await startWebServer({ host: '127.0.0.1', port: 0, auth: { token: 'sekret' }, metrics, readiness: [], queues: [queue], logger });
    const job = await queue.add('app.public.orders', { v: 1, range: 'r' });
    const own = { authorization: 'Bearer sekret', origin: web.url, 'content-type': 'application/json' };
    const edit = await send('PATCH', `${web.url}/admin/queues/api/queues/push/${job.id}/Update-Data/`, own, '{"jobData":{"v":1,"range":"other"}}');
    expect(edit.status).toBe(403);
    expect((await queue.getJob(job.id!))!.data).toEqual({ v: 1, range: 'r' });
    // Bull Board's API would retry a completed job whatever the UI shows: refused, one by one and all at once.
    const done = await queue.add('app.public.orders', { v: 1, range: 'done' });
    worker = new Worker('push', async () => 'ok', { connection: { url: REDIS_URL }, prefix });
    await new Promise<void>((resolve) => worker!.on('completed', (j) => j.id === done.id && resolve()));
    await worker.close();
    const retryOne = await send('PUT', `${web.url}/admin/queues/api/queues/push/${done.id}/retry`, own);
    expect(retryOne.status).toBe(403);
    expect(retryOne.body).toContain('a completed job cannot be retried');
    expect((await send('PUT', `${web.url}/admin/queues/api/queues/push/retry/completed`, own)).status).toBe(403);
    expect(await (await queue.getJob(done.id!))!.getState()).toBe('completed');
    // "Duplicate" and "Add job" post a hand-made job: refused too.
    const add = await send('POST', `${web.url}/admin/queues/api/queues/push/add`, own, '{"name":"app.public.orders","data":{"v":1,"range":"r"}}');
    expect(add.status).toBe(403);
    expect(await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).toHaveLength(2);
    const api = await get(`${web.url}/admin/queues/api/queues?activeQueue=push&status=waiting&page=1`, own);
    const push = (JSON.parse(api.body) as { queues: Array<{ name: string; allowRetries: boolean; allowCompletedRetries: boolean }> }).queues.find(
      (q) => q.name === 'push',
    );
    expect(push).toMatchObject({ allowRetries: true, allowCompletedRetries: false });
  });

  it('fails to start with CONFIG_INVALID naming host:port and web.port when the port is taken', async () => {
    const taken = await takenPort();
    try {
      const started = startWebServer({ host: '127.0.0.1', port: taken.port, auth: {}, metrics, readiness: [], queues: [queue], logger });
      await expect(started).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining(`127.0.0.1:${taken.port}`) });
      await expect(started).rejects.toThrow(/web\.port/);
    } finally {
      await taken.release();
    }
  });
});

describe('startRuntime with the web role', () => {
  it('starts no worker when the web port is taken', async () => {
    const prefix = uniqueName('web');
    const taken = await takenPort();
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { apiKey: 'k', url: 'http://127.0.0.1:9/v2/stream' },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: 'public.orders', watermark: 'updated_at' }] }],
        web: { port: taken.port },
      },
      {},
    );
    const ctx = createPipeline(config, createLogger('silent'));
    try {
      await expect(startRuntime(ctx, { roles: ['extract', 'push', 'web'] })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
      expect(await ctx.pushQueue.getWorkers()).toEqual([]);
      expect(await ctx.extractQueue.getWorkers()).toEqual([]);
    } finally {
      await taken.release();
      await Promise.all([ctx.extractQueue.close(), ctx.pushQueue.close()]);
      await Promise.all([...ctx.sources.values()].map((s) => s.close()));
      await ctx.destination.close();
      await ctx.redis.quit();
      await dropRedisPrefix(prefix);
    }
  });
});

describe('failed jobs in the dashboard', () => {
  it('show the reason as [CODE] message with what to do, no JavaScript stack, and the stack goes to the log', async () => {
    const prefix = uniqueName('web');
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { apiKey: 'k', url: 'http://127.0.0.1:9/v2/stream' },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: 'public.orders', watermark: 'updated_at' }] }],
      },
      {},
    );
    const lines: string[] = [];
    const ctx = createPipeline(config, createLogger('info', {}, { write: (line: string) => void lines.push(line) }));
    const workers = [startPushWorker(ctx), startExtractWorker(ctx)];
    const web = await startWebServer({
      host: '127.0.0.1',
      port: 0,
      auth: {},
      metrics: createMetrics(),
      readiness: [],
      queues: [ctx.extractQueue, ctx.pushQueue],
      logger: ctx.logger,
    });
    try {
      // A push job for a table no longer configured (caught in the worker) and an extract job with a malformed
      // payload (thrown before the worker's own error handling).
      const range = { phase: 'pk', lo: null, hi: { wm: null, pk: ['1'] } };
      await ctx.pushQueue.add(
        'app.public.gone',
        { v: 1, source: 'app', table: 'public.gone', target: 'bronze.app_gone', rows: 1, cutAt: new Date().toISOString(), range },
        { attempts: 1 },
      );
      await ctx.extractQueue.add('app.public.orders', { v: 2 }, { attempts: 1 });
      for (let i = 0; i < 200 && (await ctx.pushQueue.getFailedCount()) + (await ctx.extractQueue.getFailedCount()) < 2; i++)
        await new Promise((r) => setTimeout(r, 50));
      const failed = async (queue: string): Promise<{ failedReason: string; stacktrace: string[] }> => {
        const res = await get(`${web.url}/admin/queues/api/queues?activeQueue=${queue}&status=failed&page=1`);
        const body = JSON.parse(res.body) as { queues: Array<{ name: string; jobs: Array<{ failedReason: string; stacktrace: string[] }> }> };
        return body.queues.find((q) => q.name === queue)!.jobs[0]!;
      };
      const push = await failed('push');
      expect(push.failedReason).toMatch(/^\[JOB_INVALID\] job names app\.public\.gone, which is not in the configuration — what to do: \S/);
      // The dashboard's Error tab shows the stacktrace: the same line, what to do included.
      expect(push.stacktrace).toEqual([push.failedReason]);
      const extract = await failed('extract');
      expect(extract.failedReason).toMatch(/^\[JOB_INVALID\] extract job payload invalid: .* — what to do: \S/s);
      expect(extract.stacktrace.join('\n')).not.toMatch(/^\s+at /m);
      expect(extract.stacktrace).toHaveLength(1);
      const logged = lines.map((l) => JSON.parse(l) as { code?: string; err?: string; stack?: string });
      expect(logged).toContainEqual(
        expect.objectContaining({ code: 'JOB_INVALID', err: expect.stringContaining('public.gone'), stack: expect.stringMatching(/\n\s+at /) }),
      );
      expect(logged).toContainEqual(
        expect.objectContaining({
          code: 'JOB_INVALID',
          err: expect.stringContaining('extract job payload invalid'),
          stack: expect.stringMatching(/\n\s+at /),
        }),
      );
    } finally {
      await web.close();
      await Promise.all(workers.map((w) => w.close()));
      await Promise.all([ctx.extractQueue.close(), ctx.pushQueue.close()]);
      await Promise.all([...ctx.sources.values()].map((s) => s.close()));
      await ctx.destination.close();
      await ctx.redis.quit();
      await dropRedisPrefix(prefix);
    }
  });
});
