import { AppError } from './errors.js';
import { JsonNumber, isObject, parseLossless, type JsonObject, type JsonValue } from './json-lossless.js';
import { METADATA_FIELDS, type Operation } from './record.js';
import { encodeValue, fieldSchema, readSchema, type ConnectSchema, type UnavailableValue, type ValueOptions } from './debezium-values.js';
import { binlogIndex, binlogOrdering, pgOrdering, timeOrdering, type SnapshotFloor } from './debezium-ordering.js';

/**
 * Debezium change events → pushsync change records. Understood: the connector envelope (`before`, `after`,
 * `source`, `op`) with or without the JSON converter's `schema`/`payload` wrapper; CloudEvents (structured, with the
 * event in `data` and the source fields as `iodebezium*` attributes, or binary, with the attributes passed in);
 * the flattened form of the `ExtractNewRecordState` transform (`__op`, `__deleted`, `__source_*`). Tombstones,
 * heartbeats, transaction markers, schema changes and logical messages are recognised and skipped.
 */

export interface DebeziumInput {
  /** The event value, parsed losslessly; null is a tombstone. */
  value: JsonValue;
  /** The record key, when the transport carries one (Redis streams, Kafka). */
  key?: JsonValue | undefined;
  /** Attributes of a CloudEvent in binary mode (`ce-` headers without the prefix); `value` is its data. */
  cloudEvent?: Record<string, string> | undefined;
  /** The topic or stream name: the table of a flattened event that does not name it, as `<prefix>.<schema>.<table>`. */
  topic?: string | undefined;
}

export interface MappingOptions extends ValueOptions {
  unavailable: UnavailableValue;
}

export type SkipReason = 'tombstone' | 'heartbeat' | 'transaction' | 'schema_change' | 'message';

export interface DebeziumChange {
  kind: 'change';
  /** `schema.table` (`db.table` for MySQL) as the event names it. */
  table: string;
  op: Operation;
  ordering: string;
  /** The change's own source position: with the row's content, the basis of its event id (stable across re-deliveries). */
  position: string;
  /** Postgres only: whether the change sets its table's snapshot floor or is raised to it (debezium-ordering.ts). */
  floor?: SnapshotFloor;
  /** Column → value JSON text, in the event's order: the row after the change, or before it for a delete. */
  columns: Map<string, string>;
  /** Columns Debezium could not read (an unchanged TOASTed value), absent from `columns`. */
  unavailable: string[];
  /** The event key's columns and values (JSON text), when the event came with a key. */
  key: Map<string, string> | null;
}

export type DebeziumEvent = DebeziumChange | { kind: 'skip'; reason: SkipReason } | { kind: 'truncate'; table: string };

/** The metadata field naming the columns a record leaves out because Debezium could not read them. */
export const UNAVAILABLE_FIELD = '_unavailable';

function invalid(path: string, what: string): never {
  throw new AppError('EVENT_INVALID', `${path}: ${what}`, { details: { field: path } });
}

const join = (path: string, name: string): string => (path ? `${path}.${name}` : name);

/** Reads source fields from the `source` block, CloudEvents attributes, or a flattened event's `__` fields. */
type SourceLookup = (name: string) => JsonValue | undefined;

const normalise = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '');

function cloudEventLookup(attrs: Record<string, JsonValue>): SourceLookup {
  const byName = new Map<string, JsonValue>();
  for (const [k, v] of Object.entries(attrs)) if (k.startsWith('iodebezium')) byName.set(normalise(k.slice('iodebezium'.length)), v);
  return (name) => byName.get(normalise(name));
}

const OPS: Record<string, Operation | 'truncate' | 'message'> = { c: 'insert', u: 'update', d: 'delete', r: 'snapshot', t: 'truncate', m: 'message' };

function integer(v: JsonValue | undefined, path: string): bigint {
  const text = v instanceof JsonNumber ? v.text : typeof v === 'string' ? v : undefined;
  if (text === undefined || !/^-?\d+$/.test(text)) invalid(path, 'expected an integer');
  return BigInt(text);
}

