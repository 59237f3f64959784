import { describe, expect, it } from 'vitest';
import { columnEncoder, keyJson, keyText, leavingEncoder, rowJson, rowPrefixes, valueJson } from './mysql-encode.js';
import { literal, valueKind, type MyColumn } from './mysql-sql.js';

function col(dataType: string, extra: Partial<MyColumn> = {}): MyColumn {
  const charset = extra.charset ?? null;
  return {
    name: 'c',
    dataType,
    columnType: dataType,
    kind: valueKind(dataType, charset, false),
    charset,
    collation: null,
    fsp: 0,
    bits: 0,
    ...extra,
  };
}

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('valueJson', () => {
  it('sends integers up to INT as numbers, BIGINT and DECIMAL as strings of every digit', () => {
    expect(valueJson(col('int'), b('-2147483648'))).toBe('-2147483648');
    expect(valueJson(col('year'), b('0000'))).toBe('0');
    expect(valueJson(col('int', { columnType: 'int(5) unsigned zerofill' }), b('00042'))).toBe('42');
    expect(valueJson(col('bigint'), b('18446744073709551615'))).toBe('"18446744073709551615"');
    expect(valueJson(col('decimal'), b('0.000000000000000000000000000001'))).toBe('"0.000000000000000000000000000001"');
  });

  it('sends FLOAT as the shortest decimal that reads back as the same 32-bit float', () => {
    expect(valueJson(col('float'), b('1.2345677614212036'))).toBe('1.2345678');
    expect(valueJson(col('float'), b('0.30000001192092896'))).toBe('0.3');
    expect(valueJson(col('float'), b('3.4028234663852886e38'))).toBe('3.4028235e+38');
    expect(valueJson(col('float'), b('1.401298464324817e-45'))).toBe('1e-45');
  });

  it('sends DOUBLE as the shortest JSON number of the same double, -0 included', () => {
    expect(valueJson(col('double'), b('123456789.12345679'))).toBe('123456789.12345679');
    expect(valueJson(col('double'), b('5e-324'))).toBe('5e-324');
    expect(valueJson(col('double'), b('-0'))).toBe('-0');
  });

  it('sends BIT(n) as n binary digits', () => {
    expect(valueJson(col('bit', { bits: 10 }), Buffer.from([0x00, 0x05]))).toBe('"0000000101"');
    expect(valueJson(col('bit', { bits: 1 }), Buffer.from([0x01]))).toBe('"1"');
    expect(valueJson(col('bit', { bits: 64 }), Buffer.alloc(8, 0xff))).toBe(`"${'1'.repeat(64)}"`);
  });

  it('sends temporal values as the server prints them, DATETIME and TIMESTAMP with a T, TIMESTAMP in UTC', () => {
    expect(valueJson(col('datetime'), b('2024-01-01 00:00:00.120'))).toBe('"2024-01-01T00:00:00.120"');
    expect(valueJson(col('timestamp'), b('2024-01-01 00:00:00'))).toBe('"2024-01-01T00:00:00+00:00"');
    expect(valueJson(col('date'), b('2024-00-00'))).toBe('"2024-00-00"');
    expect(valueJson(col('datetime'), b('0000-00-00 00:00:00'))).toBe('"0000-00-00T00:00:00"');
    expect(valueJson(col('time'), b('-838:59:59.000000'))).toBe('"-838:59:59.000000"');
  });

  it('sends SET as an array of its members, the empty set as []', () => {
    expect(valueJson(col('set', { charset: 'utf8mb4' }), b('x,z'))).toBe('["x","z"]');
    expect(valueJson(col('set', { charset: 'utf8mb4' }), b(''))).toBe('[]');
  });

  it('embeds JSON as stored, and sends text a strict parser refuses as a string', () => {
    const json: MyColumn = { ...col('longtext', { charset: 'utf8mb4' }), kind: 'json' };
    expect(valueJson(json, b('{"n": 12345678901234567890, "x": 1.50}'))).toBe('{"n": 12345678901234567890, "x": 1.50}');
    expect(valueJson(json, b("{'single': 1}"))).toBe(`"{'single': 1}"`);
  });

  it('sends binary strings as base64 and text as JSON strings, emoji included', () => {
    expect(valueJson(col('blob'), Buffer.from([0, 255, 16]))).toBe('"AP8Q"');
    expect(valueJson(col('varchar', { charset: 'utf8mb4' }), b('h\u00e9 😀 "q" \\ \n'))).toBe(JSON.stringify('h\u00e9 😀 "q" \\ \n'));
    expect(valueJson(col('int'), null)).toBe('null');
  });
});

