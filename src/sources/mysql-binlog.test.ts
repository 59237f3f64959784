import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.js';
import {
  BinlogTransaction,
  binlogKeyText,
  changeOrdering,
  comparePositions,
  ddlTargets,
  decoderCharset,
  gtidRegressed,
  keyableKind,
  parsePosition,
  shapeFits,
  snapshotOrdering,
  type BinlogColumn,
} from './mysql-binlog.js';
import { defaultServerId, statementRelations, truncatedRelation } from './mysql-cdc.js';
import { startPositionOf, valueKind, type MyColumn } from './mysql-sql.js';

function col(name: string, dataType: string, extra: Partial<MyColumn> = {}): MyColumn {
  const charset = extra.charset ?? (['varchar', 'char', 'text'].includes(dataType) ? 'utf8mb4' : null);
  return { name, dataType, columnType: dataType, kind: valueKind(dataType, charset, false), charset, collation: null, fsp: 0, bits: 0, ...extra };
}

describe('binlog positions', () => {
  it('parse as file and offset, and refuse anything else', () => {
    expect(parsePosition('binlog.000042:1234')).toEqual({ file: 'binlog.000042', offset: 1234 });
    expect(() => parsePosition('16/B374D848')).toThrow(AppError);
    expect(() => parsePosition('binlog:12')).toThrow(AppError);
  });

  it('compare by file number, then offset, also past six digits', () => {
    expect(comparePositions('binlog.000009:900', 'binlog.000010:4')).toBe(-1);
    expect(comparePositions('binlog.999999:900', 'binlog.1000000:4')).toBe(-1);
    expect(comparePositions('binlog.000010:120', 'binlog.000010:4')).toBe(1);
    expect(comparePositions('binlog.000010:4', 'binlog.000010:4')).toBe(0);
  });

  it('order snapshot rows before every change streamed from the snapshot start, and changes by commit', () => {
    const start = snapshotOrdering('binlog.000010:500');
    const first = changeOrdering('binlog.000010:501', 1);
    const later = changeOrdering('binlog.000011:4', 1);
    expect(start < first).toBe(true);
    expect(first < changeOrdering('binlog.000010:501', 2)).toBe(true);
    expect(changeOrdering('binlog.000010:501', 10) < later).toBe(true);
    expect(changeOrdering('binlog.000009:99999', 1) < start).toBe(true);
  });

  it('an incremental snapshot started at the end of a transaction sorts after that transaction: its rows are newer', () => {
    // Regression: snapshot rows read after ADD COLUMN … DEFAULT lost to an older change ending at the snapshot start.
    const end = 'binlog.000010:501';
    expect(changeOrdering(end, 9_999_999_999) < snapshotOrdering(end)).toBe(true);
    expect(snapshotOrdering(end) < changeOrdering('binlog.000010:502', 1)).toBe(true);
  });
});

