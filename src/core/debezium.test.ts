import { describe, expect, it } from 'vitest';
import { parseLossless } from './json-lossless.js';
import { UnavailableValue } from './debezium-values.js';
import { changeRow, mapDebeziumEvent, type DebeziumChange, type DebeziumEvent, type MappingOptions } from './debezium.js';
import { changeOrdering, snapshotOrdering } from './lsn.js';
import { floorOf, raiseToFloor } from './debezium-ordering.js';
import {
  UNAVAILABLE,
  decimalBytes,
  heartbeatEvent,
  keyEvent,
  mysqlEvent,
  pgCloudEvent,
  pgCloudEventAttributes,
  pgCloudEventData,
  pgEvent,
  pgFlattened,
  transactionEvent,
  type Column,
  type PgEvent,
} from '../../test/helpers/debezium-events.js';

const OPTS: MappingOptions = { binaryHandling: 'bytes', unavailable: new UnavailableValue(UNAVAILABLE) };

const COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'status', type: 'string' },
  { name: 'amount', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2', 'connect.decimal.precision': '12' } },
  { name: 'placed_at', type: 'string', semantic: 'io.debezium.time.ZonedTimestamp' },
  { name: 'body', type: 'string' },
];
const ROW = {
  id: '9007199254740993',
  status: '"open"',
  amount: decimalBytes(123450n),
  placed_at: '"2024-03-01T12:34:56.123456Z"',
  body: '"long text"',
};
const ROW_JSON = '"id":"9007199254740993","status":"open","amount":"1234.50","placed_at":"2024-03-01T12:34:56.123456+00:00","body":"long text"';

function map(text: string, extra: Partial<Parameters<typeof mapDebeziumEvent>[0]> = {}): DebeziumEvent {
  return mapDebeziumEvent({ value: parseLossless(text), ...extra }, OPTS);
}

function change(text: string, extra: Partial<Parameters<typeof mapDebeziumEvent>[0]> = {}): DebeziumChange {
  const e = map(text, extra);
  if (e.kind !== 'change') throw new Error(`expected a change, got ${JSON.stringify(e)}`);
  return e;
}

const pg = (e: Partial<PgEvent>): PgEvent => ({ op: 'c', columns: COLUMNS, lsn: 24023128, lastCommitLsn: 24023119, after: ROW, ...e });

