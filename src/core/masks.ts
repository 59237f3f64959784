import { createHmac } from 'node:crypto';
import { AppError } from './errors.js';
import { objectMembers } from './json-scan.js';
import type { Mask } from './rules.js';

/**
 * The masks pushsync computes itself, once per value, where the source has no exact built-in: pure functions from a
 * value's outgoing JSON text to the masked value's JSON text. JSON null stays null under every mask.
 */
export type ValueMask = (valueJson: string) => string;

/**
 * The text a mask reads: a string's content, otherwise the value's JSON text as pushsync sends it (a number's
 * digits, `true`, an array's JSON). Null for JSON null.
 */
export function valueText(valueJson: string): string | null {
  if (valueJson === 'null') return null;
  if (valueJson.charCodeAt(0) === 0x22) return JSON.parse(valueJson) as string;
  return valueJson;
}

/** HMAC-SHA-256 of the text's UTF-8 bytes, lower-case hex. */
export function hashText(key: Buffer, text: string): string {
  return createHmac('sha256', key).update(text, 'utf8').digest('hex');
}

/** The first `n` characters, counted as Unicode code points (as PostgreSQL's `left` counts them). */
export function firstChars(text: string, n: number): string {
  let end = 0;
  for (let i = 0; i < n && end < text.length; i++) {
    const c = text.charCodeAt(end);
    end += c >= 0xd800 && c <= 0xdbff && end + 1 < text.length ? 2 : 1;
  }
  return text.slice(0, end);
}

/** Compiles a pattern the way masks use it: JavaScript syntax, Unicode mode, every match. */
export function maskRegExp(pattern: string): RegExp {
  return new RegExp(pattern, 'gu');
}

export function compileMask(mask: Mask, hashKey: Buffer | null): ValueMask {
  const textMask =
    (f: (text: string) => string): ValueMask =>
    (json) => {
      const text = valueText(json);
      return text === null ? 'null' : JSON.stringify(f(text));
    };
  switch (mask.kind) {
    case 'hash': {
      if (hashKey === null) throw new AppError('CONFIG_INVALID', 'masking.key is required for hash masks');
      const key = hashKey;
      return textMask((text) => hashText(key, text));
    }
    case 'null':
      return () => 'null';
    case 'redact': {
      const fixed = JSON.stringify(mask.text);
      return (json) => (json === 'null' ? 'null' : fixed);
    }
    case 'truncate':
      return textMask((text) => firstChars(text, mask.chars));
    case 'replace': {
      const re = maskRegExp(mask.pattern);
      const replacement = mask.with;
      return textMask((text) => text.replace(re, () => replacement));
    }
    case 'truncateTime':
      throw new AppError('INTERNAL', 'truncate by day, month or year is computed by the source');
  }
}

/**
 * Applies masks to members of a row's JSON object text, by column name, leaving everything else byte for byte as
 * it was. Unknown members and members without a mask pass through.
 */
export function maskMembers(rowJson: string, masks: ReadonlyMap<string, ValueMask>): string {
  let out = '';
  let from = 0;
  let left = masks.size;
  for (const m of objectMembers(rowJson)) {
    const name = m.rawKey.includes('\\') ? (JSON.parse(m.rawKey) as string) : m.rawKey.slice(1, -1);
    const mask = masks.get(name);
    if (!mask) continue;
    out += rowJson.slice(from, m.valueStart) + mask(rowJson.slice(m.valueStart, m.valueEnd));
    from = m.valueEnd;
    if (--left === 0) break;
  }
  return from === 0 ? rowJson : out + rowJson.slice(from);
}
