import type pg from 'pg';
import { parseConfig, type Config } from '../../src/config.js';
import { LOGICAL_PG_URL, REDIS_URL } from './services.js';

/**
 * The config of one Postgres change data capture source `app` on the logical cluster (or `url`), its slot and
 * publication both named `slot`, changes flushed every 50 ms, delivering to `receiverUrl` with API key `k`.
 */
export function cdcConfig(o: { prefix: string; receiverUrl: string; slot: string; tables: unknown[]; url?: string }): Config {
  return parseConfig(
    {
      redis: { url: REDIS_URL, prefix: o.prefix },
      destination: { url: o.receiverUrl, apiKey: 'k' },
      sources: [
        {
          name: 'app',
          kind: 'postgres',
          url: o.url ?? LOGICAL_PG_URL,
          mode: 'cdc',
          cdc: { slot: o.slot, publication: o.slot, flushInterval: '50ms' },
          tables: o.tables,
        },
      ],
    },
    {},
  );
}

/** Drops what a `cdcConfig` test made on the logical cluster: its slot (unless a reader still holds it), publication and schema. */
export async function dropCdcFixtures(admin: pg.Client, slot: string, schema: string): Promise<void> {
  await admin.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
  await admin.query(`DROP PUBLICATION IF EXISTS ${slot}`);
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
}
