import { AppError } from './errors.js';
import { JsonNumber, isObject, writeLossless, parseLossless, type JsonObject, type JsonValue } from './json-lossless.js';
import { dateFromDays, timeFromUnits, timestampFromUnits, zonedTimeText, zonedTimestampToUtc } from './debezium-time.js';

/**
 * Values of Debezium's JSON converter, turned into the JSON forms pushsync sends for Postgres values
 * (docs/encoding.md) by their Kafka Connect schema: exact decimal strings, ISO timestamps with every digit, bigint
 * as strings, embedded JSON. Without a schema a documented best effort applies (`bestEffortValue`).
 */

/** A Kafka Connect schema as the JSON converter writes it with `schemas.enable=true`. */
export interface ConnectSchema {
  type: string;
  optional: boolean;
  /** The semantic type, e.g. `io.debezium.time.MicroTimestamp`. */
  name?: string | undefined;
  /** The field name, for the members of a struct. */
  field?: string | undefined;
  parameters?: Record<string, string> | undefined;
  fields?: ConnectSchema[] | undefined;
  items?: ConnectSchema | undefined;
  values?: ConnectSchema | undefined;
}

export interface ValueOptions {
  /**
   * How the connector writes binary columns it types as strings (`binary.handling.mode`): decoded to standard
   * base64 when the field's source column type is known (`column.propagate.source.type`).
   */
  binaryHandling: 'bytes' | 'base64' | 'base64-url-safe' | 'hex';
}

function invalid(path: string, what: string): never {
  throw new AppError('EVENT_INVALID', `${path}: ${what}`, { details: { field: path } });
}

/** Schemas already read, by the parsed object: events that share a schema text share its parsed object. */
const READ = new WeakMap<JsonObject, ConnectSchema>();

export function readSchema(v: JsonValue | undefined, path: string): ConnectSchema {
  if (!isObject(v) || typeof v.type !== 'string') invalid(path, 'a schema must be an object with a string "type"');
  const known = READ.get(v);
  if (known) return known;
  const s = readSchemaNow(v, path);
  READ.set(v, s);
  return s;
}

function readSchemaNow(v: JsonObject, path: string): ConnectSchema {
  const s: ConnectSchema = { type: v.type as string, optional: v.optional === true };
  if (typeof v.name === 'string') s.name = v.name;
  if (typeof v.field === 'string') s.field = v.field;
  if (isObject(v.parameters)) {
    s.parameters = {};
    for (const [k, p] of Object.entries(v.parameters)) if (typeof p === 'string') s.parameters[k] = p;
  }
  if (Array.isArray(v.fields)) s.fields = v.fields.map((f, i) => readSchema(f, `${path}.fields[${i}]`));
  if (v.items !== undefined) s.items = readSchema(v.items, `${path}.items`);
  if (v.values !== undefined) s.values = readSchema(v.values, `${path}.values`);
  return s;
}

const FIELDS = new WeakMap<ConnectSchema, Map<string, ConnectSchema>>();

export function fieldSchema(struct: ConnectSchema | undefined, name: string): ConnectSchema | undefined {
  if (!struct?.fields) return undefined;
  let byName = FIELDS.get(struct);
  if (!byName) FIELDS.set(struct, (byName = new Map(struct.fields.filter((f) => f.field !== undefined).map((f) => [f.field!, f]))));
  return byName.get(name);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytesOf(v: JsonValue, path: string): Buffer {
  if (typeof v !== 'string' || !BASE64.test(v)) invalid(path, 'expected base64 bytes');
  return Buffer.from(v, 'base64');
}

/** Two's-complement big-endian bytes (Java's BigInteger.toByteArray) as a BigInt. */
function unscaled(bytes: Buffer): bigint {
  if (bytes.length === 0) return 0n;
  const n = BigInt(`0x${bytes.toString('hex')}`);
  return (bytes[0]! & 0x80) !== 0 ? n - (1n << BigInt(bytes.length * 8)) : n;
}

/** The exact decimal text of `unscaled × 10^-scale`, with `scale` digits after the point (Postgres's numeric text). */
export function decimalText(value: bigint, scale: number): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString();
  let text: string;
  if (scale <= 0) text = value === 0n ? '0' : digits + '0'.repeat(-scale);
  else {
    const padded = digits.padStart(scale + 1, '0');
    text = `${padded.slice(0, -scale)}.${padded.slice(-scale)}`;
  }
  return negative ? `-${text}` : text;
}

/**
 * A Decimal the JSON converter wrote as a number (`decimal.format=NUMERIC`: Java's BigDecimal text, in exponent form
 * below 10^-6 and for zero at such scales, e.g. `1.0E-7`, `0E-8`) as the text the base64 form gives: plain, with the
 * schema's `scale` digits after the point (more only if the number has more). Null for text that is not a number.
 */
