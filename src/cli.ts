#!/usr/bin/env node
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { request } from 'undici';
import {
  CONFIG_NEEDS,
  allTables,
  configJsonSchema,
  loadConfig,
  tableSpec,
  type Config,
  type ConfigNeed,
  type SourceConfig,
  type TableConfig,
} from './config.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, isAppError, toAppError } from './core/errors.js';
import { parseDuration } from './core/duration.js';
import { createLogger, createStderrLogger, loggerFor, redactUrl, type Logger } from './observability/logger.js';
import { viewsScript } from './core/views.js';
import {
  ROLES,
  checkRulesAtStart,
  closePipeline,
  createChangeSources,
  createPipeline,
  createSources,
  startRuntime,
  unsafeEvictionPolicy,
  type Role,
} from './main.js';
import { previewTable } from './preview.js';
import { manifestOf } from './manifest.js';
import { manifestMarkdown } from './core/manifest.js';
import type { PipelineContext } from './queue/context.js';
import { connectionProblem, describeRedis, probeRedis } from './queue/redis.js';
import { missingStreams } from './sources/debezium-redis.js';
import { transformLoader } from './transforms.js';
import { syncOnce } from './sync-once.js';
import { DEV_SINK_URL, initConfig, initSummary } from './init.js';
import { listDeadLetters, purgeDeadLetters, retryDeadLetters } from './queue/dlq.js';
import { cdcReset, cdcSources, cdcStatus, type CdcStatus } from './queue/cdc-admin.js';
import { backfillTable, pauseTable, resetTable, resumeTable, tableByName } from './queue/table-admin.js';
import { acceptSchema } from './queue/schema-watch.js';
import { pipelineStatus } from './queue/status.js';
import { statusText } from './core/table-status.js';
import { IngestBuffer, ingestKeys } from './queue/ingest-buffer.js';

/** Exit codes: 0 ok, 1 a run or check failed, 2 the configuration is invalid. */
const EXIT_FAILED = 1;
const EXIT_CONFIG = 2;

/**
 * What each command uses of the values that may stay unresolved (CONFIG_NEEDS): an unset `${VAR}` in a value the
 * command does not use is no error. `status`, `reset` and `dlq` read Redis only.
 */
const NEEDS = {
  start: CONFIG_NEEDS,
  sync: ['redis.url', 'sources.url', 'destination.apiKey'],
  check: ['redis.url', 'sources.url'],
  redisOnly: ['redis.url'],
  views: ['sources.url'],
  /** A CDC table's preview reads the slot position Redis recorded. */
  preview: ['redis.url', 'sources.url'],
  cdc: ['redis.url', 'sources.url'],
} satisfies Record<string, readonly ConfigNeed[]>;

function load(needs: readonly ConfigNeed[]): Config {
  return loadConfig(program.opts().config, process.env, { needs });
}

