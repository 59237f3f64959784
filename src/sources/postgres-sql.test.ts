import { describe, expect, it } from 'vitest';
import {
  boundaryText,
  columnExpr,
  copyRangeText,
  escapedLiteral,
  mayNest,
  nextRangeQuery,
  readKeysQuery,
  readRangeQuery,
  watermarkKind,
  type PgColumn,
  type TableSql,
} from './postgres-sql.js';

function col(name: string, castType: string, baseName: string, extra: Partial<PgColumn> = {}): PgColumn {
  return { name, castType, baseName, category: 'X', typtype: 'b', elemName: null, ...extra };
}

const updatedAt = col('Updated At', 'timestamp with time zone', 'timestamptz', { category: 'D' });
const id = col('Id', 'bigint', 'int8', { category: 'N' });
const line = col('line"no', 'integer', 'int4', { category: 'N' });
const note = col('note', 'text', 'text', { category: 'S' });

/** A mixed-case table with an embedded quote in its name and a composite primary key. */
const TABLE: TableSql = {
  qualified: '"Sales"."Order ""Items"""',
  columns: [id, line, updatedAt, note],
  watermark: updatedAt,
  primaryKey: [id, line],
};

const SINGLE: TableSql = { qualified: 'public.orders', columns: [id, updatedAt], watermark: updatedAt, primaryKey: [id] };

function orderByClause(text: string): string {
  const m = / ORDER BY (.*) LIMIT \$\d+$/.exec(text);
  if (!m) throw new Error(`no ORDER BY … LIMIT in ${text}`);
  return m[1]!;
}

describe('columnExpr', () => {
  it('sends int8, numeric (also through a domain) and money as their exact text', () => {
    expect(columnExpr(id)).toBe('t."Id"::text AS "Id"');
    expect(columnExpr(col('amount', 'price', 'numeric', { category: 'N' }))).toBe('t."amount"::text AS "amount"');
    expect(columnExpr(col('m', 'money', 'money', { category: 'N' }))).toBe('t."m"::text AS "m"');
  });

  it('sends arrays of int8, numeric or money as arrays of text', () => {
    expect(columnExpr(col('xs', 'numeric[]', '_numeric', { category: 'A', elemName: 'numeric' }))).toBe('t."xs"::text[] AS "xs"');
    expect(columnExpr(col('ys', 'bigint[]', '_int8', { category: 'A', elemName: 'int8' }))).toBe('t."ys"::text[] AS "ys"');
  });

  it('sends bytea as single-line base64, element by element for arrays', () => {
    expect(columnExpr(col('blob', 'bytea', 'bytea', { category: 'U' }))).toBe(`translate(encode(t."blob", 'base64'), chr(10), '') AS "blob"`);
    const arr = columnExpr(col('blobs', 'bytea[]', '_bytea', { category: 'A', elemName: 'bytea' }));
    expect(arr).toContain(`array_agg(translate(encode(e, 'base64'), chr(10), '') ORDER BY o)`);
    expect(arr).toContain('unnest(t."blobs") WITH ORDINALITY');
    expect(arr.endsWith(' AS "blobs"')).toBe(true);
  });

  it('leaves other types to Postgres JSON encoding, quoting the name', () => {
    expect(columnExpr(note)).toBe('t."note" AS "note"');
    expect(columnExpr(line)).toBe('t."line""no" AS "line""no"');
    expect(columnExpr(col('ints', 'integer[]', '_int4', { category: 'A', elemName: 'int4' }))).toBe('t."ints" AS "ints"');
  });

  it('qualifies with the given table alias', () => {
    expect(columnExpr(note, 'x')).toBe('x."note" AS "note"');
  });
});

describe('mayNest and watermarkKind', () => {
  it('flags tables with json, jsonb, composite or array columns as possibly nested', () => {
    expect(mayNest([id, note])).toBe(false);
    expect(mayNest([id, col('doc', 'jsonb', 'jsonb')])).toBe(true);
    expect(mayNest([id, col('doc', 'json', 'json')])).toBe(true);
    expect(mayNest([id, col('addr', 'address', 'address', { typtype: 'c' })])).toBe(true);
    expect(mayNest([id, col('tags', 'text[]', '_text', { category: 'A', elemName: 'text' })])).toBe(true);
  });

  it('classifies watermark types for the ordering value', () => {
    expect(watermarkKind(updatedAt)).toBe('timestamp');
    expect(watermarkKind(col('ts', 'timestamp without time zone', 'timestamp'))).toBe('timestamp');
    expect(watermarkKind(col('d', 'date', 'date'))).toBe('date');
    expect(watermarkKind(col('v', 'bigint', 'int8'))).toBe('integer');
    expect(watermarkKind(col('v', 'smallint', 'int2'))).toBe('integer');
    expect(watermarkKind(col('v', 'numeric', 'numeric'))).toBe('decimal');
    expect(watermarkKind(col('v', 'double precision', 'float8'))).toBe('decimal');
    expect(watermarkKind(col('v', 'text', 'text'))).toBe('other');
  });
});

