import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import { deletePrefix } from '../../src/queue/redis.js';
import { workerUrl } from './databases.js';

/** Connection settings of the services tests use; CI and developer machines run them on localhost. */
/** Each test worker has its own database (test/helpers/global-setup.ts), unless the environment names one. */
export const PG_URL = process.env.PUSHSYNC_TEST_PG_URL ?? workerUrl(0);
export const REDIS_URL = process.env.PUSHSYNC_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** A Postgres schema owned by one test file, dropped afterwards. */
export async function createSchema(): Promise<{ schema: string; client: pg.Client; drop: () => Promise<void> }> {
  const schema = uniqueName('t');
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`SET search_path TO ${schema}`);
  return {
    schema,
    client,
    drop: async () => {
      await client.query(`DROP SCHEMA ${schema} CASCADE`);
      await client.end();
    },
  };
}

/** Deletes every Redis key under a test's prefix. */
export async function dropRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    await deletePrefix(redis, prefix);
  } finally {
    await redis.quit();
  }
}

/** A PostgreSQL with wal_level=logical (scripts/logical-postgres.sh starts one on port 5433). */
export const LOGICAL_PG_URL = process.env.PUSHSYNC_TEST_LOGICAL_PG_URL ?? workerUrl(1);

/**
 * A second PostgreSQL server with wal_level=logical (port 5434, started by .ci/run with scripts/logical-postgres.sh),
 * for a source moved to another server, whose positions are not those of the first.
 */
export const SECOND_LOGICAL_PG_URL = process.env.PUSHSYNC_TEST_SECOND_LOGICAL_PG_URL ?? 'postgres://postgres@127.0.0.1:5434/test';

/**
 * A connection to the logical-replication cluster, with `schema` created and on its search path, holding
 * `items (id int PRIMARY KEY, v text)` with rows 1..`rows` of value 'v0': the table CDC end-to-end tests stream.
 */
export async function logicalItemsTable(schema: string, rows: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: LOGICAL_PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
  await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  await client.query(`INSERT INTO items SELECT g, 'v0' FROM generate_series(1, ${rows}) g`);
  return client;
}
