import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import type { OnceSummary } from '../src/queue/run-once.js';
import { createSchema, dropRedisPrefix, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import type pg from 'pg';
import { newestPerKey } from './helpers/current-state.js';

const PAGE = 100;

interface Received {
  _op: string;
  _event_id: string;
  _ordering: string;
  _extracted_at: string;
  _source: string;
  _table: string;
  id: string;
  updated_at: string;
  amount: string | null;
  note: string | null;
}

/** Source rows in the forms the record contract promises, computed by Postgres independently of the pipeline. */
async function sourceRows(client: pg.Client, table: string): Promise<Map<string, Record<string, string | null>>> {
  const { rows } = await client.query<{ id: string; updated_at: string; amount: string | null; note: string | null }>(
    `SELECT id::text, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS updated_at, amount::text, note FROM ${table}`,
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/** `2024-01-01T00:00:00.5+00:00` → `2024-01-01T00:00:00.500000` */
function normaliseTimestamp(text: string): string {
  const m = /^(.{19})(?:\.(\d+))?\+00:00$/.exec(text);
  if (!m) throw new Error(`unexpected timestamp form ${text}`);
  return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}`;
}

function currentState(rows: Received[]): Map<string, Received> {
  return newestPerKey(rows);
}

describe('end-to-end watermark sync through BullMQ to a Stream API endpoint', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let prefix: string;
  let config: Config;
  let table: string;

  beforeAll(async () => {
    db = await createSchema();
    receiver = await startReceiver('k');
    prefix = uniqueName('ps');
    table = `${db.schema}.orders`;
    await db.client.query(`CREATE TABLE orders (id bigint PRIMARY KEY, updated_at timestamptz, amount numeric(30,10), note text)`);
    await db.client.query(`CREATE INDEX ON orders (updated_at, id)`);
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k', backoff: { base: 10, cap: 50 }, attempts: 5 },
        sources: [{ name: 'app', kind: 'postgres', url: PG_URL, tables: [{ name: table, watermark: 'updated_at', batchRows: PAGE }] }],
      },
      {},
    );
  });

  afterAll(async () => {
    await receiver.close();
    await db.drop();
    await dropRedisPrefix(prefix);
  });

  async function syncOnce(): Promise<OnceSummary> {
    return syncPass(config);
  }

  function received(): Received[] {
    return (receiver.stored.get('bronze.app_orders') ?? []).map((t) => JSON.parse(t) as Received);
  }

  async function expectCurrentStateEqualsSource(): Promise<void> {
    const source = await sourceRows(db.client, table);
    const state = currentState(received());
    expect(state.size).toBe(source.size);
    for (const [id, row] of source) {
      const got = state.get(id);
      expect(got, `row ${id} missing`).toBeDefined();
      expect(got!.amount).toBe(row.amount);
      expect(got!.note).toBe(row.note);
      expect(got!.updated_at === null ? null : normaliseTimestamp(got!.updated_at)).toBe(row.updated_at);
    }
  }

  it('backfills every row, including three pages sharing one microsecond timestamp and rows with a NULL watermark', async () => {
    await db.client.query(`
      INSERT INTO orders SELECT g, '2024-03-01 12:00:00+00'::timestamptz + g * interval '1.000001 second',
        (g * 1234567.0123456789)::numeric(30,10), 'note ' || g FROM generate_series(1, 1000) g`);
    await db.client.query(`
      INSERT INTO orders SELECT g, '2024-03-02 00:00:00.123456+00', 99999999999999999999.0000000001, NULL FROM generate_series(1001, 1300) g`);
    await db.client.query(`INSERT INTO orders VALUES (5000, NULL, 1, 'no watermark'), (5001, NULL, 2, 'no watermark either')`);

    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    expect(summary.timedOut).toBe(false);
    const rows = received();
    expect(new Set(rows.map((r) => r.id)).size).toBe(1302);
    expect(rows.length).toBe(1302);
    await expectCurrentStateEqualsSource();
    const sample = rows.find((r) => r.id === '1001')!;
    expect(sample).toMatchObject({ _op: 'upsert', _source: 'app', _table: table, amount: '99999999999999999999.0000000001' });
    expect(sample._event_id).toMatch(/^[0-9a-f]{32}$/);
    expect(sample.updated_at).toBe('2024-03-02T00:00:00.123456+00:00');
  });

  it('sends only what changed on the next run, with new versions ordered after the old ones', async () => {
    const before = received().length;
    await db.client.query(`UPDATE orders SET note = 'changed', updated_at = '2024-04-01 00:00:00.000001+00' WHERE id BETWEEN 1 AND 300`);
    await db.client.query(`UPDATE orders SET amount = 0.5, updated_at = '2024-04-01 00:00:00.000002+00' WHERE id = 1300`);
    await db.client.query(`INSERT INTO orders VALUES (2000, '2024-04-02 00:00:00+00', 7, 'new')`);

    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    const added = received().slice(before);
    expect(added.length).toBe(302);
    expect(new Set(added.map((r) => r.id))).toEqual(new Set([...Array.from({ length: 300 }, (_, i) => String(i + 1)), '1300', '2000']));
    await expectCurrentStateEqualsSource();
  });

  it('re-sends after a lost cursor carry the same event ids, so duplicates are removable', async () => {
    const before = received();
    const idsBefore = new Map(currentStateEntries(before));
    // Losing Redis state means starting the table over: everything is sent again, nothing skipped.
    await dropRedisPrefix(prefix);
    const summary = await syncOnce();
    expect(summary.failed).toEqual([]);
    const again = received().slice(before.length);
    expect(again.length).toBe(idsBefore.size);
    for (const r of again) expect(r._event_id).toBe(idsBefore.get(r.id));
  });
});

function currentStateEntries(rows: Received[]): Array<[string, string]> {
  return [...currentState(rows)].map(([id, r]) => [id, r._event_id]);
}
