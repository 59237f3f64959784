import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { METADATA_FIELDS, buildRecord, eventId, recordEncoder, recordWriter, type Operation, type RecordContext } from './record.js';
import { EncodedRecords } from './encoded-records.js';

const CTX: RecordContext = { source: 'app', table: 'public.orders', extractedAt: '2024-03-01T12:00:00.000Z' };

describe('buildRecord', () => {
  it('produces one JSON object with the metadata first and the row fields after', () => {
    const row = '{"id":"12345678901234567890","amount":"10.50","note":"a \\"quoted\\" note","tags":["x"]}';
    const text = buildRecord(row, 'upsert', '2024-03-01T11:00:00.000000Z', CTX);
    const record = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(record)).toEqual([...METADATA_FIELDS, 'id', 'amount', 'note', 'tags']);
    expect(record).toEqual({
      _op: 'upsert',
      _event_id: eventId('app', 'public.orders', 'upsert', row, '2024-03-01T11:00:00.000000Z'),
      _ordering: '2024-03-01T11:00:00.000000Z',
      _generation: 0,
      _extracted_at: '2024-03-01T12:00:00.000Z',
      _source: 'app',
      _table: 'public.orders',
      id: '12345678901234567890',
      amount: '10.50',
      note: 'a "quoted" note',
      tags: ['x'],
    });
  });

  it('splices the row text in verbatim, keeping big JSON numbers digit for digit', () => {
    const row = '{"n":12345678901234567890123}';
    expect(buildRecord(row, 'upsert', null, CTX).endsWith(',"n":12345678901234567890123}')).toBe(true);
  });

  it('writes a NULL ordering as JSON null', () => {
    const record = JSON.parse(buildRecord('{"id":1}', 'snapshot', null, CTX)) as Record<string, unknown>;
    expect(record._ordering).toBeNull();
    expect(record._op).toBe('snapshot');
  });

  it('turns an empty row into a record holding only the metadata', () => {
    for (const empty of ['{}', ' { } ', '{\n}']) {
      const text = buildRecord(empty, 'delete', null, CTX);
      expect(Object.keys(JSON.parse(text) as object)).toEqual([...METADATA_FIELDS]);
    }
  });

  it('escapes metadata values that contain quotes', () => {
    const ctx = { ...CTX, table: 'public."Order ""Items"""' };
    expect((JSON.parse(buildRecord('{"a":1}', 'upsert', 'o"rd', ctx)) as Record<string, unknown>)._table).toBe('public."Order ""Items"""');
  });
});

describe('eventId', () => {
  it('differs between two changes of a key with the same content but different orderings', () => {
    const row = '{"id":1,"v":"a"}';
    expect(eventId('app', 't', 'update', row, '~0000000001000000:0000000001')).not.toBe(
      eventId('app', 't', 'update', row, '~0000000002000000:0000000001'),
    );
  });

  it('is computed from the same bytes as hashing each part in turn', () => {
    const row = '{"id":1,"v":"é\u0000"}';
    const expected = createHash('sha256')
      .update('app')
      .update('\0')
      .update('t')
      .update('\0')
      .update('upsert')
      .update('\0')
      .update('o')
      .update('\0')
      .update(row)
      .digest('hex')
      .slice(0, 32);
    expect(eventId('app', 't', 'upsert', row, 'o')).toBe(expected);
  });

  it('keeps every id of generation 0 as it was, and makes the same content of a re-created table a new version', () => {
    const row = '{"id":1,"v":"a"}';
    const legacy = createHash('sha256').update(`app\0t\0upsert\0o\0${row}`).digest('hex').slice(0, 32);
    expect(eventId('app', 't', 'upsert', row, 'o', 0)).toBe(legacy);
    expect(JSON.parse(buildRecord(row, 'upsert', 'o', { ...CTX, table: 't' }))._event_id).toBe(legacy);
    const second = eventId('app', 't', 'upsert', row, 'o', 1);
    expect(second).not.toBe(legacy);
    expect(eventId('app', 't', 'upsert', row, 'o', 2)).not.toBe(second);
    // Re-read under the same generation: the same id; the record carries its generation.
    const again = JSON.parse(buildRecord(row, 'upsert', 'o', { ...CTX, table: 't', generation: 1, extractedAt: 'later' })) as Record<string, unknown>;
    expect(again._event_id).toBe(second);
    expect(again._generation).toBe(1);
  });

  it('is the same 32-hex-digit id for the same row version, whenever it is extracted', () => {
    const id = eventId('app', 'public.orders', 'upsert', '{"id":1,"v":"a"}');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(eventId('app', 'public.orders', 'upsert', '{"id":1,"v":"a"}')).toBe(id);
    const a = JSON.parse(buildRecord('{"id":1,"v":"a"}', 'upsert', null, CTX)) as Record<string, unknown>;
    const b = JSON.parse(buildRecord('{"id":1,"v":"a"}', 'upsert', null, { ...CTX, extractedAt: '2030-01-01T00:00:00.000Z' })) as Record<
      string,
      unknown
    >;
    expect(a._event_id).toBe(b._event_id);
  });

  it('changes with any column value, the operation, the table or the source', () => {
    const ids = new Set([
      eventId('app', 'public.orders', 'upsert', '{"id":1,"v":"a"}'),
      eventId('app', 'public.orders', 'upsert', '{"id":1,"v":"b"}'),
      eventId('app', 'public.orders', 'upsert', '{"id":2,"v":"a"}'),
      eventId('app', 'public.orders', 'delete', '{"id":1,"v":"a"}'),
      eventId('app', 'public.orders2', 'upsert', '{"id":1,"v":"a"}'),
      eventId('app2', 'public.orders', 'upsert', '{"id":1,"v":"a"}'),
    ]);
    expect(ids.size).toBe(6);
  });

  it('does not confuse where the source name ends and the table name begins', () => {
    expect(eventId('ab', 'c', 'upsert', '{}')).not.toBe(eventId('a', 'bc', 'upsert', '{}'));
  });

  it('an identity takes the place of the ordering in the event id, so one change re-delivered with another ordering keeps its id', () => {
    const encode = recordEncoder('update', CTX);
    const id = (text: string): unknown => (JSON.parse(text) as { _event_id: string })._event_id;
    const a = encode('{"id":1}', '~0000000000002000:0000000000001000', 'lsn:4096');
    const b = encode('{"id":1}', '~0000000000003000:0000000000001000', 'lsn:4096');
    expect(id(a)).toBe(id(b));
    expect(id(a)).not.toBe(id(encode('{"id":1}', '~0000000000002000:0000000000001000', 'lsn:4097')));
    expect(id(encode('{"id":1}', 'x'))).toBe(id(encode('{"id":1}', 'x', undefined)));
  });
});

