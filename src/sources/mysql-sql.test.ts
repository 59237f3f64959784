import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import {
  binlogRetention,
  comparePositionsSql,
  conditionsProbeSql,
  filterExpr,
  lexicographic,
  literal,
  nextRangeSql,
  quoteIdent,
  readBoundarySql,
  readKeysSql,
  readRangeSql,
  ruleKind,
  sessionCheckSql,
  sessionProblem,
  sessionSql,
  softDeleteExpr,
  sqlMask,
  truncateFraction,
  unorderableReason,
  valueKind,
  watermarkKind,
  type MyColumn,
  type TableSql,
} from './mysql-sql.js';

function col(name: string, dataType: string, extra: Partial<MyColumn> = {}): MyColumn {
  const charset = extra.charset ?? null;
  return { name, dataType, columnType: dataType, kind: valueKind(dataType, charset, false), charset, collation: null, fsp: 0, bits: 0, ...extra };
}

const updatedAt = col('Updated `At`', 'datetime', { fsp: 6 });
const id = col('id', 'bigint');
const code = col('code', 'varchar', { charset: 'latin1', collation: 'latin1_swedish_ci' });
const note = col('note', 'text', { charset: 'utf8mb4', collation: 'utf8mb4_general_ci' });
const price = col('price', 'float');

const TABLE: TableSql = {
  qualified: '`shop`.`order items`',
  columns: [id, code, updatedAt, note, price],
  watermark: updatedAt,
  primaryKey: [id, code],
};
const SINGLE: TableSql = { qualified: '`shop`.`orders`', columns: [id, updatedAt], watermark: updatedAt, primaryKey: [id] };

function refusal(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a refusal');
}

describe('valueKind', () => {
  it('maps the catalog types to value kinds', () => {
    expect(['tinyint', 'smallint', 'mediumint', 'int'].map((t) => valueKind(t, null, false))).toEqual(['int', 'int', 'int', 'int']);
    expect(valueKind('bigint', null, false)).toBe('bigint');
    expect(valueKind('decimal', null, false)).toBe('decimal');
    expect(valueKind('longtext', 'utf8mb4', true)).toBe('json');
    expect(valueKind('json', null, false)).toBe('json');
    expect(valueKind('varchar', 'utf8mb4', false)).toBe('text');
    expect(valueKind('varbinary', null, false)).toBe('binary');
    expect(valueKind('char', 'binary', false)).toBe('binary');
    expect(valueKind('point', null, false)).toBe('binary');
    expect(valueKind('uuid', null, false)).toBe('other');
  });

  it('gives timestamp watermarks for DATETIME and TIMESTAMP, date for DATE, integer for integer types', () => {
    expect(watermarkKind(col('a', 'timestamp'))).toBe('timestamp');
    expect(watermarkKind(updatedAt)).toBe('timestamp');
    expect(watermarkKind(col('a', 'date'))).toBe('date');
    expect(watermarkKind(id)).toBe('integer');
    expect(watermarkKind(note)).toBe('other');
  });

  it('refuses key columns whose order or text form would make a cursor skip or repeat', () => {
    expect(unorderableReason(price)).toContain('rounded');
    expect(unorderableReason(col('e', 'enum', { charset: 'utf8mb4' }))).toContain('index');
    expect(unorderableReason(col('g', 'geometry'))).not.toBeNull();
    expect(unorderableReason(code)).toBeNull();
    expect(unorderableReason(updatedAt)).toBeNull();
  });
});

