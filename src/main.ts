import { Queue, type Worker } from 'bullmq';
import type { Config } from './config.js';
import { allTables } from './config.js';
import type { ChangeSource, Destination, EventStream, Source } from './core/ports.js';
import { StreamApiClient } from './destinations/stream-api.js';
import type { WebServer } from './http/server.js';
import type { IngestEndpoint } from './http/ingest.js';
import { DebeziumIngest } from './queue/ingest.js';
import { IngestBuffer, ingestKeys } from './queue/ingest-buffer.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import type { PipelineContext } from './queue/context.js';
import { startExtractWorker } from './queue/extract-worker.js';
import { EXTRACT_QUEUE, PUSH_QUEUE } from './queue/jobs.js';
import { PendingSet } from './queue/pending.js';
import { startPushWorker } from './queue/push-worker.js';
import { Keys, createRedis } from './queue/redis.js';
import { syncSchedules } from './queue/scheduler.js';
import { PostgresSource } from './sources/postgres.js';
import { PostgresCdc } from './sources/postgres-cdc.js';
import { DebeziumRedisStreams } from './sources/debezium-redis.js';
import { startStreamIngest } from './queue/stream-ingest.js';

/** Wiring only: build adapters from config, start the requested roles, stop them in reverse order. */
export const ROLES = ['scheduler', 'extract', 'push', 'web', 'ingest'] as const;
export type Role = (typeof ROLES)[number];

export function createSources(config: Config): Map<string, Source> {
  return new Map(
    config.sources.map((s) => [
      s.name,
      new PostgresSource({ name: s.name, url: s.url, poolSize: s.poolSize, statementTimeoutMs: s.statementTimeout }) as Source,
    ]),
  );
}

/** One change source per source with tables in mode cdc. */
export function createChangeSources(config: Config): Map<string, ChangeSource> {
  return new Map(
    config.sources
      .filter((s) => s.tables.some((t) => t.mode === 'cdc'))
      .map((s) => [s.name, new PostgresCdc(s.name, s.url, s.cdc.publication, s.cdc.slot) as ChangeSource]),
  );
}

/** The event streams of Debezium sources read from Debezium Server's Redis sink, by source name. */
export function createEventStreams(config: Config): Map<string, EventStream> {
  return new Map(
    config.debezium
      .filter((s) => s.redisStreams)
      .map((s) => {
        const r = s.redisStreams!;
        return [s.name, new DebeziumRedisStreams({ url: r.url, streams: r.streams, group: r.group, batch: r.batch, claimIdleMs: r.claimIdle, nullValue: r.nullValue }) as EventStream];
      }),
  );
}

export function createDestination(config: Config): Destination {
  const d = config.destination;
  return new StreamApiClient({
    url: d.url,
    apiKey: d.apiKey,
    timeoutMs: d.timeout,
    compression: d.compression,
    wait: d.wait,
    tags: d.tags,
    connections: Math.max(2, d.concurrency),
  });
}

export interface PipelineOverrides {
  destination?: Destination;
  metrics?: Metrics;
}

export function createPipeline(config: Config, logger: Logger, overrides: PipelineOverrides = {}): PipelineContext {
  const redis = createRedis(config.redis.url);
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  const queueOpts = { connection: redis, prefix: config.redis.prefix };
  return {
    config,
    redis,
    keys: new Keys(config.redis.prefix),
    sources: createSources(config),
    changeSources: createChangeSources(config),
    destination: overrides.destination ?? createDestination(config),
    metrics: overrides.metrics ?? createMetrics(),
    logger,
    extractQueue: new Queue(EXTRACT_QUEUE, queueOpts),
    pushQueue: new Queue(PUSH_QUEUE, queueOpts),
  };
}

/** Closes what createPipeline opened, for commands that start no runtime. */
export async function closePipeline(ctx: PipelineContext): Promise<void> {
  await Promise.all([
    ctx.extractQueue.close(),
    ctx.pushQueue.close(),
    ...[...ctx.sources.values(), ...ctx.changeSources.values()].map((s) => s.close()),
    ctx.destination.close(),
  ]);
  await ctx.redis.quit();
}

/**
 * Redis must not evict keys: an evicted cursor means re-sending a table from its start, an evicted job means a
 * batch that is never sent. Returns the policy when it is unsafe.
 */