describe('nextRangeQuery', () => {
  it('reads keys of the watermark phase from the start, quoting every identifier', () => {
    const q = nextRangeQuery(TABLE, 'wm', null, 500);
    expect(q.text).toBe(
      'SELECT t."Updated At"::text AS "__w", t."Id"::text AS "__k0", t."line""no"::text AS "__k1" ' +
        'FROM "Sales"."Order ""Items""" t WHERE t."Updated At" IS NOT NULL ' +
        'ORDER BY t."Updated At", t."Id", t."line""no" LIMIT $1',
    );
    expect(q.values).toEqual([500]);
  });

  it('continues strictly after a position with a row comparison over cast parameters', () => {
    const q = nextRangeQuery(TABLE, 'wm', { wm: '2024-01-01 00:00:00.000001+00', pk: ['5', '2'] }, 100);
    expect(q.text).toContain(
      'WHERE t."Updated At" IS NOT NULL AND (t."Updated At", t."Id", t."line""no") > ($1::timestamp with time zone, $2::bigint, $3::integer)',
    );
    expect(q.values).toEqual(['2024-01-01 00:00:00.000001+00', '5', '2', 100]);
    expect(q.text.endsWith('LIMIT $4')).toBe(true);
  });

  it('orders by the table columns, never by the text aliases of the same names', () => {
    for (const q of [nextRangeQuery(TABLE, 'wm', null, 1), nextRangeQuery(SINGLE, 'wm', { wm: 'x', pk: ['1'] }, 1)]) {
      const order = orderByClause(q.text);
      expect(order.split(', ').every((part) => part.startsWith('t."'))).toBe(true);
      expect(order).not.toContain('__');
    }
    expect(orderByClause(nextRangeQuery(SINGLE, 'wm', null, 1).text)).toBe('t."Updated At", t."Id"');
  });

  it('pages rows with a NULL watermark by primary key alone', () => {
    const q = nextRangeQuery(TABLE, 'null', { wm: null, pk: ['5', '2'] }, 10);
    expect(q.text).toBe(
      'SELECT t."Id"::text AS "__k0", t."line""no"::text AS "__k1" FROM "Sales"."Order ""Items""" t ' +
        'WHERE t."Updated At" IS NULL AND (t."Id", t."line""no") > ($1::bigint, $2::integer) ' +
        'ORDER BY t."Id", t."line""no" LIMIT $3',
    );
    expect(q.values).toEqual(['5', '2', 10]);
  });

  it('stops below an upper bound in the watermark phase only', () => {
    const q = nextRangeQuery(SINGLE, 'wm', { wm: 'a', pk: ['1'] }, 10, '2024-06-01 00:00:00+00');
    expect(q.text).toContain('AND (t."Updated At") < ($3::timestamp with time zone)');
    expect(q.values).toEqual(['a', '1', '2024-06-01 00:00:00+00', 10]);
    const nullPhase = nextRangeQuery(SINGLE, 'null', null, 10, '2024-06-01 00:00:00+00');
    expect(nullPhase.text).not.toContain(' < ');
    expect(nullPhase.values).toEqual([10]);
  });
});

describe('readRangeQuery', () => {
  it('reads the rows between two positions as JSON built by Postgres', () => {
    const q = readRangeQuery(TABLE, 'wm', { wm: 'lo', pk: ['1', '1'] }, { wm: 'hi', pk: ['9', '3'] }, 1000);
    expect(q.text).toContain('to_json(r.*)::text AS "__j"');
    expect(q.text).toContain(
      'LATERAL (SELECT t."Id"::text AS "Id", t."line""no" AS "line""no", t."Updated At" AS "Updated At", t."note" AS "note") r',
    );
    expect(q.text).toContain('(t."Updated At", t."Id", t."line""no") > ($1::timestamp with time zone, $2::bigint, $3::integer)');
    expect(q.text).toContain('(t."Updated At", t."Id", t."line""no") <= ($4::timestamp with time zone, $5::bigint, $6::integer)');
    expect(orderByClause(q.text)).toBe('t."Updated At", t."Id", t."line""no"');
    expect(q.values).toEqual(['lo', '1', '1', 'hi', '9', '3', 1000]);
  });

  it('reads from the start of the range when there is no lower position', () => {
    const q = readRangeQuery(SINGLE, 'null', null, { wm: null, pk: ['7'] }, 50);
    expect(q.text).toContain('WHERE t."Updated At" IS NULL AND (t."Id") <= ($1::bigint)');
    expect(q.text).not.toContain(' > (');
    expect(q.values).toEqual(['7', 50]);
  });
});