describe('literal', () => {
  it('writes integers and decimals as they are, after checking their form', () => {
    expect(literal(id, '18446744073709551615')).toBe('18446744073709551615');
    expect(literal(id, '-9223372036854775808')).toBe('-9223372036854775808');
    expect(literal(col('d', 'decimal'), '-12.50')).toBe('-12.50');
    for (const bad of ['1; DROP TABLE x', '1e3', '', ' 1', '0x10']) expect(refusal(() => literal(id, bad)).code).toBe('CURSOR_INVALID');
  });

  it('takes the key text of a ZEROFILL BIGINT wider than 20 digits, as the server prints it', () => {
    const wide = col('id', 'bigint', { columnType: 'bigint(25) unsigned zerofill' });
    expect(literal(wide, '0000018446744073709551615')).toBe('0000018446744073709551615');
    expect(refusal(() => literal(wide, '1'.repeat(21))).code).toBe('CURSOR_INVALID');
  });

  it('casts temporal values to their type with every microsecond', () => {
    expect(literal(updatedAt, '2024-03-01 12:00:00.123456')).toBe("CAST('2024-03-01 12:00:00.123456' AS DATETIME(6))");
    expect(literal(col('d', 'date'), '0000-00-00')).toBe("CAST('0000-00-00' AS DATE)");
    expect(literal(col('t', 'time'), '-838:59:59.000000')).toBe("CAST('-838:59:59.000000' AS TIME(6))");
    expect(refusal(() => literal(updatedAt, "2024-03-01' OR '1")).code).toBe('CURSOR_INVALID');
  });

  it('leaves a refused value out of its error: a key value may be one a mask keeps from the records', () => {
    const err = refusal(() => literal(updatedAt, 'secret-4111-1111'));
    expect(err.message).toContain('Updated `At`');
    expect(err.message).not.toContain('secret');
  });

  it('writes strings as hex in the column character set and collation, so no text can end the literal', () => {
    expect(literal(code, "it's")).toBe("CONVERT(_utf8mb4 X'69742773' USING latin1) COLLATE latin1_swedish_ci");
    expect(literal(note, '😀')).toBe("CONVERT(_utf8mb4 X'F09F9880' USING utf8mb4) COLLATE utf8mb4_general_ci");
  });

  it('writes binary keys (kept as base64) as hex, and BIT keys (binary digits) as integers', () => {
    expect(literal(col('b', 'varbinary'), 'AP8Q')).toBe("X'00FF10'");
    expect(refusal(() => literal(col('b', 'varbinary'), 'not base64!')).code).toBe('CURSOR_INVALID');
    expect(literal(col('f', 'bit', { bits: 10 }), '0000000101')).toBe('5');
  });
});

describe('lexicographic', () => {
  it('writes a row comparison out with a leading range on the first column', () => {
    expect(lexicographic(['a', 'b'], '>', ['1', '2'])).toBe('a >= 1 AND (a > 1 OR (a = 1 AND b > 2))');
    expect(lexicographic(['a', 'b', 'c'], '<=', ['1', '2', '3'])).toBe('a <= 1 AND (a < 1 OR (a = 1 AND (b < 2 OR (b = 2 AND c <= 3))))');
    expect(lexicographic(['a'], '<', ['1'])).toBe('a < 1');
  });
});

