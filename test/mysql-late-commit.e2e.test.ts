import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { parseConfig, type Config } from '../src/config.js';
import { dropRedisPrefix, REDIS_URL, uniqueName } from './helpers/services.js';
import { createMysqlDatabase, type MysqlDatabase } from './helpers/mysql.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

/**
 * A MySQL writer stamps its rows with its statement's NOW(), no earlier than its transaction's start, but commits
 * later. Rows committed by others in the meantime must not move the cursor past the open transaction's rows: the read
 * boundary is the oldest open InnoDB transaction's start (information_schema.INNODB_TRX), whole seconds.
 */
describe.each(['timestamp(6)', 'datetime(6)'])('rows of a long MariaDB transaction that commits late still arrive (%s watermark)', (type) => {
  let db: MysqlDatabase;
  let receiver: Receiver;
  const prefix = uniqueName('ps');
  let config: Config;

  beforeAll(async () => {
    db = await createMysqlDatabase();
    await db.client.query(`CREATE TABLE events (id int PRIMARY KEY, updated_at ${type} NOT NULL DEFAULT NOW(6) ON UPDATE NOW(6), v text)`);
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [{ name: 'app', kind: 'mysql', url: db.url, tables: [{ name: 'events', watermark: 'updated_at', batchRows: 10 }] }],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  const arrived = (): number[] =>
    [...new Set((receiver.stored.get('bronze.app_events') ?? []).map((r) => (JSON.parse(r) as { id: number }).id))].sort((a, b) => a - b);

  it('holds the read boundary at the oldest open transaction and delivers its rows after it commits', async () => {
    // Stamped well before the slow transaction, so the boundary (whole seconds) lies above them.
    await db.client.query(`INSERT INTO events (id, updated_at, v) SELECT seq, '2024-01-01 00:00:00' + INTERVAL seq SECOND, 'early' FROM seq_1_to_5`);
    // A writer with the server's default session settings, as applications connect.
    const slow = await mysql.createConnection({ uri: db.url });
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO events (id, v) VALUES (100, 'late')`);
      // Committed after the slow transaction started, so their watermarks are above its start.
      await db.client.query(`INSERT INTO events (id, v) SELECT seq, 'meanwhile' FROM seq_6_to_30`);

      expect((await syncPass(config)).failed).toEqual([]);
      expect(arrived()).toEqual([1, 2, 3, 4, 5]);
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    // Bounded: another session's transaction on the shared server may hold the boundary back for a pass.
    for (let pass = 0; pass < 20 && arrived().length < 31; pass++) expect((await syncPass(config)).failed).toEqual([]);
    expect(arrived()).toEqual([...Array.from({ length: 30 }, (_, i) => i + 1), 100]);
  });
});
