import { Queue, type Worker } from 'bullmq';
import type { Config, SourceConfig } from './config.js';
import { allTables, maskingKeyOf, resolved, tableSpec, unresolvedError } from './config.js';
import { AppError } from './core/errors.js';
import type { ChangeSource, Destination, EventStream, Source } from './core/ports.js';
import { StreamApiClient } from './destinations/stream-api.js';
import { CircuitDestination } from './core/destination-circuit.js';
import type { WebServer } from './http/server.js';
import type { IngestEndpoint } from './http/ingest.js';
import { DebeziumIngest } from './queue/ingest.js';
import { IngestBuffer, ingestKeys } from './queue/ingest-buffer.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, initialiseTableSeries, type Metrics } from './observability/metrics.js';
import type { PipelineContext } from './queue/context.js';
import { startExtractWorker } from './queue/extract-worker.js';
import { EXTRACT_QUEUE, PUSH_QUEUE } from './queue/jobs.js';
import { PendingSet } from './queue/pending.js';
import { startPushWorker } from './queue/push-worker.js';
import {
  Keys,
  closeRedis,
  connectionProblem,
  createRedis,
  describeRedis,
  logOncePerState,
  redisReady,
  replicaWait,
  watchConnection,
  type RedisClient,
} from './queue/redis.js';
import { syncSchedules, watchSchedules } from './queue/scheduler.js';
import { isAppError } from './core/errors.js';
import { OutgoingSource } from './core/outgoing.js';
import { transformLoader } from './transforms.js';
import { pipelineStatus } from './queue/status.js';
import { pauseTable, resumeTable, tableByName } from './queue/table-admin.js';
import { PostgresSource } from './sources/postgres.js';
import { PostgresCdc } from './sources/postgres-cdc.js';
import { MysqlSource } from './sources/mysql.js';
import { MysqlBinlog, defaultServerId, type BinlogStateStore } from './sources/mysql-cdc.js';
import { DebeziumRedisStreams, missingStreams } from './sources/debezium-redis.js';
import { startStreamIngest } from './queue/stream-ingest.js';

/** Wiring only: build adapters from config, start the requested roles, stop them in reverse order. */
export const ROLES = ['scheduler', 'extract', 'push', 'web', 'ingest'] as const;
export type Role = (typeof ROLES)[number];

/**
 * A command that does not need a value may leave its `${VAR}` unset (see CONFIG_NEEDS): the adapter built from it
 * then fails with the config error on first use instead of at load.
 *
 * Every source sits behind the outgoing rules (masks pushsync computes, sealed keys): see core/outgoing.ts.
 */
export function createSources(config: Config): Map<string, Source> {
  const maskingKey = config.masking ? Buffer.from(config.masking.key, 'utf8') : null;
  return new Map(
    config.sources.map((s, i): [string, Source] => {
      const error = unresolvedError(s.url, `sources[${i}].url`);
      if (error) {
        const fail = (): Promise<never> => Promise.reject(error);
        return [s.name, { name: s.name, table: fail, warnings: fail, ping: fail, close: () => Promise.resolve() }];
      }
      const options = { name: s.name, url: s.url, poolSize: s.poolSize, statementTimeoutMs: s.statementTimeout };
      const source = s.kind === 'mysql' ? new MysqlSource(options) : new PostgresSource({ ...options, backfillRead: s.backfillRead });
      return [s.name, new OutgoingSource(source, { maskingKey })];
    }),
  );
}

/** One change source per source with tables in mode cdc. A binlog reader keeps its position in Redis. */
/** `redis` keeps a binlog reader's position; without it (a command that reads no stream) the position is unknown. */
export function createChangeSources(config: Config, redis?: RedisClient): Map<string, ChangeSource> {
  return new Map(
    config.sources
      .filter((s) => s.tables.some((t) => t.mode === 'cdc'))
      .map((s): [string, ChangeSource] => {
        const error = unresolvedError(s.url, `sources[${config.sources.indexOf(s)}].url`);
        if (error) return [s.name, unavailableChangeSource(s.name, s.cdc.slot, error)];
        return [
          s.name,
          s.kind === 'mysql'
            ? binlogSource(config, s, redis)
            : new PostgresCdc(s.name, s.url, s.cdc.publication, s.cdc.slot, {
                statementTimeoutMs: s.statementTimeout,
                receiveTimeoutMs: s.cdc.receiveTimeout,
              }),
        ];
      }),
  );
}

