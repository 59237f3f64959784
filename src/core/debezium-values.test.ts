import { describe, expect, it } from 'vitest';
import { parseLossless } from './json-lossless.js';
import { UnavailableValue, bestEffortValue, decimalText, encodeValue, readSchema, type ValueOptions } from './debezium-values.js';
import { decimalBytes } from '../../test/helpers/debezium-events.js';

const OPTS: ValueOptions = { binaryHandling: 'bytes' };

/** Encodes `value` (JSON text) under a field schema (JSON text), as the mapping does. */
function enc(schema: object, value: string, opts: ValueOptions = OPTS): string {
  return encodeValue(
    parseLossless(value),
    readSchema(parseLossless(JSON.stringify({ optional: true, ...schema })), 'schema'),
    opts,
    'payload.after.col',
  );
}

describe('Debezium values in pushsync encodings', () => {
  describe('decimals', () => {
    it('Decimal: base64 unscaled bytes with the schema scale become the exact decimal text', () => {
      const d = (unscaled: bigint, scale: number): string =>
        enc({ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: String(scale) } }, decimalBytes(unscaled));
      expect(d(12345n, 2)).toBe('"123.45"');
      expect(d(110n, 2)).toBe('"1.10"');
      expect(d(-1n, 2)).toBe('"-0.01"');
      expect(d(0n, 3)).toBe('"0.000"');
      expect(d(-128n, 0)).toBe('"-128"');
      expect(d(128n, 0)).toBe('"128"');
      expect(d(1234567890123456789012345678901234567890n, 10)).toBe('"123456789012345678901234567890.1234567890"');
      expect(d(-1234567890123456789012345678901234567890n, 41)).toBe('"-0.01234567890123456789012345678901234567890"');
    });

    it('Decimal written as a number (decimal.format=NUMERIC) reads as its base64 form does, in whatever notation Java wrote it', () => {
      const n = (text: string, scale: number): string =>
        enc({ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: String(scale) } }, text);
      const b = (unscaled: bigint, scale: number): string =>
        enc({ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: String(scale) } }, decimalBytes(unscaled));
      expect(n('1.0E-7', 8)).toBe(b(10n, 8));
      expect(n('0E-8', 8)).toBe(b(0n, 8));
      expect(n('-1.23E-7', 9)).toBe(b(-123n, 9));
      expect(n('1.50', 2)).toBe(b(150n, 2));
      expect(n('123', 0)).toBe(b(123n, 0));
      expect(n('-0.01', 2)).toBe('"-0.01"');
      expect(n('1.2E+3', 0)).toBe('"1200"');
      expect(n('0.125', 2)).toBe('"0.125"');
    });

    it('VariableScaleDecimal: a scale and unscaled bytes per value', () => {
      const v = (unscaled: bigint, scale: number): string =>
        enc({ type: 'struct', name: 'io.debezium.data.VariableScaleDecimal' }, `{"scale":${scale},"value":${decimalBytes(unscaled)}}`);
      expect(v(1234567n, 3)).toBe('"1234.567"');
      expect(v(-5n, 0)).toBe('"-5"');
      expect(v(99999999999999999999999999999n, 20)).toBe('"999999999.99999999999999999999"');
    });

    it('decimal.handling.mode string and double arrive as they came', () => {
      expect(enc({ type: 'string' }, '"1234.5670"')).toBe('"1234.5670"');
      expect(enc({ type: 'float64' }, '1234.567')).toBe('1234.567');
      expect(enc({ type: 'float64' }, '1.0E-7')).toBe('1.0E-7');
      expect(enc({ type: 'float64' }, '"NaN"')).toBe('"NaN"');
    });

    it('decimalText pads and signs exactly', () => {
      expect(decimalText(5n, 3)).toBe('0.005');
      expect(decimalText(-5n, 3)).toBe('-0.005');
      expect(decimalText(12n, -2)).toBe('1200');
    });

    it('refuses a Decimal that is not base64, naming the field', () => {
      expect(() => enc({ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } }, '"not base64!"')).toThrow(
        'payload.after.col: expected base64 bytes',
      );
    });
  });

  describe('temporal types', () => {
    it.each([
      ['io.debezium.time.Date', 'int32', '19782', '"2024-02-29"'],
      ['io.debezium.time.Date', 'int32', '-735160', '"0044-03-15 BC"'],
      ['org.apache.kafka.connect.data.Date', 'int32', '19782', '"2024-02-29"'],
      ['io.debezium.time.Time', 'int32', '45296120', '"12:34:56.12"'],
      ['org.apache.kafka.connect.data.Time', 'int32', '45296120', '"12:34:56.12"'],
      ['io.debezium.time.MicroTime', 'int64', '45296123456', '"12:34:56.123456"'],
      ['io.debezium.time.MicroTime', 'int64', '-3020399000000', '"-838:59:59"'],
      ['io.debezium.time.NanoTime', 'int64', '45296123456789', '"12:34:56.123456789"'],
      ['io.debezium.time.Timestamp', 'int64', '1709296496120', '"2024-03-01T12:34:56.12"'],
      ['org.apache.kafka.connect.data.Timestamp', 'int64', '1709296496120', '"2024-03-01T12:34:56.12"'],
      ['io.debezium.time.MicroTimestamp', 'int64', '1709296496123456', '"2024-03-01T12:34:56.123456"'],
      ['io.debezium.time.MicroTimestamp', 'int64', '-63517780799500000', '"0044-03-15T12:00:00.5 BC"'],
      ['io.debezium.time.MicroTimestamp', 'int64', '9223372036854775807', '"infinity"'],
      ['io.debezium.time.MicroTimestamp', 'int64', '-9223372036854775808', '"-infinity"'],
      ['io.debezium.time.NanoTimestamp', 'int64', '1709296496123456789', '"2024-03-01T12:34:56.123456789"'],
      ['io.debezium.time.ZonedTimestamp', 'string', '"2024-03-01T12:34:56.123456Z"', '"2024-03-01T12:34:56.123456+00:00"'],
      ['io.debezium.time.ZonedTimestamp', 'string', '"2024-03-01T12:34:56+01:00"', '"2024-03-01T11:34:56+00:00"'],
      ['io.debezium.time.ZonedTimestamp', 'string', '"infinity"', '"infinity"'],
      ['io.debezium.time.ZonedTime', 'string', '"10:15:30.5Z"', '"10:15:30.5+00"'],
      ['io.debezium.time.MicroDuration', 'int64', '93784000000', '"93784000000"'],
      ['io.debezium.time.Year', 'int32', '2024', '2024'],
    ])('%s (%s) %s → %s', (name, type, value, expected) => {
      expect(enc({ type, name }, value)).toBe(expected);
    });

    it('refuses a timestamp that is not an integer', () => {
      expect(() => enc({ type: 'int64', name: 'io.debezium.time.MicroTimestamp' }, '"2024-01-01"')).toThrow('payload.after.col: expected an integer');
    });
  });

  describe('other types', () => {
    it('int64 as a string of every digit; smaller integers and booleans as they are', () => {
      expect(enc({ type: 'int64' }, '9223372036854775807')).toBe('"9223372036854775807"');
      expect(enc({ type: 'int64' }, '-42')).toBe('"-42"');
      expect(enc({ type: 'int32' }, '-2147483648')).toBe('-2147483648');
      expect(enc({ type: 'int16' }, '7')).toBe('7');
      expect(enc({ type: 'boolean' }, 'true')).toBe('true');
    });

    it('Json is embedded as the database wrote it, digits and whitespace included', () => {
      expect(enc({ type: 'string', name: 'io.debezium.data.Json' }, JSON.stringify('{"a": [1, 2.50], "big": 12345678901234567890}'))).toBe(
        '{"a": [1, 2.50], "big": 12345678901234567890}',
      );
      expect(() => enc({ type: 'string', name: 'io.debezium.data.Json' }, '"{not json"')).toThrow(
        'payload.after.col: Json holds text that is not JSON',
      );
    });

    it('Uuid, Xml, Enum and plain strings stay strings', () => {
      expect(enc({ type: 'string', name: 'io.debezium.data.Uuid' }, '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"')).toBe(
        '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',
      );
      expect(enc({ type: 'string', name: 'io.debezium.data.Enum' }, '"sad"')).toBe('"sad"');
      expect(enc({ type: 'string' }, '"héllo \\"q\\" \\n"')).toBe('"héllo \\"q\\" \\n"');
    });

    it('bytes stay standard base64; binary columns sent as hex or url-safe base64 become standard base64', () => {
      expect(enc({ type: 'bytes' }, '"AP8Q"')).toBe('"AP8Q"');
      const bytea = { type: 'string', parameters: { '__debezium.source.column.type': 'BYTEA' } };
      expect(enc(bytea, '"00ff10"', { binaryHandling: 'hex' })).toBe('"AP8Q"');
      expect(enc(bytea, '"-_8"', { binaryHandling: 'base64-url-safe' })).toBe('"+/8="');
      expect(enc(bytea, '"AP8Q"', { binaryHandling: 'base64' })).toBe('"AP8Q"');
      // Without the source column type a string is a string.
      expect(enc({ type: 'string' }, '"00ff10"', { binaryHandling: 'hex' })).toBe('"00ff10"');
    });

    it('arrays convert element by element; structs field by field', () => {
      expect(enc({ type: 'array', items: { type: 'int64', optional: true } }, '[1,null,9223372036854775807]')).toBe(
        '["1",null,"9223372036854775807"]',
      );
      expect(enc({ type: 'array', items: { type: 'int32', optional: true, name: 'io.debezium.time.Date' } }, '[19782]')).toBe('["2024-02-29"]');
      const geometry = {
        type: 'struct',
        name: 'io.debezium.data.geometry.Point',
        fields: [
          { type: 'float64', field: 'x' },
          { type: 'float64', field: 'y' },
          { type: 'bytes', field: 'wkb' },
          { type: 'int32', field: 'srid', optional: true },
        ],
      };
      expect(enc(geometry, '{"x":1.5,"y":2,"wkb":"AQE=","srid":null}')).toBe('{"x":1.5,"y":2,"wkb":"AQE=","srid":null}');
    });

    it('refuses a value of the wrong JSON type, naming the field', () => {
      expect(() => enc({ type: 'int32' }, '"7"')).toThrow('payload.after.col: expected a number (int32)');
      expect(() => enc({ type: 'boolean' }, '1')).toThrow('payload.after.col: expected a boolean');
    });
  });

  describe('without a schema', () => {
    it('integers a double cannot hold become strings; everything else goes as it came', () => {
      expect(bestEffortValue(parseLossless('9007199254740993'))).toBe('"9007199254740993"');
      expect(bestEffortValue(parseLossless('9007199254740991'))).toBe('9007199254740991');
      expect(bestEffortValue(parseLossless('{"a":[1.10,"x",12345678901234567890]}'))).toBe('{"a":[1.10,"x","12345678901234567890"]}');
    });
  });

  describe('the unavailable-value placeholder', () => {
    const u = new UnavailableValue('__debezium_unavailable_value');
    it('is recognised as text, as bytes in base64 or hex, and as the one element of an array', () => {
      expect(u.matches('__debezium_unavailable_value')).toBe(true);
      expect(u.matches(Buffer.from('__debezium_unavailable_value').toString('base64'))).toBe(true);
      expect(u.matches(Buffer.from('__debezium_unavailable_value').toString('hex'))).toBe(true);
      expect(u.matches(['__debezium_unavailable_value'])).toBe(true);
      expect(u.matches('__debezium_unavailable_value ')).toBe(false);
      expect(u.matches(['a', '__debezium_unavailable_value'])).toBe(false);
      expect(u.matches(null)).toBe(false);
    });
  });
});
