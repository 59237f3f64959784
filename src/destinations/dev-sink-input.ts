import { AppError } from '../core/errors.js';
import { parseQualifiedName, quoteIdent } from '../core/identifiers.js';

/**
 * Checks on the text a dev sink request carries, before anything reaches DuckDB: the body must be UTF-8, and no
 * string may hold what UTF-8 (an unpaired surrogate) or a DuckDB column name (a NUL) cannot. A NUL inside a value
 * is fine: DuckDB stores it in a VARCHAR or a JSON text exactly.
 */

/**
 * Byte offset of the first sequence that is not UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), or -1 when every byte is part of a valid sequence.
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    // Continuation bytes needed, and the range the first of them must fall in (the rest are 0x80-0xBF).
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) need = 1;
    else if (lead === 0xe0) [need, lo] = [2, 0xa0];
    else if (lead === 0xed) [need, hi] = [2, 0x9f];
    else if (lead >= 0xe1 && lead <= 0xef) need = 2;
    else if (lead === 0xf0) [need, lo] = [3, 0x90];
    else if (lead >= 0xf1 && lead <= 0xf3) need = 3;
    else if (lead === 0xf4) [need, hi] = [3, 0x8f];
    else return i;
    for (let k = 1; k <= need; k += 1) {
      const b = bytes[i + k];
      if (b === undefined || b < (k === 1 ? lo : 0x80) || b > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

const UNPAIRED = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export interface FieldProblem {
  /** Index of the row in `data`. */
  row: number;
  /** The top-level key the problem is under. */
  field: string;
  code: 'UNPAIRED_SURROGATE' | 'NUL_IN_KEY';
  message: string;
}

const unpairedEscape = (s: string): string => {
  const unit = UNPAIRED.exec(s)![0].charCodeAt(0);
  return `\\u${unit.toString(16).padStart(4, '0')}`;
};

/** Where inside a value a string (or an object key) holds an unpaired surrogate, as a path like `.a[2]`. */
function unpairedAt(value: unknown, path: string): { path: string; escape: string } | undefined {
  if (typeof value === 'string') return UNPAIRED.test(value) ? { path, escape: unpairedEscape(value) } : undefined;
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) {
      const found = unpairedAt(v, `${path}[${i}]`);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      const at = `${path}.${JSON.stringify(k)}`;
      if (UNPAIRED.test(k)) return { path: at, escape: unpairedEscape(k) };
      const found = unpairedAt(v, at);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * The first string of a parsed row that cannot be stored. `rowText` is the row's raw JSON: a body that is valid
 * UTF-8 can only carry a NUL or a lone surrogate as a `\u` escape, so rows without one are not walked.
 */
export function fieldProblem(parsed: unknown, rowText: string, row: number): FieldProblem | undefined {
  if (!rowText.includes('\\u') || typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  for (const [key, value] of Object.entries(parsed)) {
    // Shown as JSON text, so a NUL or a surrogate appears as its escape.
    const shown = JSON.stringify(key);
    if (key.includes('\u0000')) {
      return { row, field: key, code: 'NUL_IN_KEY', message: `row ${row}: key ${shown} holds a NUL character, which a column name cannot` };
    }
    const found = UNPAIRED.test(key) ? { path: '', escape: unpairedEscape(key) } : unpairedAt(value, '');
    if (found) {
      const where = found.path === '' ? (UNPAIRED.test(key) ? 'the key' : 'the value') : `the string at ${shown}${found.path}`;
      return {
        row,
        field: key,
        code: 'UNPAIRED_SURROGATE',
        message: `row ${row}, field ${shown}: ${where} holds an unpaired surrogate ${found.escape}, which UTF-8 cannot represent`,
      };
    }
  }
  return undefined;
}

/** Why a table name cannot be stored, or undefined. */
export function tableNameProblem(name: string): string | undefined {
  if (name.includes('\u0000')) return 'config.table holds a NUL character';
  if (UNPAIRED.test(name)) return `config.table holds an unpaired surrogate ${unpairedEscape(name)}`;
  return undefined;
}

export interface Target {
  schema: string;
  table: string;
  /** `"schema"."table"` for SQL. */
  sql: string;
  /** DuckDB compares identifiers case-insensitively, so this is the key of a table's cached shape. */
  key: string;
}

/** Parses `schema.table` (quotes allowed); anything else is CONFIG_INVALID. */
export function parseTarget(name: string): Target {
  const parts = parseQualifiedName(name);
  if (parts.length !== 2) throw new AppError('CONFIG_INVALID', `table ${name} must be "schema.table"`);
  const schema = parts[0]!.text;
  const table = parts[1]!.text;
  return { schema, table, sql: `${quoteIdent(schema)}.${quoteIdent(table)}`, key: `${schema.toLowerCase()}.${table.toLowerCase()}` };
}