describe('Postgres connector events', () => {
  it('a create (op c) is an insert with every column in pushsync encoding, ordered by the source position', () => {
    const c = change(pgEvent(pg({})));
    expect(c).toMatchObject({ table: 'public.orders', op: 'insert', unavailable: [], position: 'lsn:24023128' });
    expect(changeRow(c, ['id'], 'event 0').json).toBe(`{"_unavailable":[],${ROW_JSON}}`);
    expect(c.ordering).toBe(`~${(24023128).toString(16).padStart(16, '0')}:${(24023128).toString(16).padStart(16, '0')}`);
  });

  it('an update (op u) is an update; with REPLICA IDENTITY FULL the before image changes nothing', () => {
    const plain = change(pgEvent(pg({ op: 'u', before: null })));
    const full = change(pgEvent(pg({ op: 'u', before: { ...ROW, status: '"new"' } })));
    expect(plain.op).toBe('update');
    expect(changeRow(full, ['id'], 'e').json).toBe(changeRow(plain, ['id'], 'e').json);
  });

  it('a delete (op d) carries only the key columns of before, with and without REPLICA IDENTITY FULL', () => {
    const keyOnly = { id: '42', status: 'null', amount: 'null', placed_at: 'null', body: 'null' };
    for (const before of [keyOnly, { ...ROW, id: '42' }]) {
      const c = change(pgEvent(pg({ op: 'd', before, after: null })));
      expect(c.op).toBe('delete');
      expect(changeRow(c, ['id'], 'e')).toEqual({ json: '{"_unavailable":[],"id":"42"}', key: ['"42"'] });
    }
  });

  it('a snapshot read (op r) is a snapshot ordered like pushsync snapshot rows, before every change at or after its LSN', () => {
    const c = change(pgEvent(pg({ op: 'r', lsn: 24023128, lastCommitLsn: null, snapshot: 'true' })));
    expect(c.op).toBe('snapshot');
    expect(c.ordering).toBe(snapshotOrdering('0/16E9058'));
    const next = change(pgEvent(pg({ op: 'u', lsn: 24023128 })));
    expect(c.ordering < next.ordering).toBe(true);
  });

  it('regression: a change of a transaction open when the initial snapshot began sorts after the snapshot row, by the floor', () => {
    // Snapshot at S = 0x5000. The first streamed transaction began before it (change LSN 0x4000) and committed
    // after it; Debezium reports no previous commit for it. By LSN alone it loses to the stale snapshot row.
    const snap = change(pgEvent(pg({ op: 'r', lsn: 0x5000, lastCommitLsn: null, snapshot: 'last' })));
    const late = change(pgEvent(pg({ op: 'u', lsn: 0x4000, lastCommitLsn: null })));
    expect(snap.floor).toBe('sets');
    expect(late.floor).toBe('obeys');
    expect(late.ordering < snap.ordering).toBe(true);
    const raised = raiseToFloor(late.ordering, floorOf(snap.ordering));
    expect(raised > snap.ordering).toBe(true);
    expect(raised).toBe(`~${'5000'.padStart(16, '0')}:${'4000'.padStart(16, '0')}`);
    // A change already past the floor keeps its ordering; without a floor nothing changes.
    const after = change(pgEvent(pg({ op: 'u', lsn: 0x6100, lastCommitLsn: 0x6000 })));
    expect(raiseToFloor(after.ordering, floorOf(snap.ordering))).toBe(after.ordering);
    expect(raiseToFloor(late.ordering, null)).toBe(late.ordering);
    // Two raised changes of one key keep their own order (the second part).
    const later = change(pgEvent(pg({ op: 'u', lsn: 0x4800, lastCommitLsn: null })));
    expect(raiseToFloor(late.ordering, '0000000000005000') < raiseToFloor(later.ordering, '0000000000005000')).toBe(true);
  });

  it('incremental snapshot rows neither set nor obey the floor; MySQL events have none', () => {
    expect(change(pgEvent(pg({ op: 'r', snapshot: 'incremental' }))).floor).toBeUndefined();
    const columns: Column[] = [{ name: 'id', type: 'int32', optional: false }];
    expect(change(mysqlEvent({ op: 'c', columns, after: { id: '1' }, file: 'mysql-bin.000003', pos: 154 })).floor).toBeUndefined();
  });

  it('orders by commit: the previous commit LSN raises the first part, the change LSN orders within a transaction', () => {
    // A transaction that began before the last commit (its change LSNs are older) still sorts after it.
    const late = change(pgEvent(pg({ lsn: 1000, lastCommitLsn: 5000 })));
    const earlier = change(pgEvent(pg({ lsn: 4000, lastCommitLsn: 3000 })));
    expect(earlier.ordering < late.ordering).toBe(true);
    const second = change(pgEvent(pg({ lsn: 1200, lastCommitLsn: 5000 })));
    expect(late.ordering < second.ordering).toBe(true);
    // Re-delivered with another last commit: a different ordering, the same identity (event id).
    expect(change(pgEvent(pg({ lsn: 1000, lastCommitLsn: 6000 }))).position).toBe(late.position);
  });

  it('sorts against pushsync CDC records of the same key: an earlier Debezium change before, a later one after', () => {
    // pushsync CDC wrote a change committed at 0/2000 (position 1); Debezium then sees the next change of the row.
    const pushsync = changeOrdering('0/2000', 1);
    expect(change(pgEvent(pg({ lsn: 0x2100, lastCommitLsn: 0x2000 }))).ordering > pushsync).toBe(true);
    expect(change(pgEvent(pg({ lsn: 0x1f00, lastCommitLsn: 0x1e00 }))).ordering < pushsync).toBe(true);
  });

  it('marks unchanged TOASTed values: the column is left out and named in _unavailable, never sent as data', () => {
    const c = change(pgEvent(pg({ op: 'u', after: { ...ROW, body: JSON.stringify(UNAVAILABLE) } })));
    expect(c.unavailable).toEqual(['body']);
    const row = changeRow(c, ['id'], 'e').json;
    expect(row).toBe(`{"_unavailable":["body"],${ROW_JSON.replace(',"body":"long text"', '')}}`);
    expect(row).not.toContain(UNAVAILABLE);
  });

  it('recognises the placeholder in bytes and array columns too', () => {
    const columns: Column[] = [
      { name: 'id', type: 'int32' },
      { name: 'blob', type: 'bytes' },
      { name: 'tags', type: 'array', items: { type: 'string' } },
    ];
    const c = change(
      pgEvent(
        pg({
          op: 'u',
          columns,
          after: { id: '1', blob: JSON.stringify(Buffer.from(UNAVAILABLE).toString('base64')), tags: `[${JSON.stringify(UNAVAILABLE)}]` },
        }),
      ),
    );
    expect(c.unavailable).toEqual(['blob', 'tags']);
  });

  it('a truncate (op t) is announced with its table', () => {
    expect(map(pgEvent(pg({ op: 't', before: null, after: null })))).toEqual({ kind: 'truncate', table: 'public.orders' });
  });

  it('skips tombstones, heartbeats, transaction markers, logical messages and schema changes, saying which', () => {
    expect(map('null')).toEqual({ kind: 'skip', reason: 'tombstone' });
    expect(map('{"schema":null,"payload":null}')).toEqual({ kind: 'skip', reason: 'tombstone' });
    expect(map(heartbeatEvent())).toEqual({ kind: 'skip', reason: 'heartbeat' });
    expect(map('{"ts_ms":1709296500000}')).toEqual({ kind: 'skip', reason: 'heartbeat' });
    expect(map(transactionEvent('BEGIN'))).toEqual({ kind: 'skip', reason: 'transaction' });
    expect(map(transactionEvent('END'))).toEqual({ kind: 'skip', reason: 'transaction' });
    expect(map(pgEvent(pg({ op: 'm', before: null, after: null })))).toEqual({ kind: 'skip', reason: 'message' });
    expect(map('{"source":{"connector":"mysql"},"databaseName":"inventory","ddl":"ALTER TABLE t ADD c int","tableChanges":[]}')).toEqual({
      kind: 'skip',
      reason: 'schema_change',
    });
  });

  it('reads events without the schema envelope, by best effort', () => {
    const c = change(pgEvent(pg({ withSchema: false })));
    // Without a schema the Decimal stays base64 and the int64 beyond 2^53 becomes a string.
    expect(changeRow(c, ['id'], 'e').json).toBe(
      `{"_unavailable":[],"id":"9007199254740993","status":"open","amount":${decimalBytes(123450n)},"placed_at":"2024-03-01T12:34:56.123456Z","body":"long text"}`,
    );
  });

  it('takes the primary key from the event key when the config names none', () => {
    const key = parseLossless(keyEvent([COLUMNS[0]!], { id: '9007199254740993' }));
    const c = change(pgEvent(pg({ op: 'd', before: null, after: null })), { key });
    expect(changeRow(c, undefined, 'e').json).toBe('{"_unavailable":[],"id":"9007199254740993"}');
    expect(() => changeRow(change(pgEvent(pg({}))), undefined, 'event 3')).toThrow(
      'event 3: table public.orders has no primaryKey in the config and the event carries no key; set primaryKey',
    );
  });

  it('refuses a change without its primary key, naming the event and the column', () => {
    expect(() => changeRow(change(pgEvent(pg({ after: { ...ROW, id: 'null' } }))), ['id'], 'event 2')).toThrow(
      'event 2: primary-key column id is missing or null',
    );
    expect(() => changeRow(change(pgEvent(pg({}))), ['order_id'], 'event 0')).toThrow('event 0: primary-key column order_id is missing or null');
  });

  it('refuses malformed events with the path of the field', () => {
    expect(() => map(pgEvent(pg({ lsn: 'x' as unknown as number })).replace('"lsn":x', '"lsn":"x"'))).toThrow(
      'payload.source.lsn: expected an integer',
    );
    expect(() => map(pgEvent(pg({})).replace('"op":"c"', '"op":"z"'))).toThrow('payload.op: unknown operation "z"');
    expect(() => map('{"after":{"id":1}}')).toThrow('op: missing');
    expect(() => map('[1]')).toThrow('(event): expected a JSON object');
    expect(() => map(pgEvent(pg({ after: { ...ROW, amount: '"%%"' } })))).toThrow('payload.after.amount: expected base64 bytes');
    expect(() => map(pgEvent(pg({ after: null })))).toThrow('payload.after: missing: a insert needs after');
    expect(() => map(pgEvent(pg({ after: { ...ROW, _op: '"x"' } })))).toThrow('payload.after._op: a column with the name of a record metadata field');
  });
});

