import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { currentRows, resetChangeStream, storedRecords, type VersionedRow } from './helpers/moved-table.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { dropRedisPrefix, LOGICAL_PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';

/**
 * A CDC table moved to another source on the same server, same target (a source renamed, or split off for a slot
 * of its own). Epochs are counted for every source under the prefix, so a new source's stream sorts after an old
 * source's reset; a table moved into a stream older than what its target holds is refused until that source is reset.
 */
describe('a CDC table moved to another source with the same target', () => {
  const schema = uniqueName('mv');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let c: pg.Client;
  let receiver: Receiver;
  const records = (): VersionedRow[] => storedRecords(receiver, `bronze.items`);
  const source = (name: string, tables: string[]): unknown => ({
    name,
    kind: 'postgres',
    url: LOGICAL_PG_URL,
    mode: 'cdc',
    cdc: { slot: `${slot}_${name}`, publication: `${slot}_${name}`, flushInterval: '50ms' },
    tables: tables.map((t) => ({ name: `${schema}.${t}`, target: `bronze.${t}`, batchRows: 4 })),
  });
  const config = (...sources: unknown[]): Config =>
    parseConfig({ redis: { url: REDIS_URL, prefix }, destination: { url: receiver.url, apiKey: 'k' }, sources }, {});
  const expectStateEqualsSource = async (): Promise<void> => {
    const state = currentRows(records());
    expect(state).toEqual((await c.query(`SELECT id, v FROM items ORDER BY id`)).rows);
  };

  beforeAll(async () => {
    c = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    await c.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)`);
    await c.query(`CREATE TABLE other (id int PRIMARY KEY)`);
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    for (const n of ['app', 'app2', 'app3']) {
      await c.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [`${slot}_${n}`]).catch(() => {});
      await c.query(`DROP PUBLICATION IF EXISTS ${slot}_${n}`);
    }
    await c.query(`DROP SCHEMA ${schema} CASCADE`);
    await c.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('orders a renamed source’s records after those the old name sent after its reset', async () => {
    // Source app3 streams another table all along: epochs are given out to its streams too.
    const withOther = (...s: unknown[]): Config => config(source('app3', ['other']), ...s);
    await c.query(`INSERT INTO items SELECT g, 'v0' FROM generate_series(1, 3) g`);
    expect((await syncPass(withOther(source('app', ['items'])), { timeoutMs: 20_000 })).failed).toEqual([]);
    // One reset of app: it streams in a later epoch from then on.
    await resetChangeStream(withOther(source('app', ['items'])), 'app');
    expect((await syncPass(withOther(source('app', ['items'])), { timeoutMs: 20_000 })).failed).toEqual([]);
    await c.query(`UPDATE items SET v = 'by app' WHERE id = 1`);
    expect((await syncPass(withOther(source('app', ['items'])), { timeoutMs: 20_000 })).failed).toEqual([]);
    const afterReset = records().at(-1)!._ordering;
    expect(afterReset).toMatch(/^~~\d{6}~/);

    // Renamed app2: a new slot and a new stream, in a later epoch still (not 0, as its name never had one).
    await c.query(`SELECT pg_drop_replication_slot($1)`, [`${slot}_app`]);
    expect((await syncPass(withOther(source('app2', ['items'])), { timeoutMs: 20_000 })).failed).toEqual([]);
    await c.query(`UPDATE items SET v = 'by app2' WHERE id = 1`);
    await c.query(`DELETE FROM items WHERE id = 2`);
    expect((await syncPass(withOther(source('app2', ['items'])), { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(records().at(-1)!._ordering.slice(0, 8) > afterReset.slice(0, 8)).toBe(true);
    await expectStateEqualsSource();
  });

  it('refuses to stream a table into a source whose stream is older than what its target holds, until that source is reset', async () => {
    await c.query(`SELECT pg_drop_replication_slot($1)`, [`${slot}_app2`]);
    // items joins app3, whose stream started before the epochs that bronze.items holds.
    const held = records().at(-1)!._ordering;
    const joined = config(source('app3', ['other', 'items']));
    const refused = await syncPass(joined, { timeoutMs: 20_000 });
    expect(refused.failed.map((f) => f.reason)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^\\[CURSOR_INVALID\\] bronze\\.items holds records of a later change stream \\(ordering epoch ${Number(held.slice(2, 8))}\\) than source app3's \\(epoch [01]\\).*pushsync cdc reset --source app3`,
        ),
      ),
    ]);
    await resetChangeStream(joined, 'app3');
    expect((await syncPass(joined, { timeoutMs: 20_000 })).failed).toEqual([]);
    await c.query(`UPDATE items SET v = 'by app3' WHERE id = 3`);
    expect((await syncPass(joined, { timeoutMs: 20_000 })).failed).toEqual([]);
    expect(records().at(-1)!._ordering.slice(0, 8) > held.slice(0, 8)).toBe(true);
    await expectStateEqualsSource();
  });
});
