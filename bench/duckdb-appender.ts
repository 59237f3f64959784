import { DuckDBInstance } from '@duckdb/node-api';
import { objectMembers } from '../src/core/json-scan.js';

/**
 * The dev sink's floor: the same rows appended to DuckDB directly, with no HTTP, no validation and no parsing in
 * the timed part. Values are split out of the records beforehand; each batch is one transaction with one appender,
 * as in the sink, into a table of the column types the sink chose, in a database with the sink's settings.
 */
export interface Column {
  name: string;
  type: string;
}

export async function appendDirectly(
  dbPath: string,
  columns: readonly Column[],
  records: readonly string[],
  batchRows: number,
): Promise<{ seconds: number; cpuSeconds: number }> {
  const position = new Map(columns.map((c, i) => [c.name.toLowerCase(), i]));
  const rows = records.map((text) => {
    const values: (string | null)[] = columns.map(() => null);
    for (const m of objectMembers(text)) {
      const raw = text.slice(m.valueStart, m.valueEnd);
      const at = position.get((JSON.parse(m.rawKey) as string).toLowerCase());
      if (at === undefined || raw === 'null') continue;
      values[at] = raw.startsWith('"') && columns[at]!.type !== 'JSON' ? (JSON.parse(raw) as string) : raw;
    }
    return values;
  });
  const instance = await DuckDBInstance.create(dbPath, { checkpoint_threshold: '256MB' });
  const conn = await instance.connect();
  try {
    const defs = columns.map((c) => `"${c.name.replace(/"/g, '""')}" ${c.type}`);
    await conn.run(`CREATE SCHEMA bronze; CREATE TABLE bronze.direct (${defs.join(', ')}, _received_at TIMESTAMPTZ, _request_id VARCHAR)`);
    const receivedAt = new Date().toISOString();
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < rows.length; i += batchRows) {
      await conn.run('BEGIN TRANSACTION');
      const appender = await conn.createAppender('direct', 'bronze');
      for (const row of rows.slice(i, i + batchRows)) {
        for (const v of row) {
          if (v === null) appender.appendNull();
          else appender.appendVarchar(v);
        }
        appender.appendVarchar(receivedAt);
        appender.appendVarchar('direct');
        appender.endRow();
      }
      appender.flushSync();
      appender.closeSync();
      await conn.run('COMMIT');
    }
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}