/** A change source whose URL a command left unresolved: every use fails with the config error. */
function unavailableChangeSource(name: string, slot: string, error: Error): ChangeSource {
  const fail = (): Promise<never> => Promise.reject(error);
  return {
    name,
    stream: `replication slot ${slot}`,
    prerequisites: fail,
    keyProblems: fail,
    prepare: fail,
    status: fail,
    create: fail,
    currentPosition: fail,
    comparePositions: () => {
      throw error;
    },
    confirmedPast: () => {
      throw error;
    },
    snapshotOrdering: () => {
      throw error;
    },
    open: fail,
    drop: fail,
    close: () => Promise.resolve(),
  };
}

/** KEYS[1]: a hash; ARGV[1]: a prefix. Deletes the hash's fields whose names do not start with the prefix. */
const CLEAR_BUT = `
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #ARGV[1]) ~= ARGV[1] then redis.call('HDEL', KEYS[1], f) end
end
return 0`;

function binlogSource(config: Config, s: SourceConfig, redis: RedisClient | undefined): ChangeSource {
  const key = `${config.redis.prefix}:binlog:${s.name}:${s.cdc.slot}`;
  const none = (): Promise<never> => Promise.reject(new AppError('INTERNAL', `${s.name}: this command keeps no binlog position`));
  const store: BinlogStateStore = redis
    ? {
        load: () => redis.hgetall(key),
        // With the reader's lease: the key shares the lease's slot in a cluster (the prefix is a hash tag there).
        save: async (fields, lease) => void (await (lease ? lease.hsetWhileHeld(key, fields) : redis.hset(key, fields))),
        clear: async (keep) => void (await redis.eval(CLEAR_BUT, 1, key, keep)),
      }
    : { load: none, save: none, clear: none };
  return new MysqlBinlog({
    name: s.name,
    url: s.url,
    stream: s.cdc.slot,
    serverId: s.cdc.serverId ?? defaultServerId(`${s.name}/${s.cdc.slot}`),
    store,
    receiveTimeoutMs: s.cdc.receiveTimeout,
  });
}

/** The event streams of Debezium sources read from Debezium Server's Redis sink, by source name. */
export function createEventStreams(config: Config): Map<string, EventStream> {
  return new Map(
    config.debezium
      .filter((s) => s.redisStreams)
      .map((s) => {
        const r = s.redisStreams!;
        return [
          s.name,
          new DebeziumRedisStreams({
            url: r.url,
            streams: r.streams,
            group: r.group,
            batch: r.batch,
            claimIdleMs: r.claimIdle,
            nullValue: r.nullValue,
          }) as EventStream,
        ];
      }),
  );
}

export function createDestination(config: Config): Destination {
  const d = config.destination;
  const error = unresolvedError(d.apiKey, 'destination.apiKey');
  if (error) return { send: () => Promise.reject(error), close: () => Promise.resolve() };
  const client = new StreamApiClient({
    url: d.url,
    apiKey: d.apiKey,
    timeoutMs: d.timeout,
    compression: d.compression,
    gzipLevel: d.gzipLevel,
    wait: d.wait,
    tags: d.tags,
    connections: Math.max(2, d.concurrency),
  });
  return new CircuitDestination(client, { probeEveryMs: d.backoff.base });
}

/**
 * Opens every table that has rules of what leaves (columns, masks, where, query, transform) and loads its transform,
 * so a rule that does not fit the table as it is now is refused at start, as a configuration error. Anything else
 * (a source that does not answer yet) is left to the workers, which retry.
 */
export async function checkRulesAtStart(ctx: PipelineContext): Promise<void> {
  for (const t of allTables(ctx.config)) {
    if (t.columns === undefined && t.masks === undefined && t.where === undefined && t.query === undefined && t.transform === undefined) continue;
    try {
      if (t.transform !== undefined) await ctx.transforms(t.transform);
      await ctx.sources.get(t.source)!.table(tableSpec(t));
    } catch (err) {
      if (isAppError(err) && err.code === 'CONFIG_INVALID') throw err;
      ctx.logger.warn(
        { source: t.source, table: t.name, err: (err as Error).message },
        'could not check the rules of a table at start; its runs will',
      );
    }
  }
}

export interface PipelineOverrides {
  destination?: Destination;
  metrics?: Metrics;
  /**
   * Commands without workers (status, dlq, ...): Redis gives up after `redis.connectTimeout` without a connection
   * and what waits fails, instead of waiting for it forever. @defaultValue false
   */
  bounded?: boolean;
}

