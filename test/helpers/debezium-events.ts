/**
 * Debezium change events for tests, built the way the Postgres and MySQL connectors document them (the JSON
 * converter's `schema`/`payload` envelope, the `source` block of each connector, CloudEvents, ExtractNewRecordState).
 * Values are given as raw JSON texts, so a test can put exactly the digits a connector writes.
 */

export interface Column {
  name: string;
  /** Kafka Connect type: int32, int64, string, bytes, float64, boolean, struct, array … */
  type: string;
  /** Semantic type, e.g. `io.debezium.time.MicroTimestamp`. */
  semantic?: string;
  parameters?: Record<string, string>;
  optional?: boolean;
  items?: { type: string; semantic?: string };
  fields?: Column[];
}

/** Column → the raw JSON text of its value. */
export type Row = Record<string, string>;

export type Op = 'c' | 'u' | 'd' | 'r' | 't' | 'm';

function fieldSchema(c: Column): Record<string, unknown> {
  return {
    type: c.type,
    optional: c.optional ?? true,
    ...(c.semantic ? { name: c.semantic, version: 1 } : {}),
    ...(c.parameters ? { parameters: c.parameters } : {}),
    ...(c.items ? { items: { type: c.items.type, optional: true, ...(c.items.semantic ? { name: c.items.semantic } : {}) } } : {}),
    ...(c.fields ? { fields: c.fields.map(fieldSchema) } : {}),
    field: c.name,
  };
}

function rowText(row: Row | null | undefined): string {
  if (row === null || row === undefined) return 'null';
  return `{${Object.entries(row)
    .map(([k, v]) => `${JSON.stringify(k)}:${v}`)
    .join(',')}}`;
}

const PG_SOURCE_SCHEMA = {
  type: 'struct',
  optional: false,
  name: 'io.debezium.connector.postgresql.Source',
  field: 'source',
  fields: [
    { type: 'string', optional: false, field: 'version' },
    { type: 'string', optional: false, field: 'connector' },
    { type: 'string', optional: false, field: 'name' },
    { type: 'int64', optional: false, field: 'ts_ms' },
    {
      type: 'string',
      optional: true,
      name: 'io.debezium.data.Enum',
      version: 1,
      parameters: { allowed: 'true,last,false,incremental' },
      default: 'false',
      field: 'snapshot',
    },
    { type: 'string', optional: false, field: 'db' },
    { type: 'string', optional: true, field: 'sequence' },
    { type: 'string', optional: false, field: 'schema' },
    { type: 'string', optional: false, field: 'table' },
    { type: 'int64', optional: true, field: 'txId' },
    { type: 'int64', optional: true, field: 'lsn' },
    { type: 'int64', optional: true, field: 'xmin' },
  ],
};

const MYSQL_SOURCE_SCHEMA = {
  type: 'struct',
  optional: false,
  name: 'io.debezium.connector.mysql.Source',
  field: 'source',
  fields: [
    { type: 'string', optional: false, field: 'version' },
    { type: 'string', optional: false, field: 'connector' },
    { type: 'string', optional: false, field: 'name' },
    { type: 'int64', optional: false, field: 'ts_ms' },
    {
      type: 'string',
      optional: true,
      name: 'io.debezium.data.Enum',
      version: 1,
      parameters: { allowed: 'true,last,false,incremental' },
      default: 'false',
      field: 'snapshot',
    },
    { type: 'string', optional: false, field: 'db' },
    { type: 'string', optional: true, field: 'table' },
    { type: 'int64', optional: false, field: 'server_id' },
    { type: 'string', optional: true, field: 'gtid' },
    { type: 'string', optional: false, field: 'file' },
    { type: 'int64', optional: false, field: 'pos' },
    { type: 'int32', optional: false, field: 'row' },
    { type: 'int64', optional: true, field: 'thread' },
    { type: 'string', optional: true, field: 'query' },
  ],
};

function envelope(server: string, table: string, columns: Column[], sourceSchema: object, payload: string, withSchema: boolean): string {
  if (!withSchema) return payload;
  const value = { type: 'struct', optional: true, name: `${server}.${table}.Value`, fields: columns.map(fieldSchema) };
  const schema = {
    type: 'struct',
    optional: false,
    name: `${server}.${table}.Envelope`,
    version: 2,
    fields: [
      { ...value, field: 'before' },
      { ...value, field: 'after' },
      sourceSchema,
      { type: 'string', optional: false, field: 'op' },
      { type: 'int64', optional: true, field: 'ts_ms' },
      { type: 'struct', optional: true, name: 'event.block', version: 1, field: 'transaction', fields: [] },
    ],
  };
  return `{"schema":${JSON.stringify(schema)},"payload":${payload}}`;
}

