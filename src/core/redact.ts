/**
 * Makes text that came from outside (a server's response body, its errors and warnings, a transport error) safe to
 * keep in error messages, job logs and log lines: secrets are replaced by `[redacted]` and the text is capped.
 *
 * What is removed:
 * - every occurrence of the given secrets (e.g. the configured API key), also URL-encoded, JSON-escaped and in
 *   base64, when the secret has at least {@link MIN_SECRET_LENGTH} characters;
 * - the credentials of any `Bearer …` or `Basic …` value, whoever's they are;
 * - the value of any key that names a credential (`apiKey`, `api_key`, `x-api-key`, `token`, `access_token`,
 *   `password`, `secret`, `authorization`, `cookie`), in JSON (`"token": "…"`), headers (`Authorization: …`) and
 *   query strings (`api_key=…`).
 *
 * Redaction may also remove harmless text that looks like a credential: it errs on the side of removing.
 */

export const REDACTED = '[redacted]';

/** Shorter secrets are not searched for as plain text: a one-letter key would blank every word holding it. */
export const MIN_SECRET_LENGTH = 4;

const SCHEME_VALUE = /\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/\\=-]+/gi;

/**
 * A key ending in a credential word; `\b` after the word keeps `tokens_used` or `password_policy` out. Bounded
 * repetitions keep the scan linear on hostile input (a long `a-a-a-…` would otherwise backtrack quadratically).
 */
const SENSITIVE_KEY_SOURCE = String.raw`[\w-]{0,64}(?:api[_-]?key|token|password|passwd|secret|authorization|cookie)`;
const SENSITIVE_KEY = new RegExp(`^${SENSITIVE_KEY_SOURCE}$`, 'i');

/**
 * `key: value`, `key=value`, `"key": "value"`: the key (optionally quoted), the separator, then a quoted value or
 * an unquoted one that runs to the next delimiter (an `Authorization: Bearer x` header value keeps its scheme word).
 */
const KEY_VALUE = new RegExp(
  String.raw`(["']?)\b(${SENSITIVE_KEY_SOURCE})\b\1(\s*[:=]\s*)` +
    String.raw`("(?:[^"\\]|\\.){0,4096}"|'(?:[^'\\]|\\.){0,4096}'|(?:(?:Bearer|Basic)\s+)?(?:\[redacted\]|[^\s,;&"'<>{}\[\]]+))`,
  'gi',
);

export interface Redactor {
  /** `text` with every secret replaced by `[redacted]`. */
  text(text: string): string;
  /**
   * At most `maxChars` characters of `text` (plus `…` when cut), redacted. Long texts are redacted over a bounded
   * head only, and a secret cut in half at its end is removed too.
   */
  excerpt(text: string, maxChars: number): string;
  /**
   * A copy of a JSON value with every string passed through `excerpt` (object keys included) and the value of
   * every credential-named key replaced by `[redacted]`. Deeper than `maxDepth`, a value becomes `[nested]`.
   */
  value(value: unknown, maxChars: number, maxDepth?: number): unknown;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The forms a secret takes when a server echoes it back: as is, URL-encoded, JSON-escaped, base64. */
function secretForms(secret: string): string[] {
  const base64 = Buffer.from(secret, 'utf8').toString('base64');
  const forms = [
    secret,
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
    secret.replace(/\//g, '\\/'),
    base64,
    base64.replace(/=+$/, ''),
    Buffer.from(secret, 'utf8').toString('base64url'),
  ];
  return [...new Set(forms)].filter((f) => f.length >= MIN_SECRET_LENGTH);
}

/** Cuts `text` to `maxChars` (never inside a surrogate pair), marking the cut with `…`. */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let end = maxChars;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

export function createRedactor(secrets: readonly string[]): Redactor {
  const forms = secrets
    .map((s) => s.trim())
    .filter((s) => s.length >= MIN_SECRET_LENGTH)
    .flatMap(secretForms)
    // Longest first, so a form that contains another is replaced whole.
    .sort((a, b) => b.length - a.length);
  const exact = forms.length > 0 ? new RegExp(forms.map(escapeRegExp).join('|'), 'g') : undefined;
  const longest = forms[0]?.length ?? 0;

  const text = (input: string): string => {
    let out = exact ? input.replace(exact, REDACTED) : input;
    out = out.replace(KEY_VALUE, (_m, quote: string, key: string, sep: string, value: string) => {
      const q = value.startsWith('"') ? '"' : value.startsWith("'") ? "'" : '';
      return `${quote}${key}${quote}${sep}${q}${REDACTED}${q}`;
    });
    return out.replace(SCHEME_VALUE, (_m, scheme: string, space: string) => `${scheme}${space}${REDACTED}`);
  };

  /** Removes the start of a secret form left at the end of a head cut from a longer text (the longest such start). */
  const dropPartialForm = (head: string): string => {
    let cut = 0;
    for (const form of forms) {
      for (let k = Math.min(form.length - 1, head.length); k > cut; k -= 1) {
        if (head.endsWith(form.slice(0, k))) {
          cut = k;
          break;
        }
      }
    }
    return head.slice(0, head.length - cut);
  };

  const excerpt = (input: string, maxChars: number): string => {
    // Redaction may shorten the text, so the head redacted is a generous multiple of what is kept.
    const window = maxChars * 8 + longest;
    if (input.length <= window) return truncateText(text(input), maxChars);
    const head = dropPartialForm(input.slice(0, window));
    return truncateText(text(head), maxChars);
  };

  const value = (v: unknown, maxChars: number, maxDepth = 8): unknown => {
    if (typeof v === 'string') return excerpt(v, maxChars);
    if (v === null || typeof v !== 'object') return v;
    if (maxDepth <= 0) return '[nested]';
    if (Array.isArray(v)) return v.map((x) => value(x, maxChars, maxDepth - 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      out[excerpt(k, maxChars)] = SENSITIVE_KEY.test(k) && x !== null ? REDACTED : value(x, maxChars, maxDepth - 1);
    }
    return out;
  };

  return { text, excerpt, value };
}

/**
 * The first entries of a list, each already made safe, whose JSON text together stays within `maxChars`; what is
 * left out is counted in a last entry (`… 12 more`). An entry too long on its own is kept as its cut JSON text.
 */
export function capEntries(entries: readonly unknown[], maxChars: number, maxEntryChars: number): unknown[] {
  const out: unknown[] = [];
  let total = 0;
  for (const [i, entry] of entries.entries()) {
    const json = JSON.stringify(entry) ?? 'null';
    const kept = json.length > maxEntryChars ? truncateText(json, maxEntryChars) : entry;
    const size = Math.min(json.length, maxEntryChars + 1);
    if (total + size > maxChars) {
      out.push(`… ${entries.length - i} more`);
      break;
    }
    out.push(kept);
    total += size;
  }
  return out;
}
