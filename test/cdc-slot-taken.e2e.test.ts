import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/** Replication slots are cluster-wide: a name already used by another database cannot be used from this one. */
describe('a CDC slot name taken by another database', () => {
  const schema = uniqueName('taken');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  const otherDbUrl = Object.assign(new URL(LOGICAL_PG_URL), { pathname: '/postgres' }).toString();
  let client: pg.Client;
  let other: pg.Client;
  let receiver: Receiver;

  beforeAll(async () => {
    other = new pg.Client({ connectionString: otherDbUrl });
    await other.connect();
    await other.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    client = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await client.query(`INSERT INTO items VALUES (1, 'a'), (2, 'b')`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await other.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    await other.end();
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`);
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('fails the CDC run once, without retries, with SOURCE_SLOT_TAKEN naming the cdc.slot setting', async () => {
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        extract: { attempts: 3 },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot, publication: slot },
            tables: [{ name: `${schema}.items` }],
          },
        ],
      },
      {},
    );
    const lines: Array<{ msg: string; code?: string }> = [];
    const logger = createLogger('info', {}, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string; code?: string }) });
    const summary = await syncPass(config, { logger, timeoutMs: 20_000 });
    expect(summary.timedOut).toBe(false);
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.reason).toMatch(
      /^\[SOURCE_SLOT_TAKEN\] app: replication stream: replication slot "\w+" was not created in this database/,
    );
    expect(summary.failed[0]!.reason).toContain(`choose another slot name in the cdc.slot setting of source app`);
    const runs = lines.filter((l) => l.msg === 'cdc run failed');
    expect(runs.map((l) => l.code)).toEqual(['SOURCE_SLOT_TAKEN']);
  });
});