describe('keyset SQL', () => {
  it('pages the watermark phase by (watermark, primary key) with the server comparing', () => {
    const sql = nextRangeSql(TABLE, 'wm', { wm: '2024-01-01 00:00:00.000001', pk: ['7', 'Ab'] }, 100, '2024-02-01 00:00:00.000000');
    expect(sql).toBe(
      'SELECT t.`Updated ``At```, t.`id`, t.`code` FROM `shop`.`order items` t WHERE t.`Updated ``At``` IS NOT NULL AND ' +
        "t.`Updated ``At``` >= CAST('2024-01-01 00:00:00.000001' AS DATETIME(6)) AND (t.`Updated ``At``` > CAST('2024-01-01 00:00:00.000001' AS DATETIME(6)) OR " +
        "(t.`Updated ``At``` = CAST('2024-01-01 00:00:00.000001' AS DATETIME(6)) AND (t.`id` > 7 OR (t.`id` = 7 AND t.`code` > CONVERT(_utf8mb4 X'4162' USING latin1) COLLATE latin1_swedish_ci)))) " +
        "AND t.`Updated ``At``` < CAST('2024-02-01 00:00:00.000000' AS DATETIME(6)) ORDER BY t.`Updated ``At```, t.`id`, t.`code` LIMIT 100",
    );
  });

  it('pages rows with a NULL watermark by primary key alone, and ignores the boundary there', () => {
    expect(nextRangeSql(SINGLE, 'null', null, 5, '2024-01-01 00:00:00')).toBe(
      'SELECT t.`id` FROM `shop`.`orders` t WHERE t.`Updated ``At``` IS NULL ORDER BY t.`id` LIMIT 5',
    );
    expect(nextRangeSql(SINGLE, 'pk', { wm: null, pk: ['9'] }, 5)).toBe(
      'SELECT t.`id` FROM `shop`.`orders` t WHERE TRUE AND t.`id` > 9 ORDER BY t.`id` LIMIT 5',
    );
  });

  it('reads the keys, then every leaving column of a range (FLOAT widened to DOUBLE), between its ends, with the soft-delete flag last', () => {
    const sql = readRangeSql({ ...TABLE, deleted: '(t.`note` IS NOT NULL)' }, 'pk', null, { wm: null, pk: ['3', 'z'] }, 10);
    expect(sql).toBe(
      'SELECT t.`id`, t.`code`, t.`id`, t.`code`, t.`Updated ``At```, t.`note`, CAST(t.`price` AS DOUBLE), (t.`note` IS NOT NULL) FROM `shop`.`order items` t WHERE TRUE AND ' +
        "t.`id` <= 3 AND (t.`id` < 3 OR (t.`id` = 3 AND t.`code` <= CONVERT(_utf8mb4 X'7A' USING latin1) COLLATE latin1_swedish_ci)) ORDER BY t.`id`, t.`code` LIMIT 10",
    );
  });

  it('refuses a row limit that is not a positive integer', () => {
    expect(() => nextRangeSql(SINGLE, 'pk', null, 0)).toThrow(AppError);
    expect(() => nextRangeSql(SINGLE, 'pk', null, 1.5)).toThrow(AppError);
  });

  it('compares two positions with the server, in the key columns collations', () => {
    expect(comparePositionsSql(SINGLE, 'pk', { wm: null, pk: ['1'] }, { wm: null, pk: ['2'] })).toBe(
      'SELECT CASE WHEN 1 < 2 THEN -1 WHEN 1 = 2 THEN 0 ELSE 1 END',
    );
    const sql = comparePositionsSql(TABLE, 'pk', { wm: null, pk: ['1', 'a'] }, { wm: null, pk: ['1', 'A'] });
    expect(sql).toContain(
      "CONVERT(_utf8mb4 X'61' USING latin1) COLLATE latin1_swedish_ci = CONVERT(_utf8mb4 X'41' USING latin1) COLLATE latin1_swedish_ci",
    );
  });

  it('reads rows by key through a derived table of keys, each with its index', () => {
    expect(readKeysSql(SINGLE, [['5']], true)).toMatch(/ WHERE t\.`id` IN \(\(5\)\) LOCK IN SHARE MODE\) r ON /);
    expect(readRangeSql(SINGLE, 'pk', null, { wm: null, pk: ['3'] }, 10, true)).toMatch(/ ORDER BY t\.`id` LIMIT 10 LOCK IN SHARE MODE$/);
    const sql = readKeysSql(SINGLE, [['5'], ['6']]);
    expect(sql).toBe(
      'SELECT k.o, r.c0, r.c1 FROM (SELECT 0 AS o, 5 AS k0 UNION ALL SELECT 1 AS o, 6 AS k0) k ' +
        'JOIN (SELECT t.`id` AS k0, t.`id` AS c0, t.`Updated ``At``` AS c1 FROM `shop`.`orders` t WHERE t.`id` IN ((5), (6))) r ON r.k0 = k.k0',
    );
    expect(readKeysSql(TABLE, [['1', 'x']])).toContain('WHERE (t.`id`, t.`code`) IN ((1, CONVERT(');
    expect(readKeysSql(TABLE, [['1', 'x']])).toContain(" COLLATE latin1_swedish_ci AS k1, X'78' AS s1) k ");
    expect(readKeysSql(TABLE, [['1', 'x']])).toContain(' ON r.k0 = k.k0 AND r.k1 = k.k1 AND CAST(CONVERT(r.k1 USING utf8mb4) AS BINARY) = k.s1');
  });

  it('reads a filtered range in a derived table and returns only the key of a row outside the filter', () => {
    const filtered: TableSql = { ...SINGLE, columns: [updatedAt], filter: filterExpr("region <> 'EU'"), masks: new Map([['Updated `At`', 'NULL']]) };
    expect(readRangeSql(filtered, 'pk', null, { wm: null, pk: ['3'] }, 10)).toBe(
      "SELECT r.k0, CASE WHEN r.f THEN r.c0 END, r.f FROM (SELECT t.`id` AS k0, NULL AS c0, ((region <> 'EU') IS TRUE) AS f " +
        'FROM `shop`.`orders` t WHERE TRUE AND t.`id` <= 3 ORDER BY t.`id` LIMIT 10) r ORDER BY r.k0',
    );
    expect(readKeysSql(filtered, [['5']])).toBe(
      "SELECT k.o, CASE WHEN r.f THEN r.c0 END, r.f FROM (SELECT 0 AS o, 5 AS k0) k JOIN (SELECT t.`id` AS k0, NULL AS c0, ((region <> 'EU') IS TRUE) AS f " +
        'FROM `shop`.`orders` t WHERE t.`id` IN ((5))) r ON r.k0 = k.k0',
    );
    expect(conditionsProbeSql({ ...filtered, deleted: '(t.`gone` IS TRUE)' })).toBe(
      "SELECT (t.`gone` IS TRUE), ((region <> 'EU') IS TRUE) FROM `shop`.`orders` t LIMIT 0",
    );
  });

  it('reads a custom SQL table as a derived table', () => {
    const query: TableSql = { ...SINGLE, qualified: '(SELECT o.id, o.`Updated ``At``` FROM orders o)' };
    expect(nextRangeSql(query, 'pk', null, 5)).toBe(
      'SELECT t.`id` FROM (SELECT o.id, o.`Updated ``At``` FROM orders o) t WHERE TRUE ORDER BY t.`id` LIMIT 5',
    );
  });
});

