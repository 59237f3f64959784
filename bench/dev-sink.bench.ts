import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { recordEncoder } from '../src/core/record.js';
import { startDevSink } from '../src/destinations/dev-sink.js';
import { StreamApiClient } from '../src/destinations/stream-api.js';
import { benchTable, ensureDataset } from './dataset.js';
import { appendDirectly, type Column } from './duckdb-appender.js';
import { positiveInt, PG_URL, SCHEMA } from './settings.js';

/**
 * How fast the dev sink stores records into DuckDB: the benchmark table's rows, read once and encoded as pushsync's
 * records (not timed), are POSTed in requests of `BENCH_BATCH_ROWS` records, `BENCH_CONCURRENCY` at a time, to a dev
 * sink in this process writing a DuckDB file. Rate = rows stored per second of wall time. Each round then appends
 * the same rows straight into DuckDB (no HTTP, values split beforehand): on a shared machine the ratio of the two
 * says more than either rate. See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 200_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const BATCH = positiveInt('BENCH_BATCH_ROWS', 5000);
const CONCURRENCY = positiveInt('BENCH_CONCURRENCY', 4);
const GOAL = 100_000;
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** The table's rows as pushsync's records, encoded as the Postgres source would. */
async function records(): Promise<string[]> {
  const client = new pg.Client({ connectionString: PG_URL, options: '-c TimeZone=UTC -c extra_float_digits=1' });
  await client.connect();
  try {
    const t = `${SCHEMA}.${benchTable(ROWS)}`;
    const { rows } = await client.query<[string, string]>({
      text:
        `SELECT t.updated_at::text, to_json(r.*)::text FROM ${t} t, LATERAL (SELECT t.id::text AS id, t.updated_at, t.quantity, ` +
        `t.amount::text AS amount, t.title, t.active, t.score, t.ref, t.attrs, t.day, t.code, t.created_at) r ORDER BY t.id`,
      rowMode: 'array',
    });
    const encode = recordEncoder('upsert', { source: 'bench', table: t, extractedAt: new Date().toISOString() });
    return rows.map(([wm, json]) => encode(json, wm));
  } finally {
    await client.end();
  }
}

async function main(): Promise<number> {
  await ensureDataset(PG_URL, SCHEMA, ROWS, false);
  const all = await records();
  console.log(`dataset: ${fmtInt(all.length)} records of ${SCHEMA}.${benchTable(ROWS)}, ${BATCH} per request, ${CONCURRENCY} in flight`);
  const rates: number[] = [];
  const ratios: number[] = [];
  const directRates: number[] = [];
  const perRow = (cpuSeconds: number): string => `${((cpuSeconds * 1e6) / all.length).toFixed(1)} µs`;
  for (let round = 1; round <= ROUNDS; round += 1) {
    const dir = await mkdtemp(join(tmpdir(), 'pushsync-devsink-bench-'));
    try {
      const sink = await sinkRound(join(dir, 'sink.duckdb'), all);
      if (sink.stored !== all.length) {
        console.log(`RESULT INVALID: the sink stored ${sink.stored} rows, ${all.length} were sent`);
        return 1;
      }
      const direct = await appendDirectly(join(dir, 'direct.duckdb'), sink.columns, all, BATCH);
      const rate = sink.stored / sink.seconds;
      const directRate = all.length / direct.seconds;
      rates.push(rate);
      directRates.push(directRate);
      ratios.push(rate / directRate);
      console.log(
        `round ${round}: dev sink ${fmtInt(rate)} rows/s (${sink.seconds.toFixed(2)} s; CPU ${perRow(sink.cpuSeconds)}/row with the client); ` +
          `DuckDB appender alone ${fmtInt(directRate)} rows/s (${direct.seconds.toFixed(2)} s; CPU ${perRow(direct.cpuSeconds)}/row); ` +
          `sink/appender ${(rate / directRate).toFixed(2)}`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const best = Math.max(...rates);
  console.log(
    `best of ${ROUNDS}: ${fmtInt(best)} rows/s stored (goal >= ${fmtInt(GOAL)}) ${best >= GOAL ? 'MET' : 'MISSED'}; ` +
      `sink/appender ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`,
  );
  if (Math.max(...directRates) < GOAL) {
    console.log(`the DuckDB appender alone reached ${fmtInt(Math.max(...directRates))} rows/s: this machine is below the goal without the sink`);
  }
  return 0;
}

/** One timed run through a fresh dev sink; returns what it stored and the column types it chose. */
async function sinkRound(dbPath: string, all: string[]): Promise<{ stored: number; seconds: number; cpuSeconds: number; columns: Column[] }> {
  const sink = await startDevSink({ port: 0, dbPath, apiKey: 'bench' });
  const client = new StreamApiClient({ url: sink.url, apiKey: 'bench', timeoutMs: 120_000, compression: 'none', wait: false, tags: {} });
  try {
    const batches: string[][] = [];
    for (let i = 0; i < all.length; i += BATCH) batches.push(all.slice(i, i + BATCH));
    const cpu = process.cpuUsage();
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < batches.length) await client.send('bronze.bench_events', batches[next++]!);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const [count] = await sink.store.query('SELECT count(*)::VARCHAR AS n FROM bronze.bench_events');
    const described = await sink.store.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'bronze' AND table_name = 'bench_events'
       AND column_name NOT IN ('_received_at', '_request_id') ORDER BY ordinal_position`,
    );
    const columns = described.map((r) => ({ name: String(r.column_name), type: String(r.data_type) }));
    return { stored: Number(count?.n), seconds, cpuSeconds: (used.user + used.system) / 1e6, columns };
  } finally {
    await client.close();
    await sink.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
