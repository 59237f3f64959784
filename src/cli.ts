#!/usr/bin/env node
import { Command, Option } from 'commander';
import { request } from 'undici';
import { allTables, loadConfig, tableSpec, type Config } from './config.js';
import { AppError, isAppError } from './core/errors.js';
import { parseDuration } from './core/duration.js';
import { parseCursor } from './core/cursor.js';
import { createLogger, type Logger } from './observability/logger.js';
import { viewsScript } from './core/views.js';
import { ROLES, closePipeline, createPipeline, createSources, startRuntime, unsafeEvictionPolicy, type Role } from './main.js';
import { PendingSet } from './queue/pending.js';
import { runOnce } from './queue/run-once.js';
import { listDeadLetters, purgeDeadLetters, retryDeadLetters } from './queue/dlq.js';
import { cdcReset, cdcSources, cdcStatus } from './queue/cdc-admin.js';
import { resetTable } from './queue/table-admin.js';
import { IngestBuffer, ingestKeys } from './queue/ingest-buffer.js';

/** Exit codes: 0 ok, 1 a run or check failed, 2 the configuration is invalid. */
const EXIT_FAILED = 1;
const EXIT_CONFIG = 2;

function load(path: string): Config {
  return loadConfig(path);
}

function fail(err: unknown): never {
  if (isAppError(err)) {
    process.stderr.write(`pushsync: ${err.toString()}\n`);
    process.exit(err.code === 'CONFIG_INVALID' ? EXIT_CONFIG : EXIT_FAILED);
  }
  process.stderr.write(`pushsync: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(EXIT_FAILED);
}

function onSignals(stop: () => Promise<void>, logger: Logger): void {
  let count = 0;
  const handler = (signal: string): void => {
    count += 1;
    if (count > 1) process.exit(130);
    logger.info({ signal }, 'stopping: finishing active jobs (send again to exit at once)');
    stop().then(() => process.exit(0), () => process.exit(EXIT_FAILED));
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}

const program = new Command()
  .name('pushsync')
  .description('Pushes changed rows from your database to Definite\'s Stream API, outbound only.')
  .addOption(new Option('-c, --config <path>', 'config file').default('./pushsync.yaml').env('PUSHSYNC_CONFIG'))
  .showHelpAfterError();

program
  .command('start')
  .description('run long-lived roles (all by default); several processes on one Redis share the work')
  .addOption(new Option('--role <role...>', 'roles to run').choices([...ROLES]).default([...ROLES]))
  .option('--port <port>', 'port for health, metrics (and the dashboard with the web role); overrides web.port', (v) => Number(v))
  .action(async (opts: { role: Role[]; port?: number }) => {
    try {
      const config = load(program.opts().config);
      const logger = createLogger(config.log.level);
      const ctx = createPipeline(config, logger);
      const runtime = await startRuntime(ctx, { roles: opts.role, httpPort: opts.port ?? config.web.port });
      logger.info({ roles: opts.role, tables: allTables(config).length, web: runtime.web?.url }, 'pushsync started');
      onSignals(runtime.stop, logger);
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
      const config = load(program.opts().config);
      const logger = createLogger(config.log.level);
      const ctx = createPipeline(config, logger);
      const runtime = await startRuntime(ctx, { roles: ['extract', 'push'] });
      onSignals(runtime.stop, logger);
      const summary = await runOnce(config, { extract: ctx.extractQueue, push: ctx.pushQueue }, runtime.workers, {
        timeoutMs: parseDuration(opts.timeout),
        reconcile: opts.reconcile === true,
      });
      const extracted = await ctx.metrics.rowsExtracted.get();
      const pushed = await ctx.metrics.rowsPushed.get();
      const count = (m: typeof extracted, t: { source: string; name: string }): number =>
        m.values.filter((v) => v.labels.source === t.source && v.labels.table === t.name).reduce((a, v) => a + v.value, 0);
      for (const t of allTables(config)) {
        process.stdout.write(`${t.source}.${t.name} → ${t.target}: extracted=${count(extracted, t)} pushed=${count(pushed, t)}\n`);
      }
      for (const f of summary.failed) process.stdout.write(`FAILED ${f.queue} job ${f.id} (${f.name}): ${f.reason}\n`);
      if (summary.timedOut) process.stdout.write(`timed out after ${opts.timeout}; work continues on the next run\n`);
      await runtime.stop();
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
      config = load(program.opts().config);
    } catch (err) {
      fail(err);
    }
    process.stdout.write('ok   config is valid\n');
    const logger = createLogger('silent');
    const ctx = createPipeline(config, logger);
    let problems = 0;
    const report = (ok: boolean, what: string, detail = ''): void => {
      if (!ok) problems += 1;
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}\n`);
    };
    const warn = (what: string): void => void process.stdout.write(`warn ${what}\n`);
    try {
      await ctx.redis.ping();
      report(true, 'redis reachable');
      const policy = await unsafeEvictionPolicy(ctx);
      if (policy) warn(`redis maxmemory-policy is ${policy}; set noeviction so cursors and jobs are never evicted`);
    } catch (err) {
      report(false, 'redis reachable', (err as Error).message);
    }
    for (const source of ctx.sources.values()) {
      try {
        for (const w of await source.warnings()) warn(w);
      } catch (err) {
        report(false, `source ${source.name} reachable`, (err as Error).message);
      }
    }
    for (const s of cdcSources(ctx)) {
      try {
        const st = await cdcStatus(ctx, s);
        report(st.problems.length === 0, `source ${s.name} change data capture`, st.problems.join('; ') || `slot ${s.cdc.slot} ${st.exists ? `exists, ${st.lagBytes ?? 0} bytes of WAL held back` : 'will be created on the first run'}`);
        if (st.exists && !st.slotStart) warn(`slot ${s.cdc.slot} exists but pushsync has no record of it: the first run snapshots every CDC table again`);
      } catch (err) {
        report(false, `source ${s.name} change data capture`, (err as Error).message);
      }
    }
    for (const s of config.debezium) {
      const ways = [s.http ? `POST /ingest/debezium on web.port` : '', s.redisStreams ? `Redis streams ${s.redisStreams.streams.join(', ')} (group ${s.redisStreams.group})` : ''].filter(Boolean);
      report(true, `source ${s.name} (debezium)`, `${ways.join(' and ')}; ${s.tables.length} table(s), buffer budget ${s.maxBufferedBytes} bytes`);
    }
    for (const t of allTables(config).filter((x) => x.mode !== 'debezium')) {
      const source = ctx.sources.get(t.source)!;
      try {
        const reader = await source.table(tableSpec(t));
        report(true, `${t.source}.${t.name}`, `watermark ${reader.shape.watermark}, primary key (${reader.shape.primaryKey.join(', ')}), ${reader.shape.columns.length} columns → ${t.target}`);
        const nulls = await reader.countNullWatermark();
        if (nulls > 0) warn(`${t.source}.${t.name}: ${nulls} rows have a NULL ${reader.shape.watermark}; they are sent once during the initial backfill only`);
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
    await closePipeline(ctx).catch(() => {});
    process.stdout.write(problems === 0 ? 'all checks passed\n' : `${problems} check(s) failed\n`);
    process.exit(problems === 0 ? 0 : EXIT_FAILED);
  });

