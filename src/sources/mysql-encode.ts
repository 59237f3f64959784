import { AppError } from '../core/errors.js';
import type { Mask } from '../core/rules.js';
import type { MyColumn } from './mysql-sql.js';

/**
 * Values of MySQL/MariaDB rows as JSON, from the bytes the text protocol carries (the driver hands them over
 * untouched: no Date, no Number, no JSON.parse on the way). Pure functions; the forms are listed in docs/encoding.md.
 *
 * The rule is the Postgres one: a JSON number only where every consumer reads it back exactly (TINYINT to INT, YEAR,
 * FLOAT and DOUBLE), a string of the server's exact text for what a double would round (BIGINT, DECIMAL), and text
 * forms for the rest.
 */

/** The shortest decimal that reads back as the same 32-bit float (`x` is one, widened to a double exactly). */
function shortestFloat32(x: number): string {
  for (let p = 1; p <= 9; p++) {
    const s = x.toPrecision(p);
    if (Math.fround(Number(s)) === x) return String(Number(s));
  }
  return String(x);
}

function jsonNumber(text: string): string {
  const x = Number(text);
  if (!Number.isFinite(x)) throw new AppError('SOURCE_SCHEMA', `the server sent ${text.slice(0, 40)} where a number was expected`);
  return Object.is(x, -0) ? '-0' : String(x);
}

/** BIT(n) as a string of n binary digits, most significant first, like Postgres' bit(n). */
function bitString(raw: Buffer, bits: number): string {
  let out = '';
  for (const byte of raw) out += byte.toString(2).padStart(8, '0');
  return out.slice(-bits).padStart(bits, '0');
}

/** `2024-01-02 03:04:05.5` → `2024-01-02T03:04:05.5`: the server's digits kept (zero dates too). */
function isoDateTime(text: string): string {
  return text.replace(' ', 'T');
}

/**
 * Whether embedding `text` keeps the record valid JSON: a JSON column on MariaDB is only checked by `json_valid`,
 * which may accept what a strict parser refuses. Such a value is sent as a JSON string instead.
 */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Display widths of integer types declared ZEROFILL without one. */
const ZEROFILL_WIDTH: Record<string, number> = { tinyint: 3, smallint: 5, mediumint: 8, int: 10, integer: 10, bigint: 20 };

/**
 * A ZEROFILL column's value as the server prints it: an integer padded with zeros to its display width, a decimal's
 * integer part to its precision less its scale (at least one digit). Read from the binlog, or through a `CASE`, the
 * value is the bare number.
 */
export function zeroFilled(col: MyColumn, text: string): string {
  if (!/\bzerofill\b/i.test(col.columnType)) return text;
  const m = /\((\d+)(?:,(\d+))?\)/.exec(col.columnType);
  if (col.kind === 'decimal') {
    const width = Math.max(Number(m?.[1] ?? 10) - Number(m?.[2] ?? 0), 1);
    const dot = text.indexOf('.');
    return dot < 0 ? text.padStart(width, '0') : text.slice(0, dot).padStart(width, '0') + text.slice(dot);
  }
  return text.padStart(m ? Number(m[1]) : (ZEROFILL_WIDTH[col.dataType] ?? 0), '0');
}

/** Encodes one non-NULL value of a column as JSON text. */
export type ValueEncoder = (raw: Buffer) => string;

const quoted = (raw: Buffer): string => `"${raw.toString('latin1')}"`;
const quotedDateTime = (raw: Buffer): string => `"${isoDateTime(raw.toString('latin1'))}"`;

/**
 * The encoder of a column's values, chosen once per table. Server texts of integers, BIGINT, DECIMAL and temporal
 * types consist of digits, signs, `.`, `:`, `-` and a space, so they are quoted without JSON escaping.
 */
