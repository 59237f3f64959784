import type { MyColumn } from './mysql-sql.js';

/**
 * Character sets in which a text key survives the way the table reader keeps it: read through a utf8mb4 connection
 * (the server converts the stored bytes to Unicode), held as that text in cursors and key lists, and put back into
 * SQL as `CONVERT(_utf8mb4 X'…' USING <charset>)` (`literal` in mysql-sql.ts). In these sets every character the
 * server stores converts to Unicode and back to its own bytes, and no two characters share a Unicode text: measured
 * on MariaDB 10.11 over every byte, every valid two-byte sequence, every three-byte UTF-8 sequence and a sample of
 * four-byte ones. `utf8` is MySQL 5.7's name for utf8mb3.
 *
 * Every other set fails, in one of two ways:
 * - two stored characters convert to one Unicode character, and the way back picks one of them: sjis 0x5C and 0x815F
 *   are both U+005C, which converts back to 0x815F; ujis and eucjpms (0xA1C0 and 0x5C), cp932 (its NEC and IBM
 *   duplicates), armscii8 (Armenian punctuation converts to ASCII), big5 and tis620;
 * - stored characters without a Unicode mapping come back as `?`: cp1250, cp1251, cp1256,
 *   cp1257, dec8, euckr, gb2312, gbk, geostd8, greek, hebrew, hp8, swe7, and the user-defined areas of sjis and cp932.
 * A cursor holding such a key is another key to the server (paging skips or repeats rows), and a read by such a key
 * finds nothing (a changed row would pass for a deleted one).
 */
export const ROUND_TRIP_CHARSETS: ReadonlySet<string> = new Set([
  'utf8mb4',
  'utf8mb3',
  'utf8',
  'ucs2',
  'utf16',
  'utf16le',
  'utf32',
  'latin1',
  'latin2',
  'latin5',
  'latin7',
  'cp850',
  'cp852',
  'cp866',
  'keybcs2',
  'koi8r',
  'koi8u',
  'macce',
  'macroman',
  // Taken although bytes 0x80 to 0xFF read as `?`: every character of the set itself (0x00 to 0x7F) converts back to
  // its byte, and the others are not ascii text (only a binary literal writes them). Text keys in ascii, UUIDs and
  // hashes among them, are common enough that refusing them all would cost more than this narrow case.
  'ascii',
]);

/** True when a key column's values read back as themselves: every type but text outside `ROUND_TRIP_CHARSETS`. */
export function roundTripKey(col: MyColumn): boolean {
  return col.kind !== 'text' || ROUND_TRIP_CHARSETS.has(col.charset ?? '');
}
