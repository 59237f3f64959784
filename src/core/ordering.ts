/**
 * The `_ordering` metadata value: a string whose plain lexicographic order is the order of the source's
 * watermark values, so a warehouse can pick "the newest version of a key" with `ORDER BY _ordering` whatever
 * the watermark's type. Inputs are the database's own text form (Postgres with TimeZone=UTC, DateStyle=ISO).
 */
export type WatermarkKind = 'timestamp' | 'date' | 'integer' | 'decimal' | 'other';

const INT_WIDTH = 20;

export function sortableWatermark(text: string | null, kind: WatermarkKind): string | null {
  if (text === null) return null;
  switch (kind) {
    case 'timestamp':
      return sortableTimestamp(text);
    case 'date':
      return sortableSpecial(text) ?? sortableYear(text);
    case 'integer':
      return sortableInteger(text);
    case 'decimal':
      return sortableDecimal(text);
    default:
      return text;
  }
}

/** `-infinity` sorts before every date, `infinity` after; BC values are rare enough to sort first, unordered. */
function sortableSpecial(text: string): string | undefined {
  if (text === '-infinity') return '!-infinity';
  if (text === 'infinity') return '~infinity';
  if (text.endsWith(' BC')) return `!BC ${text}`;
  return undefined;
}

/**
 * `2024-01-02 03:04:05.12+00` → `2024-01-02T03:04:05.120000Z`: fixed width (microseconds padded), so that
 * `…05Z` and `…05.5Z` compare correctly. Values without an offset (timestamp without time zone) keep none.
 */
function sortableTimestamp(text: string): string {
  const common = sortableUtcTimestamp(text);
  if (common !== undefined) return common;
  const special = sortableSpecial(text);
  if (special !== undefined) return special;
  const match = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d(?::?\d\d)?(?::?\d\d)?)?$/.exec(text);
  if (!match) return text;
  const [, y, mo, d, h, mi, s, frac = '', offset] = match;
  const base = sortableYear(`${y}-${mo}-${d}T${h}:${mi}:${s}.${frac.padEnd(6, '0')}`);
  if (offset === undefined) return base;
  // With TimeZone=UTC Postgres always prints +00; any other offset is kept verbatim after the instant.
  return offset === '+00' ? `${base}Z` : `${base}${offset}`;
}

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
/** `YYYY-MM-DD HH:MM:SS` by position: the separator's character code, or 0 where a digit stands. */
const LAYOUT = [0, 0, 0, 0, 0x2d, 0, 0, 0x2d, 0, 0, 0x20, 0, 0, 0x3a, 0, 0, 0x3a, 0, 0];

function digitsOnly(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < DIGIT_0 || c > DIGIT_9) return false;
  }
  return true;
}

/**
 * The form nearly every watermark has, a four-digit year in UTC (`2024-01-02 03:04:05.12+00`), checked character by
 * character and rebuilt without the general pattern: it runs once per row sent. The result is the general path's.
 * Anything else (another year width, an offset, no zone, BC) returns undefined.
 */
function sortableUtcTimestamp(text: string): string | undefined {
  const n = text.length;
  // 19 characters of date and time, an optional fraction of 1 to 6 digits after a dot, then `+00`.
  if (n < 22 || n > 29 || n === 23 || !text.endsWith('+00')) return undefined;
  for (let i = 0; i < 19; i++) {
    const sep = LAYOUT[i]!;
    const c = text.charCodeAt(i);
    if (sep !== 0 ? c !== sep : c < DIGIT_0 || c > DIGIT_9) return undefined;
  }
  if (n === 22) return `${text.slice(0, 10)}T${text.slice(11, 19)}.000000Z`;
  if (text.charCodeAt(19) !== 0x2e || !digitsOnly(text, 20, n - 3)) return undefined;
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${text.slice(20, n - 3).padEnd(6, '0')}Z`;
}

/**
 * Postgres prints years past 9999 with more digits (`10000-01-01`), which would sort before `2024-…`. Those get a
 * `~` prefix and a seven-digit year (the largest Postgres date, 5874897 AD, has seven), placing them after every
 * four-digit year and before `~infinity`; four-digit years, nearly every real value, keep their plain form.
 */
function sortableYear(text: string): string {
  const dash = text.indexOf('-');
  return dash > 4 ? `~${text.padStart(text.length + 7 - dash, '0')}` : text;
}

/** Fixed-width integers; negatives as nines' complement under a prefix that sorts before positives. */
function sortableInteger(text: string): string {
  if (!/^-?\d+$/.test(text)) return text;
  if (!text.startsWith('-')) return `p${text.padStart(INT_WIDTH, '0')}`;
  const digits = text.slice(1).padStart(INT_WIDTH, '0');
  let complement = '';
  for (const ch of digits) complement += String(9 - Number(ch));
  return `n${complement}`;
}

/** The exponent's offset in `sortableDecimal`: Postgres numeric has at most 131072 digits before the point, 16383 after. */
const EXPONENT_OFFSET = 500_000;
const EXPONENT_WIDTH = 6;

function complement(digits: string): string {
  let out = '';
  for (const ch of digits) out += String(9 - Number(ch));
  return out;
}

/**
 * Decimal and floating-point texts (`-12.50`, `1e+21`, `1.5e-05`, `NaN`, `Infinity`) in value order: the value as
 * 0.DIGITS × 10^E, written `p` + E (offset, fixed width) + DIGITS for positives, `o` for zero, and for negatives `n` +
 * the nines' complement of both, closed by `~` so that a shorter digit string (a larger negative value) sorts after
 * a longer one it begins. Scale does not count: `1.5` and `1.50` are one value. `-Infinity` sorts first, then the
 * numbers, `Infinity`, and `NaN` last (as Postgres orders them).
 */
function sortableDecimal(text: string): string {
  if (text === 'NaN') return '~nan';
  if (text === 'Infinity') return '~infinity';
  if (text === '-Infinity') return '!-infinity';
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return text;
  const [, sign, whole = '', fraction = '', exponent = '0'] = m;
  let digits = whole + fraction;
  let e = Number(exponent) + whole.length;
  const lead = /^0*/.exec(digits)![0].length;
  digits = digits.slice(lead).replace(/0+$/, '');
  e -= lead;
  if (digits === '') return 'o';
  const magnitude = String(e + EXPONENT_OFFSET).padStart(EXPONENT_WIDTH, '0');
  return sign === '-' ? `n${complement(magnitude)}${complement(digits)}~` : `p${magnitude}${digits}`;
}
