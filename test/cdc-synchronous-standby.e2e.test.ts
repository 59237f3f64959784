import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Config } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';
import { currentRows, storedRecords } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, SECOND_LOGICAL_PG_URL, uniqueName } from './helpers/services.js';
import { eventually } from './helpers/wait.js';

/**
 * With synchronous replication, Postgres writes and flushes a transaction's commit, and logical decoding streams
 * it, while the committing backend still waits for the standby: until the standby answers, no other session sees
 * its rows. Changes travel as keys and their rows are read afterwards, so a read in that window found an insert's
 * row missing (taken for deleted since: never sent) and an update's row as it was before. The cluster of this test
 * gets a synchronous standby that never connects; only this test's own transaction waits for it.
 */
describe('a transaction held back for a synchronous standby', () => {
  const schema = uniqueName('sync');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let admin: pg.Client;
  let writer: pg.Client;
  let receiver: Receiver;
  let config: Config;
  const setStandby = async (names: string | null): Promise<void> => {
    // Every other session commits locally, as before: only a session that asks for it waits for the standby.
    const statements =
      names === null
        ? [`ALTER SYSTEM RESET synchronous_standby_names`, `ALTER SYSTEM RESET synchronous_commit`]
        : [`ALTER SYSTEM SET synchronous_standby_names = '${names}'`, `ALTER SYSTEM SET synchronous_commit = 'local'`];
    for (const sql of [...statements, `SELECT pg_reload_conf()`]) await admin.query(sql);
  };

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: SECOND_LOGICAL_PG_URL });
    await admin.connect();
    writer = new pg.Client({ connectionString: SECOND_LOGICAL_PG_URL });
    await writer.connect();
    writer.on('error', () => undefined);
    await admin.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.items (id int PRIMARY KEY, v text NOT NULL)`);
    await admin.query(`INSERT INTO ${schema}.items SELECT g, 'v0' FROM generate_series(1, 3) g`);
    receiver = await startReceiver('k');
    config = cdcConfig({
      prefix,
      receiverUrl: receiver.url,
      slot,
      url: SECOND_LOGICAL_PG_URL,
      tables: [{ name: `${schema}.items`, target: 'bronze.items' }],
    });
  });
  afterAll(async () => {
    await setStandby(null);
    await writer.end().catch(() => undefined);
    await dropCdcFixtures(admin, slot, schema);
    await admin.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('reads its rows only once they are visible: the insert is sent and the update carries the new value', async () => {
    expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);
    expect(currentRows(storedRecords(receiver, 'bronze.items'))).toEqual([1, 2, 3].map((id) => ({ id, v: 'v0' })));

    await setStandby('pushsync_absent_standby');
    // The reload reaches each session on its own: the writer must have taken it before it commits.
    await eventually(
      async () =>
        (await writer.query<{ names: string }>(`SELECT current_setting('synchronous_standby_names') AS names`)).rows[0]!.names ===
        'pushsync_absent_standby',
      50,
      10_000,
    );
    await writer.query(`SET synchronous_commit = on`);
    const writerPid = (await writer.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
    const committed = writer
      .query(`BEGIN; INSERT INTO ${schema}.items VALUES (4, 'held'); UPDATE ${schema}.items SET v = 'held' WHERE id = 1; COMMIT`)
      .catch(() => undefined);
    await eventually(
      async () => (await admin.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND pid = $1`, [writerPid])).rowCount === 1,
      50,
      10_000,
    );
    // Flushed and decodable, yet invisible to everyone else.
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${schema}.items`)).rows[0].n).toBe(3);

    const lines: string[] = [];
    const logger = createLogger('info', {}, { write: (l: string) => void lines.push(l) });
    let ended = false;
    const pass = syncPass(config, { timeoutMs: 60_000, logger }).finally(() => (ended = true));
    // The pass streams the commit and waits for it; before, it read the rows at once and ended.
    await eventually(async () => lines.some((l) => l.includes('not visible on the source yet')) || ended, 100, 20_000);
    expect(ended).toBe(false);
    expect(storedRecords(receiver, 'bronze.items')).toHaveLength(3);

    // The standby gives up waiting: the transaction ends and its rows become visible.
    await admin.query(`SELECT pg_cancel_backend($1)`, [writerPid]);
    await committed;
    expect((await pass).failed).toEqual([]);
    expect(currentRows(storedRecords(receiver, 'bronze.items'))).toEqual([
      { id: 1, v: 'held' },
      { id: 2, v: 'v0' },
      { id: 3, v: 'v0' },
      { id: 4, v: 'held' },
    ]);
    expect(lines.some((l) => l.includes('the transactions became visible'))).toBe(true);
  });
});