function fail(err: unknown): never {
  if (isAppError(err)) {
    process.stderr.write(`pushsync: ${err.toString()}\n`);
    process.exit(err.code === 'CONFIG_INVALID' ? EXIT_CONFIG : EXIT_FAILED);
  }
  process.stderr.write(`pushsync: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(EXIT_FAILED);
}

/** What a fatal error stops before the process exits: the running roles or the dev sink, and their logger. */
let running: { stop: () => Promise<void>; logger: Logger } | undefined;
/** A stop that hangs must not keep a broken process alive. */
const FATAL_STOP_TIMEOUT_MS = 10_000;
let fatal = false;

/**
 * A rejection nobody handled or an exception nobody caught: one structured fatal line (code and message; the stack
 * only inside the JSON `err` field), the ordered stop of what runs (bounded), exit 1.
 */
function onFatal(kind: string, err: unknown): void {
  if (fatal) return;
  fatal = true;
  const e = toAppError(err);
  const logger = running?.logger ?? createStderrLogger();
  logger.fatal({ code: e.code, err }, `${kind}: ${e.message}; stopping`);
  const stopped = running ? Promise.race([running.stop().catch(() => undefined), sleep(FATAL_STOP_TIMEOUT_MS)]) : Promise.resolve();
  void stopped.finally(() => process.exit(EXIT_FAILED));
}

process.on('unhandledRejection', (reason) => onFatal('unhandled rejection', reason));
// A reader that stopped reading (`pushsync dlq list --json | head -1`) is no failure: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? process.exit(0) : onFatal('output error', err)));
}
process.on('uncaughtException', (err) => onFatal('uncaught exception', err));

/**
 * Signals and fatal errors stop what runs, in order. `boundMs`: the stop's limit (shutdown.timeout for the workers'
 * jobs, plus time for the connections); a request still in flight then is abandoned, and the process exits 0.
 */
function onSignals(stop: () => Promise<void>, logger: Logger, boundMs = FATAL_STOP_TIMEOUT_MS): void {
  running = { stop, logger };
  let count = 0;
  const handler = (signal: string): void => {
    count += 1;
    if (count > 1) process.exit(130);
    logger.info({ signal }, 'stopping: finishing active jobs (send again to exit at once)');
    Promise.race([stop(), sleep(boundMs)]).then(
      () => process.exit(0),
      () => process.exit(EXIT_FAILED),
    );
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}

/** The version in package.json, which sits one level above both src/ and dist/. */
/** `pushsync check`'s line for a source's durable stream: a slot's WAL, or (MySQL) the binlog, its lag and settings. */
function streamSummary(s: SourceConfig, st: CdcStatus): string {
  if (s.kind !== 'mysql')
    return `slot ${s.cdc.slot} ${st.exists ? `exists, ${st.lagBytes ?? 0} bytes of WAL held back` : 'will be created on the first run'}`;
  const lag = st.lagSeconds === null ? '' : ` (${Math.round(st.lagSeconds)} s)`;
  const at = st.exists ? `at ${st.confirmedFlushLsn ?? '-'}, ${st.lagBytes ?? '?'} bytes of binlog behind${lag}` : 'will start at the first run';
  return [`${st.stream} ${at}`, ...st.facts].join('; ');
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

const program = new Command()
  .name('pushsync')
  .description("Pushes changed rows from your database to Definite's Stream API, outbound only.")
  .version(packageVersion(), '-V, --version', 'print the version')
  .addOption(new Option('-c, --config <path>', 'config file').default('./pushsync.yaml').env('PUSHSYNC_CONFIG'))
  .showHelpAfterError();

program
  .command('start')
  .description('run long-lived roles (all by default); several processes on one Redis share the work')
  .addOption(new Option('--role <role...>', 'roles to run').choices([...ROLES]).default([...ROLES]))
  .option('--port <port>', 'port for health, metrics (and the dashboard with the web role); overrides web.port', (v) => Number(v))
  .action(async (opts: { role: Role[]; port?: number }) => {
    try {
      const config = load(NEEDS.start);
      const logger = loggerFor(config.log);
      const ctx = createPipeline(config, logger);
      await checkRulesAtStart(ctx);
      const runtime = await startRuntime(ctx, {
        roles: opts.role,
        httpPort: opts.port ?? config.web.port,
        onStoppable: (stop) => onSignals(stop, logger, config.shutdown.timeout + FATAL_STOP_TIMEOUT_MS),
      });
      if (runtime.started) logger.info({ roles: opts.role, tables: allTables(config).length, web: runtime.web?.url }, 'pushsync started');
    } catch (err) {
      fail(err);
    }
  });

program
  .command('sync')
  .description('one pass over every table, then exit: 0 when everything was delivered, 1 when a batch failed')
  .option('--once', 'run one pass and exit (the only mode of this command)', true)
  .option('--timeout <duration>', 'give up after this long', '1h')
  .option('--reconcile', 'also run the hard-delete reconciliation of tables that configure one')
  .action(async (opts: { timeout: string; reconcile?: boolean }) => {
    try {
      const config = load(NEEDS.sync);
      const logger = loggerFor(config.log);
      const summary = await syncOnce(config, logger, {
        timeoutMs: parseDuration(opts.timeout),
        reconcile: opts.reconcile === true,
        onStoppable: (stop) => onSignals(stop, logger, config.shutdown.timeout + FATAL_STOP_TIMEOUT_MS),
      });
      for (const c of summary.counts) process.stdout.write(`${c.table} → ${c.target}: extracted=${c.extracted} pushed=${c.pushed}\n`);
      for (const f of summary.failed) process.stdout.write(`FAILED ${f.queue} job ${f.id} (${f.name}): ${f.reason}\n`);
      if (summary.timedOut) process.stdout.write(`timed out after ${opts.timeout}; work continues on the next run\n`);
      process.exit(summary.failed.length > 0 || summary.timedOut ? EXIT_FAILED : 0);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('check')
  .description('validate the config and reach Redis, every source table and the destination')
  .action(async () => {
    let config: Config;
    try {
      config = load(NEEDS.check);
    } catch (err) {
      fail(err);
    }
    process.stdout.write('ok   config is valid\n');
    let problems = 0;
    const report = (ok: boolean, what: string, detail = ''): void => {
      if (!ok) problems += 1;
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}\n`);
    };
    const warn = (what: string): void => void process.stdout.write(`warn ${what}\n`);
    // Without Redis, the checks that need it are skipped; the sources and the destination are still checked.
    let ctx: PipelineContext | undefined;
    try {
      await probeRedis(config.redis, config.redis.connectTimeout);
      ctx = createPipeline(config, createLogger('silent'), { bounded: true });
      report(true, 'redis reachable');
      const policy = await unsafeEvictionPolicy(ctx);
      if (policy) warn(`redis maxmemory-policy is ${policy}; set noeviction so cursors and jobs are never evicted`);
      const confirmsOutside =
        config.debezium.length > 0 || config.sources.some((x) => x.kind === 'postgres' && x.tables.some((t) => t.mode === 'cdc'));
      if ((config.redis.sentinel || config.redis.cluster) && config.redis.waitReplicas === 0 && confirmsOutside) {
        warn('redis.waitReplicas is 0: a Redis failover can lose CDC or Debezium changes pushsync already confirmed; set it to 1 or more');
      }
    } catch (err) {
      report(false, 'redis reachable', String(err));
    }
    const sources = ctx?.sources ?? createSources(config);
    for (const source of sources.values()) {
      try {
        for (const w of await source.warnings()) warn(w);
      } catch (err) {
        report(false, `source ${source.name} reachable`, (err as Error).message);
      }
    }
    for (const s of config.sources.filter((x) => x.tables.some((t) => t.mode === 'cdc'))) {
      if (!ctx) {
        warn(`source ${s.name} change data capture not checked: it needs Redis`);
        continue;
      }
      try {
        const st = await cdcStatus(ctx, s);
        report(st.problems.length === 0, `source ${s.name} change data capture`, st.problems.join('; ') || streamSummary(s, st));
        for (const w of st.warnings) warn(w);
        if (st.exists && !st.slotStart) warn(`${st.stream} exists but pushsync has no record of it: the first run snapshots every CDC table again`);
      } catch (err) {
        report(false, `source ${s.name} change data capture`, (err as Error).message);
      }
    }
    for (const s of config.debezium) {
      const ways = [
        s.http ? `POST /ingest/debezium on web.port` : '',
        s.redisStreams ? `Redis streams ${s.redisStreams.streams.join(', ')} (group ${s.redisStreams.group})` : '',
      ].filter(Boolean);
      report(true, `source ${s.name} (debezium)`, `${ways.join(' and ')}; ${s.tables.length} table(s), buffer budget ${s.maxBufferedBytes} bytes`);
      if (s.redisStreams) {
        const r = s.redisStreams;
        try {
          const missing = await missingStreams(r.url, r.streams, config.redis.connectTimeout);
          report(true, `source ${s.name} Redis streams reachable`, redactUrl(r.url));
          for (const stream of missing)
            warn(
              `source ${s.name}: stream ${stream} does not exist yet on ${redactUrl(r.url)} (created when Debezium first writes to it, or by pushsync's consumer group)`,
            );
        } catch (err) {
          report(false, `source ${s.name} Redis streams reachable`, (err as Error).message);
        }
      }
    }
    for (const t of allTables(config).filter((x) => x.mode !== 'debezium')) {
      const source = sources.get(t.source)!;
      try {
        if (t.transform !== undefined) await (ctx?.transforms ?? transformLoader())(t.transform);
        const reader = await source.table(tableSpec(t));
        report(
          true,
          `${t.source}.${t.name}`,
          `watermark ${reader.shape.watermark}, primary key (${reader.shape.primaryKey.join(', ')}), ${reader.shape.columns.length} columns → ${t.target}`,
        );
        if (t.query !== undefined) {
          for (const line of (await reader.fullScans?.()) ?? []) {
            warn(
              `${t.source}.${t.name}: a page of the query would scan a whole relation (${line}); index the watermark and key columns of its base table`,
            );
          }
        }
        const pageScan = t.mode === 'watermark' ? await reader.pageScanProblem?.() : null;
        if (pageScan) warn(`${t.source}.${t.name}: ${pageScan}`);
        const nulls = await reader.countNullWatermark();
        if (nulls > 0)
          warn(`${t.source}.${t.name}: ${nulls} rows have a NULL ${reader.shape.watermark}; they are sent once during the initial backfill only`);
      } catch (err) {
        report(false, `${t.source}.${t.name}`, isAppError(err) ? err.message : String(err));
      }
    }
    try {
      const res = await request(config.destination.url, { method: 'GET', headersTimeout: 10_000, bodyTimeout: 10_000 });
      await res.body.dump();
      report(true, 'destination reachable', `HTTP ${res.statusCode} (the API key is verified by the first push)`);
    } catch (err) {
      report(false, 'destination reachable', (err as Error).message);
    }
    if (ctx) await closePipeline(ctx);
    else await Promise.all([...sources.values()].map((s) => s.close())).catch(() => {});
    process.stdout.write(problems === 0 ? 'all checks passed\n' : `${problems} check(s) failed\n`);
    process.exit(problems === 0 ? 0 : EXIT_FAILED);
  });