export function createPipeline(config: Config, logger: Logger, overrides: PipelineOverrides = {}): PipelineContext {
  const timeout = config.redis.connectTimeout;
  const redis = createRedis(config.redis, { connectTimeoutMs: timeout, ...(overrides.bounded ? { giveUpAfterMs: timeout } : {}) });
  watchConnection(redis, describeRedis(config.redis), logger);
  const queueOpts = { connection: redis, prefix: config.redis.prefix };
  const extractQueue = new Queue(EXTRACT_QUEUE, queueOpts);
  const pushQueue = new Queue(PUSH_QUEUE, queueOpts);
  for (const q of [extractQueue, pushQueue]) q.on('error', logOncePerState(redis, logger, { queue: q.name }, 'queue error'));
  return {
    config,
    redis,
    keys: new Keys(config.redis.prefix),
    sources: createSources(config),
    changeSources: createChangeSources(config, redis),
    destination: overrides.destination ?? createDestination(config),
    metrics: overrides.metrics ?? initialisedMetrics(config),
    logger,
    extractQueue,
    pushQueue,
    transforms: transformLoader(),
  };
}

function initialisedMetrics(config: Config): Metrics {
  const metrics = createMetrics();
  initialiseTableSeries(metrics, allTables(config));
  return metrics;
}

