import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, LOGICAL_PG_URL, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { bullBoardDump, capturingLogger, hits, redisDump } from './helpers/leak-scan.js';

/**
 * A server's error can quote the value it failed on (Postgres: `invalid input syntax for type integer: "…"`). When
 * a table's `where` fails on a row, that value is one of a column the table leaves out: the failed job's reason,
 * the log and the dashboard must name the table, the condition's failure and the SQLSTATE, never the value.
 */
const SENTINEL = 'SENTINEL-AGE-4242';

for (const mode of ['watermark', 'cdc'] as const)
  describe(`a where condition that fails on a row value (${mode} mode)`, () => {
    const prefix = uniqueName('ps');
    const schema = uniqueName('errv');
    const slot = uniqueName('slot');
    const url = mode === 'cdc' ? LOGICAL_PG_URL : PG_URL;
    let db: pg.Client;
    let receiver: Receiver;
    let config: Config;
    const { logger, lines } = capturingLogger();

    beforeAll(async () => {
      db = new pg.Client({ connectionString: url });
      await db.connect();
      await db.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
      await db.query(`CREATE TABLE people (id int PRIMARY KEY, name text, extra jsonb, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
      await db.query(`INSERT INTO people (id, name, extra) VALUES (1, 'a', '{"age": "30"}'), (2, 'b', '{"age": "${SENTINEL}"}')`);
      receiver = await startReceiver('k');
      config = parseConfig(
        {
          redis: { url: REDIS_URL, prefix },
          destination: { url: receiver.url, apiKey: 'k', attempts: 1 },
          extract: { attempts: 1 },
          sources: [
            {
              name: 'app',
              kind: 'postgres',
              url,
              ...(mode === 'cdc' ? { mode: 'cdc', cdc: { slot, publication: slot, flushInterval: '50ms' } } : {}),
              tables: [
                {
                  name: `${schema}.people`,
                  ...(mode === 'watermark' ? { watermark: 'updated_at' } : {}),
                  columns: { exclude: ['extra'] },
                  where: "(extra->>'age')::int >= 18",
                },
              ],
            },
          ],
        },
        {},
      );
    });
    afterAll(async () => {
      if (mode === 'cdc') {
        await db.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
        await db.query(`DROP PUBLICATION IF EXISTS ${slot}`);
      }
      await db.query(`DROP SCHEMA ${schema} CASCADE`);
      await db.end();
      await receiver.close();
      await dropRedisPrefix(prefix);
    });

    it("keeps the value out of the failed job's reason, the log, Redis and the dashboard, and says what failed", async () => {
      const pass = await syncPass(config, { logger, timeoutMs: 20_000 });
      const reasons = pass.failed.map((f) => f.reason);
      console.log(`failed-job reasons: ${JSON.stringify(reasons)}`);
      expect(reasons.length).toBeGreaterThan(0);
      const found = hits(
        [SENTINEL],
        [
          ...reasons.map((r, i): [string, string] => [`reason ${i}`, r]),
          ...lines.map((l, i): [string, string] => [`log line ${i}`, l]),
          ...(await redisDump(prefix)),
          ...(await bullBoardDump(prefix)),
        ],
      );
      console.log(`sentinel hits: ${JSON.stringify(found.map(([, where]) => where))}`);
      expect(found).toEqual([]);
      expect(reasons.join('\n')).toMatch(/invalid input syntax for type integer/);
      expect(reasons.join('\n')).toContain('22P02');
    });
  });
