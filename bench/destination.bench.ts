import { Redis } from 'ioredis';
import { pipelineBackfill, type PipelineResult } from './backfill.js';
import { benchTable, countRows, ensureDataset } from './dataset.js';
import { startReceiverChild, type ReceiverChild } from './receiver-child.js';
import { positiveInt, PG_URL, REDIS_URL, SCHEMA } from './settings.js';

/**
 * The pipeline against a remote-like destination, in one run (see bench/README.md):
 * 1. latency: the default configuration into a receiver answering at once and into one that waits 50 ms per request;
 * 2. compression: none against gzip, into a receiver with 50 ms latency behind a link of limited bandwidth.
 */
/**
 * Rows of the latency rounds: 1M, as `npm run bench`. At 200k a run lasts about a second, and the waves of requests
 * it takes to start and to drain (with 4 in flight, 50 ms each) weigh as much as the rate being compared.
 */
const ROWS = positiveInt('BENCH_ROWS', 1_000_000);
/** Rows of the compression rounds, smaller: uncompressed, 200k rows take 9 s through the simulated link. */
const LINK_ROWS = positiveInt('BENCH_LINK_ROWS', 200_000);
const ROUNDS = positiveInt('BENCH_ROUNDS', 2);
const LATENCY_MS = positiveInt('BENCH_LATENCY_MS', 50);
/** Bytes per second of the simulated link of the compression runs: 100 Mbit/s. */
const BANDWIDTH = positiveInt('BENCH_BANDWIDTH', 12_500_000);
const TABLE = `${SCHEMA}.${benchTable(ROWS)}`;
const LINK_TABLE = `${SCHEMA}.${benchTable(LINK_ROWS)}`;
const GOAL_LATENCY = 0.9;

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const rate = (p: PipelineResult): number => p.rows / p.seconds;
const best = (runs: PipelineResult[]): PipelineResult => runs.reduce((a, b) => (rate(b) > rate(a) ? b : a));

function line(label: string, p: PipelineResult): string {
  return (
    `${label}: ${fmtInt(p.rows)} rows in ${p.seconds.toFixed(2)} s = ${fmtInt(rate(p))} rows/s, ${p.requests} requests, ` +
    `CPU pipeline ${((p.cpu.pipeline / p.rows) * 1e6).toFixed(2)} s per 1M rows (event loop ${(p.eventLoopBusy * 100).toFixed(0)}% busy), ` +
    `receiver ${p.cpu.receiver.toFixed(1)} s, wire ${(((p.wireBytes / p.rows) * 1e6) / 1024 / 1024).toFixed(0)} MB per 1M rows ` +
    `(${(p.bodyBytes / Math.max(1, p.wireBytes)).toFixed(1)}:1)`
  );
}

async function main(): Promise<number> {
  console.log(`datasets: ${TABLE}, ${fmtInt(ROWS)} rows (latency); ${LINK_TABLE}, ${fmtInt(LINK_ROWS)} rows (compression)`);
  await ensureDataset(PG_URL, SCHEMA, ROWS, false);
  await ensureDataset(PG_URL, SCHEMA, LINK_ROWS, false);
  const expected = await countRows(PG_URL, SCHEMA, benchTable(ROWS));
  const linkExpected = await countRows(PG_URL, SCHEMA, benchTable(LINK_ROWS));
  const monitor = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const receivers: ReceiverChild[] = [];
  const open = async (latencyMs: number, bandwidth = 0): Promise<ReceiverChild> => {
    const r = await startReceiverChild({ latencyMs, bandwidth });
    receivers.push(r);
    return r;
  };
  let failed = false;
  const run = async (label: string, receiver: ReceiverChild, destination: Record<string, unknown> = {}, linked = false): Promise<PipelineResult> => {
    const p = await pipelineBackfill({
      receiver,
      monitor,
      expected: linked ? linkExpected : expected,
      pgUrl: PG_URL,
      redisUrl: REDIS_URL,
      table: linked ? LINK_TABLE : TABLE,
      batchRows: 5000,
      destination,
    });
    console.log(line(label, p));
    for (const problem of p.problems) console.log(`  FAILED: ${problem}`);
    if (p.problems.length > 0) failed = true;
    return p;
  };
  try {
    const instant = await open(0);
    const remote = await open(LATENCY_MS);
    const limited = await open(LATENCY_MS, BANDWIDTH);
    const near: PipelineResult[] = [];
    const far: PipelineResult[] = [];
    const plain: PipelineResult[] = [];
    const gzip: PipelineResult[] = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      near.push(await run(`round ${round}: defaults, receiver answering at once`, instant));
      far.push(await run(`round ${round}: defaults, receiver waiting ${LATENCY_MS} ms per request`, remote));
    }
    const link = `${LATENCY_MS} ms latency, link of ${(BANDWIDTH / 1e6).toFixed(1)} MB/s`;
    for (let round = 1; round <= ROUNDS; round += 1) {
      plain.push(await run(`round ${round}: compression none, ${link}`, limited, { compression: 'none' }, true));
      gzip.push(await run(`round ${round}: compression gzip, ${link}`, limited, { compression: 'gzip' }, true));
    }
    if (failed) {
      console.log('RESULT INVALID: the pipeline did not deliver exactly the table');
      return 1;
    }
    const ratio = rate(best(far)) / rate(best(near));
    console.log('');
    console.log(`best of ${ROUNDS}:`);
    console.log(line('receiver answering at once', best(near)));
    console.log(line(`receiver waiting ${LATENCY_MS} ms`, best(far)));
    console.log(`ratio ${LATENCY_MS} ms / at once = ${ratio.toFixed(2)} (goal >= ${GOAL_LATENCY}) ${ratio >= GOAL_LATENCY ? 'MET' : 'MISSED'}`);
    console.log(line(`compression none, ${link}`, best(plain)));
    console.log(line(`compression gzip, ${link}`, best(gzip)));
    console.log(`ratio gzip / none = ${(rate(best(gzip)) / rate(best(plain))).toFixed(2)} in rows/s`);
  } finally {
    monitor.disconnect();
    for (const r of receivers) await r.close();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