describe('MySQL connector events', () => {
  const columns: Column[] = [
    { name: 'id', type: 'int32', optional: false },
    { name: 'email', type: 'string' },
    { name: 'created', type: 'int64', semantic: 'io.debezium.time.Timestamp' },
    { name: 'updated', type: 'string', semantic: 'io.debezium.time.ZonedTimestamp' },
    { name: 'born', type: 'int32', semantic: 'io.debezium.time.Date' },
    { name: 'duration', type: 'int64', semantic: 'io.debezium.time.MicroTime' },
    { name: 'doc', type: 'string', semantic: 'io.debezium.data.Json' },
    { name: 'price', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '4' } },
    { name: 'big', type: 'int64' },
  ];
  const after = {
    id: '1004',
    email: '"annek@noanswer.org"',
    created: '1709296496120',
    updated: '"2024-03-01T12:34:56Z"',
    born: '19782',
    duration: '-3020399000000',
    doc: JSON.stringify('{"k": [1, 2.50]}'),
    price: decimalBytes(-12345678n),
    big: '18446744073709551615',
  };

  it('c/u/d/r map to insert/update/delete/snapshot, values exact', () => {
    const c = change(mysqlEvent({ op: 'c', columns, after, file: 'mysql-bin.000003', pos: 154, row: 0 }));
    expect(c.table).toBe('inventory.customers');
    expect(changeRow(c, ['id'], 'e').json).toBe(
      '{"_unavailable":[],"id":1004,"email":"annek@noanswer.org","created":"2024-03-01T12:34:56.12","updated":"2024-03-01T12:34:56+00:00",' +
        '"born":"2024-02-29","duration":"-838:59:59","doc":{"k": [1, 2.50]},"price":"-1234.5678","big":"18446744073709551615"}',
    );
    expect(change(mysqlEvent({ op: 'u', columns, before: after, after, file: 'mysql-bin.000003', pos: 500 })).op).toBe('update');
    expect(
      changeRow(change(mysqlEvent({ op: 'd', columns, before: after, after: null, file: 'mysql-bin.000003', pos: 900 })), ['id'], 'e').json,
    ).toBe('{"_unavailable":[],"id":1004}');
    expect(change(mysqlEvent({ op: 'r', columns, after, file: 'mysql-bin.000003', pos: 154, snapshot: 'true' })).op).toBe('snapshot');
  });

  it('orders by binlog file index, position and row; a snapshot sorts before changes at its position', () => {
    const at = (file: string, pos: number, row = 0, op: 'c' | 'r' = 'c'): string =>
      change(mysqlEvent({ op, columns, after, file, pos, row })).ordering;
    expect(at('mysql-bin.000003', 154, 1)).toBe('~0000000003:00000000000000000154:0000000001');
    expect(at('mysql-bin.000003', 154, 0) < at('mysql-bin.000003', 154, 1)).toBe(true);
    expect(at('mysql-bin.000003', 9999) < at('mysql-bin.000004', 4)).toBe(true);
    expect(at('mysql-bin.000009', 4) < at('mysql-bin.000010', 4)).toBe(true);
    expect(at('mysql-bin.000003', 154, 0, 'r')).toBe('~0000000003:00000000000000000154');
    expect(at('mysql-bin.000003', 154, 0, 'r') < at('mysql-bin.000003', 154, 0)).toBe(true);
    expect(change(mysqlEvent({ op: 'c', columns, after, file: 'mysql-bin.000003', pos: 154, row: 2 })).position).toBe(
      'binlog:mysql-bin.000003:154:2',
    );
  });

  it('refuses a binlog file without an index', () => {
    expect(() => map(mysqlEvent({ op: 'c', columns, after, file: 'binlog', pos: 4 }))).toThrow(
      'payload.source.file: binlog file "binlog" has no numeric suffix',
    );
  });
});

