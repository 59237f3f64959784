import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { connect } from 'node:net';
import { request } from 'undici';
import { startDevSink, type DevSink, type DevSinkOptions } from './dev-sink.js';
import { DevSinkStore } from './dev-sink-store.js';
import { StreamApiClient } from './stream-api.js';
import { AppError } from '../core/errors.js';
import { createLogger } from '../observability/logger.js';

const KEY = 'dev-key';

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function post(sink: DevSink, body: string | Buffer, headers: Record<string, string> = {}, url = sink.url): Promise<Reply> {
  const res = await request(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

/** The envelope built as text, so rows keep their exact digits. */
function envelope(rows: string[], config: Record<string, unknown> = {}): string {
  return `{"data":[${rows.join(',')}],"config":${JSON.stringify({ table: 'bronze.orders', ...config })}}`;
}

/** A logger whose lines a test can read, and a promise of the first line. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: string[]; firstLine: Promise<string> } {
  const lines: string[] = [];
  let resolveFirst: (line: string) => void = () => {};
  const firstLine = new Promise<string>((r) => (resolveFirst = r));
  const logger = createLogger(
    'debug',
    {},
    {
      write: (line: string) => {
        lines.push(line);
        if (lines.length === 1) resolveFirst(line);
      },
    },
  );
  return { logger, lines, firstLine };
}

/** A row object nested `depth` levels deep, the row itself counting as 1. */
function nested(depth: number): string {
  let value = '1';
  for (let i = 1; i < depth; i += 1) value = `{"x":${value}}`;
  return `{"id":9,"deep":${value}}`;
}

describe('dev sink', () => {
  let dir: string;
  let dbPath: string;
  let sink: DevSink;

  async function start(overrides: Partial<DevSinkOptions> = {}): Promise<DevSink> {
    sink = await startDevSink({ port: 0, dbPath, apiKey: KEY, ...overrides });
    return sink;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'devsink-test-'));
    dbPath = join(dir, 'sink.duckdb');
  });
  afterEach(async () => {
    await sink?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a missing or wrong bearer token with 401 and stores nothing', async () => {
    await start();
    const body = envelope(['{"id":1}']);
    const missing = await request(sink.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(missing.statusCode).toBe(401);
    expect(await missing.body.json()).toMatchObject({ success: false, errors: [{ code: 'UNAUTHORIZED' }] });
    const wrong = await post(sink, body, { authorization: 'Bearer not-the-key' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.success).toBe(false);
    expect(await sink.store.tables()).toEqual([]);
  });

  it('stores three rows with the request id and receive time, and reads them back', async () => {
    await start();
    const rows = ['{"id":1,"name":"a","paid":true}', '{"id":2,"name":"b","paid":false}', '{"id":3,"name":"c","paid":null}'];
    const reply = await post(sink, envelope(rows));
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({
      success: true,
      table: 'bronze.orders',
      accepted: true,
      successful_rows: 3,
      rejected_rows: 0,
      partitions: 1,
      warnings: [],
      errors: [],
    });
    expect(typeof reply.body.request_id).toBe('string');
    expect(typeof reply.body.stream_id).toBe('string');
    expect(reply.body).not.toHaveProperty('snapshot_id');
    expect(await sink.store.tables()).toEqual(['bronze.orders']);
    const stored = await sink.store.query('SELECT id, name, paid, _request_id, _received_at IS NOT NULL AS received FROM bronze.orders ORDER BY id');
    expect(stored).toEqual([
      { id: '1', name: 'a', paid: true, _request_id: reply.body.request_id, received: true },
      { id: '2', name: 'b', paid: false, _request_id: reply.body.request_id, received: true },
      { id: '3', name: 'c', paid: null, _request_id: reply.body.request_id, received: true },
    ]);
  });

  it('types columns by the JSON kind of their first value', async () => {
    await start();
    await post(sink, envelope(['{"s":"x","i":1,"h":123456789012345678901234567890,"f":1.5,"b":true,"o":{"a":1},"a":[1],"n":null}']));
    const types = await sink.store.query(
      "SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position",
    );
    expect(types).toEqual([
      { c: 's', t: 'VARCHAR' },
      { c: 'i', t: 'BIGINT' },
      { c: 'h', t: 'HUGEINT' },
      { c: 'f', t: 'DOUBLE' },
      { c: 'b', t: 'BOOLEAN' },
      { c: 'o', t: 'JSON' },
      { c: 'a', t: 'JSON' },
      { c: 'n', t: 'VARCHAR' },
      { c: '_received_at', t: 'TIMESTAMP WITH TIME ZONE' },
      { c: '_request_id', t: 'VARCHAR' },
    ]);
  });

  it('stores big integers, long decimal strings and microsecond timestamps exactly', async () => {
    await start();
    const doc = '{"n": 12345678901234567890, "price": 1.10, "list": [3e2]}';
    const row = `{"id":12345678901234567890,"small":9007199254740993,"doc":${doc},"amount":"12345678901234567890.123456789","at":"2024-02-29T23:59:59.123456+00:00"}`;
    const reply = await post(sink, envelope([row]));
    expect(reply.body.successful_rows).toBe(1);
    const [stored] = await sink.store.query(
      'SELECT id::VARCHAR AS id, small::VARCHAR AS small, doc::VARCHAR AS doc, amount, "at", typeof("at") AS at_type FROM bronze.orders',
    );
    expect(stored).toEqual({
      id: '12345678901234567890',
      small: '9007199254740993',
      doc,
      amount: '12345678901234567890.123456789',
      at: '2024-02-29T23:59:59.123456+00:00',
      at_type: 'VARCHAR',
    });
  });

  it('accepts a gzip-compressed body', async () => {
    await start();
    const reply = await post(sink, gzipSync(envelope(['{"id":1}', '{"id":2}'])), { 'content-encoding': 'gzip' });
    expect(reply.status).toBe(200);
    expect(reply.body.successful_rows).toBe(2);
    expect(await sink.store.query('SELECT count(*) AS n FROM bronze.orders')).toEqual([{ n: '2' }]);
  });

  it('answers 413 to a body over the byte limit, plain or unpacked from gzip, and stores nothing', async () => {
    await start({ limits: { maxBytes: 2048 } });
    const big = envelope([`{"id":1,"pad":"${'x'.repeat(4000)}"}`]);
    const plain = await post(sink, big);
    expect(plain.status).toBe(413);
    expect(plain.body).toMatchObject({ success: false, errors: [{ code: 'BODY_TOO_LARGE' }] });
    const packed = await post(sink, gzipSync(big), { 'content-encoding': 'gzip' });
    expect(packed.status).toBe(413);
    expect(await sink.store.tables()).toEqual([]);
  });

  it('answers 413 to more rows than the row limit', async () => {
    await start({ limits: { maxRows: 2 } });
    const reply = await post(sink, envelope(['{"id":1}', '{"id":2}', '{"id":3}']));
    expect(reply.status).toBe(413);
    expect(reply.body).toMatchObject({ errors: [{ code: 'TOO_MANY_ROWS' }] });
  });

  it('rejects a row nested 11 levels deep while storing the others, with success true', async () => {
    await start();
    const reply = await post(sink, envelope(['{"id":1}', nested(11), '{"id":3}', nested(10)]));
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ success: true, successful_rows: 3, rejected_rows: 1 });
    expect(reply.body.errors).toEqual([{ row: 1, code: 'TOO_DEEP', message: expect.stringContaining('11') }]);
    expect(await sink.store.query('SELECT id FROM bronze.orders ORDER BY id')).toEqual([{ id: '1' }, { id: '3' }, { id: '9' }]);
  });

  it('rejects rows that are not objects or carry a field over the field limit', async () => {
    await start({ limits: { maxFieldBytes: 100 } });
    const reply = await post(sink, envelope(['{"id":1}', '[1,2]', `{"id":3,"blob":"${'y'.repeat(200)}"}`, '"text"']));
    expect(reply.body).toMatchObject({ success: true, successful_rows: 1, rejected_rows: 3 });
    expect((reply.body.errors as Array<{ row: number; code: string }>).map((e) => [e.row, e.code])).toEqual([
      [1, 'NOT_AN_OBJECT'],
      [2, 'FIELD_TOO_LARGE'],
      [3, 'NOT_AN_OBJECT'],
    ]);
  });

  it('adds a column first seen in a later request, leaving it null in earlier rows', async () => {
    await start();
    await post(sink, envelope(['{"id":1,"name":"a"}']));
    const second = await post(sink, envelope(['{"id":2,"name":"b","discount":0.5,"meta":{"k":"v"}}']));
    expect(second.body.successful_rows).toBe(1);
    expect(await sink.store.query('SELECT id, name, discount, meta FROM bronze.orders ORDER BY id')).toEqual([
      { id: '1', name: 'a', discount: null, meta: null },
      { id: '2', name: 'b', discount: 0.5, meta: '{"k":"v"}' },
    ]);
  });

  it('stores a batch of mixed types and a column first seen in a later batch exactly, metadata included', async () => {
    await start();
    const meta = (n: number, op: string): string => `"_op":"${op}","_event_id":"e${n}","_ordering":"2024-01-01 00:00:0${n}.000001+00"`;
    const first = [
      `{${meta(1, 'upsert')},"id":"9223372036854775808","big":123456789012345678901234567890,"f":1.5,"ok":true,"doc":{"p": 1.10, "n": 12345678901234567890},"s":"zoë 😀 \\"q\\" \\u0000 \\\\","amount":"0.10","z":null}`,
      `{${meta(2, 'delete')},"id":"2","big":-1,"f":"NaN","ok":false,"doc":[ 1e2 , -0 ],"s":"","z":null}`,
      `{"ok":null,${meta(3, 'upsert')},"f":-2.5e-300,"id":"3","doc":"text in a JSON column"}`,
    ];
    expect((await post(sink, envelope(first))).body).toMatchObject({ successful_rows: 3, rejected_rows: 0, warnings: [] });
    const second = [`{${meta(4, 'upsert')},"id":"4","big":7,"f":"-Infinity","late":18446744073709551616,"late_s":"ünïcode","z":"now"}`];
    expect((await post(sink, envelope(second))).body).toMatchObject({ successful_rows: 1, rejected_rows: 0 });

    const types = await sink.store.query("SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_name = 'orders'");
    expect(Object.fromEntries(types.map((r) => [r.c, r.t]))).toMatchObject({
      _op: 'VARCHAR',
      _event_id: 'VARCHAR',
      id: 'VARCHAR',
      big: 'HUGEINT',
      f: 'DOUBLE',
      ok: 'BOOLEAN',
      doc: 'JSON',
      amount: 'VARCHAR',
      late: 'HUGEINT',
      late_s: 'VARCHAR',
      z: 'VARCHAR',
    });
    const rows = await sink.store.query(
      `SELECT _op, _event_id, _ordering, id, big::VARCHAR AS big, f::VARCHAR AS f, ok, doc::VARCHAR AS doc, s, amount,
              late::VARCHAR AS late, late_s, z, _request_id IS NOT NULL AS has_request FROM bronze.orders ORDER BY _event_id`,
    );
    const common = { _ordering: expect.stringMatching(/^2024-01-01 00:00:0\d\.000001\+00$/), has_request: true };
    expect(rows).toEqual([
      {
        ...common,
        _op: 'upsert',
        _event_id: 'e1',
        id: '9223372036854775808',
        big: '123456789012345678901234567890',
        f: '1.5',
        ok: true,
        doc: '{"p": 1.10, "n": 12345678901234567890}',
        s: 'zoë 😀 "q" \u0000 \\',
        amount: '0.10',
        late: null,
        late_s: null,
        z: null,
      },
      {
        ...common,
        _op: 'delete',
        _event_id: 'e2',
        id: '2',
        big: '-1',
        f: 'nan',
        ok: false,
        doc: '[ 1e2 , -0 ]',
        s: '',
        amount: null,
        late: null,
        late_s: null,
        z: null,
      },
      {
        ...common,
        _op: 'upsert',
        _event_id: 'e3',
        id: '3',
        big: null,
        f: '-2.5e-300',
        ok: null,
        doc: '"text in a JSON column"',
        s: null,
        amount: null,
        late: null,
        late_s: null,
        z: null,
      },
      {
        ...common,
        _op: 'upsert',
        _event_id: 'e4',
        id: '4',
        big: '7',
        f: '-inf',
        ok: null,
        doc: null,
        s: null,
        amount: null,
        late: '18446744073709551616',
        late_s: 'ünïcode',
        z: 'now',
      },
    ]);
  });

  it('widens a column when a later value does not fit its type, and warns', async () => {
    await start();
    await post(sink, envelope(['{"id":1,"ratio":2,"note":null}']));
    const second = await post(sink, envelope(['{"id":2,"ratio":2.5,"note":7}', '{"id":3,"ratio":"n/a","note":8}']));
    expect(second.body.successful_rows).toBe(2);
    expect(second.body.warnings).toEqual([expect.stringContaining('ratio')]);
    const types = await sink.store.query(
      "SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_name = 'orders' AND column_name IN ('ratio', 'note') ORDER BY 1",
    );
    // note held only nulls, so its first real value decides its type without a warning.
    expect(types).toEqual([
      { c: 'note', t: 'BIGINT' },
      { c: 'ratio', t: 'VARCHAR' },
    ]);
    expect(await sink.store.query('SELECT ratio FROM bronze.orders ORDER BY id')).toEqual([{ ratio: '2' }, { ratio: '2.5' }, { ratio: 'n/a' }]);
  });

  it('keeps a float column DOUBLE when NaN and Infinity arrive as strings', async () => {
    await start();
    const reply = await post(sink, envelope(['{"id":1,"x":1}', '{"id":2,"x":"NaN"}', '{"id":3,"x":"-Infinity"}', '{"id":4,"x":0.25}']));
    expect(reply.body.successful_rows).toBe(4);
    expect(await sink.store.query('SELECT typeof(x) AS t, x::VARCHAR AS x FROM bronze.orders ORDER BY id')).toEqual([
      { t: 'DOUBLE', x: '1.0' },
      { t: 'DOUBLE', x: 'nan' },
      { t: 'DOUBLE', x: '-inf' },
      { t: 'DOUBLE', x: '0.25' },
    ]);
  });

  it('stores every row of concurrent requests to the same table', async () => {
    await start();
    const requests = Array.from({ length: 12 }, (_, r) =>
      post(sink, envelope(Array.from({ length: 5 }, (_, i) => `{"id":${r * 5 + i},"c${r % 3}":${r}}`))),
    );
    const replies = await Promise.all(requests);
    expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(await sink.store.query('SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT _request_id) AS reqs FROM bronze.orders')).toEqual(
      [{ n: '60', ids: '60', reqs: '12' }],
    );
  });

  it('refuses malformed JSON, a missing table and an unqualified table with 400', async () => {
    await start();
    expect((await post(sink, '{"data":[{"id":1}')).status).toBe(400);
    const noTable = await post(sink, '{"data":[{"id":1}],"config":{}}');
    expect(noTable.status).toBe(400);
    expect(noTable.body).toMatchObject({ errors: [{ code: 'INVALID_TABLE' }] });
    const unqualified = await post(sink, envelope(['{"id":1}'], { table: 'orders' }));
    expect(unqualified.status).toBe(400);
    expect(unqualified.body).toMatchObject({ errors: [{ code: 'INVALID_TABLE', message: expect.stringContaining('schema.table') }] });
    expect(await sink.store.tables()).toEqual([]);
  });

  it('answers 404 off the endpoint, 405 to other methods, and also serves POST /stream', async () => {
    await start();
    const elsewhere = await post(sink, envelope(['{"id":1}']), {}, sink.url.replace('/v2/stream', '/v1/other'));
    expect(elsewhere.status).toBe(404);
    const get = await request(sink.url, { method: 'GET', headers: { authorization: `Bearer ${KEY}` } });
    expect(get.statusCode).toBe(405);
    expect(get.headers.allow).toBe('POST');
    await get.body.dump();
    const short = await post(sink, envelope(['{"id":1}']), {}, sink.url.replace('/v2/stream', '/stream'));
    expect(short.status).toBe(200);
  });

  it('accepts a single object as data', async () => {
    await start();
    const reply = await post(sink, '{"data":{"id":12345678901234567891},"config":{"table":"bronze.orders"}}');
    expect(reply.body.successful_rows).toBe(1);
    expect(await sink.store.query('SELECT id::VARCHAR AS id FROM bronze.orders')).toEqual([{ id: '12345678901234567891' }]);
  });

  it('fails a whole merge request whose primary key repeats, and needs a primary key for merge', async () => {
    await start();
    // Equal once rounded to a double: compared as text they are distinct keys, so this request is fine.
    const distinct = await post(sink, envelope(['{"id":12345678901234567890}', '{"id":12345678901234567891}'], { mode: 'merge', primary_key: 'id' }));
    expect(distinct.body).toMatchObject({ success: true, successful_rows: 2 });
    expect(distinct.body.warnings).toEqual([expect.stringContaining('append')]);
    const duplicate = await post(sink, envelope(['{"id":"a"}', '{"id":"b"}', '{"id":"a"}'], { mode: 'merge', primary_key: 'id' }));
    expect(duplicate.status).toBe(400);
    expect(duplicate.body).toMatchObject({ success: false, errors: [{ code: 'DUPLICATE_PRIMARY_KEY' }] });
    const noKey = await post(sink, envelope(['{"id":1}'], { mode: 'merge' }));
    expect(noKey.status).toBe(400);
    const composite = await post(sink, envelope(['{"id":1}'], { mode: 'merge', primary_key: ['id', 'x'] }));
    expect(composite.status).toBe(400);
    expect(await sink.store.query('SELECT count(*) AS n FROM bronze.orders')).toEqual([{ n: '2' }]);
  });

  it('returns a snapshot id when the request asks to wait', async () => {
    await start();
    const first = await post(sink, envelope(['{"id":1}'], { wait: true }));
    const second = await post(sink, envelope(['{"id":2}'], { wait: true }));
    expect(typeof first.body.snapshot_id).toBe('number');
    expect(second.body.snapshot_id).toBeGreaterThan(first.body.snapshot_id as number);
  });

  it('releases the DuckDB file on close so the data can be read afterwards', async () => {
    await start();
    await post(sink, envelope(['{"id":1}', '{"id":2}']));
    await sink.close();
    const reader = await DevSinkStore.open(dbPath);
    try {
      expect(await reader.query('SELECT id FROM bronze.orders ORDER BY id')).toEqual([{ id: '1' }, { id: '2' }]);
    } finally {
      await reader.close();
    }
  });

  it('keeps appending to a table created by an earlier run', async () => {
    await start();
    await post(sink, envelope(['{"id":1,"note":null}']));
    await sink.close();
    await start();
    const reply = await post(sink, envelope(['{"id":2,"note":5,"extra":"x"}']));
    expect(reply.body).toMatchObject({ successful_rows: 1, warnings: [] });
    expect(await sink.store.query('SELECT id, note, extra FROM bronze.orders ORDER BY id')).toEqual([
      { id: '1', note: null, extra: null },
      { id: '2', note: '5', extra: 'x' },
    ]);
  });

  it('works as the destination of the Stream API client, including partial failures', async () => {
    await start();
    const client = new StreamApiClient({ url: sink.url, apiKey: KEY, timeoutMs: 5000, compression: 'gzip', wait: false, tags: {} });
    try {
      const ok = await client.send('bronze.events', ['{"id":1,"big":12345678901234567890}']);
      expect(ok.rows).toBe(1);
      const err = await client.send('bronze.events', ['{"id":2}', nested(12)]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('DEST_ROWS_REJECTED');
    } finally {
      await client.close();
    }
    expect(await sink.store.query('SELECT id, big::VARCHAR AS big FROM bronze.events ORDER BY id')).toEqual([
      { id: '1', big: '12345678901234567890' },
      { id: '2', big: null },
    ]);
  });
  it('refuses a body that is not valid UTF-8 with 400 naming the byte offset, plain or gzipped, and stores nothing', async () => {
    await start();
    const [head, tail] = envelope(['{"id":1,"s":"aXb"}']).split('X') as [string, string];
    const body = Buffer.concat([Buffer.from(head), Buffer.from([0xc3, 0x28]), Buffer.from(tail)]);
    const plain = await post(sink, body);
    expect(plain.status).toBe(400);
    expect(plain.body.errors).toEqual([
      { code: 'INVALID_UTF8', offset: head.length, message: expect.stringContaining(`byte 0xc3 at offset ${head.length}`) },
    ]);
    const packed = await post(sink, gzipSync(body), { 'content-encoding': 'gzip' });
    expect(packed.status).toBe(400);
    expect(packed.body.errors).toEqual([
      expect.objectContaining({ code: 'INVALID_UTF8', offset: head.length, message: expect.stringContaining('uncompressed body') }),
    ]);
    expect(await sink.store.tables()).toEqual([]);
  });

  it('refuses an unpaired surrogate in a value, a key or a nested JSON value with 400 naming the row and field', async () => {
    await start();
    const cases: Array<[string, number, string, string]> = [
      ['{"id":2,"s":"a\\ud800"}', 1, 's', 'the value holds an unpaired surrogate \\ud800'],
      ['{"id":2,"s\\udfff":"x"}', 1, 's\udfff', 'the key holds an unpaired surrogate \\udfff'],
      ['{"id":2,"doc":{"list":[1,"\\udc00x"]}}', 1, 'doc', 'the string at "doc"."list"[1] holds an unpaired surrogate \\udc00'],
    ];
    for (const [row, index, field, what] of cases) {
      const reply = await post(sink, envelope(['{"id":1,"ok":"\\ud83d\\ude00"}', row]));
      expect(reply.status, row).toBe(400);
      expect(reply.body.errors, row).toEqual([{ code: 'UNPAIRED_SURROGATE', row: index, field, message: expect.stringContaining(what) }]);
      expect((reply.body.errors as Array<{ message: string }>)[0]!.message).toMatch(new RegExp(`^row ${index}, field `));
    }
    expect(await sink.store.tables()).toEqual([]);
  });

  it('refuses a NUL in a key with 400 naming the row and field, and stores a NUL inside a value exactly', async () => {
    await start();
    const key = await post(sink, envelope(['{"id":1}', '{"id":2}', '{"id":3,"k\\u0000":"x"}']));
    expect(key.status).toBe(400);
    expect(key.body.errors).toEqual([
      { code: 'NUL_IN_KEY', row: 2, field: 'k\u0000', message: 'row 2: key "k\\u0000" holds a NUL character, which a column name cannot' },
    ]);
    expect(await sink.store.tables()).toEqual([]);
    const value = await post(sink, envelope(['{"id":1,"s":"a\\u0000b","doc":{"t":"x\\u0000"}}']));
    expect(value.status).toBe(200);
    expect(await sink.store.query('SELECT s, length(s) AS n, doc::VARCHAR AS doc FROM bronze.orders')).toEqual([
      { s: 'a\u0000b', n: '3', doc: '{"t":"x\\u0000"}' },
    ]);
  });

  it('answers an internal failure with a generic 500 naming the request id, and logs the reason', async () => {
    const { logger, lines } = capturingLogger();
    await start({ logger });
    // A table made by someone else, with a type the values cannot be cast to: DuckDB fails the insert.
    await sink.store.query('CREATE SCHEMA bronze; CREATE TABLE bronze.orders (id DATE, _received_at TIMESTAMPTZ, _request_id VARCHAR)');
    const reply = await post(sink, envelope(['{"id":"not a date"}']));
    expect(reply.status).toBe(500);
    const requestId = reply.body.request_id as string;
    expect(reply.body.errors).toEqual([
      { code: 'INTERNAL', message: `the dev sink could not store this request; its log has the reason under request id ${requestId}` },
    ]);
    const logged = lines
      .map((l) => JSON.parse(l) as { level: number; requestId?: string; err?: { message: string } })
      .find((l) => l.requestId === requestId);
    expect(logged).toMatchObject({ level: 50, err: { message: expect.stringMatching(/date/i) } });
  });

  it('logs a client that closes the connection mid-body as "client closed the request", not as an error', async () => {
    const { logger, lines, firstLine } = capturingLogger();
    await start({ logger });
    const socket = connect(sink.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    // With Expect: 100-continue the server answers 100 as it hands the request to the sink: then it is being read.
    socket.write(
      `POST /v2/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n` +
        'Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n',
    );
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write('{"data":[{"id":1},');
    socket.destroy();
    const line = JSON.parse(await firstLine) as { level: number; msg: string };
    expect(line).toMatchObject({ level: 30, msg: 'client closed the request' });
    expect(await post(sink, envelope(['{"id":1}'])).then((r) => r.status)).toBe(200);
    expect(lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40)).toEqual([]);
  });
});