export async function unsafeEvictionPolicy(ctx: PipelineContext): Promise<string | undefined> {
  try {
    const reply = (await ctx.redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    return policy && policy !== 'noeviction' ? policy : undefined;
  } catch {
    return undefined; // managed Redis services often forbid CONFIG; nothing to learn then
  }
}

/** Refreshes the gauges that describe shared state, at scrape time. */
export async function collectSharedGauges(ctx: PipelineContext): Promise<void> {
  const now = Date.now();
  for (const t of allTables(ctx.config)) {
    const labels = { source: t.source, table: t.name };
    const pending = new PendingSet(ctx.redis, ctx.keys.pending(t.source, t.name));
    const [count, oldest, caughtUp] = await Promise.all([pending.count(), pending.oldest(), ctx.redis.hget(ctx.keys.state(t.source, t.name), 'caughtUpAt')]);
    ctx.metrics.pendingBatches.set(labels, count);
    const since = oldest ?? (caughtUp ? Number(caughtUp) : undefined);
    if (since !== undefined) ctx.metrics.syncLag.set(labels, Math.max(0, (now - since) / 1000));
  }
  for (const s of ctx.config.debezium) {
    ctx.metrics.ingestBufferBytes.set({ source: s.name }, await new IngestBuffer(ctx.redis, ingestKeys(ctx.config.redis.prefix, s.name)).bytes());
  }
  for (const q of [ctx.extractQueue, ctx.pushQueue]) {
    const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized');
    for (const [state, n] of Object.entries(counts)) ctx.metrics.queueJobs.set({ queue: q.name, state }, n);
  }
}

/** The Debezium sources that take events over HTTP, by name. */
function ingestEndpoints(ctx: PipelineContext): Map<string, IngestEndpoint> {
  return new Map(
    ctx.config.debezium
      .filter((s) => s.http)
      .map((s) => [s.name, { ingest: new DebeziumIngest(ctx.redis, ctx.config.redis.prefix, s, ctx.metrics, ctx.logger), token: s.http!.token }]),
  );
}

export interface Runtime {
  ctx: PipelineContext;
  workers: Worker[];
  web?: WebServer;
  stop(): Promise<void>;
}

export interface StartOptions {
  roles: readonly Role[];
  /** Serve health and metrics even without the web role (each worker process can be probed and scraped). */
  httpPort?: number;
}

export async function startRuntime(ctx: PipelineContext, options: StartOptions): Promise<Runtime> {
  const roles = new Set(options.roles);
  const cleanups: Array<() => Promise<unknown>> = [];
  const workers: Worker[] = [];
  const policy = await unsafeEvictionPolicy(ctx);
  if (policy) {
    ctx.logger.warn({ policy }, `Redis maxmemory-policy is ${policy}: Redis may evict cursors or jobs under memory pressure; set maxmemory-policy noeviction`);
  }
  if (roles.has('scheduler')) {
    await syncSchedules(ctx.extractQueue, ctx.config, ctx.logger);
  }
  // Workers stop first (they finish or hand back their current job), then what they used.
  cleanups.push(() => ctx.redis.quit().catch(() => undefined));
  cleanups.push(() => ctx.destination.close());
  cleanups.push(() => Promise.all([...ctx.sources.values(), ...ctx.changeSources.values()].map((s) => s.close())));
  cleanups.push(() => Promise.all([ctx.extractQueue.close(), ctx.pushQueue.close()]));
  cleanups.push(() => Promise.all(workers.map((w) => w.close())));
  let web: WebServer | undefined;
  if (roles.has('web') || options.httpPort !== undefined) {
    // Loaded on demand: a one-shot run (cron, Lambda) then never loads express and the dashboard.
    const { startWebServer } = await import('./http/server.js');
    web = await startWebServer({
      host: ctx.config.web.host,
      port: options.httpPort ?? ctx.config.web.port,
      auth: ctx.config.web.auth,
      metrics: ctx.metrics,
      collect: () => collectSharedGauges(ctx),
      readiness: [
        { name: 'redis', check: async () => void (await ctx.redis.ping()) },
        ...[...ctx.sources.values()].map((s) => ({ name: `source:${s.name}`, check: () => s.ping() })),
      ],
      queues: roles.has('web') ? [ctx.extractQueue, ctx.pushQueue] : [],
      readOnly: ctx.config.web.readOnly,
      ingest: roles.has('ingest') ? ingestEndpoints(ctx) : undefined,
      logger: ctx.logger,
    });
    const w = web;
    cleanups.push(() => w.close());
  }
  // Workers start after the web server, so a taken port fails the start before any worker has taken a job.
  if (roles.has('extract')) workers.push(startExtractWorker(ctx));
  if (roles.has('push')) workers.push(startPushWorker(ctx));
  if (roles.has('ingest')) {
    const readers = [...createEventStreams(ctx.config)].map(([name, stream]) => startStreamIngest(ctx, ctx.config.debezium.find((s) => s.name === name)!, stream));
    cleanups.push(() => Promise.all(readers.map((r) => r.stop())));
  }
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (err) {
          ctx.logger.warn({ err: (err as Error).message }, 'error during shutdown');
        }
      }
    })();
    return stopped;
  };
  return { ctx, workers, ...(web ? { web } : {}), stop };
}