describe('other connectors', () => {
  it('order by ts_ms, zero-padded', () => {
    const e =
      '{"before":null,"after":{"id":1},"source":{"connector":"sqlserver","db":"shop","schema":"dbo","table":"orders","ts_ms":1709296496123},"op":"c","ts_ms":1709296496200}';
    expect(change(e)).toMatchObject({ table: 'dbo.orders', ordering: '~ts:001709296496123', position: 'ts:1709296496123' });
  });
});

describe('CloudEvents', () => {
  const e = pg({ op: 'u' });

  it('structured mode: attributes beside the event, the change in data, with or without its schema', () => {
    const plain = change(pgCloudEvent(e, false));
    const withSchema = change(pgCloudEvent(e, true));
    const native = change(pgEvent(e));
    expect(withSchema).toEqual(native);
    expect({ ...plain, columns: undefined }).toEqual({ ...native, columns: undefined });
  });

  it('binary mode: the attributes come from the ce- headers, the body is the data', () => {
    const c = change(pgCloudEventData(e), { cloudEvent: pgCloudEventAttributes(e) });
    expect({ ...c, columns: undefined }).toEqual({ ...change(pgEvent(e)), columns: undefined });
  });

  it('a CloudEvent without the source attributes is refused, naming what is missing', () => {
    expect(() => map('{"specversion":"1.0","id":"x","source":"/s","type":"t","data":{"before":null,"after":{"id":1}}}')).toThrow('data.op: missing');
  });
});