function text(v: JsonValue | undefined): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof JsonNumber) return v.text;
  return undefined;
}

interface Position {
  ordering: string;
  position: string;
  floor?: SnapshotFloor;
}

/** Orders by the connector's own position (see debezium-ordering.ts). */
function positionOf(source: SourceLookup, fallbackTs: JsonValue | undefined, snapshot: boolean, path: string): Position {
  const connector = text(source('connector'));
  const lsn = source('lsn');
  if (connector === 'postgresql' || (connector === undefined && lsn !== undefined && lsn !== null)) {
    const value = integer(lsn ?? undefined, join(path, 'lsn'));
    let lastCommit: bigint | null = null;
    const sequence = text(source('sequence'));
    if (sequence) {
      try {
        const parsed = parseLossless(sequence);
        const first = Array.isArray(parsed) ? text(parsed[0] ?? null) : undefined;
        if (first !== undefined && /^\d+$/.test(first)) lastCommit = BigInt(first);
      } catch {
        invalid(join(path, 'sequence'), 'expected a JSON array of two LSNs');
      }
    }
    const ordering = pgOrdering({ lsn: value, lastCommit }, snapshot);
    if (!snapshot) return { ordering, position: `lsn:${value}`, floor: 'obeys' };
    const kind = text(source('snapshot'));
    return { ordering, position: `lsn:${value}`, ...(kind === 'incremental' ? {} : { floor: 'sets' as const }) };
  }
  const file = text(source('file'));
  if (connector === 'mysql' || connector === 'mariadb' || (connector === undefined && file !== undefined)) {
    if (file === undefined) invalid(join(path, 'file'), 'missing: a MySQL event orders by its binlog file and position');
    const index = binlogIndex(file);
    if (index === null) invalid(join(path, 'file'), `binlog file ${JSON.stringify(file)} has no numeric suffix`);
    const pos = integer(source('pos'), join(path, 'pos'));
    const rowField = source('row');
    const row = rowField === undefined || rowField === null ? 0n : integer(rowField, join(path, 'row'));
    return { ordering: binlogOrdering({ file, pos, row }, index, snapshot), position: `binlog:${file}:${pos}:${row}` };
  }
  const ts = source('ts_ms') ?? fallbackTs;
  const ms = integer(ts ?? undefined, join(path, 'ts_ms'));
  return { ordering: timeOrdering(ms), position: `ts:${ms}` };
}

function tableOf(source: SourceLookup, topic: string | undefined, path: string): string {
  const table = text(source('table'));
  const schema = text(source('schema')) || text(source('db'));
  if (table && schema) return `${schema}.${table}`;
  // `<prefix>.<schema>.<table>`, the topic (stream) naming of every relational connector.
  const parts = topic?.split('.') ?? [];
  if (parts.length >= 3) return parts.slice(-2).join('.');
  return invalid(join(path, 'table'), 'missing: the event does not say which table it belongs to (source.schema and source.table)');
}

const RESERVED = new Set<string>([...METADATA_FIELDS, UNAVAILABLE_FIELD]);

function rowColumns(
  row: JsonObject,
  schema: ConnectSchema | undefined,
  o: MappingOptions,
  path: string,
  skip?: (k: string) => boolean,
): Pick<DebeziumChange, 'columns' | 'unavailable'> {
  const columns = new Map<string, string>();
  const unavailable: string[] = [];
  for (const name of Object.keys(row)) {
    if (skip?.(name)) continue;
    if (RESERVED.has(name))
      invalid(join(path, name), 'a column with the name of a record metadata field; rename it in the connector (e.g. a column.rename transform)');
    const v = row[name]!;
    if (o.unavailable.matches(v)) unavailable.push(name);
    else columns.set(name, encodeValue(v, fieldSchema(schema, name), o, join(path, name)));
  }
  return { columns, unavailable };
}