describe('masks the server computes', () => {
  it('computes null, redact, truncate of VARCHAR/TEXT and truncate by day, month or year, and leaves the rest to pushsync', () => {
    expect(sqlMask(note, { kind: 'null' })).toBe('NULL');
    expect(sqlMask(id, { kind: 'redact', text: "it's" })).toBe("CASE WHEN t.`id` IS NULL THEN NULL ELSE _utf8mb4 X'69742773' END");
    expect(sqlMask(note, { kind: 'truncate', chars: 3 })).toBe('LEFT(t.`note`, 3)');
    expect(sqlMask(col('c', 'char', { charset: 'utf8mb4' }), { kind: 'truncate', chars: 3 })).toBeNull();
    expect(sqlMask(updatedAt, { kind: 'truncateTime', unit: 'month' })).toBe(
      "CONCAT(LEFT(CAST(t.`Updated ``At``` AS CHAR), 7), '-01 00:00:00.000000')",
    );
    expect(sqlMask(col('d', 'date'), { kind: 'truncateTime', unit: 'year' })).toBe("CONCAT(LEFT(CAST(t.`d` AS CHAR), 4), '-01-01')");
    expect(sqlMask(col('ts', 'timestamp'), { kind: 'truncateTime', unit: 'day' })).toBe("CONCAT(LEFT(CAST(t.`ts` AS CHAR), 10), ' 00:00:00')");
    expect(sqlMask(note, { kind: 'hash' })).toBeNull();
    expect(sqlMask(note, { kind: 'replace', pattern: 'a', with: 'b' })).toBeNull();
  });

  it('gives masks the kind of each column value', () => {
    expect(['int', 'bigint', 'decimal', 'float', 'year'].map((t) => ruleKind(col('x', t)))).toEqual([
      'number',
      'number',
      'number',
      'number',
      'number',
    ]);
    expect(
      [col('x', 'varchar', { charset: 'utf8mb4' }), col('x', 'enum'), col('x', 'set'), col('x', 'json'), col('x', 'blob')].map(ruleKind),
    ).toEqual(['text', 'text', 'nested', 'nested', 'other']);
    expect([col('x', 'date'), col('x', 'datetime'), col('x', 'timestamp'), col('x', 'time')].map(ruleKind)).toEqual([
      'date',
      'timestamp',
      'timestamp',
      'other',
    ]);
  });
});

describe('soft deletes', () => {
  it('tests TINYINT(1) columns for true and other columns for being set', () => {
    expect(softDeleteExpr({ column: col('gone', 'tinyint', { columnType: 'tinyint(1)' }) })).toBe('(t.`gone` IS TRUE)');
    expect(softDeleteExpr({ column: col('deleted_at', 'datetime') })).toBe('(t.`deleted_at` IS NOT NULL)');
    expect(softDeleteExpr({ condition: "status = 'gone'" })).toBe("((status = 'gone') IS TRUE)");
    expect(softDeleteExpr({})).toBeUndefined();
  });
});

