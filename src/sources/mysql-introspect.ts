import type { IndexFacts, TableFacts, TimestampColumn } from '../core/init-plan.js';
import type { MysqlSource } from './mysql.js';

/**
 * What `pushsync init` reads from a MySQL or MariaDB catalog (information_schema) about the base tables of the
 * URL's database: keys, DATETIME/TIMESTAMP columns with their DEFAULT and ON UPDATE, btree indexes and BEFORE UPDATE
 * triggers. Catalog reads only.
 */
const TABLES_SQL = `SELECT TABLE_NAME, TABLE_ROWS, DATABASE() FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`;

const COLUMNS_SQL = `SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION`;

const INDEXES_SQL = `SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`;

const TRIGGERS_SQL = `SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS
WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND ACTION_TIMING = 'BEFORE' AND EVENT_MANIPULATION = 'UPDATE'`;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A trigger body that assigns the column (`SET NEW.col = …`) on every update. */
function assigns(body: string, column: string): boolean {
  const name = escapeRegExp(column);
  return new RegExp(`\\bnew\\s*\\.\\s*(?:${name}|\`${name}\`)\\s*:?=`, 'i').test(body);
}

export async function introspectMysql(source: MysqlSource): Promise<TableFacts[]> {
  const text = async (sql: string, what: string): Promise<Array<Array<string | null>>> =>
    (await source.query(sql, what)).map((r) => r.map((v) => (v === null ? null : v.toString('utf8'))));
  const [tables, columns, indexes, triggers] = [
    await text(TABLES_SQL, 'list tables'),
    await text(COLUMNS_SQL, 'list columns'),
    await text(INDEXES_SQL, 'list indexes'),
    await text(TRIGGERS_SQL, 'list triggers'),
  ];
  return tables.map(([name, estimate, database]) => {
    const own = columns.filter((c) => c[0] === name);
    const byIndex = new Map<string, { unique: boolean; columns: string[]; usable: boolean }>();
    for (const [table, index, nonUnique, column, subPart, type] of indexes) {
      if (table !== name) continue;
      const entry = byIndex.get(index!) ?? { unique: nonUnique === '0', columns: [] as string[], usable: type === 'BTREE' };
      // A prefix or functional key part cannot order rows by the whole column.
      if (column === null || column === undefined || subPart !== null) entry.usable = false;
      else entry.columns.push(column);
      byIndex.set(index!, entry);
    }
    const ownTriggers = triggers.filter((t) => t[0] === name);
    const timestamps: TimestampColumn[] = own
      .filter((c) => c[3] === 'timestamp' || c[3] === 'datetime')
      .map(([, column, type, , , dflt, extra]) => ({
        name: column!,
        type: type!,
        default: dflt === null || dflt === undefined || dflt === 'NULL' ? null : dflt,
        onUpdate: /on update current_timestamp/i.test(extra ?? ''),
        setByTrigger: ownTriggers.find((t) => assigns(t[2] ?? '', column!))?.[1] ?? null,
      }));
    const primaryKey = byIndex.get('PRIMARY')?.columns ?? null;
    // InnoDB secondary indexes end with the primary key's columns: one on (updated_at) orders by (updated_at, key).
    const list: IndexFacts[] = [...byIndex]
      .filter(([, i]) => i.usable)
      .map(([index, i]) => ({
        name: index,
        columns: index === 'PRIMARY' ? i.columns : [...i.columns, ...(primaryKey ?? []).filter((c) => !i.columns.includes(c))],
        unique: i.unique,
      }));
    return {
      schema: database!,
      name: name!,
      inDefaultSchema: true,
      rowEstimate: estimate === null ? null : Number(estimate),
      primaryKey,
      notNull: own.filter((c) => c[4] === 'NO').map((c) => c[1]!),
      timestamps,
      indexes: list,
    };
  });
}