describe('binlog key texts', () => {
  it('spell keys as the table reader does: integers, strings, binary as base64, times at the column precision', () => {
    expect(binlogKeyText(col('id', 'bigint'), '18446744073709551615')).toBe('18446744073709551615');
    expect(binlogKeyText(col('id', 'int'), 7)).toBe('7');
    expect(binlogKeyText(col('code', 'varchar'), 'b ')).toBe('b ');
    expect(binlogKeyText(col('b', 'varbinary'), Buffer.from([0, 255]))).toBe('AP8=');
    expect(binlogKeyText(col('d', 'datetime', { fsp: 0 }), '2024-01-01 00:00:00')).toBe('2024-01-01 00:00:00');
    expect(binlogKeyText(col('d', 'datetime', { fsp: 3 }), '2024-01-01 00:00:00.120000')).toBe('2024-01-01 00:00:00.120');
    expect(binlogKeyText(col('d', 'timestamp', { fsp: 6 }), '2024-01-01 00:00:00.5')).toBe('2024-01-01 00:00:00.500000');
    expect(() => binlogKeyText(col('id', 'int'), null)).toThrow(AppError);
  });

  it('pad ZEROFILL keys with zeros as the server prints them', () => {
    expect(binlogKeyText(col('id', 'int', { columnType: 'int(6) unsigned zerofill' }), 22)).toBe('000022');
    expect(binlogKeyText(col('id', 'int', { columnType: 'int(3) unsigned zerofill' }), 12345)).toBe('12345');
    expect(binlogKeyText(col('id', 'bigint', { columnType: 'bigint(20) unsigned zerofill' }), '18446744073709551615')).toBe('18446744073709551615');
    expect(binlogKeyText(col('id', 'bigint', { columnType: 'bigint(20) unsigned zerofill' }), 1)).toBe('00000000000000000001');
    expect(binlogKeyText(col('a', 'decimal', { columnType: 'decimal(8,2) unsigned zerofill' }), '1.50')).toBe('000001.50');
    expect(binlogKeyText(col('a', 'decimal', { columnType: 'decimal(6,6) unsigned zerofill' }), '0.500000')).toBe('0.500000');
    expect(binlogKeyText(col('a', 'decimal', { columnType: 'decimal(5,0) unsigned zerofill' }), '7')).toBe('00007');
    expect(binlogKeyText(col('a', 'decimal', { columnType: 'decimal(8,2)' }), '-1.50')).toBe('-1.50');
  });

  it('spell the zero year as the server does (the decoder gives 1900), and YEAR(2) in two digits', () => {
    expect(binlogKeyText(col('y', 'year', { columnType: 'year(4)' }), 1900)).toBe('0000');
    expect(binlogKeyText(col('y', 'year', { columnType: 'year(4)' }), 1901)).toBe('1901');
    expect(binlogKeyText(col('y', 'year', { columnType: 'year(2)' }), 2005)).toBe('05');
    expect(binlogKeyText(col('y', 'year', { columnType: 'year(2)' }), 1900)).toBe('00');
  });

  it('decode latin1 as the server converts it, the five bytes cp1252 leaves out as C1 controls', () => {
    const latin1 = col('code', 'varchar', { charset: 'latin1' });
    const bytes = (...b: number[]): string => Buffer.from(b).toString('latin1');
    expect(decoderCharset('latin1')).toBe('binary');
    expect(decoderCharset('utf8mb4')).toBe('utf8mb4');
    expect(binlogKeyText(latin1, bytes(0x81, 0x8d, 0x8f, 0x90, 0x9d))).toBe('\u0081\u008d\u008f\u0090\u009d');
    expect(binlogKeyText(latin1, bytes(0x80, 0x9f, 0xe9, 0x41))).toBe('€Ÿé' + 'A');
  });

  it('accept only key kinds whose binlog values it can spell exactly', () => {
    expect(['int', 'bigint', 'varchar', 'varbinary', 'datetime', 'decimal', 'date'].map((t) => keyableKind(col('k', t)))).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(['time', 'bit', 'float', 'uuid'].map((t) => keyableKind(col('k', t)))).toEqual([false, false, false, false]);
  });

  it('refuse text keys in character sets the decoder converts otherwise than the server', () => {
    const keyable = (charset: string): boolean => keyableKind(col('k', 'varchar', { charset }));
    expect(['utf8mb4', 'utf8mb3', 'latin1', 'latin2', 'cp850', 'utf16'].map(keyable)).toEqual([true, true, true, true, true, true]);
    expect(['sjis', 'ujis', 'cp932', 'big5', 'greek', 'hebrew', 'macroman', 'dec8'].map(keyable)).toEqual([
      false,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
  });

  it('refuse text keys the table reader refuses, whose characters do not convert to Unicode and back', () => {
    const keyable = (charset: string): boolean => keyableKind(col('k', 'varchar', { charset }));
    expect(['cp1250', 'cp1251', 'cp1256', 'cp1257', 'euckr', 'gbk'].map(keyable)).toEqual([false, false, false, false, false, false]);
    expect(keyable('ascii')).toBe(true);
  });

  it('turn a primary-key change into a delete of the old key and an insert of the new one', () => {
    const t = { relation: 'shop.items', key: [col('id', 'int')] };
    const txn = new BinlogTransaction();
    txn.add(t, 'writerows', [{ id: 1 }]);
    txn.add(t, 'updaterows', [
      { before: { id: 1, v: 'a' }, after: { id: 1, v: 'b' } },
      { before: { id: 1 }, after: { id: 2 } },
    ]);
    txn.add(t, 'deleterows', [{ id: 2 }]);
    const changes = txn.commit('binlog.000001:900');
    expect(changes.map((c) => [c.op, c.pk[0]])).toEqual([
      ['insert', '1'],
      ['update', '1'],
      ['delete', '1'],
      ['insert', '2'],
      ['delete', '2'],
    ]);
    expect(changes.map((c) => c.ordering)).toEqual([1, 2, 3, 4, 5].map((i) => changeOrdering('binlog.000001:900', i)));
  });
});

describe('binlog statements and settings', () => {
  it('finds the table a TRUNCATE empties, qualified or in the statement database', () => {
    expect(truncatedRelation('TRUNCATE TABLE items', 'shop')).toBe('shop.items');
    expect(truncatedRelation('truncate `other db`.`it``s`', 'shop')).toBe('other db.it`s');
    expect(truncatedRelation('CREATE TABLE truncate_log (a int)', 'shop')).toBeNull();
  });

  it('names the captured tables a data-changing statement logged without its rows may have changed', () => {
    const captured = ['shop.items', 'shop.item_lines', 'shop.orders'];
    expect(statementRelations("UPDATE items SET v = 'x' WHERE id = 1", captured)).toEqual(['shop.items']);
    expect(statementRelations('/* app */ delete from `shop`.`ORDERS` where id in (select id from item_lines)', captured)).toEqual([
      'shop.item_lines',
      'shop.orders',
    ]);
    expect(statementRelations('INSERT INTO other SELECT * FROM stock', captured)).toEqual([]);
    expect(statementRelations('REPLACE INTO itemsx VALUES (1)', captured)).toEqual([]);
    expect(statementRelations("LOAD DATA INFILE 'x' INTO TABLE items", captured)).toEqual(['shop.items']);
    // Not a change of rows: DDL and session statements go their own way.
    expect(statementRelations('ALTER TABLE items ADD COLUMN w int', captured)).toBeNull();
    expect(statementRelations('CREATE TABLE items_copy AS SELECT * FROM items', captured)).toBeNull();
  });

  it('derives a server id from the stream name, stable and clear of small hand-set ids', () => {
    expect(defaultServerId('shop/pushsync_shop')).toBe(defaultServerId('shop/pushsync_shop'));
    expect(defaultServerId('a')).not.toBe(defaultServerId('b'));
    for (const n of ['a', 'shop/pushsync_shop', 'x'.repeat(300)]) {
      expect(defaultServerId(n)).toBeGreaterThanOrEqual(1_000_000_000);
      expect(defaultServerId(n)).toBeLessThanOrEqual(4_294_967_295);
    }
  });
});

describe('the start position and GTID history of a stream', () => {
  it('reads the position of a consistent snapshot on MariaDB and the binary log status on MySQL, with the GTID', () => {
    const maria = [
      [
        ['Binlog_snapshot_file', 'binlog.000007'],
        ['Binlog_snapshot_position', '1234'],
      ],
      [['0-1-42,1-2-7']],
    ];
    expect(startPositionOf('mariadb', maria)).toEqual({ file: 'binlog.000007', offset: 1234, gtid: '0-1-42,1-2-7' });
    const mysql = [
      [['binlog.000003', '157', '', '', 'x']],
      [['3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3']],
    ];
    expect(startPositionOf('mysql', mysql)?.offset).toBe(157);
    expect(startPositionOf('mysql', [[['binlog.000003', '157']], [['a:1-5,\nb:1-3']]])?.gtid).toBe('a:1-5,b:1-3');
    expect(startPositionOf('mariadb', [[], [['']]])).toBeNull();
  });

  it('finds a history that went back or vanished, and accepts one that moved on or grew a new domain', () => {
    expect(gtidRegressed('0-3307-20', '0-3307-25')).toBe(false);
    expect(gtidRegressed('0-3307-20', '0-3308-21,1-5-1')).toBe(false);
    expect(gtidRegressed('0-3307-20', '0-3307-3')).toBe(true);
    expect(gtidRegressed('0-3307-20,1-5-9', '0-3307-30')).toBe(true);
    expect(gtidRegressed('', '0-1-1')).toBe(false);
    const uuid = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
    expect(gtidRegressed(`${uuid}:1-5`, `${uuid}:1-9:11-12`)).toBe(false);
    expect(gtidRegressed(`${uuid}:1-5`, `${uuid.toUpperCase()}:1-4`)).toBe(true);
    expect(gtidRegressed(`${uuid}:1-5`, '')).toBe(true);
  });
});

describe('DDL in the binlog', () => {
  it('finds the tables a statement alters, and those it drops, creates or renames', () => {
    expect(ddlTargets('ALTER TABLE items ADD COLUMN x int AFTER code', 'shop')).toEqual({ altered: ['shop.items'], replaced: [] });
    expect(ddlTargets('alter online table `o db`.`it``s` drop column v', 'shop')).toEqual({ altered: ['o db.it`s'], replaced: [] });
    expect(ddlTargets('ALTER TABLE items RENAME COLUMN a TO b', 'shop')).toEqual({ altered: ['shop.items'], replaced: [] });
    expect(ddlTargets('ALTER TABLE items RENAME TO old_items', 'shop')).toEqual({ altered: [], replaced: ['shop.items', 'shop.old_items'] });
    expect(ddlTargets('DROP TABLE IF EXISTS `items`, other.t /* generated by server */', 'shop')).toEqual({
      altered: [],
      replaced: ['shop.items', 'other.t'],
    });
    expect(ddlTargets('CREATE OR REPLACE TABLE items (id int PRIMARY KEY)', 'shop').replaced).toEqual(['shop.items']);
    expect(ddlTargets('CREATE TABLE IF NOT EXISTS `a`.`b` LIKE c', 'shop').replaced).toEqual(['a.b']);
    expect(ddlTargets('RENAME TABLE items TO items_old, items_new TO items', 'shop').replaced).toEqual([
      'shop.items',
      'shop.items_old',
      'shop.items_new',
      'shop.items',
    ]);
    expect(ddlTargets('CREATE INDEX i ON items (code)', 'shop')).toEqual({ altered: [], replaced: [] });
    expect(ddlTargets('INSERT INTO alter_log VALUES (1)', 'shop')).toEqual({ altered: [], replaced: [] });
  });

  it('fits a TABLE_MAP to a column list only with the same count and compatible binlog types, in order', () => {
    const c = (name: string, dataType: string): BinlogColumn => ({ name, dataType, columnType: dataType, charset: null, collation: null });
    const columns = [c('code', 'varchar'), c('id', 'int'), c('at', 'datetime'), c('g', 'point')];
    expect(shapeFits({ columnCount: 4, columnTypes: [15, 3, 18, 255] }, columns)).toBe(true);
    // A column added in the middle: same count as another list, other types in order.
    expect(shapeFits({ columnCount: 4, columnTypes: [3, 15, 18, 255] }, columns)).toBe(false);
    expect(shapeFits({ columnCount: 3, columnTypes: [15, 3, 18] }, columns)).toBe(false);
  });
});
