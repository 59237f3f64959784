/** Test workers run at once (vitest.config.ts maxWorkers); each has its own database (see global-setup.ts). */
export const MAX_WORKERS = 2;

const SERVERS = [
  { env: 'PUSHSYNC_TEST_PG_URL', base: 'postgres://postgres@127.0.0.1:5432' },
  { env: 'PUSHSYNC_TEST_LOGICAL_PG_URL', base: 'postgres://postgres@127.0.0.1:5433' },
];

/**
 * The database of a worker (1-based, VITEST_POOL_ID). PUSHSYNC_TEST_DB_SUFFIX (letters, digits, underscores) keeps
 * two checkouts whose suites run at once on one server out of each other's databases.
 */
export function workerDatabase(worker: number): string {
  const suffix = (process.env.PUSHSYNC_TEST_DB_SUFFIX ?? '').replace(/[^a-z0-9_]/gi, '').toLowerCase();
  return `test_w${worker}${suffix === '' ? '' : `_${suffix}`}`;
}

/** Every worker database to create, on every server whose URL the environment does not override. */
export function workerDatabases(workers: number): Array<{ admin: string; name: string }> {
  return SERVERS.filter((s) => process.env[s.env] === undefined).flatMap((s) =>
    Array.from({ length: workers }, (_, i) => ({ admin: `${s.base}/postgres`, name: workerDatabase(i + 1) })),
  );
}

export function workerUrl(server: 0 | 1): string {
  const pool = Number(process.env.VITEST_POOL_ID ?? '1');
  return `${SERVERS[server]!.base}/${workerDatabase(((pool - 1) % MAX_WORKERS) + 1)}`;
}
