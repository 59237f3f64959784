export interface BackoffPolicy {
  /** First retry delay. @defaultValue 1000 ms */
  baseMs: number;
  /** Upper bound of any computed delay. @defaultValue 300000 ms */
  capMs: number;
  /** Fraction of the delay randomised away ("equal jitter"): 0 = none, 1 = full jitter. @defaultValue 0.5 */
  jitter: number;
}

/**
 * Exponential backoff with jitter. `attempt` counts from 1 (the first retry).
 * A server's Retry-After wins when it is longer than the computed delay, and is itself capped so that a hostile
 * or broken header cannot park a job for days.
 *
 * `random` is injectable so the function stays pure under test.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
  const exp = policy.baseMs * 2 ** Math.max(0, attempt - 1);
  const ceiling = Math.min(policy.capMs, exp);
  const jitterPart = ceiling * Math.min(1, Math.max(0, policy.jitter));
  const delay = ceiling - jitterPart + jitterPart * random();
  const floor = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, Math.max(policy.capMs, 3_600_000));
  return Math.round(Math.max(delay, floor));
}

/**
 * Parses an HTTP Retry-After header (delta-seconds or HTTP-date) into milliseconds from `now`.
 * Returns undefined for anything unparseable.
 */
export function parseRetryAfter(header: string | undefined, now: number = Date.now()): number | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  // Fractional seconds are not in the RFC, but some servers send them; rounding up never retries early.
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  // Every HTTP-date form names a month; without one, V8's lenient Date.parse reads "1.5" as a day in 2001.
  if (!/[A-Za-z]{3}/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
