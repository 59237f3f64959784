import { AppError } from '../core/errors.js';
import type { ChangeEvent, ChangeOp } from '../core/changes.js';
import type { MyColumn } from './mysql-sql.js';
import { zeroFilled } from './mysql-encode.js';
import { ROUND_TRIP_CHARSETS } from './mysql-charsets.js';

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

/** A position as fixed-width text: `~`, the file number and the offset. */
function positionOrdering(p: BinlogPosition): string {
  return `~${fileNumber(p.file).toString().padStart(10, '0')}${String(p.offset).padStart(12, '0')}`;
}

/**
 * `_ordering` of the rows a snapshot read from `start`: the position, then `:~`. It sorts after the changes of the
 * transaction that ends at `start` (`:` and a number: an incremental snapshot starts at the end of the last
 * transaction received, whose changes the snapshot's reads already hold) and before every change that ends past
 * `start`, whose position sorts higher.
 */
export function snapshotOrdering(start: string): string {
  return `${positionOrdering(parsePosition(start))}:~`;
}

/** `_ordering` of the `index`th change (from 1) of the transaction that ends at `end`. */
export function changeOrdering(end: string, index: number): string {
  return `${positionOrdering(parsePosition(end))}:${String(index).padStart(10, '0')}`;
}

/** Key column kinds whose binlog values the reader turns into the key texts the table reader uses. */
const KEYABLE = new Set(['int', 'bigint', 'year', 'decimal', 'text', 'binary', 'date', 'datetime', 'timestamp']);

/**
 * Character sets whose binlog bytes become the very characters the server converts them to for the table reader:
 * the decoder's tables (iconv-lite) agree with the server's on every character of these, and latin1 is decoded here
 * (`latin1Text`). Elsewhere they differ (sjis, ujis, cp932, big5, gb2312, greek, hebrew, macroman, tis620 among
 * others: the server's `〜` is the decoder's `～`), and a key spelled otherwise than the reader's is a lost delete.
 */
const DECODER_AGREES = new Set([
  'utf8mb4',
  'utf8mb3',
  'utf8',
  'ascii',
  'latin1',
  'latin2',
  'latin5',
  'latin7',
  'cp1250',
  'cp1251',
  'cp1256',
  'cp1257',
  'cp850',
  'cp852',
  'koi8r',
  'macce',
  'euckr',
  'gbk',
  'ucs2',
  'utf16',
  'utf16le',
  'utf32',
]);

/**
 * Character sets of text keys binlog capture takes: those the table reader can key by (`ROUND_TRIP_CHARSETS`, whose
 * snapshot reads and reads by key the binlog's keys go through) whose binlog bytes the decoder also spells as the
 * server does.
 */
export const KEYABLE_CHARSETS: ReadonlySet<string> = new Set([...ROUND_TRIP_CHARSETS].filter((cs) => DECODER_AGREES.has(cs)));

export function keyableKind(col: MyColumn): boolean {
  if (col.kind === 'text' && !KEYABLE_CHARSETS.has(col.charset ?? '')) return false;
  return KEYABLE.has(col.kind);
}

/**
 * The character set the binlog decoder is told a column has. latin1 is handed over as its bytes (one character per
 * byte): the decoder reads it as cp1252, which has no characters for five bytes that MySQL's latin1 maps to C1
 * controls, and turns all five into U+FFFD.
 */
export function decoderCharset(charset: string | null): string | null {
  return charset === 'latin1' ? 'binary' : charset;
}

/** MySQL's latin1 (cp1252, and C1 controls for its five unassigned bytes) at 0x80 … 0x9F; the rest is ISO 8859-1. */
const LATIN1_80 =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

/** latin1 bytes (as `decoderCharset` has them handed over: one character per byte) as the server converts them. */
function latin1Text(bytes: string): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes.charCodeAt(i);
    out += b >= 0x80 && b < 0xa0 ? LATIN1_80[b - 0x80] : bytes[i];
  }
  return out;
}

/**
 * A YEAR value: the decoder adds 1900 to the stored byte, so the zero year (stored 0) arrives as 1900, which YEAR
 * cannot hold; the server prints it `0000`. YEAR(2) prints two digits.
 */
function yearText(col: MyColumn, text: string): string {
  const year = text === '1900' ? '0000' : text;
  return /^year\(2\)/i.test(col.columnType) ? year.slice(-2) : year;
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
      if (!m)
        throw new AppError(
          'SOURCE_SCHEMA',
          `a binlog value of key column ${col.name} (${String(value).length} characters, left out: key values may be masked) is not a date and time`,
        );
      return col.fsp === 0 ? m[1]! : `${m[1]}.${(m[2] ?? '').padEnd(col.fsp, '0').slice(0, col.fsp)}`;
    }
    case 'int':
    case 'bigint':
    case 'decimal':
      return zeroFilled(col, String(value));
    case 'year':
      return yearText(col, String(value));
    case 'text':
      if (col.charset === 'latin1') return latin1Text(Buffer.isBuffer(value) ? value.toString('latin1') : String(value));
      return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
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