describe('ExtractNewRecordState (flattened) events', () => {
  it('reads __op, __table, __lsn; a rewritten delete (__deleted) is a delete of its key', () => {
    const c = change(pgFlattened(pg({ op: 'u' })));
    expect(c).toMatchObject({ op: 'update', table: 'public.orders', ordering: change(pgEvent(pg({ op: 'u', lastCommitLsn: null }))).ordering });
    // No schema envelope here: values by best effort.
    expect(changeRow(c, ['id'], 'e').json).toBe(
      `{"_unavailable":[],"id":"9007199254740993","status":"open","amount":${decimalBytes(123450n)},"placed_at":"2024-03-01T12:34:56.123456Z","body":"long text"}`,
    );
    const d = change(pgFlattened(pg({ op: 'd', before: ROW, after: null })));
    expect(d.op).toBe('delete');
    expect(changeRow(d, ['id'], 'e').json).toBe('{"_unavailable":[],"id":"9007199254740993"}');
  });

  it('without __op an event is an upsert; the table may come from the topic', () => {
    const c = change('{"id":1,"name":"x","__source_lsn":1234,"__deleted":"false"}', { topic: 'dbserver1.public.orders' });
    expect(c).toMatchObject({ op: 'upsert', table: 'public.orders' });
  });
});
