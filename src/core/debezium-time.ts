/**
 * Calendar arithmetic for Debezium's temporal encodings (days, or milli-, micro- or nanoseconds since the epoch or
 * since midnight), written out in the text forms pushsync uses for Postgres values (docs/encoding.md): ISO 8601,
 * fractional seconds without trailing zeros, years before 1 as `… BC` (proleptic Gregorian, as Postgres and Java
 * both count). Integer arithmetic only, in BigInt where a count can pass 2^53 (nanoseconds since the epoch).
 */

const DAY_SECONDS = 86_400n;

/** Year, month, day of a day count since 1970-01-01 (H. Hinnant's civil_from_days). */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** Day count since 1970-01-01 of a proleptic Gregorian date (days_from_civil). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

const pad = (n: number | bigint, width: number): string => String(n).padStart(width, '0');

/** `2024-02-29`, `10000-01-01`; `bc` tells the caller to append ` BC` (year 0 is 1 BC). */
function dateText(days: number): { text: string; bc: boolean } {
  const [y, m, d] = civilFromDays(days);
  const bc = y <= 0;
  return { text: `${pad(bc ? 1 - y : y, 4)}-${pad(m, 2)}-${pad(d, 2)}`, bc };
}

/** Fractional part of `units` (0 <= units < perSecond) as `.digits` without trailing zeros, or empty. */
function fraction(units: bigint, perSecond: bigint): string {
  if (units === 0n) return '';
  const width = perSecond.toString().length - 1;
  return `.${pad(units, width).replace(/0+$/, '')}`;
}

/** `HH:MM:SS[.fff]` of a non-negative duration; hours may pass 24 (MySQL's TIME). */
function clockText(units: bigint, perSecond: bigint): string {
  const seconds = units / perSecond;
  const h = seconds / 3600n;
  const m = (seconds / 60n) % 60n;
  const s = seconds % 60n;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${fraction(units % perSecond, perSecond)}`;
}

export function dateFromDays(days: number): string {
  const { text, bc } = dateText(days);
  return bc ? `${text} BC` : text;
}

/** Time of day (or a signed duration, for MySQL's TIME) from a count of units since midnight. */
export function timeFromUnits(units: bigint, perSecond: bigint): string {
  return units < 0n ? `-${clockText(-units, perSecond)}` : clockText(units, perSecond);
}

const floorDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b;
  return q * b > a ? q - 1n : q;
};

/**
 * A point in time from a count of units since the epoch: `2024-03-01T12:34:56.123456` (a timestamp without time
 * zone), or with `offset` (`+00:00`) a timestamp with time zone. BC timestamps end in ` BC`, as Postgres writes them.
 */
export function timestampFromUnits(units: bigint, perSecond: bigint, offset = ''): string {
  const perDay = perSecond * DAY_SECONDS;
  const days = floorDiv(units, perDay);
  const rest = units - days * perDay;
  const { text, bc } = dateText(Number(days));
  return `${text}T${clockText(rest, perSecond)}${offset}${bc ? ' BC' : ''}`;
}

const ZONED = /^([+-]?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?(?::?\d{2})?)$/;

/** Offset text (`Z`, `+05:30`, `-0800`) in seconds east of UTC. */
function offsetSeconds(text: string): number {
  if (text === 'Z') return 0;
  const sign = text.startsWith('-') ? -1 : 1;
  const digits = text.slice(1).replace(/:/g, '');
  const h = Number(digits.slice(0, 2));
  const m = Number(digits.slice(2, 4) || '0');
  const s = Number(digits.slice(4, 6) || '0');
  return sign * (h * 3600 + m * 60 + s);
}

/**
 * An ISO 8601 timestamp with an offset (Java's `ISO_OFFSET_DATE_TIME`: `2024-03-01T12:34:56.5Z`, `+10000-…`,
 * `-0043-…` for 44 BC) in UTC as pushsync writes timestamptz: `2024-03-01T12:34:56.5+00:00`. Null when the text
 * is not of that form.
 */
export function zonedTimestampToUtc(text: string): string | null {
  const m = ZONED.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, off] = m;
  const days = daysFromCivil(Number(y), Number(mo), Number(d));
  const local = BigInt(days) * DAY_SECONDS + BigInt(Number(h) * 3600 + Number(mi) * 60 + Number(s ?? '0'));
  const utc = local - BigInt(offsetSeconds(off!));
  const digits = (frac ?? '').replace(/0+$/, '');
  const perSecond = 10n ** BigInt(digits.length);
  return timestampFromUnits(utc * perSecond + BigInt(digits || '0'), perSecond, '+00:00');
}

const ZONED_TIME = /^(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/** `10:15:30.5Z` → `10:15:30.5+00`, `10:15:30+05:30` stays, `+05:00` → `+05`: Postgres's timetz text. */
export function zonedTimeText(text: string): string | null {
  const m = ZONED_TIME.exec(text);
  if (!m) return null;
  const [, h, mi, s, frac, off] = m;
  const digits = (frac ?? '').replace(/0+$/, '');
  const seconds = offsetSeconds(off!);
  const abs = Math.abs(seconds);
  const zone = `${seconds < 0 ? '-' : '+'}${pad(Math.floor(abs / 3600), 2)}${abs % 3600 === 0 ? '' : `:${pad(Math.floor((abs % 3600) / 60), 2)}`}`;
  return `${h}:${mi}:${s ?? '00'}${digits ? `.${digits}` : ''}${zone}`;
}
