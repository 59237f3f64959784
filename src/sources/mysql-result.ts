import { valueKind, type MyColumn } from './mysql-sql.js';
import type { ResultField } from './mysql-query.js';

/**
 * The output columns of a custom SQL table (`query`) as MyColumns, from the server's description of its result: the
 * protocol's type code and flags, and the character set and collation the server reports for each (the result's
 * metadata carries only the connection's). No catalog describes a query, so this is the only source of these facts.
 */

/** MYSQL_TYPE_* codes → the catalog's DATA_TYPE. */
const TYPES: Record<number, string> = {
  0: 'decimal',
  1: 'tinyint',
  2: 'smallint',
  3: 'int',
  4: 'float',
  5: 'double',
  6: 'null',
  7: 'timestamp',
  8: 'bigint',
  9: 'mediumint',
  10: 'date',
  11: 'time',
  12: 'datetime',
  13: 'year',
  14: 'date',
  15: 'varchar',
  16: 'bit',
  245: 'json',
  246: 'decimal',
  247: 'enum',
  248: 'set',
  249: 'tinyblob',
  250: 'mediumblob',
  251: 'longblob',
  252: 'blob',
  253: 'varchar',
  254: 'char',
  255: 'geometry',
};

const UNSIGNED = 32;
const ZEROFILL = 64;
const ENUM = 256;
const SET = 2048;

/** The declared type as the catalog would print it, for messages and the soft-delete column test (`tinyint(1)`). */
function declared(dataType: string, f: ResultField): string {
  const sign = `${f.flags & UNSIGNED ? ' unsigned' : ''}${f.flags & ZEROFILL ? ' zerofill' : ''}`;
  switch (dataType) {
    case 'tinyint':
      return `tinyint(${f.length})${sign}`;
    case 'smallint':
    case 'mediumint':
    case 'int':
    case 'bigint':
    case 'float':
    case 'double':
      return `${dataType}${sign}`;
    case 'bit':
      return `bit(${f.length})`;
    case 'datetime':
    case 'timestamp':
    case 'time':
      return f.decimals > 0 ? `${dataType}(${f.decimals})` : dataType;
    default:
      return dataType;
  }
}

/** One output column from its description and the server's CHARSET() and COLLATION() of it. */
export function resultColumn(f: ResultField, charset: string | null, collation: string | null): MyColumn {
  let dataType = TYPES[f.columnType] ?? 'other';
  if (f.flags & ENUM) dataType = 'enum';
  else if (f.flags & SET) dataType = 'set';
  const strings = charset !== null && charset !== 'binary';
  // A string blob code is a TEXT when its character set is not binary.
  if (strings && dataType.endsWith('blob')) dataType = dataType.replace('blob', 'text');
  const text = strings && ['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext', 'enum', 'set'].includes(dataType);
  const kind = valueKind(dataType, text ? charset : dataType === 'char' || dataType === 'varchar' ? 'binary' : null, f.format === 'json');
  return {
    name: f.name,
    dataType,
    columnType: declared(dataType, f),
    kind,
    charset: text ? charset : null,
    collation: text ? collation : null,
    fsp: ['datetime', 'timestamp', 'time'].includes(dataType) ? f.decimals : 0,
    bits: dataType === 'bit' ? f.length : 0,
  };
}