/** Closes what createPipeline opened, for commands that start no runtime; errors there change nothing about their outcome. */
export async function closePipeline(ctx: PipelineContext): Promise<void> {
  await Promise.all([
    closeRedis(ctx.redis),
    ctx.extractQueue.close(),
    ctx.pushQueue.close(),
    ...[...ctx.sources.values(), ...ctx.changeSources.values()].map((s) => s.close()),
    ctx.destination.close(),
  ]).catch(() => {});
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
    const [count, oldest, caughtUp, paused] = await Promise.all([
      pending.count(),
      pending.oldest(),
      ctx.redis.hget(ctx.keys.state(t.source, t.name), 'caughtUpAt'),
      ctx.redis.exists(ctx.keys.paused(t.source, t.name)),
    ]);
    ctx.metrics.pendingBatches.set(labels, count);
    ctx.metrics.tablePaused.set(labels, paused);
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

function resolvedAuth(config: Config): Config['web']['auth'] {
  const { token, username, password } = config.web.auth;
  return {
    ...(token !== undefined ? { token: resolved(token, 'web.auth.token') } : {}),
    ...(username !== undefined ? { username: resolved(username, 'web.auth.username') } : {}),
    ...(password !== undefined ? { password: resolved(password, 'web.auth.password') } : {}),
  };
}

/**
 * Workers finish their active jobs, for at most `timeoutMs`; then they are closed at once and their jobs handed
 * back: each job's lease lapses and another worker resumes it from its saved progress (at-least-once).
 */
async function closeWorkers(workers: Worker[], timeoutMs: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = Promise.all(workers.map((w) => w.close())).then(() => true);
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  const finished = await Promise.race([closed, timedOut]);
  clearTimeout(timer);
  if (finished) return;
  logger.warn(
    { timeoutMs },
    'in-flight jobs did not finish within shutdown.timeout; handing them back (another worker resumes them once their lease lapses)',
  );
  await Promise.all(workers.map((w) => w.close(true)));
}

/** The Debezium sources that take events over HTTP, by name. */
function ingestEndpoints(ctx: PipelineContext): Map<string, IngestEndpoint> {
  return new Map(
    ctx.config.debezium
      .filter((s) => s.http)
      .map((s) => [
        s.name,
        {
          ingest: new DebeziumIngest(
            ctx.redis,
            ctx.config.redis.prefix,
            s,
            ctx.metrics,
            ctx.logger,
            replicaWait(ctx.config.redis),
            maskingKeyOf(ctx.config),
          ),
          token: s.http!.token,
        },
      ]),
  );
}

export interface Runtime {
  ctx: PipelineContext;
  workers: Worker[];
  web?: WebServer;
  /** False when stop came before the roles started (while waiting for Redis). */
  started: boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  roles: readonly Role[];
  /** Serve health and metrics even without the web role (each worker process can be probed and scraped). */
  httpPort?: number;
  /**
   * Receives the runtime's stop as soon as there is something to stop: before start waits for Redis, so a signal
   * or a fatal error during that wait still stops in order.
   */
  onStoppable?: (stop: () => Promise<void>) => void;
}

/**
 * Starts the roles. Health, readiness and metrics are served first; then it waits for Redis (as long as it takes:
 * `/readyz` answers 503 naming redis meanwhile), then registers schedules and starts the workers.
 */
export async function startRuntime(ctx: PipelineContext, options: StartOptions): Promise<Runtime> {
  const roles = new Set(options.roles);
  const cleanups: Array<() => Promise<unknown>> = [];
  const workers: Worker[] = [];
  const runtime: Runtime = { ctx, workers, started: false, stop: () => stop() };
  let stopped: Promise<void> | undefined;
  let onStop = (): void => undefined;
  const stopRequested = new Promise<void>((resolve) => (onStop = resolve));
  const stop = (): Promise<void> => {
    onStop();
    stopped ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        try {
          await cleanup();
        } catch (err) {
          ctx.logger.warn({ err: (err as Error).message, stack: (err as Error).stack }, 'error during shutdown');
        }
      }
      ctx.logger.info('pushsync stopped');
    })();
    return stopped;
  };
  // Workers stop first (they finish or hand back their current job), then what they used.
  cleanups.push(() => closeRedis(ctx.redis));
  cleanups.push(() => ctx.destination.close());
  cleanups.push(() => Promise.all([...ctx.sources.values(), ...ctx.changeSources.values()].map((s) => s.close())));
  cleanups.push(() => Promise.all([ctx.extractQueue.close(), ctx.pushQueue.close()]));
  cleanups.push(() => closeWorkers(workers, ctx.config.shutdown.timeout, ctx.logger));
  options.onStoppable?.(stop);
  if (roles.has('web') || options.httpPort !== undefined) {
    // Loaded on demand: a one-shot run (cron, Lambda) then never loads express and the dashboard.
    const { startWebServer } = await import('./http/server.js');
    const web = await startWebServer({
      host: ctx.config.web.host,
      port: options.httpPort ?? ctx.config.web.port,
      auth: resolvedAuth(ctx.config),
      ...(ctx.config.web.metricsToken !== undefined ? { metricsToken: resolved(ctx.config.web.metricsToken, 'web.metricsToken') } : {}),
      metrics: ctx.metrics,
      status: () => pipelineStatus(ctx),
      tableControl: {
        pause: (name, reason) => pauseTable(ctx, tableByName(ctx.config, name), reason),
        resume: (name) => resumeTable(ctx, tableByName(ctx.config, name)),
      },
      collect: () => {
        const problem = connectionProblem(ctx.redis);
        return problem ? Promise.reject(new Error(`redis ${problem}`)) : collectSharedGauges(ctx);
      },
      readiness: [
        {
          name: 'redis',
          check: async () => {
            const problem = connectionProblem(ctx.redis);
            if (problem) throw new Error(problem);
            await ctx.redis.ping();
          },
        },
        ...[...ctx.sources.values()].map((s) => ({ name: `source:${s.name}`, check: () => s.ping() })),
        // The Redis a Debezium source's streams are read from, when this process reads them (role ingest).
        ...(roles.has('ingest') ? ctx.config.debezium : [])
          .filter((s) => s.redisStreams)
          .map((s) => ({
            name: `source:${s.name}:redis-streams`,
            check: async () => void (await missingStreams(s.redisStreams!.url, [], Math.min(ctx.config.redis.connectTimeout, 4000))),
          })),
        {
          name: 'roles',
          check: async () => {
            if (!runtime.started) throw new Error(connectionProblem(ctx.redis) ? 'not started: waiting for Redis' : 'starting');
          },
        },
      ],
      queues: roles.has('web') ? [ctx.extractQueue, ctx.pushQueue] : [],
      readOnly: ctx.config.web.readOnly,
      ingest: roles.has('ingest') ? ingestEndpoints(ctx) : undefined,
      logger: ctx.logger,
    });
    runtime.web = web;
    cleanups.push(() => web.close());
  }
  try {
    await Promise.race([redisReady(ctx.redis, describeRedis(ctx.config.redis)), stopRequested]);
  } catch (err) {
    await stop();
    throw err;
  }
  if (stopped) return runtime;
  const policy = await unsafeEvictionPolicy(ctx);
  if (policy) {
    ctx.logger.warn(
      { policy },
      `Redis maxmemory-policy is ${policy}: Redis may evict cursors or jobs under memory pressure; set maxmemory-policy noeviction`,
    );
  }
  if (roles.has('scheduler')) {
    await syncSchedules(ctx.extractQueue, ctx.config, ctx.logger);
    const unwatch = watchSchedules(ctx.extractQueue, ctx.config, ctx.logger, ctx.metrics);
    cleanups.push(async () => unwatch());
  }
  // Workers start after the web server, so a taken port fails the start before any worker has taken a job.
  if (roles.has('extract')) workers.push(startExtractWorker(ctx));
  if (roles.has('push')) workers.push(startPushWorker(ctx));
  if (roles.has('ingest')) {
    const readers = [...createEventStreams(ctx.config)].map(([name, stream]) =>
      startStreamIngest(
        ctx,
        ctx.config.debezium.find((s) => s.name === name)!,
        stream,
      ),
    );
    cleanups.push(() => Promise.all(readers.map((r) => r.stop())));
  }
  runtime.started = true;
  return runtime;
}