describe('readKeysQuery', () => {
  const keys = [
    ['1', '2'],
    ['3', '4'],
  ];

  it("looks each key up on its own when the primary key is the table's, so no plan hashes the whole table", () => {
    const q = readKeysQuery({ ...TABLE, keyIndexed: true, deleted: 'c."__d"', conditions: { deleted: 't."Id" < 0' } }, keys);
    expect(q.text).toBe(
      'SELECT k."__ord"::text, x."__j", x."__d" FROM unnest($1::text[]::bigint[], $2::text[]::integer[]) WITH ORDINALITY AS k("__k0", "__k1", "__ord") ' +
        'CROSS JOIN LATERAL (SELECT to_json(r.*)::text AS "__j", (c."__d")::text AS "__d" FROM "Sales"."Order ""Items""" t ' +
        'CROSS JOIN LATERAL (SELECT (t."Id" < 0) AS "__d") c, LATERAL (SELECT t."Id"::text AS "Id", t."line""no" AS "line""no", ' +
        't."Updated At" AS "Updated At", t."note" AS "note") r WHERE t."Id" = k."__k0" AND t."line""no" = k."__k1" OFFSET 0) x',
    );
    expect(q.values).toEqual([
      ['1', '3'],
      ['2', '4'],
    ]);
  });

  it('joins the key list when the key is one the configuration names (a view or a query has no index to look up)', () => {
    const q = readKeysQuery(TABLE, keys);
    expect(q.text).toContain('FROM "Sales"."Order ""Items""" t JOIN unnest(');
    expect(q.text).toContain('ON t."Id" = k."__k0" AND t."line""no" = k."__k1", LATERAL (SELECT');
  });

  it('finds a key whose equal values print differently (numeric, citext, collations) only under its own spelling', () => {
    const q = readKeysQuery({ ...TABLE, keyIndexed: true, primaryKey: [col('code', 'numeric', 'numeric')] }, [['1.0']]);
    expect(q.text).toContain(`WHERE t."code" = k."__k0" AND t."code"::text COLLATE "C" = k."__k0"::text COLLATE "C" OFFSET 0`);
  });
});

describe('boundaryText', () => {
  it('subtracts the lag to the microsecond and writes the watermark type text form', () => {
    expect(boundaryText('2026-12-02 03:38:53.148207+00', 0, 'timestamp with time zone')).toBe('2026-12-02 03:38:53.148207+00');
    expect(boundaryText('2026-12-02 03:38:53.148207+00', 1500, 'timestamp with time zone')).toBe('2026-12-02 03:38:51.648207+00');
    expect(boundaryText('2026-12-02 03:38:53.148207+00', 0.001, 'timestamp without time zone')).toBe('2026-12-02 03:38:53.148206');
    // Across midnight, a month and a leap day, from a base Postgres printed without a fraction or with fewer digits.
    expect(boundaryText('2024-03-01 00:00:00+00', 1, 'timestamp with time zone')).toBe('2024-02-29 23:59:59.999000+00');
    expect(boundaryText('2024-03-01 00:00:00.5+00', 3_600_000, 'timestamp without time zone')).toBe('2024-02-29 23:00:00.500000');
  });

  it('refuses a base that is not a UTC time', () => {
    expect(() => boundaryText('2024-03-01 00:00:00+05:30', 0, 'timestamp with time zone')).toThrow(/not a UTC time/);
  });
});

describe('copyRangeText', () => {
  it('writes key values as E-string constants that no backslash or quote can end', () => {
    expect(escapedLiteral("it's")).toBe("E'it''s'");
    expect(escapedLiteral("x\\' OR true --")).toBe("E'x\\\\'' OR true --'");
    const text = copyRangeText(
      TABLE,
      'wm',
      { wm: '2024-01-01 00:00:00+00', pk: ["a\\'", '1'] },
      { wm: '2024-01-02 00:00:00+00', pk: ['b', '2'] },
      500,
    );
    expect(text).toContain("E'a\\\\'''::");
    expect(text.startsWith('COPY (SELECT ')).toBe(true);
    expect(text.endsWith(' LIMIT 500) TO STDOUT')).toBe(true);
  });

  it('refuses a read limit that is not a positive integer', () => {
    const hi = { wm: '2024-01-02 00:00:00+00', pk: ['b', '2'] };
    for (const limit of [0, -1, 1.5, Number.NaN]) expect(() => copyRangeText(TABLE, 'wm', null, hi, limit)).toThrow(/positive integer/);
  });
});
