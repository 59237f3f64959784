import { describe, expect, it } from 'vitest';
import type { ResultField } from './mysql-query.js';
import { resultColumn } from './mysql-result.js';

const field = (name: string, columnType: number, extra: Partial<ResultField> = {}): ResultField => ({
  name,
  columnType,
  flags: 0,
  decimals: 0,
  length: 0,
  format: null,
  ...extra,
});

describe('resultColumn', () => {
  it('reads numbers, temporal types and BIT from the type code, flags and decimals', () => {
    expect(resultColumn(field('n', 3, { flags: 32 }), 'binary', 'binary')).toMatchObject({
      dataType: 'int',
      columnType: 'int unsigned',
      kind: 'int',
    });
    expect(resultColumn(field('b', 1, { length: 1 }), 'binary', 'binary')).toMatchObject({ columnType: 'tinyint(1)', kind: 'int' });
    expect(resultColumn(field('big', 8), 'binary', 'binary').kind).toBe('bigint');
    expect(resultColumn(field('d', 246, { decimals: 2 }), 'binary', 'binary').kind).toBe('decimal');
    expect(resultColumn(field('ts', 7, { decimals: 3 }), 'binary', 'binary')).toMatchObject({
      columnType: 'timestamp(3)',
      kind: 'timestamp',
      fsp: 3,
    });
    expect(resultColumn(field('dt', 12), 'binary', 'binary')).toMatchObject({ kind: 'datetime', fsp: 0 });
    expect(resultColumn(field('day', 10), 'binary', 'binary').kind).toBe('date');
    expect(resultColumn(field('bits', 16, { length: 5 }), 'binary', 'binary')).toMatchObject({ kind: 'bit', bits: 5, columnType: 'bit(5)' });
    expect(resultColumn(field('f', 4), 'binary', 'binary').kind).toBe('float');
  });

  it('reads strings with the character set and collation the server reports, binary strings as bytes', () => {
    expect(resultColumn(field('v', 253), 'latin1', 'latin1_german1_ci')).toMatchObject({
      dataType: 'varchar',
      kind: 'text',
      charset: 'latin1',
      collation: 'latin1_german1_ci',
    });
    expect(resultColumn(field('t', 252), 'utf8mb4', 'utf8mb4_general_ci')).toMatchObject({ dataType: 'text', kind: 'text' });
    expect(resultColumn(field('blob', 252), 'binary', 'binary')).toMatchObject({ dataType: 'blob', kind: 'binary', charset: null });
    expect(resultColumn(field('vb', 253), 'binary', 'binary').kind).toBe('binary');
    expect(resultColumn(field('e', 254, { flags: 256 }), 'utf8mb4', 'utf8mb4_general_ci').kind).toBe('enum');
    expect(resultColumn(field('s', 254, { flags: 2048 }), 'utf8mb4', 'utf8mb4_general_ci').kind).toBe('set');
  });

  it("reads JSON from MySQL's type code and from MariaDB's extended metadata", () => {
    expect(resultColumn(field('j', 245), 'utf8mb4', 'utf8mb4_bin').kind).toBe('json');
    expect(resultColumn(field('j', 252, { format: 'json' }), 'utf8mb4', 'utf8mb4_bin').kind).toBe('json');
  });
});