describe('key texts', () => {
  it('round-trip through SQL literals and encode like row values', () => {
    const bin = col('varbinary');
    expect(keyText(bin, Buffer.from([0, 255]))).toBe('AP8=');
    expect(literal(bin, 'AP8=')).toBe("X'00FF'");
    expect(keyJson(bin, 'AP8=')).toBe(valueJson(bin, Buffer.from([0, 255])));
    const ts = col('timestamp');
    expect(keyJson(ts, keyText(ts, b('2024-01-01 00:00:00.5')))).toBe(valueJson(ts, b('2024-01-01 00:00:00.5')));
    const big = col('bigint');
    expect(keyJson(big, '18446744073709551615')).toBe('"18446744073709551615"');
    const text = col('varchar', { charset: 'utf8mb4' });
    expect(keyJson(text, keyText(text, b('ab 😀 ')))).toBe('"ab 😀 "');
  });

  it('builds a row object with the catalog names in table order', () => {
    const cols = [col('int'), col('varchar', { charset: 'utf8mb4' })];
    expect(rowJson(cols.map(columnEncoder), rowPrefixes(['id', 'a"b']), [b('1'), null])).toBe('{"id":1,"a\\"b":null}');
    expect(rowJson([columnEncoder(col('int'))], rowPrefixes(['only']), [b('7')])).toBe('{"only":7}');
  });
});

describe('leavingEncoder', () => {
  it('sends a mask the server computed as a string, or in the column form when it cut a date or time', () => {
    expect(leavingEncoder(col('int'), { kind: 'redact', text: '***' }, false)(b('***'))).toBe('"***"');
    expect(leavingEncoder(col('varchar', { charset: 'utf8mb4' }), { kind: 'truncate', chars: 2 }, false)(b('h"'))).toBe('"h\\""');
    expect(leavingEncoder(col('timestamp'), { kind: 'truncateTime', unit: 'month' }, false)(b('2024-03-01 00:00:00'))).toBe(
      '"2024-03-01T00:00:00+00:00"',
    );
    expect(leavingEncoder(col('int'), null, false)(b('7'))).toBe('7');
  });

  it('writes BIT read through a filter (CASE prints it as a number) as the same binary digits as an unfiltered read', () => {
    const bit = col('bit', { bits: 5 });
    expect(leavingEncoder(bit, null, true)(b('5'))).toBe('"00101"');
    expect(leavingEncoder(bit, null, false)(Buffer.from([5]))).toBe('"00101"');
    expect(leavingEncoder(col('bit', { bits: 64 }), null, true)(b('18446744073709551615'))).toBe(`"${'1'.repeat(64)}"`);
  });

  it('writes a ZEROFILL BIGINT or DECIMAL read through a filter (CASE drops the zeros) with the zeros of an unfiltered read and of its key', () => {
    const amount = col('decimal', { columnType: 'decimal(8,2) unsigned zerofill' });
    expect(leavingEncoder(amount, null, true)(b('1.50'))).toBe('"000001.50"');
    expect(leavingEncoder(amount, null, false)(b('000001.50'))).toBe('"000001.50"');
    expect(keyJson(amount, '000001.50')).toBe('"000001.50"');
    expect(leavingEncoder(col('decimal', { columnType: 'decimal(6,6) unsigned zerofill' }), null, true)(b('0.500000'))).toBe('"0.500000"');
    expect(leavingEncoder(col('decimal', { columnType: 'decimal(5,0) unsigned zerofill' }), null, true)(b('7'))).toBe('"00007"');
    const id = col('bigint', { columnType: 'bigint(22) unsigned zerofill' });
    expect(leavingEncoder(id, null, true)(b('7'))).toBe(`"${'7'.padStart(22, '0')}"`);
    expect(leavingEncoder(col('bigint', { columnType: 'bigint(3) unsigned zerofill' }), null, true)(b('12345'))).toBe('"12345"');
    expect(leavingEncoder(col('bigint', { columnType: 'bigint(20) unsigned' }), null, true)(b('7'))).toBe('"7"');
  });
});
