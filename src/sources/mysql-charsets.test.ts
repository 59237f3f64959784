import { describe, expect, it } from 'vitest';
import { roundTripKey } from './mysql-charsets.js';
import { valueKind, type MyColumn } from './mysql-sql.js';

function col(dataType: string, charset: string | null): MyColumn {
  return { name: 'k', dataType, columnType: dataType, kind: valueKind(dataType, charset, false), charset, collation: null, fsp: 0, bits: 0 };
}

describe('text keys by character set', () => {
  it('are taken in the sets whose every character converts to Unicode and back to its own bytes', () => {
    const sets = ['utf8mb4', 'utf8mb3', 'utf8', 'utf16', 'utf32', 'ucs2', 'latin1', 'latin2', 'cp850', 'koi8r', 'macroman', 'ascii'];
    expect(sets.map((cs) => roundTripKey(col('varchar', cs)))).toEqual(sets.map(() => true));
  });

  it('are refused in sets where two characters share one Unicode character or a character has none', () => {
    // sjis 0x5C and 0x815F both convert to U+005C; cp932 has NEC and IBM duplicates; cp1251 turns 0x98 into `?`.
    const sets = ['sjis', 'cp932', 'ujis', 'eucjpms', 'big5', 'armscii8', 'tis620', 'cp1250', 'cp1251', 'euckr', 'gbk', 'greek', 'gb18030'];
    expect(sets.map((cs) => roundTripKey(col('varchar', cs)))).toEqual(sets.map(() => false));
  });

  it('do not concern keys of other types, binary strings included', () => {
    expect(['int', 'varbinary', 'datetime', 'uuid'].map((t) => roundTripKey(col(t, null)))).toEqual([true, true, true, true]);
    expect(roundTripKey(col('varchar', 'binary'))).toBe(true);
  });
});
