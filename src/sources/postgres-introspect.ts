import type { TableFacts, TimestampColumn } from '../core/init-plan.js';
import type { PostgresSource } from './postgres.js';

/**
 * What `pushsync init` reads from a PostgreSQL catalog: the tables the role may read (partitions through their
 * parent), their keys, timestamp columns, btree indexes and row triggers. Catalog reads only.
 */
const TABLES_SQL = `
SELECT json_build_object(
  'schema', n.nspname,
  'name', c.relname,
  'inDefaultSchema', to_regclass(quote_ident(c.relname)) = c.oid,
  'rowEstimate', CASE WHEN c.relkind = 'p'
    THEN (SELECT sum(p.reltuples) FILTER (WHERE p.reltuples >= 0) FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid WHERE h.inhparent = c.oid)
    ELSE NULLIF(c.reltuples, -1) END,
  'bytes', CASE WHEN c.relkind = 'p'
    THEN (SELECT sum(pg_table_size(h.inhrelid)) FROM pg_inherits h WHERE h.inhparent = c.oid)
    ELSE pg_table_size(c.oid) END,
  'primaryKey', (SELECT json_agg(a.attname ORDER BY k.o) FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary),
  'notNull', (SELECT coalesce(json_agg(a.attname), '[]') FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull),
  'timestamps', (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
      'default', pg_get_expr(d.adbin, d.adrelid)) ORDER BY a.attnum), '[]')
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      AND a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)),
  'indexes', (SELECT coalesce(json_agg(json_build_object('name', ic.relname, 'unique', i.indisunique,
      'columns', (SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum WHERE k.o <= i.indnkeyatts)) ORDER BY ic.relname), '[]')
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = c.oid AND am.amname = 'btree' AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid),
  'triggers', (SELECT coalesce(json_agg(json_build_object('name', t.tgname, 'function', p.proname, 'body', p.prosrc,
      'args', encode(t.tgargs, 'escape'), 'someColumns', cardinality(t.tgattr) > 0) ORDER BY t.tgname), '[]')
    FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
    -- tgtype bits: 1 row, 2 before, 16 update.
    WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgtype & 19 = 19)
)::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname`;

/** Tables up to 100 MB are counted exactly when the planner has no estimate yet (never analysed). */
const EXACT_COUNT_MAX_BYTES = 100 * 1024 * 1024;

interface Trigger {
  name: string;
  function: string;
  body: string;
  args: string;
  someColumns: boolean;
}

interface Row extends Omit<TableFacts, 'timestamps'> {
  bytes: number | null;
  timestamps: Array<{ name: string; type: string; default: string | null }>;
  triggers: Trigger[];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The BEFORE UPDATE row trigger that assigns the column on every update, if any: a PL/pgSQL body with
 * `NEW.col := …` (or `=`), or contrib's `moddatetime(col)`. A trigger limited to `UPDATE OF` some columns misses
 * updates of the others, so it does not count.
 */
export function triggerSetting(triggers: Trigger[], column: string): string | null {
  const name = escapeRegExp(column);
  const assigns = new RegExp(`\\bnew\\s*\\.\\s*(?:${name}|"${name}")\\s*:?=(?!=)`, 'i');
  const found = triggers.find(
    (t) => !t.someColumns && (assigns.test(t.body) || (t.function === 'moddatetime' && t.args.split('\\000').includes(column))),
  );
  return found?.name ?? null;
}

export async function introspectPostgres(source: PostgresSource): Promise<TableFacts[]> {
  const rows = await source.query({ text: TABLES_SQL, values: [] }, 'read the catalog');
  const facts: TableFacts[] = [];
  for (const [json] of rows) {
    const r = JSON.parse(json!) as Row;
    let rowEstimate = r.rowEstimate === null ? null : Math.round(Number(r.rowEstimate));
    if (rowEstimate === null && r.bytes !== null && Number(r.bytes) <= EXACT_COUNT_MAX_BYTES) {
      const qualified = `"${r.schema.replace(/"/g, '""')}"."${r.name.replace(/"/g, '""')}"`;
      const [count] = await source.query({ text: `SELECT count(*) FROM ${qualified}`, values: [] }, `count ${r.schema}.${r.name}`);
      rowEstimate = Number(count![0]);
    }
    const timestamps: TimestampColumn[] = r.timestamps.map((c) => ({
      ...c,
      onUpdate: false,
      setByTrigger: triggerSetting(r.triggers, c.name),
    }));
    facts.push({
      schema: r.schema,
      name: r.name,
      inDefaultSchema: r.inDefaultSchema,
      rowEstimate,
      primaryKey: r.primaryKey,
      notNull: r.notNull,
      timestamps,
      indexes: r.indexes.map((i) => ({ ...i, columns: i.columns ?? [] })),
    });
  }
  return facts;
}