program
  .command('init')
  .description("read a database's catalog and write a first, commented config for its tables (key, watermark, warnings)")
  .addOption(
    new Option('--url <url>', 'the database: postgres://… or mysql://… (its password is not written)').env('DATABASE_URL').makeOptionMandatory(),
  )
  .option('--tables <names>', 'comma-separated tables (table or schema.table); default every table the user may read')
  .option('--out <path>', 'the file to write; - for stdout', 'pushsync.yaml')
  .option('--destination <url>', 'the destination URL to write', DEV_SINK_URL)
  .option('--name <source>', "the source's name (default: the database's)")
  .option('--force', 'overwrite the file if it exists')
  .action(async (opts: { url: string; tables?: string; out: string; destination: string; name?: string; force?: boolean }) => {
    try {
      if (opts.out !== '-' && !opts.force && existsSync(opts.out))
        throw new AppError('CONFIG_INVALID', `${opts.out} exists; pass --force to overwrite it, or --out another path`);
      const tables = opts.tables
        ?.split(',')
        .map((t) => t.trim())
        .filter(Boolean);
      const result = await initConfig({ url: opts.url, tables, destinationUrl: opts.destination, sourceName: opts.name });
      if (opts.out === '-') {
        process.stdout.write(result.text);
        return;
      }
      writeFileSync(opts.out, result.text, { flag: opts.force ? 'w' : 'wx' });
      process.stdout.write(initSummary(result, opts.out));
    } catch (err) {
      fail(err);
    }
  });

