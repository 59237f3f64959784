/**
 * A backfill's progress in numbers and words: rows done of an estimated total, rate and time left. Pure: the
 * extract worker feeds it, the log, the dashboard, `pushsync status` and `GET /status` show it.
 */
export interface Progress {
  rows: number;
  /** Estimated rows in the table; null when the source gives no estimate. */
  total: number | null;
  /** True when `total` is an exact count. */
  exact: boolean;
  /** Percent of `total` done, 0 to 100 (an estimate can be passed: capped at 99.9 until the end). */
  percent: number | null;
  rowsPerSecond: number;
  /** Seconds left at the current rate; null without a total or a rate. */
  etaSeconds: number | null;
}

export function progress(rows: number, estimate: { rows: number; exact: boolean } | null, runRows: number, runMs: number): Progress {
  const rowsPerSecond = runMs > 0 ? Math.round((runRows / runMs) * 1000) : 0;
  const total = estimate ? Math.max(estimate.rows, rows) : null;
  const percent = total === null ? null : total === 0 ? 100 : Math.min(99.9, Math.round((rows / total) * 1000) / 10);
  const etaSeconds = total !== null && rowsPerSecond > 0 ? Math.ceil(Math.max(0, total - rows) / rowsPerSecond) : null;
  return { rows, total, exact: estimate?.exact ?? false, percent, rowsPerSecond, etaSeconds };
}

/** `1h 02m`, `3m 20s`, `45s`. */
export function durationWords(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** `120,000 of ~2,000,000 rows (6.0%), 41,000 rows/s, about 46s left`. */
export function progressWords(p: Progress): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const of = p.total === null ? '' : ` of ${p.exact ? '' : '~'}${n(p.total)}`;
  const pct = p.percent === null ? '' : ` (${p.percent.toFixed(1)}%)`;
  const eta = p.etaSeconds === null ? '' : `, about ${durationWords(p.etaSeconds)} left`;
  return `${n(p.rows)}${of} rows${pct}, ${n(p.rowsPerSecond)} rows/s${eta}`;
}
