import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevSink, type DevSink } from '../src/destinations/dev-sink.js';
import { benchTable, ensureDataset } from './dataset.js';
import { benchRecords } from './dev-sink-records.js';
import { directBatch, openDirect, type Column, type DirectAppender, type DirectBatch } from './duckdb-appender.js';
import { positiveInt, PG_URL, SCHEMA } from './settings.js';

/**
 * How fast the dev sink stores records into DuckDB: the benchmark table's rows, read once and encoded as pushsync's
 * records into request buffers as the push worker does (not timed), are POSTed in requests of `BENCH_BATCH_ROWS`
 * records, `BENCH_CONCURRENCY` at a time, by a child process (bench/dev-sink-client.ts, as pushsync is a process of
 * its own) to a dev sink in this process writing a DuckDB file. Rate = rows stored per
 * second of wall time. The same rows are also appended straight into DuckDB (no HTTP, values split beforehand), and
 * the two alternate in waves of `BENCH_WAVE_BATCHES` requests, so that both see the same load: on a shared machine
 * their ratio, measured side by side, says more than either rate. See bench/README.md.
 */
const ROWS = positiveInt('BENCH_ROWS', 200_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const BATCH = positiveInt('BENCH_BATCH_ROWS', 5000);
const CONCURRENCY = positiveInt('BENCH_CONCURRENCY', 4);
const WAVE = positiveInt('BENCH_WAVE_BATCHES', 2 * CONCURRENCY);
const GOAL = 100_000;
const TARGET = 'bronze.bench_events';
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

interface Side {
  seconds: number;
  cpuSeconds: number;
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Runs `work` and adds its wall and CPU seconds (every thread of this process) to `side`. */
async function timed(side: Side, work: () => Promise<unknown>): Promise<void> {
  const cpu = cpuNow();
  const started = performance.now();
  await work();
  side.seconds += (performance.now() - started) / 1000;
  side.cpuSeconds += cpuNow() - cpu;
}

async function main(): Promise<number> {
  await ensureDataset(PG_URL, SCHEMA, ROWS, false);
  const all = await benchRecords(ROWS);
  const client = await startClient();
  const batches: string[][] = [];
  for (let i = 0; i < all.length; i += BATCH) batches.push(all.slice(i, i + BATCH));
  console.log(
    `dataset: ${fmtInt(all.length)} records of ${SCHEMA}.${benchTable(ROWS)}, ${BATCH} per request, ${CONCURRENCY} in flight, ` +
      `sink and appender alternating every ${WAVE} requests`,
  );
  const rates: number[] = [];
  const ratios: number[] = [];
  const directRates: number[] = [];
  const perRow = (cpuSeconds: number): string => `${((cpuSeconds * 1e6) / all.length).toFixed(1)} µs`;
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const dir = await mkdtemp(join(tmpdir(), 'pushsync-devsink-bench-'));
      try {
        const r = await runRound(dir, batches, client);
        if (r.stored !== all.length) {
          console.log(`RESULT INVALID: the sink stored ${r.stored} rows, ${all.length} were sent`);
          return 1;
        }
        const rate = all.length / r.sink.seconds;
        const directRate = all.length / r.direct.seconds;
        rates.push(rate);
        directRates.push(directRate);
        ratios.push(rate / directRate);
        console.log(
          `round ${round}: dev sink ${fmtInt(rate)} rows/s (${r.sink.seconds.toFixed(2)} s; CPU ${perRow(r.sink.cpuSeconds)}/row, ` +
            `the sending process ${perRow(r.clientCpuSeconds)}/row); ` +
            `DuckDB appender alone ${fmtInt(directRate)} rows/s (${r.direct.seconds.toFixed(2)} s; CPU ${perRow(r.direct.cpuSeconds)}/row); ` +
            `sink/appender ${(rate / directRate).toFixed(2)}; checkpoint at close: sink ${r.sinkCloseSeconds.toFixed(2)} s, appender ${r.directCloseSeconds.toFixed(2)} s`,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  } finally {
    client.close();
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

/** The sending process (bench/dev-sink-client.ts): told which sink to send to, then which requests, wave by wave. */
interface Client {
  connect(url: string): Promise<void>;
  /** Sends requests `from` up to `to`, `BENCH_CONCURRENCY` at a time; resolves with the CPU the child used. */
  send(from: number, to: number): Promise<number>;
  close(): void;
}

function reply<T>(child: ChildProcess, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>): void => {
      if (!(key in m)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null): void => reject(new Error(`the sending process exited with code ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function startClient(): Promise<Client> {
  const child = fork(fileURLToPath(new URL('./dev-sink-client.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = reply(child, 'ready');
  child.send({ rows: ROWS, batch: BATCH, concurrency: CONCURRENCY, target: TARGET });
  await ready;
  return {
    async connect(url) {
      const connected = reply(child, 'connected');
      child.send({ url });
      await connected;
    },
    async send(from, to) {
      const sent = reply<{ cpuSeconds: number }>(child, 'sent');
      child.send({ from, to });
      return (await sent).cpuSeconds;
    },
    close() {
      child.disconnect();
    },
  };
}

/**
 * One round through a fresh dev sink and a fresh direct appender, in alternating waves. The direct table takes
 * the column types the sink chose, so it is created after the sink's first wave.
 */
async function runRound(
  dir: string,
  batches: readonly string[][],
  client: Client,
): Promise<{ stored: number; sink: Side; direct: Side; clientCpuSeconds: number; sinkCloseSeconds: number; directCloseSeconds: number }> {
  const sink = await startDevSink({ port: 0, dbPath: join(dir, 'sink.duckdb'), apiKey: 'bench' });
  await client.connect(sink.url);
  let clientCpuSeconds = 0;
  const sinkSide: Side = { seconds: 0, cpuSeconds: 0 };
  const directSide: Side = { seconds: 0, cpuSeconds: 0 };
  let direct: DirectAppender | undefined;
  let directBatches: DirectBatch[] = [];
  let closed = false;
  try {
    for (let from = 0; from < batches.length; from += WAVE) {
      const to = Math.min(batches.length, from + WAVE);
      await timed(sinkSide, async () => {
        clientCpuSeconds += await client.send(from, to);
      });
      if (direct === undefined) {
        const columns = await sinkColumns(sink);
        directBatches = batches.map((batch) => directBatch(columns, batch));
        direct = await openDirect(join(dir, 'direct.duckdb'), columns);
      }
      const appender = direct;
      await timed(directSide, async () => {
        for (let i = from; i < to; i += 1) await appender.append(directBatches[i]!);
      });
    }
    const [count] = await sink.store.query(`SELECT count(*)::VARCHAR AS n FROM ${TARGET}`);
    // Closing checkpoints: the log of what was committed is written into the database file, compressed.
    let closing = performance.now();
    await sink.close();
    closed = true;
    const sinkCloseSeconds = (performance.now() - closing) / 1000;
    closing = performance.now();
    direct?.close();
    direct = undefined;
    const directCloseSeconds = (performance.now() - closing) / 1000;
    return { stored: Number(count?.n), sink: sinkSide, direct: directSide, clientCpuSeconds, sinkCloseSeconds, directCloseSeconds };
  } finally {
    direct?.close();
    if (!closed) await sink.close();
  }
}

/** The columns the sink created, in table order, its own `_received_at` and `_request_id` left out. */
async function sinkColumns(sink: DevSink): Promise<Column[]> {
  const described = await sink.store.query(
    `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'bronze' AND table_name = 'bench_events'
     AND column_name NOT IN ('_received_at', '_request_id') ORDER BY ordinal_position`,
  );
  return described.map((r) => ({ name: String(r.column_name), type: String(r.data_type) }));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