export interface PgEvent {
  op: Op;
  schema?: string;
  table?: string;
  columns: Column[];
  before?: Row | null;
  after?: Row | null;
  /** The change's LSN (decimal, as the connector writes it). */
  lsn: bigint | number;
  /** The previous commit's LSN, the first element of `source.sequence`. */
  lastCommitLsn?: bigint | number | null;
  snapshot?: 'true' | 'false' | 'last' | 'first' | 'incremental';
  tsMs?: number;
  txId?: number;
  /** Wrap in the JSON converter's schema/payload envelope. @defaultValue true */
  withSchema?: boolean;
  server?: string;
}

export function pgSource(e: PgEvent): string {
  const seq = JSON.stringify(JSON.stringify([e.lastCommitLsn == null ? null : String(e.lastCommitLsn), String(e.lsn)]));
  return (
    `{"version":"2.7.0.Final","connector":"postgresql","name":${JSON.stringify(e.server ?? 'dbserver1')},"ts_ms":${e.tsMs ?? 1_709_296_496_123},` +
    `"snapshot":${JSON.stringify(e.snapshot ?? (e.op === 'r' ? 'true' : 'false'))},"db":"inventory","sequence":${seq},` +
    `"schema":${JSON.stringify(e.schema ?? 'public')},"table":${JSON.stringify(e.table ?? 'orders')},"txId":${e.txId ?? 771},"lsn":${e.lsn},"xmin":null}`
  );
}

/** A Postgres connector event (value side). */
export function pgEvent(e: PgEvent): string {
  const payload =
    `{"before":${rowText(e.before)},"after":${rowText(e.after)},"source":${pgSource(e)},"op":"${e.op}",` +
    `"ts_ms":${(e.tsMs ?? 1_709_296_496_123) + 5},"transaction":null}`;
  return envelope(
    e.server ?? 'dbserver1',
    `${e.schema ?? 'public'}.${e.table ?? 'orders'}`,
    e.columns,
    PG_SOURCE_SCHEMA,
    payload,
    e.withSchema ?? true,
  );
}

export interface MysqlEvent {
  op: Op;
  db?: string;
  table?: string;
  columns: Column[];
  before?: Row | null;
  after?: Row | null;
  file: string;
  pos: number;
  row?: number;
  snapshot?: 'true' | 'false' | 'last' | 'first';
  tsMs?: number;
  withSchema?: boolean;
}

/** A MySQL connector event (value side). */
export function mysqlEvent(e: MysqlEvent): string {
  const source =
    `{"version":"2.7.0.Final","connector":"mysql","name":"mysql-server-1","ts_ms":${e.tsMs ?? 1_709_296_496_000},` +
    `"snapshot":${JSON.stringify(e.snapshot ?? (e.op === 'r' ? 'true' : 'false'))},"db":${JSON.stringify(e.db ?? 'inventory')},` +
    `"table":${JSON.stringify(e.table ?? 'customers')},"server_id":223344,"gtid":null,"file":${JSON.stringify(e.file)},"pos":${e.pos},` +
    `"row":${e.row ?? 0},"thread":7,"query":null}`;
  const payload = `{"before":${rowText(e.before)},"after":${rowText(e.after)},"source":${source},"op":"${e.op}","ts_ms":${(e.tsMs ?? 1_709_296_496_000) + 7},"transaction":null}`;
  return envelope(
    'mysql-server-1',
    `${e.db ?? 'inventory'}.${e.table ?? 'customers'}`,
    e.columns,
    MYSQL_SOURCE_SCHEMA,
    payload,
    e.withSchema ?? true,
  );
}

/** The record key, as the connector writes it with schemas enabled. */
export function keyEvent(columns: Column[], row: Row, name = 'dbserver1.public.orders.Key'): string {
  return `{"schema":${JSON.stringify({ type: 'struct', optional: false, name, fields: columns.map((c) => ({ ...fieldSchema(c), optional: false })) })},"payload":${rowText(row)}}`;
}

/** The heartbeat the connectors send to `__debezium-heartbeat.<prefix>`. */
export function heartbeatEvent(tsMs = 1_709_296_500_000): string {
  return `{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":{"ts_ms":${tsMs}}}`;
}