function numericText(text: string, scale: number): string | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return null;
  const digits = BigInt(`${m[2]}${m[3] ?? ''}`);
  // The number is digits × 10^-own.
  const own = (m[3]?.length ?? 0) - Number(m[4] ?? '0');
  const out = Math.max(scale, own);
  const value = digits * 10n ** BigInt(out - own);
  return decimalText(m[1] === '-' ? -value : value, out);
}

function integerOf(v: JsonValue, path: string, what: string): bigint {
  if (!(v instanceof JsonNumber) || !/^-?\d+$/.test(v.text)) invalid(path, `expected an integer (${what})`);
  return BigInt(v.text);
}

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT32_MAX = 2n ** 31n - 1n;
const INT32_MIN = -(2n ** 31n);

/** Debezium's Postgres connector writes `infinity` timestamps as the int64 extremes (int32 for dates). */
function infinity(n: bigint, max: bigint, min: bigint): string | null {
  return n === max ? 'infinity' : n === min ? '-infinity' : null;
}

const str = (s: string): string => JSON.stringify(s);

const SOURCE_COLUMN_TYPE = '__debezium.source.column.type';
const BINARY_SOURCE_TYPES = /^(BYTEA|BLOB|TINYBLOB|MEDIUMBLOB|LONGBLOB|BINARY|VARBINARY|RAW|LONG RAW|IMAGE)$/i;

/** A binary column the connector sent as text (binary.handling.mode base64, base64-url-safe or hex), as standard base64. */
function binaryText(v: string, opts: ValueOptions, path: string): string {
  switch (opts.binaryHandling) {
    case 'hex':
      if (!/^(?:[0-9a-fA-F]{2})*$/.test(v)) invalid(path, 'expected hex bytes (binaryHandling: hex)');
      return Buffer.from(v, 'hex').toString('base64');
    case 'base64-url-safe':
      return Buffer.from(v, 'base64url').toString('base64');
    default:
      return v;
  }
}

/** Semantic types by name: the value's JSON text, or undefined to fall through to the plain type. */
function semantic(v: JsonValue, s: ConnectSchema, opts: ValueOptions, path: string): string | undefined {
  switch (s.name) {
    case 'org.apache.kafka.connect.data.Decimal': {
      const scale = Number(s.parameters?.scale ?? '0');
      if (!Number.isInteger(scale)) invalid(path, 'Decimal without an integer scale parameter');
      // decimal.format=NUMERIC writes the number itself, as Java prints it: 1.0E-7, 0E-8.
      if (v instanceof JsonNumber) return str(numericText(v.text, scale) ?? v.text);
      return str(decimalText(unscaled(bytesOf(v, path)), scale));
    }
    case 'io.debezium.data.VariableScaleDecimal': {
      if (!isObject(v)) invalid(path, 'VariableScaleDecimal must be {scale, value}');
      const scale = Number(integerOf(v.scale ?? null, `${path}.scale`, 'scale'));
      return str(decimalText(unscaled(bytesOf(v.value ?? null, `${path}.value`)), scale));
    }
    case 'io.debezium.time.Date':
    case 'org.apache.kafka.connect.data.Date': {
      const days = integerOf(v, path, s.name);
      return str(infinity(days, INT32_MAX, INT32_MIN) ?? dateFromDays(Number(days)));
    }
    case 'io.debezium.time.Time':
    case 'org.apache.kafka.connect.data.Time':
      return str(timeFromUnits(integerOf(v, path, s.name), 1000n));
    case 'io.debezium.time.MicroTime':
      return str(timeFromUnits(integerOf(v, path, s.name), 1_000_000n));
    case 'io.debezium.time.NanoTime':
      return str(timeFromUnits(integerOf(v, path, s.name), 1_000_000_000n));
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return timestampValue(integerOf(v, path, s.name), 1000n);
    case 'io.debezium.time.MicroTimestamp':
      return timestampValue(integerOf(v, path, s.name), 1_000_000n);
    case 'io.debezium.time.NanoTimestamp':
      return timestampValue(integerOf(v, path, s.name), 1_000_000_000n);
    case 'io.debezium.time.ZonedTimestamp': {
      if (typeof v !== 'string') invalid(path, 'ZonedTimestamp must be a string');
      if (v === 'infinity' || v === '-infinity') return str(v);
      const utc = zonedTimestampToUtc(v);
      // Messages name the field, never its value: they end up in failure reasons and logs.
      if (utc === null) invalid(path, 'ZonedTimestamp is not ISO 8601 with an offset');
      return str(utc);
    }
    case 'io.debezium.time.ZonedTime': {
      if (typeof v !== 'string') invalid(path, 'ZonedTime must be a string');
      const t = zonedTimeText(v);
      if (t === null) invalid(path, 'ZonedTime is not ISO 8601 with an offset');
      return str(t);
    }
    case 'io.debezium.time.MicroDuration':
      // Microseconds as Debezium computed them (a month counts 30.4375 days); exact, but not Postgres's interval text.
      return str(integerOf(v, path, s.name).toString());
    case 'io.debezium.data.Json': {
      if (typeof v !== 'string') invalid(path, 'Json must be a string holding JSON text');
      try {
        parseLossless(v);
      } catch {
        invalid(path, 'Json holds text that is not JSON');
      }
      // Embedded as written: the database's own text, whitespace and number digits included.
      return v.trim();
    }
  }
  return undefined;
}

