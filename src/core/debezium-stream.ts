/**
 * Entries of Debezium Server's Redis sink (`debezium.sink.type=redis`), one stream per topic. Extended format
 * (`debezium.sink.redis.message.format=extended`): fields `key` and `value`, then the record's headers. Compact (the
 * default): one field whose name is the key and whose value is the value. A null key or value is written as the
 * sink's `null.key` / `null.value` (both `default` unless configured).
 */
export interface DecodedEntry {
  key: string | null;
  value: string | null;
}

export function decodeStreamEntry(fields: readonly string[], nullValue: string, nullKey = 'default'): DecodedEntry {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  let key: string | undefined;
  let value: string | undefined;
  if (map.has('value')) {
    key = map.get('key');
    value = map.get('value');
  } else if (map.size === 1) {
    const [only] = [...map];
    [key, value] = only!;
  }
  return { key: key === undefined || key === nullKey ? null : key, value: value === undefined || value === nullValue ? null : value };
}
