import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { PostgresSource } from '../src/sources/postgres.js';
import { dropRedisPrefix, LOGICAL_PG_URL, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { currentState, type Versioned } from './helpers/current-state.js';

interface Rec extends Versioned<string> {
  name: string | null;
  doc: unknown;
  née: string | null;
}

// Every character here has a LATIN1 byte of its own, above 127: read as UTF-8, each would become U+FFFD.
const NAMES = ['café', 'Ærøskøbing', 'naïve ½ ÿ ß', 'plain'];
const KEYS = ['a', 'é', 'ö', 'ÿ', 'z'];
const quoted = (text: string): string => `«${text}»`;

/** A database of `encoding` on the server of `url` (dropped by `drop`), and a client of it speaking UTF-8. */
async function encodedDatabase(url: string, encoding = 'LATIN1'): Promise<{ url: string; client: pg.Client; drop: () => Promise<void> }> {
  const name = uniqueName(encoding.toLowerCase());
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const adminClient = new pg.Client({ connectionString: admin.toString() });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${name} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
  const own = new URL(url);
  own.pathname = `/${name}`;
  // This client says what it speaks, so the server converts what it sends and what it reads.
  const client = new pg.Client({ connectionString: own.toString(), options: '-c client_encoding=UTF8' });
  await client.connect();
  return {
    url: own.toString(),
    client,
    drop: async () => {
      await client.end();
      await adminClient.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await adminClient.end();
    },
  };
}

async function fill(client: pg.Client): Promise<void> {
  await client.query(
    `CREATE TABLE items (id text PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), name text, doc jsonb, "née" varchar(40))`,
  );
  for (const [i, key] of KEYS.entries()) {
    const name = NAMES[i % NAMES.length]!;
    await client.query(`INSERT INTO items (id, name, doc, "née") VALUES ($1, $2, $3, $4)`, [
      key,
      name,
      JSON.stringify({ [key]: name }),
      quoted(name),
    ]);
  }
}

function expectRecordsMatch(records: Rec[]): void {
  const state = currentState(records);
  expect([...state.keys()].sort()).toEqual([...KEYS].sort());
  for (const [i, key] of KEYS.entries()) {
    const name = NAMES[i % NAMES.length]!;
    const rec = state.get(key)!;
    expect({ name: rec.name, doc: rec.doc, née: rec['née'] }).toEqual({ name, doc: { [key]: name }, née: quoted(name) });
  }
}

describe('a database whose encoding is not UTF-8', () => {
  let receiver: Receiver;
  const prefixes: string[] = [];

  beforeAll(async () => {
    receiver = await startReceiver('k');
  });
  afterAll(async () => {
    await receiver.close();
    for (const p of prefixes) await dropRedisPrefix(p);
  });

  /** A config of the one source, under a Redis prefix of its own. */
  function configFor(source: Record<string, unknown>): Config {
    const prefix = uniqueName('ps');
    prefixes.push(prefix);
    return parseConfig({ redis: { url: REDIS_URL, prefix }, destination: { url: receiver.url, apiKey: 'k' }, sources: [source] }, {});
  }

  for (const backfillRead of ['json', 'copy'] as const) {
    it(`backfills a LATIN1 database's text as the characters it holds, keys across pages included (backfillRead: ${backfillRead})`, async () => {
      const db = await encodedDatabase(PG_URL);
      try {
        await fill(db.client);
        const config = configFor({
          name: `l_${backfillRead}`,
          kind: 'postgres',
          url: db.url,
          backfillRead,
          tables: [{ name: 'public.items', watermark: 'updated_at', batchRows: 2 }],
        });
        const summary = await syncPass(config, { timeoutMs: 30_000 });
        expect(summary.failed).toEqual([]);
        const records = (receiver.stored.get(`bronze.l_${backfillRead}_items`) ?? []).map((r) => JSON.parse(r) as Rec);
        expect(records).toHaveLength(KEYS.length);
        expectRecordsMatch(records);
      } finally {
        await db.drop();
      }
    });
  }

  it("streams a LATIN1 database's changes as the characters they hold, and deletes by those keys", async () => {
    const db = await encodedDatabase(LOGICAL_PG_URL);
    const slot = uniqueName('slot');
    try {
      await fill(db.client);
      const config = configFor({
        name: 'lcdc',
        kind: 'postgres',
        url: db.url,
        mode: 'cdc',
        cdc: { slot, publication: slot, flushInterval: '50ms' },
        tables: [{ name: 'public.items', batchRows: 2 }],
      });
      expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);
      await db.client.query(`UPDATE items SET name = name || ' ñ' WHERE id = 'é'`);
      await db.client.query(`INSERT INTO items (id, name, doc, "née") VALUES ('Ø', 'Øre', '{"Ø": "Øre"}', '«Øre»')`);
      await db.client.query(`DELETE FROM items WHERE id = 'ÿ'`);
      expect((await syncPass(config, { timeoutMs: 30_000 })).failed).toEqual([]);
      const records = (receiver.stored.get('bronze.lcdc_items') ?? []).map((r) => JSON.parse(r) as Rec);
      const state = currentState(records);
      expect([...state.keys()].sort()).toEqual(['a', 'z', 'é', 'ö', 'Ø'].sort());
      expect(state.get('é')!.name).toBe(`${NAMES[1]!} ñ`);
      expect(state.get('Ø')).toMatchObject({ name: 'Øre', doc: { Ø: 'Øre' }, née: '«Øre»' });
      expect(state.get('ö')).toMatchObject({ name: NAMES[2], née: quoted(NAMES[2]!) });
      expect(records.filter((r) => r._op === 'delete').map((r) => r.id)).toEqual(['ÿ']);
    } finally {
      await db.client.query(`SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
      await db.drop();
    }
  });

  it('warns of a SQL_ASCII database, whose bytes the server passes on unconverted, and of no other encoding', async () => {
    for (const encoding of ['SQL_ASCII', 'LATIN1', 'UTF8']) {
      const db = await encodedDatabase(PG_URL, encoding);
      const source = new PostgresSource({ name: 'enc', url: db.url, poolSize: 1 });
      try {
        const warnings = (await source.warnings()).filter((w) => w.includes('encoding'));
        if (encoding === 'SQL_ASCII') expect(warnings).toEqual([expect.stringMatching(/^source enc: the database's encoding is SQL_ASCII.*U\+FFFD/)]);
        else expect(warnings).toEqual([]);
      } finally {
        await source.close();
        await db.drop();
      }
    }
  });
});
