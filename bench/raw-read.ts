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
 * The baselines: a plain keyset read of the whole table from Node, pages of `pageRows` in (updated_at, id) order,
 * every column, timestamps as text (a Date would lose microseconds and break the keyset). `rows: 'array'` is the
 * fastest read node-postgres offers; `'object'` keeps its default row shape (an object per row keyed by column name),
 * which is what an application reading the table would usually get.
 */
export async function rawKeysetRead(
  url: string,
  qualifiedTable: string,
  pageRows: number,
  rows: 'array' | 'object' = 'array',
): Promise<RawReadResult> {
  const client = new pg.Client({ connectionString: url, types: textTypes, options: '-c TimeZone=UTC' });
  await client.connect();
  try {
    const t = qualifiedTable;
    const first = `SELECT * FROM ${t} t ORDER BY t.updated_at, t.id LIMIT $1`;
    const next = `SELECT * FROM ${t} t WHERE (t.updated_at, t.id) > ($1::timestamptz, $2::bigint) ORDER BY t.updated_at, t.id LIMIT $3`;
    let count = 0;
    let after: [string, string] | undefined;
    const started = performance.now();
    for (;;) {
      const values = after ? [after[1], after[0], pageRows] : [pageRows];
      const text = after ? next : first;
      let page: number;
      let last: [string, string] | undefined;
      if (rows === 'array') {
        const result = await client.query<unknown[]>({ text, values, rowMode: 'array' });
        page = result.rows.length;
        const row = result.rows[page - 1];
        last = row && [row[0] as string, row[1] as string];
      } else {
        const result = await client.query<Record<string, unknown>>({ text, values });
        page = result.rows.length;
        const row = result.rows[page - 1];
        last = row && [row.id as string, row.updated_at as string];
      }
      count += page;
      if (!last || page < pageRows) break;
      after = last;
    }
    return { rows: count, seconds: (performance.now() - started) / 1000 };
  } finally {
    await client.end();
  }
}
