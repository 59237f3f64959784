import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { parseConfig, type Config } from '../src/config.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { syncPass } from './helpers/pass.js';
import { eventually } from './helpers/wait.js';

/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core): a push job the destination
 * refused sits in the dead-letter queue; the test looks at it as an operator would, read-only first, then retries
 * it from the page and sees the destination receive it. Screenshots go to test-results/screenshots/.
 */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = new URL('../test-results/screenshots/', import.meta.url).pathname;
const TOKEN = 'dashboard-token-0123456789';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe.runIf(existsSync(CHROMIUM))('the dashboard in a browser', () => {
  const prefix = uniqueName('ui');
  const profiles: string[] = [];
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let config: (readOnly: boolean) => Config;
  let runtime: Runtime | undefined;

  async function browser(credentials: boolean): Promise<BrowserContext> {
    // A fresh profile each time: nothing cached from an earlier run, no stored credentials.
    const profile = mkdtempSync(join(tmpdir(), 'pushsync-chromium-'));
    profiles.push(profile);
    return chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1400, height: 900 },
      ...(credentials ? { httpCredentials: { username: 'operator', password: TOKEN } } : {}),
    });
  }

  async function serve(readOnly: boolean): Promise<string> {
    const ctx = createPipeline(config(readOnly), createLogger('silent'));
    runtime = await startRuntime(ctx, { roles: readOnly ? ['web'] : ['push', 'web'], httpPort: 0 });
    return runtime.web!.url;
  }

  /**
   * The job card's icon-only controls by the tooltip a person sees on hovering them (Bull Board gives them no
   * accessible name), with the buttons that carry a text label.
   */
  async function controls(page: Page): Promise<Map<string, Locator>> {
    const found = new Map<string, Locator>();
    const labelled = page.locator('main button:not([role="tab"])');
    for (let i = 0; i < (await labelled.count()); i++) {
      const text = (await labelled.nth(i).innerText()).trim();
      if (text) found.set(text, labelled.nth(i));
    }
    const icons = page.locator('main [data-base-ui-tooltip-trigger] button');
    const tip = page.locator('[role="presentation"][data-side] [data-open]');
    for (let i = 0; i < (await icons.count()); i++) {
      await icons.nth(i).hover();
      await tip.first().waitFor({ timeout: 5000 });
      found.set((await tip.first().innerText()).trim(), icons.nth(i));
      await page.mouse.move(0, 0);
      await tip
        .first()
        .waitFor({ state: 'detached', timeout: 5000 })
        .catch(() => undefined);
    }
    return found;
  }

  async function failedJobs(page: Page, url: string): Promise<void> {
    await page.goto(`${url}/admin/queues/queue/push?status=failed`);
    await page.getByText('[DEST_REJECTED]').first().waitFor({ timeout: 20_000 });
  }

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    db = await createSchema();
    await db.client.query(`CREATE TABLE orders (id int PRIMARY KEY, total numeric, updated_at timestamptz NOT NULL DEFAULT now());
                           INSERT INTO orders (id, total) VALUES (1, 10.5), (2, 20), (3, 30.25)`);
    receiver = await startReceiver('k');
    config = (readOnly) =>
      parseConfig(
        {
          redis: { url: REDIS_URL, prefix },
          destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
          sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: `${db.schema}.orders`, watermark: 'updated_at' }] }],
          web: { host: '127.0.0.1', readOnly, auth: { token: TOKEN } },
        },
        {},
      );
    // The destination refuses the batch for good: it lands in the dead-letter queue.
    receiver.setDefault({ kind: 'status', status: 400, body: { error: 'column total: expected a string' } });
    const pass = await syncPass(config(false));
    expect(pass.failed).toHaveLength(1);
    receiver.setDefault({ kind: 'ok' });
  }, 120_000);

  afterAll(async () => {
    await runtime?.stop();
    await receiver?.close();
    await db?.drop();
    await dropRedisPrefix(prefix);
    for (const p of profiles) rmSync(p, { recursive: true, force: true });
  });

  it('refuses a browser without credentials', async () => {
    const url = await serve(false);
    const context = await browser(false);
    try {
      const page = await context.newPage();
      const statuses: number[] = [];
      page.on('response', (r) => void statuses.push(r.status()));
      // With no credentials to give, Chromium ends the navigation on the 401's Basic challenge.
      await expect(page.goto(`${url}/admin/queues`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
      expect(statuses).toEqual([401]);
      const api = await context.request.get(`${url}/admin/queues/api/queues?activeQueue=push&status=failed&page=1`);
      expect(api.status()).toBe(401);
      expect(await api.text()).not.toContain('DEST_REJECTED');
    } finally {
      await context.close();
      await runtime?.stop();
      runtime = undefined;
    }
  }, 60_000);

  it('in read-only mode shows the failed job and its reason but no button that changes anything', async () => {
    const url = await serve(true);
    const context = await browser(true);
    try {
      const page = await context.newPage();
      await failedJobs(page, url);
      const text = await page.locator('body').innerText();
      expect(text).toMatch(/\[DEST_REJECTED\] [^\n]+/);
      expect(text).toContain('what to do:');
      const found = [...(await controls(page)).keys()];
      console.log(`read-only dashboard controls of a failed push job: ${found.join(', ') || 'none'}`);
      // Only what informs is left: this server runs the web role alone, so Bull Board says no worker consumes the queue.
      expect(found.filter((label) => !['No workers', 'Nothing is consuming this queue'].includes(label))).toEqual([]);
      await page.screenshot({ path: `${SCREENSHOTS}01-read-only-failed-job.png`, fullPage: true });
    } finally {
      await context.close();
      await runtime?.stop();
      runtime = undefined;
    }
  }, 60_000);

  it('shows the failed job with [CODE] message and no stack trace, and its Retry re-sends it to the destination', async () => {
    const url = await serve(false);
    const context = await browser(true);
    try {
      const page = await context.newPage();
      await failedJobs(page, url);
      const text = await page.locator('body').innerText();
      expect(text).toMatch(/\[DEST_REJECTED\] [^\n]+/);
      expect(text).not.toMatch(/^\s+at \S+ \(/m);
      expect(text).not.toMatch(/node_modules|\/src\/|\.ts:\d+/);
      await page.screenshot({ path: `${SCREENSHOTS}02-failed-job.png`, fullPage: true });
      expect(text).toContain('what to do:');
      expect(receiver.stored.size).toBe(0);
      const found = await controls(page);
      console.log(`dashboard controls of a failed push job: ${[...found.keys()].join(', ')}`);
      expect(found.has('Retry')).toBe(true);
      await found.get('Retry')!.click();
      // Bull Board asks first.
      await page.getByText('Are you sure that you want to retry this job?').waitFor({ timeout: 10_000 });
      await page.screenshot({ path: `${SCREENSHOTS}03-retry-confirmation.png` });
      await page.getByRole('button', { name: 'Confirm', exact: true }).click();
      await eventually(() => (receiver.stored.get('bronze.app_orders')?.length ?? 0) === 3, 50, 20_000);
      await page.goto(`${url}/admin/queues/queue/push?status=completed`);
      await page.waitForLoadState('networkidle');
      await page.screenshot({ path: `${SCREENSHOTS}04-after-retry-completed.png`, fullPage: true });
      expect(
        receiver.stored
          .get('bronze.app_orders')!
          .map((r) => (JSON.parse(r) as { id: number }).id)
          .sort(),
      ).toEqual([1, 2, 3]);
      // The delivered job cannot be sent again from the page: should Bull Board show a retry, the server refuses it.
      const done = await controls(page);
      console.log(`dashboard controls of a completed push job: ${[...done.keys()].join(', ')}`);
      if (done.has('Retry')) {
        const refused = page.waitForResponse((r) => r.request().method() === 'PUT' && /\/retry\/?$/.test(r.url()));
        await done.get('Retry')!.click();
        await page.getByRole('button', { name: 'Confirm', exact: true }).click();
        expect((await refused).status()).toBe(403);
      }
      await page.waitForTimeout(1000);
      expect(receiver.stored.get('bronze.app_orders')).toHaveLength(3);
    } finally {
      await context.close();
    }
  }, 90_000);
});