function timestampValue(n: bigint, perSecond: bigint): string {
  return str(infinity(n, INT64_MAX, INT64_MIN) ?? timestampFromUnits(n, perSecond));
}

/** The JSON text of one value under its schema. */
export function encodeValue(v: JsonValue, s: ConnectSchema | undefined, opts: ValueOptions, path: string): string {
  if (v === null) return 'null';
  if (s === undefined) return bestEffortValue(v);
  if (s.name !== undefined) {
    const out = semantic(v, s, opts, path);
    if (out !== undefined) return out;
  }
  switch (s.type) {
    case 'int8':
    case 'int16':
    case 'int32':
      if (!(v instanceof JsonNumber)) invalid(path, `expected a number (${s.type})`);
      return v.text;
    case 'int64':
      // Every digit, as a string: a consumer reading JSON numbers as doubles would round it.
      return str(integerOf(v, path, 'int64').toString());
    case 'float32':
    case 'float64':
      // NaN and ±Infinity arrive as strings, which is how pushsync sends them too.
      if (v instanceof JsonNumber || v === 'NaN' || v === 'Infinity' || v === '-Infinity') return v instanceof JsonNumber ? v.text : str(v);
      return invalid(path, `expected a number (${s.type})`);
    case 'boolean':
      if (typeof v !== 'boolean') invalid(path, 'expected a boolean');
      return v ? 'true' : 'false';
    case 'string':
      if (typeof v !== 'string') invalid(path, 'expected a string');
      return str(BINARY_SOURCE_TYPES.test(s.parameters?.[SOURCE_COLUMN_TYPE] ?? '') ? binaryText(v, opts, path) : v);
    case 'bytes':
      // The JSON converter writes bytes as standard base64: pushsync's bytea form already.
      return str(bytesOf(v, path).toString('base64'));
    case 'array':
      if (!Array.isArray(v)) invalid(path, 'expected an array');
      return `[${v.map((x, i) => encodeValue(x, s.items, opts, `${path}[${i}]`)).join(',')}]`;
    case 'map':
      if (Array.isArray(v)) return bestEffortValue(v);
      if (!isObject(v)) invalid(path, 'expected an object (map)');
      return `{${Object.keys(v)
        .map((k) => `${str(k)}:${encodeValue(v[k]!, s.values, opts, `${path}.${k}`)}`)
        .join(',')}}`;
    case 'struct':
      if (!isObject(v)) invalid(path, 'expected an object (struct)');
      return structText(v, s, opts, path);
  }
  return bestEffortValue(v);
}

function structText(v: JsonObject, s: ConnectSchema, opts: ValueOptions, path: string): string {
  return `{${Object.keys(v)
    .map((k) => `${str(k)}:${encodeValue(v[k]!, fieldSchema(s, k), opts, `${path}.${k}`)}`)
    .join(',')}}`;
}

/** Largest integer a double holds exactly. */
const SAFE = 2n ** 53n;

/**
 * Without a schema: values go as they came, except integers a double cannot hold exactly, which become strings of
 * their digits (as pushsync sends bigint). A decimal in `precise` mode (base64), a timestamp as a number: both arrive
 * as they are, since nothing says what they mean.
 */
export function bestEffortValue(v: JsonValue): string {
  if (v instanceof JsonNumber) {
    if (/^-?\d+$/.test(v.text)) {
      const n = BigInt(v.text);
      return n >= SAFE || n <= -SAFE ? str(n.toString()) : v.text;
    }
    return v.text;
  }
  if (Array.isArray(v)) return `[${v.map(bestEffortValue).join(',')}]`;
  if (isObject(v)) {
    return `{${Object.keys(v)
      .map((k) => `${str(k)}:${bestEffortValue(v[k]!)}`)
      .join(',')}}`;
  }
  return writeLossless(v);
}

/** Recognises Debezium's placeholder for a value it could not read (an unchanged TOASTed column). */
export class UnavailableValue {
  private readonly forms: Set<string>;

  constructor(placeholder: string) {
    const bytes = Buffer.from(placeholder, 'utf8');
    this.forms = new Set([placeholder, bytes.toString('base64'), bytes.toString('hex'), bytes.toString('base64url')]);
  }

  /** True for the placeholder as text, as bytes (base64 or hex), and as the one element of an array. */
  matches(v: JsonValue): boolean {
    if (typeof v === 'string') return this.forms.has(v);
    return Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' && this.forms.has(v[0]);
  }
}
