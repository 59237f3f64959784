import { AppError } from './errors.js';

/** One part of a qualified name as written in config: `orders`, or `"Order Items"` (quoted). */
export interface NamePart {
  text: string;
  quoted: boolean;
}

/**
 * Splits `schema.table` (or `table`) following SQL rules: dots inside double quotes do not split, `""` inside
 * quotes is a literal quote. Folding of unquoted parts is the source's business (Postgres lower-cases them).
 */
export function parseQualifiedName(input: string): NamePart[] {
  const parts: NamePart[] = [];
  let i = 0;
  while (i <= input.length) {
    if (input[i] === '"') {
      let text = '';
      i += 1;
      for (;;) {
        if (i >= input.length) throw new AppError('CONFIG_INVALID', `unterminated quote in name ${input}`);
        if (input[i] === '"') {
          if (input[i + 1] === '"') {
            text += '"';
            i += 2;
            continue;
          }
          i += 1;
          break;
        }
        text += input[i];
        i += 1;
      }
      parts.push({ text, quoted: true });
    } else {
      let end = input.indexOf('.', i);
      if (end === -1) end = input.length;
      const text = input.slice(i, end).trim();
      if (text === '' || text.includes('"')) throw new AppError('CONFIG_INVALID', `malformed name ${input}`);
      parts.push({ text, quoted: false });
      i = end;
    }
    if (i >= input.length) break;
    if (input[i] !== '.') throw new AppError('CONFIG_INVALID', `malformed name ${input}: expected "." at ${i}`);
    i += 1;
  }
  if (parts.length === 0 || parts.length > 2) {
    throw new AppError('CONFIG_INVALID', `name ${input} must be "table" or "schema.table"`);
  }
  return parts;
}

/** Quotes an identifier for SQL (Postgres, DuckDB): `a"b` → `"a""b"`. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A lower-case, underscore-only rendering of a name, for default target table names. */
export function slug(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'table'
  );
}

/** The default target: `bronze.<source>_<table>` where table is the last part of the configured name. */
export function defaultTarget(source: string, table: string): string {
  const parts = parseQualifiedName(table);
  return `bronze.${slug(source)}_${slug(parts[parts.length - 1]!.text)}`;
}
