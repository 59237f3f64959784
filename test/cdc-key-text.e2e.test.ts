import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { dropRedisPrefix, LOGICAL_PG_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';
import { currentState } from './helpers/current-state.js';

interface Rec {
  _op: string;
  _ordering: string;
  _extracted_at: string;
  id: number;
  at: string;
  region?: string;
}

/**
 * A server whose time zone is not UTC (postgresql.conf `timezone`, as initdb writes it from the host's zone; here a
 * role setting) prints timestamptz keys in the replication stream with its own offset, while every row and key
 * pushsync reads itself is spelled in UTC.
 */
describe('change data capture from a server outside UTC, with a timestamptz in the primary key', () => {
  const schema = uniqueName('cdctz');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  const role = uniqueName('tz');
  let admin: pg.Client;
  let receiver: Receiver;
  let config: Config;

  const records = (): Rec[] => (receiver.stored.get('bronze.app_events') ?? []).map((r) => JSON.parse(r) as Rec);
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 15_000 })).failed).toEqual([]);
  const state = (): Map<string, Rec> => {
    const keyed = records().map((r) => ({ ...r, id: `${r.id}|${r.at}` }));
    return currentState(keyed) as unknown as Map<string, Rec>;
  };

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER REPLICATION`);
    await admin.query(`ALTER ROLE ${role} SET TimeZone = 'Asia/Kolkata'`);
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`CREATE TABLE ${schema}.events (id int, at timestamptz, region text, PRIMARY KEY (id, at))`);
    await admin.query(
      `INSERT INTO ${schema}.events SELECT g, timestamptz '2024-03-01 10:00:00.123456+00' + g * interval '1 hour', 'US' FROM generate_series(1, 4) g`,
    );
    const url = new URL(LOGICAL_PG_URL);
    url.username = role;
    receiver = await startReceiver('k');
    config = cdcConfig({
      prefix,
      receiverUrl: receiver.url,
      slot,
      tables: [{ name: `${schema}.events`, where: "region <> 'EU'" }],
      url: url.toString(),
    });
  });
  afterAll(async () => {
    await dropCdcFixtures(admin, slot, schema);
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('a snapshot row that leaves the filter in a change is deleted downstream', async () => {
    await sync();
    expect(records().map((r) => r._op)).toEqual(['snapshot', 'snapshot', 'snapshot', 'snapshot']);
    await admin.query(`UPDATE ${schema}.events SET region = 'EU' WHERE id = 1`);
    await admin.query(`DELETE FROM ${schema}.events WHERE id = 2`);
    await sync();
    const changes = records()
      .filter((r) => r._op !== 'snapshot')
      .map((r) => [r._op, r.id, r.at]);
    expect(changes.sort()).toEqual([
      ['delete', 1, '2024-03-01T11:00:00.123456+00:00'],
      ['delete', 2, '2024-03-01T12:00:00.123456+00:00'],
    ]);
    expect([...state().keys()].sort()).toEqual(['3|2024-03-01T13:00:00.123456+00:00', '4|2024-03-01T14:00:00.123456+00:00']);
  });
});

/**
 * A character(n) key: the replication stream prints it blank-padded to its length, as the column stores it, while a
 * cast to text drops the padding.
 */
describe('change data capture of a filtered table keyed by a character(n) column', () => {
  const schema = uniqueName('cdcchar');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let admin: pg.Client;
  let receiver: Receiver;
  let config: Config;

  const records = (): Array<{ _op: string; code: string }> =>
    (receiver.stored.get('bronze.app_codes') ?? []).map((r) => JSON.parse(r) as { _op: string; code: string });
  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 15_000 })).failed).toEqual([]);

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`CREATE TABLE ${schema}.codes (code character(8) PRIMARY KEY, region text)`);
    await admin.query(`INSERT INTO ${schema}.codes VALUES ('ab', 'US'), ('cd', 'US'), ('ef', 'US')`);
    receiver = await startReceiver('k');
    config = cdcConfig({ prefix, receiverUrl: receiver.url, slot, tables: [{ name: `${schema}.codes`, where: "region <> 'EU'" }] });
  });
  afterAll(async () => {
    await dropCdcFixtures(admin, slot, schema);
    await admin.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it('a snapshot row that leaves the filter, or is deleted, is deleted downstream', async () => {
    await sync();
    expect(records().map((r) => r._op)).toEqual(['snapshot', 'snapshot', 'snapshot']);
    await admin.query(`UPDATE ${schema}.codes SET region = 'EU' WHERE code = 'ab'`);
    await admin.query(`DELETE FROM ${schema}.codes WHERE code = 'cd'`);
    await sync();
    const changes = records()
      .filter((r) => r._op !== 'snapshot')
      .map((r) => [r._op, r.code]);
    expect(changes.sort()).toEqual([
      ['delete', 'ab      '],
      ['delete', 'cd      '],
    ]);
  });
});