/** A transaction boundary event (provide.transaction.metadata=true). */
export function transactionEvent(status: 'BEGIN' | 'END'): string {
  return `{"status":"${status}","id":"771:24023128","ts_ms":1709296496123,"event_count":${status === 'END' ? 2 : 'null'},"data_collections":null}`;
}

/**
 * The same change as a structured CloudEvent (CloudEventsConverter, JSON data with schemas): source fields become
 * `iodebezium*` attributes (int64 ones as strings), `data` holds before and after.
 */
export function pgCloudEvent(e: PgEvent, withDataSchema = false): string {
  const attrs: Record<string, unknown> = {
    id: `name:dbserver1;lsn:${e.lsn};txId:${e.txId ?? 771}`,
    source: '/debezium/postgresql/dbserver1',
    specversion: '1.0',
    type: 'io.debezium.connector.postgresql.DataChangeEvent',
    time: '2024-03-01T12:34:56.123Z',
    datacontenttype: 'application/json',
    ...pgCloudEventAttributes(e),
  };
  const dataPayload = `{"before":${rowText(e.before)},"after":${rowText(e.after)}}`;
  const data = withDataSchema
    ? `{"schema":${JSON.stringify({
        type: 'struct',
        optional: false,
        fields: [
          { type: 'struct', optional: true, field: 'before', fields: e.columns.map(fieldSchema) },
          { type: 'struct', optional: true, field: 'after', fields: e.columns.map(fieldSchema) },
        ],
      })},"payload":${dataPayload}}`
    : dataPayload;
  return `${JSON.stringify(attrs).slice(0, -1)},"data":${data}}`;
}

/** The `iodebezium*` extension attributes of a Postgres event (also the `ce-` headers of binary mode). */
export function pgCloudEventAttributes(e: PgEvent): Record<string, string> {
  return {
    iodebeziumop: e.op,
    iodebeziumversion: '2.7.0.Final',
    iodebeziumconnector: 'postgresql',
    iodebeziumname: e.server ?? 'dbserver1',
    iodebeziumtsms: String(e.tsMs ?? 1_709_296_496_123),
    iodebeziumsnapshot: e.snapshot ?? (e.op === 'r' ? 'true' : 'false'),
    iodebeziumdb: 'inventory',
    iodebeziumsequence: JSON.stringify([e.lastCommitLsn == null ? null : String(e.lastCommitLsn), String(e.lsn)]),
    iodebeziumschema: e.schema ?? 'public',
    iodebeziumtable: e.table ?? 'orders',
    iodebeziumtxId: String(e.txId ?? 771),
    iodebeziumlsn: String(e.lsn),
  };
}

/** The data of a binary-mode CloudEvent: before and after only. */
export function pgCloudEventData(e: PgEvent): string {
  return `{"before":${rowText(e.before)},"after":${rowText(e.after)}}`;
}

/**
 * ExtractNewRecordState's output with `add.fields=op,table,schema,lsn,source.ts_ms` and `delete.handling.mode=rewrite`
 * (so deletes carry `__deleted: "true"` and the row before the delete).
 */
export function pgFlattened(e: PgEvent): string {
  const row = e.op === 'd' ? e.before : e.after;
  const fields = Object.entries(row ?? {}).map(([k, v]) => `${JSON.stringify(k)}:${v}`);
  fields.push(
    `"__op":"${e.op}"`,
    `"__table":${JSON.stringify(e.table ?? 'orders')}`,
    `"__schema":${JSON.stringify(e.schema ?? 'public')}`,
    `"__lsn":${e.lsn}`,
    `"__source_ts_ms":${e.tsMs ?? 1_709_296_496_123}`,
    `"__deleted":"${e.op === 'd'}"`,
  );
  return `{${fields.join(',')}}`;
}

/** Base64 of the big-endian two's-complement bytes of an unscaled decimal (Kafka Connect's Decimal). */
export function decimalBytes(unscaled: bigint): string {
  if (unscaled === 0n) return JSON.stringify(Buffer.from([0]).toString('base64'));
  let hex = (unscaled < 0n ? (1n << 2048n) + unscaled : unscaled).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if (unscaled < 0n) {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0xff && (bytes[i + 1]! & 0x80) !== 0) i += 1;
    bytes = bytes.subarray(i);
  } else if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return JSON.stringify(bytes.toString('base64'));
}

export const UNAVAILABLE = '__debezium_unavailable_value';
