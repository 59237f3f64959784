import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
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

/** A batch's values in table order: null for SQL NULL, else the text the sink hands DuckDB's appender. */
export type DirectBatch = (string | null)[][];

/** Splits records into the values the sink would append, outside any timing. */
export function directBatch(columns: readonly Column[], records: readonly string[]): DirectBatch {
  const position = new Map(columns.map((c, i) => [c.name.toLowerCase(), i]));
  return records.map((text) => {
    const values: (string | null)[] = columns.map(() => null);
    for (const m of objectMembers(text)) {
      const raw = text.slice(m.valueStart, m.valueEnd);
      const at = position.get((JSON.parse(m.rawKey) as string).toLowerCase());
      if (at === undefined || raw === 'null') continue;
      values[at] = raw.startsWith('"') && columns[at]!.type !== 'JSON' ? (JSON.parse(raw) as string) : raw;
    }
    return values;
  });
}

export interface DirectAppender {
  /** Appends one batch in its own transaction; resolves once it is committed. */
  append(batch: DirectBatch): Promise<void>;
  close(): void;
}

export async function openDirect(dbPath: string, columns: readonly Column[]): Promise<DirectAppender> {
  const instance = await DuckDBInstance.create(dbPath, { checkpoint_threshold: '256MB' });
  const conn: DuckDBConnection = await instance.connect();
  const defs = columns.map((c) => `"${c.name.replace(/"/g, '""')}" ${c.type}`);
  await conn.run(`CREATE SCHEMA bronze; CREATE TABLE bronze.direct (${defs.join(', ')}, _received_at TIMESTAMPTZ, _request_id VARCHAR)`);
  return {
    async append(batch) {
      const receivedAt = new Date().toISOString();
      await conn.run('BEGIN TRANSACTION');
      const appender = await conn.createAppender('direct', 'bronze');
      for (const row of batch) {
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
    },
    close() {
      conn.closeSync();
      instance.closeSync();
    },
  };
}