/** A column as the binlog reader decodes rows with it: its name, and what the binlog and the decoder need of its type. */
export interface BinlogColumn {
  name: string;
  /** information_schema `DATA_TYPE`, e.g. `int`, `varchar`. */
  dataType: string;
  /** information_schema `COLUMN_TYPE`, e.g. `int(10) unsigned`, `enum('a','b')`. */
  columnType: string;
  charset: string | null;
  collation: string | null;
}

/**
 * Binlog type codes (include/mysql_com.h, `enum_field_types`) each `DATA_TYPE` may appear as in a TABLE_MAP event:
 * the classic and the fractional-second temporal codes, and the STRING code that CHAR, BINARY, ENUM and SET share.
 */
const BINLOG_TYPES: Record<string, number[]> = {
  tinyint: [1],
  smallint: [2],
  mediumint: [9],
  int: [3],
  integer: [3],
  bigint: [8],
  float: [4],
  double: [5],
  decimal: [0, 246],
  year: [13],
  date: [10, 14],
  time: [11, 19],
  datetime: [12, 18],
  timestamp: [7, 17],
  char: [254, 253],
  binary: [254, 253],
  varchar: [15, 253],
  varbinary: [15, 253],
  enum: [254, 247],
  set: [254, 248],
  bit: [16],
  json: [245, 252],
  tinytext: [252],
  text: [252],
  mediumtext: [252],
  longtext: [252],
  tinyblob: [252],
  blob: [252],
  mediumblob: [252],
  longblob: [252],
};

/**
 * Whether a TABLE_MAP event (its column count and binlog type codes) can have been written with `columns`. Row
 * events carry values by column position only; decoding them with a column list of another shape would put values
 * under the wrong names, so a list that does not fit is never used. Types this table does not know (geometry,
 * MariaDB's inet6 and uuid) fit any code.
 */
export function shapeFits(event: { columnCount: number; columnTypes: readonly number[] }, columns: readonly BinlogColumn[]): boolean {
  if (event.columnCount !== columns.length) return false;
  return columns.every((c, i) => {
    const codes = BINLOG_TYPES[c.dataType.toLowerCase()];
    return codes === undefined || codes.includes(event.columnTypes[i]!);
  });
}

/** What a DDL statement does to tables, by `schema.table`: changed in place, or gone or new under the name. */
export interface DdlTargets {
  altered: string[];
  /** Dropped, created, renamed away or renamed to: under this name, another table from here on. */
  replaced: string[];
}

const IDENT = '(?:`((?:[^`]|``)+)`|([^\\s.`;,()]+))';
const NAME = `${IDENT}(?:\\s*\\.\\s*${IDENT})?`;

function names(text: string, schema: string): string[] {
  const out: string[] = [];
  const re = new RegExp(NAME, 'g');
  for (const m of text.matchAll(re)) {
    const part = (quoted: string | undefined, plain: string | undefined): string | undefined =>
      quoted !== undefined ? quoted.replace(/``/g, '`') : plain;
    const first = part(m[1], m[2])!;
    const second = part(m[3], m[4]);
    out.push(second === undefined ? `${schema}.${first}` : `${first}.${second}`);
  }
  return out;
}

/**
 * The tables a statement of the binlog (a QUERY event run in database `schema`) changes: ALTER TABLE (and its RENAME
 * TO), CREATE [OR REPLACE] TABLE, DROP TABLE (a list), RENAME TABLE (a list of pairs). Other statements: none.
 * Comments the server adds (`/* generated by server *\/`) are ignored.
 */
export function ddlTargets(statement: string, schema: string): DdlTargets {
  const q = statement
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/;$/, '');
  const none: DdlTargets = { altered: [], replaced: [] };
  let m = new RegExp(`^ALTER (?:ONLINE )?(?:IGNORE )?TABLE (?:IF EXISTS )?(${NAME})(.*)$`, 'i').exec(q);
  if (m) {
    const [table] = names(m[1]!, schema);
    const rename = new RegExp(`(?:^|,)\\s*RENAME (?:TO |AS )?(${NAME})\\s*(?:,|$)`, 'i').exec(m[m.length - 1]!);
    if (rename && !/^(?:COLUMN|INDEX|KEY)\b/i.test(rename[1]!)) return { altered: [], replaced: [table!, ...names(rename[1]!, schema)] };
    return { altered: [table!], replaced: [] };
  }
  m = new RegExp(`^CREATE (?:OR REPLACE )?TABLE (?:IF NOT EXISTS )?(${NAME})`, 'i').exec(q);
  if (m) return { altered: [], replaced: names(m[1]!, schema) };
  m = /^DROP TABLE (?:IF EXISTS )?(.+?)(?: RESTRICT| CASCADE)?$/i.exec(q);
  if (m) return { altered: [], replaced: names(m[1]!, schema) };
  m = /^RENAME TABLES? (.+)$/i.exec(q);
  if (m) return { altered: [], replaced: names(m[1]!.replace(/\bTO\b/gi, ','), schema) };
  return none;
}