/** Splits the JSON converter's `{schema, payload}` wrapper off, if there is one. */
function unwrap(v: JsonValue, path: string): { value: JsonValue; schema: ConnectSchema | undefined; path: string } {
  if (isObject(v) && 'payload' in v && 'schema' in v && Object.keys(v).length === 2) {
    const schema = v.schema === null ? undefined : readSchema(v.schema, join(path, 'schema'));
    return { value: v.payload!, schema, path: join(path, 'payload') };
  }
  return { value: v, schema: undefined, path };
}

function keyOf(key: JsonValue | undefined, o: MappingOptions): Map<string, string> | null {
  if (key === undefined || key === null) return null;
  const k = unwrap(key, 'key');
  if (!isObject(k.value)) return null;
  return rowColumns(k.value, k.schema, o, k.path).columns;
}

function classify(value: JsonObject, schema: ConnectSchema | undefined): SkipReason | null {
  if (schema?.name?.endsWith('.Heartbeat') || (Object.keys(value).length === 1 && 'ts_ms' in value)) return 'heartbeat';
  if ((value.status === 'BEGIN' || value.status === 'END') && 'id' in value && !('op' in value)) return 'transaction';
  if ('ddl' in value || 'tableChanges' in value || 'historyRecord' in value) return 'schema_change';
  return null;
}

/** Maps one event. A malformed event is an AppError `EVENT_INVALID` whose message starts with the field's path. */
export function mapDebeziumEvent(input: DebeziumInput, o: MappingOptions): DebeziumEvent {
  let value = input.value;
  let path = '';
  let attrs: Record<string, JsonValue> | undefined = input.cloudEvent;
  if (value === null) return { kind: 'skip', reason: 'tombstone' };
  if (isObject(value) && typeof value.specversion === 'string' && 'data' in value) {
    // A structured CloudEvent: attributes beside the event, which is in `data`.
    attrs = value;
    value = value.data!;
    path = 'data';
  }
  const unwrapped = unwrap(value, path);
  value = unwrapped.value;
  path = unwrapped.path;
  if (value === null) return { kind: 'skip', reason: 'tombstone' };
  if (!isObject(value)) invalid(path || '(event)', 'expected a JSON object');
  const skip = classify(value, unwrapped.schema);
  if (skip) return { kind: 'skip', reason: skip };
  const key = keyOf(input.key, o);
  if ('__op' in value || '__deleted' in value || (!('op' in value) && attrs === undefined && Object.keys(value).some((k) => k.startsWith('__')))) {
    return flattened(value, unwrapped.schema, key, input.topic, o, path);
  }
  const op = text(value.op) ?? text(attrs?.iodebeziumop);
  if (op === undefined) invalid(join(path, 'op'), 'missing: neither op nor __op (with ExtractNewRecordState, add op to add.fields)');
  const mapped = OPS[op];
  if (mapped === undefined) invalid(join(path, 'op'), `unknown operation ${JSON.stringify(op)}`);
  if (mapped === 'message') return { kind: 'skip', reason: 'message' };
  let source: SourceLookup;
  let sourcePath: string;
  if (isObject(value.source)) {
    const block = value.source;
    source = (name) => block[name];
    sourcePath = join(path, 'source');
  } else if (attrs !== undefined) {
    source = cloudEventLookup(attrs);
    sourcePath = 'iodebezium';
  } else {
    return invalid(join(path, 'source'), 'missing: a change event names its table and position in source');
  }
  const table = tableOf(source, input.topic, sourcePath);
  if (mapped === 'truncate') return { kind: 'truncate', table };
  const { ordering, position, floor } = positionOf(source, value.ts_ms, mapped === 'snapshot', sourcePath);
  const side = mapped === 'delete' ? 'before' : 'after';
  const row = value[side];
  const rowPath = join(path, side);
  let rowFields: Pick<DebeziumChange, 'columns' | 'unavailable'> = { columns: new Map(), unavailable: [] };
  if (isObject(row)) rowFields = rowColumns(row, fieldSchema(unwrapped.schema, side), o, rowPath);
  else if (mapped !== 'delete' || key === null)
    invalid(rowPath, `missing: a ${op === 'd' ? 'delete needs before (or an event key)' : `${mapped} needs after`}`);
  return { kind: 'change', table, op: mapped, ordering, position, ...(floor ? { floor } : {}), ...rowFields, key };
}