program
  .command('status')
  .description('per table: cursor position, undelivered batches, dead-letter count')
  .action(async () => {
    try {
      const config = load(program.opts().config);
      const ctx = createPipeline(config, createLogger('silent'));
      const failed = await ctx.pushQueue.getFailedCount();
      for (const s of config.debezium) {
        const bytes = await new IngestBuffer(ctx.redis, ingestKeys(config.redis.prefix, s.name)).bytes();
        process.stdout.write(`${s.name} (debezium): buffered_bytes=${bytes} of maxBufferedBytes=${s.maxBufferedBytes}\n`);
      }
      for (const t of allTables(config)) {
        const pending = await new PendingSet(ctx.redis, ctx.keys.pending(t.source, t.name)).count();
        if (t.mode === 'debezium') {
          process.stdout.write(`${t.source}.${t.name}: debezium undelivered_batches=${pending}\n`);
          continue;
        }
        const cursor = parseCursor(await ctx.redis.get(ctx.keys.cursor(t.source, t.name)), `${t.source}.${t.name}`);
        const at = cursor.after ? `${cursor.after.wm ?? 'NULL'} / (${cursor.after.pk.join(', ')})` : 'start';
        process.stdout.write(`${t.source}.${t.name}: phase=${cursor.phase} after=${at} undelivered_batches=${pending}\n`);
      }
      process.stdout.write(`dead-letter (failed push jobs): ${failed}\n`);
      await closePipeline(ctx);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('views')
  .description('print the DuckDB/DuckLake SQL of bronze, the silver current-state view and a point-in-time query per table')
  .option('--as-of <ordering>', 'the point in time, as an _ordering value', '2024-01-01T00:00:00.000000Z')
  .action(async (opts: { asOf: string }) => {
    try {
      const config = load(program.opts().config);
      const sources = createSources(config);
      try {
        for (const t of allTables(config)) {
          if (t.mode === 'debezium') {
            // Debezium columns land as the events name them; without a configured key, the one the events carried.
            const primaryKey = t.primaryKey ?? (await eventKey(config, t.source, t.name));
            if (!primaryKey) process.stdout.write(`-- ${t.source}.${t.name} → ${t.target}: primary key unknown; set primaryKey (no event with a key arrived yet)\n\n`);
            else process.stdout.write(`${viewsScript({ label: `${t.source}.${t.name}`, target: t.target, primaryKey, carryForward: true }, opts.asOf)}\n`);
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
  .command('reset')
  .description('forget a table\'s position: the next run sends it again from its start (same event ids for unchanged rows)')
  .option('--table <source.table...>', 'tables, as <source>.<table as configured>')
  .option('--all', 'every configured table')
  .action(async (opts: { table?: string[]; all?: boolean }) => {
    try {
      await withQueues(async (ctx) => {
        // A Debezium table has no position of pushsync's own: Debezium re-sends it (e.g. an incremental snapshot).
        const tables = allTables(ctx.config).filter((x) => x.mode !== 'debezium');
        const chosen = opts.all ? tables : (opts.table ?? []).map((name) => {
          const t = tables.find((x) => `${x.source}.${x.name}` === name);
          if (!t) throw new AppError('CONFIG_INVALID', `no configured table ${name}; use <source>.<table> as in the config (${tables.map((x) => `${x.source}.${x.name}`).join(', ')})`);
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

const cdcCommand = program.command('cdc').description('change data capture: replication slots of sources in mode cdc');

cdcCommand
  .command('status')
  .description('per source: slot, publication, positions, WAL held back, snapshots done')
  .action(async () => {
    try {
      await withQueues(async (ctx) => {
        for (const s of cdcSources(ctx)) {
          const st = await cdcStatus(ctx, s);
          process.stdout.write(
            `${st.source}: slot ${st.slot} ${st.exists ? (st.active ? 'active' : 'idle') : 'missing'}, publication ${st.publication}, ` +
              `confirmed=${st.confirmedFlushLsn ?? '-'} acknowledged=${st.ackedLsn ?? '-'} started=${st.slotStart ?? '-'} ` +
              `wal_held_back=${st.lagBytes ?? '-'} bytes\n`,
          );
          for (const t of s.tables.filter((x) => x.mode === 'cdc')) process.stdout.write(`  ${t.name}: snapshot ${st.snapshots[t.name] ? `done ${st.snapshots[t.name]}` : 'pending'}\n`);
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
      await withQueues(async (ctx) => {
        const [s] = cdcSources(ctx, opts.source);
        if (!s) throw new AppError('CONFIG_INVALID', `source ${opts.source} has no table in mode cdc`);
        await cdcReset(ctx, s, opts.dropPublication === true);
        process.stdout.write(`dropped slot ${s.cdc.slot}${opts.dropPublication ? ` and publication ${s.cdc.publication}` : ''}; the next run snapshots again\n`);
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

async function withQueues<T>(fn: (ctx: ReturnType<typeof createPipeline>) => Promise<T>): Promise<T> {
  const config = load(program.opts().config);
  const ctx = createPipeline(config, createLogger('silent'));
  try {
    return await fn(ctx);
  } finally {
    await closePipeline(ctx).catch(() => {});
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
      const letters = await withQueues((ctx) => listDeadLetters(ctx.pushQueue));
      for (const d of letters) {
        process.stdout.write(opts.json ? `${JSON.stringify(d)}\n` : `${d.id}  ${d.name}  attempts=${d.attempts}  failed=${d.failedAt ?? '?'}\n    ${d.reason}\n    range ${d.range}\n`);
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
      const retried = await withQueues((ctx) => retryDeadLetters(ctx.pushQueue, jobIds(ids, opts.all)));
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
      const purged = await withQueues((ctx) => purgeDeadLetters(ctx.pushQueue, ctx.redis, ctx.keys, jobIds(ids, opts.all)));
      process.stdout.write(`purged ${purged.length} job(s)${purged.length ? `: ${purged.join(' ')}` : ''}\n`);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('dev-sink')
  .description('a local Stream API that stores what it receives in a DuckDB file (no Definite account needed)')
  .option('--port <port>', 'port', (v) => Number(v), 8787)
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--db <path>', 'DuckDB file', './devsink.duckdb')
  .addOption(new Option('--api-key <key>', 'bearer token clients must send').env('DEFINITE_API_KEY').makeOptionMandatory())
  .action(async (opts: { port: number; host: string; db: string; apiKey: string }) => {
    try {
      const logger = createLogger('info');
      // DuckDB is a native module only the dev sink needs: loaded on demand.
      const { startDevSink } = await import('./destinations/dev-sink.js');
      const sink = await startDevSink({ port: opts.port, host: opts.host, dbPath: opts.db, apiKey: opts.apiKey, logger });
      logger.info({ endpoint: sink.url, db: opts.db }, 'dev sink listening');
      onSignals(() => sink.close(), logger);
    } catch (err) {
      fail(err);
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => fail(err instanceof Error ? err : new AppError('INTERNAL', String(err))));
