import pg from 'pg';
import { recordEncoder } from '../src/core/record.js';
import { benchTable } from './dataset.js';
import { PG_URL, SCHEMA } from './settings.js';

/** The benchmark table's first `rows` rows as pushsync's records, encoded as the Postgres source would. */
export async function benchRecords(rows: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: PG_URL, options: '-c TimeZone=UTC -c extra_float_digits=1' });
  await client.connect();
  try {
    const t = `${SCHEMA}.${benchTable(rows)}`;
    const { rows: found } = await client.query<[string, string]>({
      text:
        `SELECT t.updated_at::text, to_json(r.*)::text FROM ${t} t, LATERAL (SELECT t.id::text AS id, t.updated_at, t.quantity, ` +
        `t.amount::text AS amount, t.title, t.active, t.score, t.ref, t.attrs, t.day, t.code, t.created_at) r ORDER BY t.id`,
      rowMode: 'array',
    });
    // A fixed extraction time: the parent and the sending child build the same records.
    const encode = recordEncoder('upsert', { source: 'bench', table: t, extractedAt: '2026-01-01T00:00:00.000Z' });
    return found.map(([wm, json]) => encode(json, wm));
  } finally {
    await client.end();
  }
}
