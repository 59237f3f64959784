import type { RelationShape } from '../core/table-shape.js';

const hex = (s: string): string => `_utf8mb4 X'${Buffer.from(s, 'utf8').toString('hex')}'`;

/**
 * A table's columns in one information_schema query, each with its full declared type (`COLUMN_TYPE`: `int(11)`,
 * `varchar(20)`, `decimal(12,2)`), in column order; no rows when the table does not exist. MySQL keeps no identity
 * that survives an ALTER but not a re-creation (InnoDB's table id changes when an ALTER copies the table), so a
 * re-created table is seen by its columns only.
 */
export function relationShapeSql(schema: string, table: string): string {
  return (
    `SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA FROM information_schema.COLUMNS ` +
    `WHERE TABLE_SCHEMA = ${hex(schema)} AND TABLE_NAME = ${hex(table)} ORDER BY ORDINAL_POSITION`
  );
}

/** The shape from `relationShapeSql`'s rows (as text), or null when the table does not exist. */
export function relationShapeOf(rows: ReadonlyArray<ReadonlyArray<string | null>>): RelationShape | null {
  if (rows.length === 0) return null;
  return {
    identity: null,
    columns: rows.map(([name, type, nullable, extra]) => ({
      name: name!,
      type: type!,
      nullable: nullable === 'YES',
      generated: /\bGENERATED\b/i.test(extra ?? ''),
    })),
  };
}

/**
 * A table's columns as the binlog reader decodes rows with them (mysql-binlog.ts `BinlogColumn`), in column order;
 * no rows when the table does not exist.
 */
export function binlogColumnsSql(schema: string, table: string): string {
  return (
    `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS ` +
    `WHERE TABLE_SCHEMA = ${hex(schema)} AND TABLE_NAME = ${hex(table)} ORDER BY ORDINAL_POSITION`
  );
}

/** Whether each table exists now (`relationIds` of the binlog reader), from rows of (schema, table). */
export function existingTablesSql(tables: ReadonlyArray<{ schema: string; relname: string }>): string {
  const pairs = tables.map((t) => `(${hex(t.schema)}, ${hex(t.relname)})`).join(', ');
  return `SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE (TABLE_SCHEMA, TABLE_NAME) IN (${pairs || '(NULL, NULL)'})`;
}
