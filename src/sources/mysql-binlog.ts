import { AppError } from '../core/errors.js';
import type { ChangeEvent, ChangeOp } from '../core/changes.js';
import type { MyColumn } from './mysql-sql.js';

/**
 * Binlog positions, `_ordering` values and key texts for the binlog reader. Pure functions, unit-tested without a
 * server.
 *
 * A position is `file:offset`, e.g. `binlog.000042:1234`: the byte after an event, where a new stream starts. Files
 * of one server share a base name and count up in their numeric extension.
 */
export interface BinlogPosition {
  file: string;
  offset: number;
}

export function parsePosition(text: string): BinlogPosition {
  const m = /^(.+\.(\d+)):(\d+)$/.exec(text);
  if (!m) throw new AppError('CURSOR_INVALID', `not a binlog position (file:offset): ${text.slice(0, 100)}`);
  return { file: m[1]!, offset: Number(m[3]) };
}

export function formatPosition(p: BinlogPosition): string {
  return `${p.file}:${p.offset}`;
}

function fileNumber(file: string): bigint {
  return BigInt(/\.(\d+)$/.exec(file)![1]!);
}

export function comparePositions(a: string, b: string): number {
  const x = parsePosition(a);
  const y = parsePosition(b);
  const fx = fileNumber(x.file);
  const fy = fileNumber(y.file);
  if (fx !== fy) return fx < fy ? -1 : 1;
  return x.offset === y.offset ? 0 : x.offset < y.offset ? -1 : 1;
}

/**
 * `_ordering` of the rows the snapshot read from `start`: `~`, the file number and the offset, fixed width. Every
 * change streamed from `start` ends past it, so its ordering (the same prefix and more) sorts after.
 */
export function snapshotOrdering(start: string): string {
  const p = parsePosition(start);
  return `~${fileNumber(p.file).toString().padStart(10, '0')}${String(p.offset).padStart(12, '0')}`;
}

/** `_ordering` of the `index`th change (from 1) of the transaction that ends at `end`. */
export function changeOrdering(end: string, index: number): string {
  return `${snapshotOrdering(end)}:${String(index).padStart(10, '0')}`;
}

/** Key column kinds whose binlog values the reader turns into the key texts the table reader uses. */
const KEYABLE = new Set(['int', 'bigint', 'year', 'decimal', 'text', 'binary', 'date', 'datetime', 'timestamp']);

export function keyableKind(col: MyColumn): boolean {
  return KEYABLE.has(col.kind);
}

/**
 * A binlog key value (as the binlog decoder gives it, with date strings in UTC) as the key text of `keyText` in
 * mysql-encode.ts: the server's text form, so a delete record's key is spelled like the row's own.
 */
export function binlogKeyText(col: MyColumn, value: unknown): string {
  if (value === null || value === undefined) throw new AppError('SOURCE_SCHEMA', `a binlog row has no value for key column ${col.name}`);
  switch (col.kind) {
    case 'binary':
      return Buffer.isBuffer(value) ? value.toString('base64') : Buffer.from(String(value), 'utf8').toString('base64');
    case 'datetime':
    case 'timestamp': {
      const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?$/.exec(String(value));
      if (!m) throw new AppError('SOURCE_SCHEMA', `a binlog value of key column ${col.name} is not a date and time: ${String(value).slice(0, 40)}`);
      return col.fsp === 0 ? m[1]! : `${m[1]}.${(m[2] ?? '').padEnd(col.fsp, '0').slice(0, col.fsp)}`;
    }
    default:
      return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
  }
}

/** The key columns of one captured table. */
export interface CapturedTable {
  relation: string;
  key: MyColumn[];
}

/**
 * Collects one transaction's key-level changes from decoded row events. A primary-key change is the old key's end
 * and the new key's start (a delete and an insert).
 */
export class BinlogTransaction {
  private readonly changes: Array<{ relation: string; op: ChangeOp; pk: string[] }> = [];

  private key(t: CapturedTable, row: Record<string, unknown>): string[] {
    return t.key.map((c) => binlogKeyText(c, row[c.name]));
  }

  add(t: CapturedTable, op: 'writerows' | 'updaterows' | 'deleterows', rows: readonly unknown[]): void {
    for (const row of rows) {
      if (op === 'writerows') this.changes.push({ relation: t.relation, op: 'insert', pk: this.key(t, row as Record<string, unknown>) });
      else if (op === 'deleterows') this.changes.push({ relation: t.relation, op: 'delete', pk: this.key(t, row as Record<string, unknown>) });
      else {
        const { before, after } = row as { before: Record<string, unknown>; after: Record<string, unknown> };
        const old = this.key(t, before);
        const pk = this.key(t, after);
        if (old.some((v, i) => v !== pk[i])) {
          this.changes.push({ relation: t.relation, op: 'delete', pk: old });
          this.changes.push({ relation: t.relation, op: 'insert', pk });
        } else {
          this.changes.push({ relation: t.relation, op: 'update', pk });
        }
      }
    }
  }

  get size(): number {
    return this.changes.length;
  }

  /** The changes in binlog order, ordered by the transaction's end. */
  commit(end: string): ChangeEvent[] {
    return this.changes.map((c, i) => ({ ...c, ordering: changeOrdering(end, i + 1) }));
  }
}

/** Per history (MariaDB domain, MySQL source uuid) the highest transaction number a GTID position text holds. */
function gtidHeads(text: string): Map<string, bigint> {
  const heads = new Map<string, bigint>();
  for (const part of text.replace(/\s+/g, '').split(',')) {
    if (part === '') continue;
    const mysql = /^([0-9a-f-]{36}(?::[a-z_][a-z0-9_]*)?)((?::\d+(?:-\d+)?)+)$/i.exec(part);
    if (mysql) {
      // uuid[:tag]:1-5:7-9 (MySQL); the last interval ends highest.
      const ends = mysql[2]!
        .split(':')
        .filter(Boolean)
        .map((r) => BigInt(r.split('-').pop()!));
      heads.set(
        mysql[1]!.toLowerCase(),
        ends.reduce((a, b) => (a > b ? a : b)),
      );
      continue;
    }
    const maria = /^(\d+)-\d+-(\d+)$/.exec(part);
    if (maria) heads.set(maria[1]!, BigInt(maria[2]!));
  }
  return heads;
}

/**
 * True when the server's GTID history `now` lacks what `recorded` held: a history (MariaDB domain, MySQL server
 * uuid) is gone or its transaction number went back. Then the binlog started over (RESET MASTER, a restored backup)
 * and file names and offsets mean other transactions than the ones recorded. An empty `recorded` says nothing.
 */
export function gtidRegressed(recorded: string, now: string): boolean {
  const after = gtidHeads(now);
  for (const [history, head] of gtidHeads(recorded)) {
    const current = after.get(history);
    if (current === undefined || current < head) return true;
  }
  return false;
}
