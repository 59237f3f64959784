/** What every benchmark reads from the environment: where the services are, and sizes given as BENCH_* variables. */

export function positiveInt(name: string, fallback: number): number {
  return integerAtLeast(name, fallback, 1, 'a positive integer');
}

/** As positiveInt, where 0 turns something off. */
export function wholeNumber(name: string, fallback: number): number {
  return integerAtLeast(name, fallback, 0, 'a whole number (0: none)');
}

function integerAtLeast(name: string, fallback: number, least: number, what: string): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < least) throw new Error(`${name} must be ${what}, got ${text}`);
  return n;
}

export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The schema of the benchmark's data sets; interpolated into SQL, so a plain identifier only. */
export const SCHEMA = process.env.BENCH_SCHEMA ?? 'pushsync_bench';
if (!/^[a-z_][a-z0-9_]*$/.test(SCHEMA)) throw new Error(`BENCH_SCHEMA must be a plain lower-case identifier, got ${SCHEMA}`);