program
  .command('healthcheck')
  .description("exit 0 when this config's process answers GET /healthz on web.port (the container health check)")
  .option('--port <port>', 'instead of web.port (when start was given --port)', (v) => Number(v))
  .action(async (opts: { port?: number }) => {
    try {
      const web = opts.port === undefined ? load([]).web : undefined;
      const port = opts.port ?? web!.port;
      // A wildcard or loopback listener is reached on loopback; a specific address only there.
      const host = !web || ['0.0.0.0', '::', '', 'localhost'].includes(web.host) || web.host.startsWith('127.') ? '127.0.0.1' : web.host;
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
      const res = await request(url, { method: 'GET', headersTimeout: 3000, bodyTimeout: 3000 });
      await res.body.dump();
      if (res.statusCode !== 200) {
        process.stderr.write(`pushsync: unhealthy: ${url} answered HTTP ${res.statusCode}\n`);
        process.exit(EXIT_FAILED);
      }
      process.stdout.write(`ok ${url}\n`);
    } catch (err) {
      if (isAppError(err)) fail(err);
      process.stderr.write(`pushsync: unhealthy: ${(err as Error).message}\n`);
      process.exit(EXIT_FAILED);
    }
  });

program
  .command('status')
  .description('per table: mode, state, position, last run, lag, pending and failed batches, backfill progress')
  .option('--json', 'one JSON object: {tables: [...], deadLetters}')
  .action(async (opts: { json?: boolean }) => {
    try {
      const status = await withQueues(NEEDS.redisOnly, async (ctx) => {
        const tables = await pipelineStatus(ctx);
        const buffers = await Promise.all(
          ctx.config.debezium.map(async (d) => ({
            source: d.name,
            bufferedBytes: await new IngestBuffer(ctx.redis, ingestKeys(ctx.config.redis.prefix, d.name)).bytes(),
            maxBufferedBytes: d.maxBufferedBytes,
          })),
        );
        return { ...tables, ingestBuffers: buffers };
      });
      process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : statusText(status.tables, status.deadLetters));
      if (!opts.json)
        for (const b of status.ingestBuffers)
          process.stdout.write(`${b.source} (debezium): ${b.bufferedBytes} of ${b.maxBufferedBytes} bytes buffered\n`);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('config')
  .description('about the config file itself')
  .command('schema')
  .description('print the JSON Schema of the config file, for editors (see README)')
  .action(() => {
    process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
  });

program
  .command('views')
  .description('print the DuckDB/DuckLake SQL of bronze, the silver current-state view and a point-in-time query per table')
  .option('--as-of <ordering>', 'the point in time, as an _ordering value', '2024-01-01T00:00:00.000000Z')
  .action(async (opts: { asOf: string }) => {
    try {
      const config = load(NEEDS.views);
      const sources = createSources(config);
      try {
        for (const t of allTables(config)) {
          if (t.mode === 'debezium') {
            // Debezium columns land as the events name them; without a configured key, the one the events carried.
            const primaryKey = t.primaryKey ?? (await eventKey(config, t.source, t.name));
            if (!primaryKey)
              process.stdout.write(
                `-- ${t.source}.${t.name} → ${t.target}: primary key unknown; set primaryKey (no event with a key arrived yet)\n\n`,
              );
            else
              process.stdout.write(
                `${viewsScript({ label: `${t.source}.${t.name}`, target: t.target, primaryKey, carryForward: true }, opts.asOf)}\n`,
              );
            continue;
          }
          // Column names as the source spells them (the config may fold or quote them), which is how they land.
          const primaryKey = (await sources.get(t.source)!.table(tableSpec(t))).shape.primaryKey;
          process.stdout.write(`${viewsScript({ label: `${t.source}.${t.name}`, target: t.target, primaryKey }, opts.asOf)}\n`);
        }
      } finally {
        await Promise.all([...sources.values()].map((s) => s.close()));
      }
    } catch (err) {
      fail(err);
    }
  });

program
  .command('preview')
  .description('print, as JSON lines, exactly the records a first sync would send for the first rows of a table; writes nothing')
  .requiredOption('--table <source.table>', 'the table, as <source>.<table as configured>')
  .option('--limit <n>', 'rows, in keyset order from the start', (v) => Number(v), 20)
  .action(async (opts: { table: string; limit: number }) => {
    try {
      const config = load(NEEDS.preview);
      if (!Number.isInteger(opts.limit) || opts.limit < 1) throw new AppError('CONFIG_INVALID', '--limit must be a positive integer');
      const sources = createSources(config);
      const changeSources = createChangeSources(config);
      try {
        const preview = await previewTable(config, opts.table, opts.limit, sources, changeSources);
        for (const record of preview.records) process.stdout.write(`${record}\n`);
        for (const failure of preview.failures) process.stderr.write(`pushsync: would not be sent: ${failure}\n`);
        if (preview.failures.length > 0) process.exitCode = EXIT_FAILED;
      } finally {
        await Promise.all([...sources.values(), ...changeSources.values()].map((s) => s.close()));
      }
    } catch (err) {
      fail(err);
    }
  });

program
  .command('manifest')
  .description('for every table, what leaves and how (columns, masks, filters, transforms, metadata), read from the source catalog now')
  .addOption(new Option('--format <format>', 'output format').choices(['md', 'json']).default('md'))
  .action(async (opts: { format: 'md' | 'json' }) => {
    try {
      const config = load(NEEDS.views);
      const sources = createSources(config);
      try {
        const manifest = await manifestOf(config, sources);
        process.stdout.write(opts.format === 'json' ? `${JSON.stringify(manifest, null, 2)}\n` : manifestMarkdown(manifest));
      } finally {
        await Promise.all([...sources.values()].map((s) => s.close()));
      }
    } catch (err) {
      fail(err);
    }
  });

program
  .command('reset')
  .description("forget a table's position: the next run sends it again from its start (same event ids for unchanged rows)")
  .option('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .option('--all', 'every configured table')
  .action(async (opts: { table?: string[]; all?: boolean }) => {
    try {
      await withQueues(NEEDS.redisOnly, async (ctx) => {
        // A Debezium table has no position of pushsync's own: Debezium re-sends it (e.g. an incremental snapshot).
        const tables = allTables(ctx.config).filter((x) => x.mode !== 'debezium');
        const chosen = opts.all
          ? tables
          : (opts.table ?? []).map((name) => {
              const t = tables.find((x) => `${x.source}.${x.name}` === name);
              if (!t)
                throw new AppError(
                  'CONFIG_INVALID',
                  `no configured table ${name}; use <source>.<table> as in the config (${tables.map((x) => `${x.source}.${x.name}`).join(', ')})`,
                );
              return t;
            });
        if (chosen.length === 0) throw new AppError('CONFIG_INVALID', 'name tables with --table, or pass --all');
        for (const t of chosen) {
          await resetTable(ctx, t);
          process.stdout.write(`reset ${t.source}.${t.name}\n`);
        }
      });
    } catch (err) {
      fail(err);
    }
  });

/** `--table` values resolved against the config; at least one. */
function chosenTables(ctx: PipelineContext, names: string[] | undefined): TableConfig[] {
  if (!names || names.length === 0) throw new AppError('CONFIG_INVALID', 'name tables with --table <source>.<table>');
  return names.map((name) => tableByName(ctx.config, name));
}

program
  .command('pause')
  .description('stop extracting a table until resume (a run in progress stops at its next page; enqueued batches are still delivered)')
  .requiredOption('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .option('--reason <text>', 'shown by status')
  .action(async (opts: { table: string[]; reason?: string }) => {
    try {
      await withQueues(NEEDS.redisOnly, async (ctx) => {
        for (const t of chosenTables(ctx, opts.table)) {
          await pauseTable(ctx, t, opts.reason);
          process.stdout.write(`paused ${t.source}.${t.name}\n`);
        }
      });
    } catch (err) {
      fail(err);
    }
  });

program
  .command('resume')
  .description('extract a paused table again, from where it stopped')
  .requiredOption('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .action(async (opts: { table: string[] }) => {
    try {
      await withQueues(NEEDS.redisOnly, async (ctx) => {
        for (const t of chosenTables(ctx, opts.table)) {
          process.stdout.write(`${(await resumeTable(ctx, t)) ? 'resumed' : 'was not paused:'} ${t.source}.${t.name}\n`);
        }
      });
    } catch (err) {
      fail(err);
    }
  });

program
  .command('backfill')
  .description(
    'read a table again from its start while every other table keeps syncing (a CDC table: an incremental snapshot interleaved with its stream)',
  )
  .requiredOption('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .action(async (opts: { table: string[] }) => {
    try {
      await withQueues(NEEDS.redisOnly, async (ctx) => {
        for (const t of chosenTables(ctx, opts.table)) {
          await backfillTable(ctx, t);
          process.stdout.write(
            t.mode === 'cdc'
              ? `snapshotting ${t.source}.${t.name} again while its stream flows (started by the source's CDC reader)\n`
              : `backfilling ${t.source}.${t.name} from its start (progress: pushsync status)\n`,
          );
        }
      });
    } catch (err) {
      fail(err);
    }
  });

program
  .command('schema')
  .description('schema changes of tables: accept a change a table with schemaChanges: freeze is waiting on')
  .command('accept')
  .description('send a table frozen by a schema change on with its new shape (and start the re-read the change calls for)')
  .requiredOption('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .action(async (opts: { table: string[] }) => {
    try {
      await withQueues(NEEDS.redisOnly, async (ctx) => {
        for (const t of chosenTables(ctx, opts.table)) {
          const outcome = await acceptSchema(ctx, t, ctx.logger);
          const where = `${t.source}.${t.name}`;
          if (outcome === 'changed_again') {
            process.stderr.write(
              `pushsync: ${where} is still frozen, by a newer schema change seen while the accept ran: ` +
                `look at pushsync status and run "pushsync schema accept --table ${where}" again\n`,
            );
            process.exitCode = EXIT_FAILED;
          } else {
            process.stdout.write(`${outcome === 'accepted' ? 'accepted the new shape of' : 'no schema change waits to be accepted for'} ${where}\n`);
          }
        }
      });
    } catch (err) {
      fail(err);
    }
  });

const cdcCommand = program.command('cdc').description('change data capture: replication slots of sources in mode cdc');

cdcCommand
  .command('status')
  .description('per source: slot, publication, positions, WAL held back, snapshots done')
  .action(async () => {
    try {
      await withQueues(NEEDS.cdc, async (ctx) => {
        for (const s of cdcSources(ctx)) {
          const st = await cdcStatus(ctx, s);
          if (s.kind === 'mysql')
            process.stdout.write(
              `${st.source}: ${st.stream} ${st.exists ? 'exists' : 'missing'}, confirmed=${st.confirmedFlushLsn ?? '-'} ` +
                `acknowledged=${st.ackedLsn ?? '-'} started=${st.slotStart ?? '-'} binlog_behind=${st.lagBytes ?? '-'} bytes ` +
                `lag=${st.lagSeconds === null ? '-' : `${Math.round(st.lagSeconds)} s`} epoch=${st.epoch ?? '-'}\n`,
            );
          else
            process.stdout.write(
              `${st.source}: slot ${st.slot} ${st.exists ? (st.active ? 'active' : 'idle') : 'missing'}, publication ${st.publication}, ` +
                `confirmed=${st.confirmedFlushLsn ?? '-'} acknowledged=${st.ackedLsn ?? '-'} started=${st.slotStart ?? '-'} ` +
                `wal_held_back=${st.lagBytes ?? '-'} bytes epoch=${st.epoch ?? '-'}\n`,
            );
          for (const t of s.tables.filter((x) => x.mode === 'cdc'))
            process.stdout.write(`  ${t.name}: snapshot ${st.snapshots[t.name] ? `done ${st.snapshots[t.name]}` : 'pending'}\n`);
          for (const p of st.problems) process.stdout.write(`  problem: ${p}\n`);
        }
      });
    } catch (err) {
      fail(err);
    }
  });

cdcCommand
  .command('reset')
  .description('drop the slot and forget its position: the next run creates a new slot and snapshots every CDC table again')
  .requiredOption('--source <name>', 'the source')
  .option('--drop-publication', 'also drop the publication (when removing CDC from the source)')
  .action(async (opts: { source: string; dropPublication?: boolean }) => {
    try {
      await withQueues(NEEDS.cdc, async (ctx) => {
        const [s] = cdcSources(ctx, opts.source);
        if (!s) throw new AppError('CONFIG_INVALID', `source ${opts.source} has no table in mode cdc`);
        await cdcReset(ctx, s, opts.dropPublication === true);
        process.stdout.write(
          `dropped slot ${s.cdc.slot}${opts.dropPublication ? ` and publication ${s.cdc.publication}` : ''}; the next run snapshots again\n`,
        );
      });
    } catch (err) {
      fail(err);
    }
  });

/** The key columns the events of a Debezium table carried, as recorded when they arrived. */
async function eventKey(config: Config, source: string, table: string): Promise<string[] | undefined> {
  const ctx = createPipeline(config, createLogger('silent'));
  try {
    return await new IngestBuffer(ctx.redis, ingestKeys(config.redis.prefix, source)).eventKey(table);
  } finally {
    await closePipeline(ctx).catch(() => {});
  }
}

const dlq = program.command('dlq').description('the dead-letter queue: push jobs that failed for good');

async function withQueues<T>(needs: readonly ConfigNeed[], fn: (ctx: ReturnType<typeof createPipeline>) => Promise<T>): Promise<T> {
  const config = load(needs);
  await probeRedis(config.redis, config.redis.connectTimeout);
  const ctx = createPipeline(config, createLogger('silent'), { bounded: true });
  try {
    return await fn(ctx);
  } catch (err) {
    // Redis went away after the probe: the bounded connection gave up; say so instead of the driver's words.
    const problem = isAppError(err) ? undefined : connectionProblem(ctx.redis);
    if (problem) throw new AppError('REDIS_UNAVAILABLE', `lost Redis at ${describeRedis(config.redis)}: ${problem}`, { cause: err });
    throw err;
  } finally {
    await closePipeline(ctx);
  }
}

function jobIds(ids: string[], all: boolean | undefined): string[] | 'all' {
  if (all) return 'all';
  if (ids.length === 0) throw new AppError('CONFIG_INVALID', 'name job ids, or pass --all');
  return ids;
}

dlq
  .command('list')
  .description('failed push jobs with their reason and key range')
  .option('--json', 'one JSON object per line')
  .action(async (opts: { json?: boolean }) => {
    try {
      const letters = await withQueues(NEEDS.redisOnly, (ctx) => listDeadLetters(ctx.pushQueue));
      for (const d of letters) {
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(d)}\n`
            : `${d.id}  ${d.name}  attempts=${d.attempts}  failed=${d.failedAt ?? '?'}\n    ${d.reason}\n    range ${d.range}\n`,
        );
      }
      if (!opts.json) process.stdout.write(`${letters.length} failed push job(s)\n`);
    } catch (err) {
      fail(err);
    }
  });

dlq
  .command('retry [ids...]')
  .description('send failed push jobs again (fresh attempts)')
  .option('--all', 'every failed push job')
  .action(async (ids: string[], opts: { all?: boolean }) => {
    try {
      const retried = await withQueues(NEEDS.redisOnly, (ctx) => retryDeadLetters(ctx.pushQueue, jobIds(ids, opts.all)));
      process.stdout.write(`retried ${retried.length} job(s)${retried.length ? `: ${retried.join(' ')}` : ''}\n`);
    } catch (err) {
      fail(err);
    }
  });

dlq
  .command('purge [ids...]')
  .description('delete failed push jobs; their rows are not delivered unless the table is re-read')
  .option('--all', 'every failed push job')
  .action(async (ids: string[], opts: { all?: boolean }) => {
    try {
      const purged = await withQueues(NEEDS.redisOnly, (ctx) => purgeDeadLetters(ctx.pushQueue, ctx.redis, ctx.keys, jobIds(ids, opts.all)));
      process.stdout.write(`purged ${purged.length} job(s)${purged.length ? `: ${purged.join(' ')}` : ''}\n`);
    } catch (err) {
      fail(err);
    }
  });

const devSink = program
  .command('dev-sink')
  .description('a local Stream API that stores what it receives in a DuckDB file (no Definite account needed)')
  .option('--port <port>', 'port', (v) => Number(v), 8787)
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--db <path>', 'DuckDB file', './devsink.duckdb')
  // Not mandatory for commander: it checks a command's ancestors too, and `dev-sink query --api-key K` hands the key
  // to this command (options are read before and after subcommands), so each action checks the key itself.
  .addOption(new Option('--api-key <key>', 'bearer token clients must send').env('DEFINITE_API_KEY'))
  .action(async (opts: { port: number; host: string; db: string; apiKey?: string }) => {
    try {
      const apiKey = requireSinkKey(opts.apiKey, 'dev-sink');
      const logger = loggerFor({ level: 'info' });
      // DuckDB is a native module only the dev sink needs: loaded on demand.
      const { startDevSink } = await import('./destinations/dev-sink.js');
      const sink = await startDevSink({ port: opts.port, host: opts.host, dbPath: opts.db, apiKey, logger });
      logger.info({ endpoint: sink.url, db: opts.db }, 'dev sink listening');
      onSignals(() => sink.close(), logger);
    } catch (err) {
      fail(err);
    }
  });

/** The running dev sink's base URL and key, for `dev-sink query` and `dev-sink export`. */
interface SinkClientOptions {
  url: string;
  apiKey?: string;
}

function requireSinkKey(key: string | undefined, command: string): string {
  if (key === undefined || key === '') throw new AppError('CONFIG_INVALID', `${command}: pass --api-key <key> or set DEFINITE_API_KEY`);
  return key;
}

async function askDevSink(o: SinkClientOptions, path: string, body: string): Promise<Record<string, unknown>> {
  const base = o.url.replace(/\/+$/, '').replace(/\/(v2\/)?stream$/, '');
  const apiKey = requireSinkKey(o.apiKey ?? devSink.opts<{ apiKey?: string }>().apiKey, `dev-sink ${path.slice(1)}`);
  let res;
  try {
    res = await request(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'text/plain' }, body });
  } catch (err) {
    throw new AppError(
      'DEST_UNAVAILABLE',
      `no dev sink answers at ${base} (start it with pushsync dev-sink, or pass --url): ${(err as Error).message}`,
    );
  }
  const answer = (await res.body.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.statusCode !== 200) {
    const first = (answer.errors as Array<{ code?: string; message?: string }> | undefined)?.[0];
    throw new AppError('DEST_REJECTED', first?.message ?? `the dev sink answered HTTP ${res.statusCode}`);
  }
  return answer;
}

const sinkCommand = (name: string, description: string): Command =>
  devSink
    .command(name)
    .description(description)
    .option('--url <url>', 'the running dev sink', 'http://127.0.0.1:8787')
    .addOption(new Option('--api-key <key>', "the dev sink's bearer token").env('DEFINITE_API_KEY'));

sinkCommand('query', 'run one read-only SELECT on the running dev sink and print the result')
  .argument('<sql>', 'one SELECT over the tables the sink stored')
  .option('--json', 'print the answer as JSON')
  .action(async (sql: string, opts: SinkClientOptions & { json?: boolean }) => {
    try {
      const answer = await askDevSink(opts, '/query', sql);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(answer)}\n`);
        return;
      }
      const columns = answer.columns as string[];
      const rows = answer.rows as Array<Record<string, unknown>>;
      const cell = (v: unknown): string => (v === null || v === undefined ? 'NULL' : typeof v === 'string' ? v : JSON.stringify(v));
      const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
      const line = (cells: string[]): string =>
        cells
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd();
      process.stdout.write(
        `${[line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n')}\n`,
      );
      process.stdout.write(`(${rows.length} row${rows.length === 1 ? '' : 's'}${answer.truncated ? ', truncated' : ''})\n`);
    } catch (err) {
      fail(err);
    }
  });

sinkCommand('export', 'write every table of the running dev sink to Parquet files')
  .requiredOption('--parquet <dir>', 'directory for <schema>.<table>.parquet files')
  .action(async (opts: SinkClientOptions & { parquet: string }) => {
    try {
      const { resolve } = await import('node:path');
      const answer = await askDevSink(opts, '/export', JSON.stringify({ parquet: resolve(opts.parquet) }));
      for (const f of answer.files as Array<{ table: string; file: string; rows: number }>)
        process.stdout.write(`${f.table}: ${f.rows} rows → ${f.file}\n`);
    } catch (err) {
      fail(err);
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => fail(err instanceof Error ? err : new AppError('INTERNAL', String(err))));
