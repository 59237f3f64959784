import type { RelationShape } from '../core/table-shape.js';
import type { Query } from './postgres-sql.js';

/**
 * A table's shape in one catalog query: its oid (which a dropped and re-created table does not keep) and every live
 * column with its declared type, in column order. A table with no columns still returns its oid (one row of NULLs);
 * a table that does not exist returns nothing.
 */
export function relationShapeQuery(name: string): Query {
  return {
    text: `SELECT c.oid::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnum::text,
       (a.attgenerated <> '')::text, (NOT a.attnotnull)::text
FROM pg_class c
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass($1)
ORDER BY a.attnum`,
    values: [name],
  };
}

/** The shape from the rows of `relationShapeQuery`, or null when the table does not exist. */
export function relationShapeOf(rows: string[][]): RelationShape | null {
  const first = rows[0];
  if (!first) return null;
  return {
    identity: first[0]!,
    columns: rows
      .filter((r) => r[1] !== null)
      .map(([, name, type, attnum, generated, nullable]) => ({
        name: name!,
        type: type!,
        ordinal: Number(attnum),
        generated: generated === 'true',
        nullable: nullable === 'true',
      })),
  };
}
