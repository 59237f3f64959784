import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createPipeline, startRuntime, type Runtime } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { Keys } from '../src/queue/redis.js';
import { compareLsn } from '../src/core/lsn.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName, logicalItemsTable } from './helpers/services.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/**
 * A CDC reader that lost its lease without knowing it yet (its renewal has not answered: Redis failed over, the
 * lease lapsed, another reader took it) must not record a position. Its successor may already have recorded a
 * later one; the stale write would put pushsync's record behind the slot, and every run from then on would refuse
 * the slot as ahead of what pushsync acknowledged: a reader that never reads again.
 */
describe('a CDC reader whose lease was taken while it streams', () => {
  const schema = uniqueName('lease');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  const keys = new Keys(prefix);
  let client: pg.Client;
  let receiver: Receiver;
  let redis: Redis;
  let runtime: Runtime | undefined;

  beforeAll(async () => {
    client = await logicalItemsTable(schema, 10);
    receiver = await startReceiver('k');
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await runtime?.stop();
    await client
      .query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, [slot])
      .catch(() => {});
    await sleep(200);
    await client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await client.query(`DROP PUBLICATION IF EXISTS ${slot}`).catch(() => {});
    await client.query(`DROP SCHEMA ${schema} CASCADE`);
    await client.end();
    await receiver.close();
    await redis.quit();
    await dropRedisPrefix(prefix);
  });

  const ids = (): Set<number> => new Set((receiver.stored.get('bronze.app_items') ?? []).map((r) => (JSON.parse(r) as { id: number }).id));
  const slotConfirmed = async (): Promise<string> =>
    (await client.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0]!
      .lsn;

  async function until(what: string, check: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await check()) return;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('records no position once the lease is another holder’s, and the next holder delivers what came meanwhile', async () => {
    const config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        // A renewal every 20 s: the reader cannot learn of the takeover from its renewal during this test.
        extract: { leaseTtl: '60s' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: LOGICAL_PG_URL,
            mode: 'cdc',
            cdc: { slot, publication: slot, every: '200ms', flushInterval: '50ms' },
            tables: [{ name: `${schema}.items` }],
          },
        ],
      },
      {},
    );
    runtime = await startRuntime(createPipeline(config, createLogger('silent')), { roles: ['scheduler', 'extract', 'push'] });
    await client.query(`INSERT INTO items VALUES (11, 'streamed')`);
    await until('the reader to stream', () => ids().has(11));
    const stateKey = keys.cdcState('app', slot);
    await until('the position of row 11 to be recorded', async () => (await redis.hget(stateKey, 'ackedLsn')) === (await slotConfirmed()));

    // Another reader holds the lease now, as after a lapse during a Redis failover. The reader may still move on
    // over idle positions until then: what is recorded is read after the takeover, when every write the lease let
    // through is in (each is one script with its check).
    const lease = keys.lock('app', `cdc:${slot}`);
    await redis.set(lease, 'another-reader', 'PX', 60_000);
    const recorded = (await redis.hget(stateKey, 'ackedLsn'))!;
    await client.query(`INSERT INTO items VALUES (12, 'after the takeover')`);
    await sleep(2000);
    expect(await redis.hget(stateKey, 'ackedLsn')).toBe(recorded);
    // Nor does the slot go past it: the next holder resumes from the recorded position.
    expect(compareLsn(await slotConfirmed(), recorded)).toBeLessThanOrEqual(0);

    // The other holder goes away: the next run takes the stream over from the recorded position and delivers row 12.
    await redis.del(lease);
    await until('row 12 to arrive', () => ids().has(12));
    await until('a later position to be recorded', async () => (await redis.hget(stateKey, 'ackedLsn')) !== recorded);
  }, 90_000);
});