/** `ExtractNewRecordState`'s form: the row's columns, and the metadata it was told to add as `__` fields. */
function flattened(
  value: JsonObject,
  schema: ConnectSchema | undefined,
  key: Map<string, string> | null,
  topic: string | undefined,
  o: MappingOptions,
  path: string,
): DebeziumEvent {
  const meta: SourceLookup = (name) => value[`__source_${name}`] ?? value[`__${name}`];
  const deleted = value.__deleted === true || value.__deleted === 'true';
  const opText = text(value.__op);
  let op: Operation | 'truncate' | 'message';
  if (opText !== undefined) {
    const mapped = OPS[opText];
    if (mapped === undefined) invalid(join(path, '__op'), `unknown operation ${JSON.stringify(opText)}`);
    op = deleted ? 'delete' : mapped;
  } else {
    // Without __op, a rewritten delete still says so; anything else is an insert or an update.
    op = deleted ? 'delete' : 'upsert';
  }
  if (op === 'message') return { kind: 'skip', reason: 'message' };
  const table = tableOf(meta, topic, path);
  if (op === 'truncate') return { kind: 'truncate', table };
  const { ordering, position, floor } = positionOf(meta, value.__ts_ms, op === 'snapshot', path);
  const fields = rowColumns(value, schema, o, path, (k) => k.startsWith('__'));
  return { kind: 'change', table, op, ordering, position, ...(floor ? { floor } : {}), ...fields, key };
}

export interface ChangeRow {
  /** The row as a JSON object text, `_unavailable` first: the record's row part. */
  json: string;
  /** Primary-key values as JSON text, in key order (for dead-letter descriptions). */
  key: string[];
}

/**
 * The record row of a change: every column (the key columns only, for a delete), and `_unavailable` naming the
 * columns left out because Debezium could not read them. `primaryKey` is the configured key, else the event key's;
 * null (a table not configured, whose events wait in the dead-letter queue) accepts a change with no key known,
 * keeping every column of it.
 */
export function changeRow(change: DebeziumChange, primaryKey: readonly string[] | undefined | null, where: string): ChangeRow {
  if (primaryKey === null && !change.key) {
    const parts = [`${JSON.stringify(UNAVAILABLE_FIELD)}:${JSON.stringify(change.unavailable)}`];
    for (const [name, v] of change.columns) parts.push(`${JSON.stringify(name)}:${v}`);
    return { json: `{${parts.join(',')}}`, key: [] };
  }
  const pk = primaryKey ?? (change.key ? [...change.key.keys()] : undefined);
  if (!pk || pk.length === 0) {
    throw new AppError(
      'EVENT_INVALID',
      `${where}: table ${change.table} has no primaryKey in the config and the event carries no key; set primaryKey`,
      {
        details: { field: 'primaryKey' },
      },
    );
  }
  const key = pk.map((c) => {
    const v = change.columns.get(c) ?? change.key?.get(c);
    if (v === undefined || v === 'null') {
      const what = change.unavailable.includes(c) ? 'arrived unavailable' : 'is missing or null';
      throw new AppError('EVENT_INVALID', `${where}: primary-key column ${c} ${what}`, { details: { field: c } });
    }
    return v;
  });
  const parts = [`${JSON.stringify(UNAVAILABLE_FIELD)}:${JSON.stringify(change.op === 'delete' ? [] : change.unavailable)}`];
  if (change.op === 'delete') pk.forEach((c, i) => parts.push(`${JSON.stringify(c)}:${key[i]}`));
  else for (const [name, v] of change.columns) parts.push(`${JSON.stringify(name)}:${v}`);
  return { json: `{${parts.join(',')}}`, key };
}