export function columnEncoder(col: MyColumn): ValueEncoder {
  switch (col.kind) {
    case 'int':
      // ZEROFILL columns print leading zeros, which a JSON number cannot have.
      return /zerofill/i.test(col.columnType) ? (raw) => jsonNumber(raw.toString('latin1')) : (raw) => raw.toString('latin1');
    case 'year':
    case 'double':
      return (raw) => jsonNumber(raw.toString('latin1'));
    case 'float':
      // Read as CAST(… AS DOUBLE): the float's exact value.
      return (raw) => shortestFloat32(Number(raw.toString('latin1')));
    case 'bigint':
    case 'decimal':
    case 'date':
    case 'time':
      return quoted;
    case 'datetime':
      return quotedDateTime;
    case 'timestamp':
      return (raw) => `"${isoDateTime(raw.toString('latin1'))}+00:00"`;
    case 'bit':
      return (raw) => `"${bitString(raw, col.bits)}"`;
    case 'set':
      return (raw) => {
        const text = raw.toString('utf8');
        return JSON.stringify(text === '' ? [] : text.split(','));
      };
    case 'json':
      return (raw) => {
        const text = raw.toString('utf8');
        return isJson(text) ? text : JSON.stringify(text);
      };
    case 'binary':
      return (raw) => `"${raw.toString('base64')}"`;
    default:
      return (raw) => JSON.stringify(raw.toString('utf8'));
  }
}

const textValue: ValueEncoder = (raw) => JSON.stringify(raw.toString('utf8'));

/**
 * The encoder of a leaving column under the table's rules. A mask the server computed (`sqlMask` in mysql-sql.ts)
 * yields a string (`redact`, `truncate`; `null` yields only NULL) or, truncated by day, month or year, the column's
 * own text form. In the statements of a filtered table a BIT value arrives as its decimal number (`CASE` turns BIT
 * into an integer), written out here as the same binary digits an unfiltered read gives; a ZEROFILL BIGINT or DECIMAL
 * arrives without its zeros (`CASE` drops the attribute), padded here again as an unfiltered read and a delete's key
 * have it.
 */
export function leavingEncoder(col: MyColumn, serverMask: Mask | null, filtered: boolean): ValueEncoder {
  if (serverMask !== null && serverMask.kind !== 'truncateTime') return textValue;
  if (serverMask === null && filtered && col.kind === 'bit') {
    return (raw) => `"${BigInt(raw.toString('latin1')).toString(2).padStart(col.bits, '0')}"`;
  }
  if (serverMask === null && filtered && (col.kind === 'bigint' || col.kind === 'decimal') && /\bzerofill\b/i.test(col.columnType)) {
    return (raw) => `"${zeroFilled(col, raw.toString('latin1'))}"`;
  }
  return columnEncoder(col);
}

/** One value as JSON text; `raw` is null for SQL NULL. */
export function valueJson(col: MyColumn, raw: Buffer | null): string {
  return raw === null ? 'null' : columnEncoder(col)(raw);
}

/**
 * A key value as the text pushsync keeps in cursors and key lists: the server's text, except binary strings (base64,
 * as in records) and BIT (binary digits). `literal` in mysql-sql.ts turns it back into SQL.
 */
export function keyText(col: MyColumn, raw: Buffer | null): string {
  if (raw === null) throw new AppError('SOURCE_SCHEMA', `key column ${col.name} holds NULL; key columns must be NOT NULL`);
  switch (col.kind) {
    case 'binary':
      return raw.toString('base64');
    case 'bit':
      return bitString(raw, col.bits);
    case 'text':
    case 'other':
    case 'enum':
    case 'set':
    case 'json':
      return raw.toString('utf8');
    default:
      return raw.toString('latin1');
  }
}

/** A key value's JSON from its key text, encoded like the same value read from a row (for delete records). */
export function keyJson(col: MyColumn, text: string): string {
  switch (col.kind) {
    case 'binary':
      return JSON.stringify(text);
    case 'bit':
      return JSON.stringify(text);
    default:
      return valueJson(col, Buffer.from(text, col.kind === 'text' || col.kind === 'other' ? 'utf8' : 'latin1'));
  }
}

/**
 * A row as a JSON object: columns in table order. `prefixes[i]` is the text before column i's value (`{"id":`,
 * `,"name":`), names as the catalog spells them.
 */
export function rowJson(encoders: readonly ValueEncoder[], prefixes: readonly string[], raw: ReadonlyArray<Buffer | null>): string {
  let out = '';
  for (let i = 0; i < encoders.length; i++) {
    const v = raw[i];
    out += prefixes[i]! + (v === null || v === undefined ? 'null' : encoders[i]!(v));
  }
  return out + '}';
}

/** The `prefixes` of `rowJson` for column names. */
export function rowPrefixes(names: readonly string[]): string[] {
  return names.map((n, i) => `${i === 0 ? '{' : ','}${JSON.stringify(n)}:`);
}
