import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.js';
import { createSchema, dropRedisPrefix, LOGICAL_PG_URL, PG_URL, REDIS_URL, uniqueName } from './helpers/services.js';
import { syncPass } from './helpers/pass.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { cdcConfig, dropCdcFixtures } from './helpers/cdc.js';

/**
 * Key types whose equal values print differently: a case-insensitive type or collation, a numeric's scale, a float's
 * sign of zero, an interval's units. The destination tells the spellings apart (it compares the texts pushsync sent),
 * so a key respelled in place is a new key, and its old spelling must be deleted downstream.
 */
const CASES: Array<{ name: string; type: string; before: string; after: string; other: string; sent?: string[] }> = [
  { name: 'ci', type: 'citext', before: 'abc', after: 'ABC', other: 'zzz' },
  { name: 'icu', type: 'text COLLATE ci', before: 'abc', after: 'ABC', other: 'zzz' },
  { name: 'num', type: 'numeric', before: '1.0', after: '1.00', other: '2' },
  { name: 'flt', type: 'float8', before: '0', after: '-0', other: '2' },
  { name: 'ivl', type: 'interval', before: '1 day', after: '24:00:00', other: '2 days' },
  // Records spell character(n) blank-padded, arrays as JSON arrays (of strings for numeric).
  { name: 'chr', type: 'character(4) COLLATE ci', before: 'ab', after: 'AB', other: 'zz', sent: ['ab  ', 'AB  ', 'zz  '] },
  { name: 'arr', type: 'numeric[]', before: '{1.0}', after: '{1.00}', other: '{2}', sent: ['[1.0]', '[1.00]', '[2]'] },
];

/** How the records spell a case's keys: before, after, other. */
function spelled(c: (typeof CASES)[number]): { before: string; after: string; other: string } {
  const [before, after, other] = c.sent ?? [c.before, c.after, c.other];
  return { before: before!, after: after!, other: other! };
}

/** The record's key as pushsync wrote it (a float's -0 included), and its op. */
function keyOps(raw: readonly string[]): string[][] {
  return raw.map((r) => [(JSON.parse(r) as { _op: string })._op, /"k":("[^"]*"|[^,}]*)/.exec(r)![1]!.replace(/"/g, '')]);
}

async function createTypes(client: pg.Client): Promise<boolean> {
  const had = (await client.query(`SELECT 1 FROM pg_extension WHERE extname = 'citext'`)).rowCount === 1;
  // In public, where it is on every session's search path: citext's own operators then compare case-insensitively.
  await client.query(`CREATE EXTENSION IF NOT EXISTS citext SCHEMA public`);
  await client.query(`SELECT set_config('search_path', current_schema() || ', public', false)`);
  await client.query(`CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`);
  return !had;
}

describe('a Postgres key respelled in place in a reconciled table', () => {
  let db: Awaited<ReturnType<typeof createSchema>>;
  let receiver: Receiver;
  let createdCitext = false;
  const prefix = uniqueName('ps');
  let config: Config;

  const sync = async (reconcile = false): Promise<void> => {
    expect((await syncPass(config, { reconcile, timeoutMs: 30_000 })).failed).toEqual([]);
  };

  beforeAll(async () => {
    db = await createSchema();
    createdCitext = await createTypes(db.client);
    for (const c of CASES) {
      await db.client.query(`CREATE TABLE ${c.name} (k ${c.type} PRIMARY KEY, updated_at timestamptz NOT NULL, v int)`);
      await db.client.query(`INSERT INTO ${c.name} VALUES ($1, '2024-01-01', 1), ($2, '2024-01-01', 1)`, [c.before, c.other]);
    }
    receiver = await startReceiver('k');
    config = parseConfig(
      {
        redis: { url: REDIS_URL, prefix },
        destination: { url: receiver.url, apiKey: 'k' },
        sources: [
          {
            name: 'app',
            kind: 'postgres',
            url: PG_URL,
            tables: CASES.map((c) => ({ name: `${db.schema}.${c.name}`, watermark: 'updated_at', batchRows: 1, reconcile: { every: '1h' } })),
          },
        ],
      },
      {},
    );
  });
  afterAll(async () => {
    await receiver?.close();
    await db?.drop();
    if (createdCitext) {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP EXTENSION IF EXISTS citext`);
      await c.end();
    }
    await dropRedisPrefix(prefix);
  });

  it.each(CASES.map((c) => [c.type, c]))('reconciliation deletes the old spelling of a %s key', async (_type, c) => {
    if (c === CASES[0]) {
      await sync();
      for (const x of CASES) {
        await db.client.query(`UPDATE ${x.name} SET k = $1, v = 2, updated_at = '2024-01-02' WHERE k = $2`, [x.after, x.before]);
      }
      await sync(true);
    }
    const k = spelled(c);
    expect(keyOps(receiver.stored.get(`bronze.app_${c.name}`) ?? []).sort()).toEqual(
      [
        ['upsert', k.before],
        ['upsert', k.other],
        ['upsert', k.after],
        ['delete', k.before],
      ].sort(),
    );
  });
});

describe('a Postgres key respelled in place, in change data capture of a filtered table', () => {
  const schema = uniqueName('cdcspell');
  const slot = uniqueName('slot');
  const prefix = uniqueName('ps');
  let admin: pg.Client;
  let receiver: Receiver;
  let createdCitext = false;
  let config: Config;

  const sync = async (): Promise<void> => expect((await syncPass(config, { timeoutMs: 15_000 })).failed).toEqual([]);

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: LOGICAL_PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
    createdCitext = await createTypes(admin);
    for (const c of CASES) {
      await admin.query(`CREATE TABLE ${c.name} (k ${c.type} PRIMARY KEY, region text, v int)`);
      await admin.query(`INSERT INTO ${c.name} VALUES ($1, 'US', 1), ($2, 'US', 1)`, [c.before, c.other]);
    }
    receiver = await startReceiver('k');
    config = cdcConfig({
      prefix,
      receiverUrl: receiver.url,
      slot,
      tables: CASES.map((c) => ({ name: `${schema}.${c.name}`, where: "region <> 'EU'" })),
    });
  });
  afterAll(async () => {
    await dropCdcFixtures(admin, slot, schema);
    if (createdCitext) await admin.query(`DROP EXTENSION IF EXISTS citext`);
    await admin.end();
    await receiver.close();
    await dropRedisPrefix(prefix);
  });

  it.each(CASES.map((c) => [c.type, c]))('a change of the old spelling read after the respelling is not sent under it (%s)', async (_type, c) => {
    if (c === CASES[0]) {
      await sync();
      for (const x of CASES) {
        await admin.query(`UPDATE ${x.name} SET v = 2 WHERE k = $1`, [x.before]);
        await admin.query(`UPDATE ${x.name} SET k = $1, v = 3 WHERE k = $2`, [x.after, x.before]);
      }
      await sync();
      for (const x of CASES) await admin.query(`UPDATE ${x.name} SET region = 'EU' WHERE k = $1`, [x.after]);
      await sync();
    }
    const raw = receiver.stored.get(`bronze.app_${c.name}`) ?? [];
    const k = spelled(c);
    expect(keyOps(raw).sort()).toEqual(
      // Not the change of the old spelling made before the respelling: read now, it would find the row under its new one.
      [
        ['snapshot', k.before],
        ['snapshot', k.other],
        ['delete', k.before],
        ['insert', k.after],
        ['delete', k.after],
      ].sort(),
    );
  });
});
