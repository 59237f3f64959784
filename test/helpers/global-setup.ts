import pg from 'pg';
import { MAX_WORKERS, workerDatabases } from './databases.js';

/**
 * One database per test worker, on each PostgreSQL the tests use. The late-commit read boundary is the start of
 * the oldest transaction in the database, so a test file holding a transaction open (on purpose, or while loading a
 * fixture) would hold back what another file running at the same time can read: each worker gets its own.
 */
export default async function setup(): Promise<void> {
  for (const { admin, name } of workerDatabases(MAX_WORKERS)) {
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (rows.length === 0)
        await client.query(`CREATE DATABASE ${name}`).catch((err: { code?: string }) => {
          // Two setups racing on a fresh machine: the other one created it.
          if (err.code !== '42P04' && err.code !== '23505') throw err;
        });
    } finally {
      await client.end();
    }
  }
}
