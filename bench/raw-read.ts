import pg from 'pg';

/** Types node-postgres would parse into JS values that lose information (Date) or cost a JSON.parse per row. */
const KEEP_AS_TEXT = new Set([
  1082, // date
  1114, // timestamp
  1184, // timestamptz
  114, // json
  3802, // jsonb
]);

const textTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    KEEP_AS_TEXT.has(oid) ? (v: string) => v : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

export interface RawReadResult {
  rows: number;
  seconds: number;
}

/**
 * The baseline: the fastest plain keyset read of the whole table from Node, pages of `pageRows` in (updated_at, id)
 * order, every column, array rows, timestamps as text (a Date would lose microseconds and break the keyset).
 */
export async function rawKeysetRead(url: string, qualifiedTable: string, pageRows: number): Promise<RawReadResult> {
  const client = new pg.Client({ connectionString: url, types: textTypes, options: '-c TimeZone=UTC' });
  await client.connect();
  try {
    const t = qualifiedTable;
    const first = `SELECT * FROM ${t} t ORDER BY t.updated_at, t.id LIMIT $1`;
    const next = `SELECT * FROM ${t} t WHERE (t.updated_at, t.id) > ($1::timestamptz, $2::bigint) ORDER BY t.updated_at, t.id LIMIT $3`;
    let rows = 0;
    let after: [string, string] | undefined;
    const started = performance.now();
    for (;;) {
      const result = after
        ? await client.query<unknown[]>({ text: next, values: [after[1], after[0], pageRows], rowMode: 'array' })
        : await client.query<unknown[]>({ text: first, values: [pageRows], rowMode: 'array' });
      rows += result.rows.length;
      const last = result.rows[result.rows.length - 1];
      if (!last || result.rows.length < pageRows) break;
      after = [last[0] as string, last[1] as string];
    }
    return { rows, seconds: (performance.now() - started) / 1000 };
  } finally {
    await client.end();
  }
}