describe('session and boundary SQL', () => {
  it('sets UTC, the quoting the scanner assumes, the flavor statement timeout and read-only transactions', () => {
    expect(sessionSql('mariadb', 300_000)).toEqual([
      "SET time_zone = '+00:00', sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES', max_statement_time = 300, innodb_lock_wait_timeout = 15",
      'SET SESSION TRANSACTION READ ONLY',
    ]);
    expect(sessionSql('mysql', 1500)[0]).toContain('max_execution_time = 1500');
    expect(sessionSql('mysql', 1500, 200)[0]).toContain('innodb_lock_wait_timeout = 1');
  });

  it('bounds by the oldest open transaction, converted from the system zone, or the time before the list, minus the lag', () => {
    const open = { before: '2024-03-01 12:00:05.250000', printedAt: '2024-03-01 13:00:05', secondsBeforePrint: 4 };
    const sql = readBoundarySql(col('ts', 'timestamp'), 1500, open);
    expect(sql).toContain(
      "LEAST(CAST('2024-03-01 12:00:05.250000' AS DATETIME(6)) - INTERVAL 1 SECOND, CONVERT_TZ(CAST('2024-03-01 13:00:05' AS DATETIME(6)), 'SYSTEM', '+00:00') - INTERVAL 4 SECOND)",
    );
    expect(sql).toContain('- INTERVAL 1500000 MICROSECOND');
    expect(sql).not.toContain('@@global.time_zone');
    const none = readBoundarySql(col('ts', 'timestamp'), 0, { ...open, secondsBeforePrint: null });
    expect(none).toContain("DATE_FORMAT(CAST('2024-03-01 12:00:05.250000' AS DATETIME(6)) - INTERVAL 1 SECOND - INTERVAL 0 MICROSECOND");
    expect(none).not.toContain('CONVERT_TZ');
    expect(readBoundarySql(updatedAt, 0, open)).toContain('CONVERT_TZ(LEAST(');
    expect(readBoundarySql(updatedAt, 0, open)).toContain('@@global.time_zone');
    // Only server times become literals.
    expect(() => readBoundarySql(updatedAt, 0, { ...open, printedAt: "2024-03-01' OR '1" })).toThrow(/not a server time/);
  });

  it('cuts a boundary down to the column precision', () => {
    expect(truncateFraction('2024-01-01 12:00:00.999999', 0)).toBe('2024-01-01 12:00:00');
    expect(truncateFraction('2024-01-01 12:00:00.999999', 3)).toBe('2024-01-01 12:00:00.999');
    expect(truncateFraction('2024-01-01 12:00:00.123456', 6)).toBe('2024-01-01 12:00:00.123456');
  });

  it('checks that the server keeps the session settings', () => {
    expect(sessionProblem(['+00:00', 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES', '1'])).toBeNull();
    expect(sessionProblem(['+00:00', 'REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,NO_BACKSLASH_ESCAPES', '1'])).toBeNull();
    expect(sessionProblem(['SYSTEM', 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES', '1'])).toContain('time_zone');
    expect(sessionProblem(['+00:00', 'ANSI_QUOTES', '1'])).toContain('sql_mode');
    expect(sessionProblem(['+00:00', 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES', '0'])).toContain('read only');
    expect(sessionCheckSql('mysql')).toContain('transaction_read_only');
  });

  it('quotes identifiers with backticks, doubling backticks', () => {
    expect(quoteIdent('a`b')).toBe('`a``b`');
  });
});

describe('binlog retention', () => {
  it('is binlog_expire_logs_seconds where set, else expire_logs_days, and 0 (never purged) when neither is', () => {
    const of = (entries: Array<[string, string]>): ReturnType<typeof binlogRetention> => binlogRetention(new Map(entries));
    expect(
      of([
        ['binlog_expire_logs_seconds', '86400'],
        ['expire_logs_days', '1.000000'],
      ]),
    ).toEqual({ seconds: 86400, setting: 'binlog_expire_logs_seconds' });
    expect(
      of([
        ['binlog_expire_logs_seconds', '0'],
        ['expire_logs_days', '7'],
      ]),
    ).toEqual({ seconds: 604800, setting: 'expire_logs_days' });
    expect(of([['expire_logs_days', '0.5']])).toEqual({ seconds: 43200, setting: 'expire_logs_days' });
    expect(of([['binlog_expire_logs_seconds', '2592000']])).toEqual({ seconds: 2592000, setting: 'binlog_expire_logs_seconds' });
    expect(
      of([
        ['binlog_expire_logs_seconds', '0'],
        ['expire_logs_days', '0'],
      ]),
    ).toEqual({ seconds: 0, setting: 'expire_logs_days' });
  });
});