describe('recordWriter', () => {
  // Compared as the UTF-8 bytes that go on the wire: a lone surrogate is U+FFFD there either way.
  const written = (rows: Array<[string, string | null, string?]>, op: Operation, ctx: RecordContext): string[] => {
    const out = new EncodedRecords();
    const write = recordWriter(op, ctx);
    for (const [row, ordering, identity] of rows) out.commit(write(out, row, ordering, identity));
    return rows.map((_, i) => out.bytes(i, i + 1).toString('hex'));
  };
  const utf8 = (text: string): string => Buffer.from(text).toString('hex');

  it('writes each record byte for byte as recordEncoder does, event id included', () => {
    const rows: Array<[string, string | null, string?]> = [
      ['{"id":1,"v":"a"}', '2024-03-01T11:00:00.000000Z'],
      ['{"id":2,"note":"żółw 🐢 \\u0000 \\"q\\""}', null],
      ['  {  "id":3}', 'o"rd'],
      ['{}', null],
      [' { } ', 'x'],
      ['{\n}', null],
      ['{"id":4,"s":"\ud800 lone"}', 'ünïcode ordering'],
      ['{"id":5}', '~1', 'identity-of-5'],
      ['{"big":"' + 'x'.repeat(200_000) + '"}', '7'],
    ];
    for (const ctx of [CTX, { ...CTX, table: 'public."Ünï ""q"""', generation: 3 }]) {
      for (const op of ['upsert', 'delete', 'snapshot'] as const) {
        const encode = recordEncoder(op, ctx);
        expect(written(rows, op, ctx)).toEqual(rows.map(([row, ordering, identity]) => utf8(encode(row, ordering, identity))));
      }
    }
  });

  it('writes the same record from the row as UTF-8 bytes, read from a larger buffer, with or without room before it', () => {
    const rows: Array<[string, string | null]> = [
      ['{"id":1,"v":"a"}', '2024-03-01T11:00:00.000000Z'],
      ['{"id":2,"note":"żółw 🐢 \\u0000 \\"q\\""}', null],
      ['{}', 'o"rd'],
      ['{"id":9}', 'ünïcode ordering'],
      ['{"big":"' + 'é'.repeat(400_000) + '"}', '7'],
    ];
    for (const ctx of [CTX, { ...CTX, generation: 2 }]) {
      // No room before the row (the id's input is then put together elsewhere), too little, and enough.
      for (const room of [0, 10, 200]) {
        const out = new EncodedRecords();
        const write = recordWriter('upsert', ctx);
        for (const [row, ordering] of rows) {
          const bytes = Buffer.concat([Buffer.alloc(room, 0x7b), Buffer.from(row), Buffer.from('trailing bytes not part of the row')]);
          out.commit(write.bytes(out, bytes, room, Buffer.byteLength(row), ordering));
        }
        expect(rows.map((_, i) => out.bytes(i, i + 1).toString('hex'))).toEqual(written(rows, 'upsert', ctx));
      }
    }
  });

  it('keeps text that is not an object as recordEncoder splices it', () => {
    const rows: Array<[string, string | null]> = [
      ['', null],
      ['[1]', '1'],
      ['  ', null],
      ['é{"a":1}', null],
    ];
    const encode = recordEncoder('upsert', CTX);
    expect(written(rows, 'upsert', CTX)).toEqual(rows.map(([row, ordering]) => utf8(encode(row, ordering))));
  });

  it('grows past its reused scratch space for a row larger than it', () => {
    const row = `{"v":"${'é'.repeat(600_000)}"}`;
    const [hex] = written([[row, '1']], 'upsert', CTX);
    expect(hex).toBe(utf8(buildRecord(row, 'upsert', '1', CTX)));
    expect((JSON.parse(Buffer.from(hex!, 'hex').toString()) as { _event_id: string })._event_id).toBe(
      eventId('app', 'public.orders', 'upsert', row, '1'),
    );
  });
});
