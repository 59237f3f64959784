import { durationWords, progressWords, type Progress } from './progress.js';
import type { SchemaChangeAnnouncement } from './table-shape.js';

/** What `pushsync status` and `GET /status` say of one table. */
export interface TableStatus {
  source: string;
  table: string;
  target: string;
  mode: 'watermark' | 'cdc' | 'debezium';
  /**
   * `paused` (by an operator), `failing` (dead letters, or a CDC reader whose runs fail), `backfilling` (never read
   * to its end), `behind` (batches undelivered), `current`.
   */
  state: 'paused' | 'backfilling' | 'failing' | 'behind' | 'current';
  /** Where reading stands, in words. */
  position: string;
  lastRun: { at: string; rows: number; seconds: number; rowsPerSecond: number } | null;
  /** Age of the oldest undelivered range, or time since the last run that read to the end; null before either. */
  lagSeconds: number | null;
  pendingBatches: number;
  failedBatches: number;
  /** The last run that read the table to its end. */
  lastSuccessAt: string | null;
  backfill: (Progress & { startedAt: string; done: boolean }) | null;
  /** `schema`: paused by a schema change (`schemaChanges: freeze`) until `pushsync schema accept`. */
  paused: { since: string; reason?: string; schema?: boolean } | null;
  /** The latest schema changes detected, newest first. */
  schemaChanges: SchemaChangeAnnouncement[];
  /**
   * CDC tables: the source's change reader while its runs fail (none has worked since `failingSince`); null while
   * it works, and for other modes.
   */
  reader: { failingSince: string; failures: number; lastError: string; lastErrorAt: string } | null;
}

/** Schema changes `pushsync status` prints per table (the JSON form has every kept one). */
const SHOWN_SCHEMA_CHANGES = 5;

/** Left-aligned columns, each as wide as its widest cell. */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const ago = (iso: string | null, now: number): string => (iso === null ? '-' : `${durationWords((now - Date.parse(iso)) / 1000)} ago`);

/** The readable form of `pushsync status`: one row per table, then each backfill's progress and each position. */
export function statusText(tables: TableStatus[], deadLetters: number, now = Date.now()): string {
  const rows = tables.map((t) => [
    `${t.source}.${t.table}`,
    t.mode,
    t.state,
    t.lastRun ? t.lastRun.rows.toLocaleString('en-US') : '-',
    t.lastRun ? `${t.lastRun.rowsPerSecond.toLocaleString('en-US')}/s` : '-',
    t.lagSeconds === null ? '-' : durationWords(t.lagSeconds),
    String(t.pendingBatches),
    String(t.failedBatches),
    ago(t.lastSuccessAt, now),
  ]);
  const out = [textTable(['TABLE', 'MODE', 'STATE', 'LAST RUN ROWS', 'RATE', 'LAG', 'PENDING', 'FAILED', 'LAST SUCCESS'], rows), ''];
  for (const t of tables) {
    out.push(`${t.source}.${t.table} → ${t.target}: ${t.position}`);
    if (t.reader)
      out.push(
        `  change reader failing since ${ago(t.reader.failingSince, now)} (${t.reader.failures} run(s)), last ${ago(t.reader.lastErrorAt, now)}: ${t.reader.lastError}`,
      );
    if (t.backfill && !t.backfill.done) out.push(`  backfill: ${progressWords(t.backfill)}`);
    if (t.paused)
      out.push(
        t.paused.schema
          ? `  frozen by a schema change ${ago(t.paused.since, now)} (pushsync schema accept --table ${t.source}.${t.table})`
          : `  paused ${ago(t.paused.since, now)}${t.paused.reason ? `: ${t.paused.reason}` : ''} (pushsync resume --table ${t.source}.${t.table})`,
      );
    for (const c of t.schemaChanges.slice(0, SHOWN_SCHEMA_CHANGES)) {
      const level = c.verdict === 'narrowing' || c.verdict === 'incompatible' ? 'WARNING ' : '';
      out.push(`  schema change ${ago(c.detected_at, now)}: ${level}${c.note}`);
    }
  }
  out.push('', `dead-letter queue: ${deadLetters} failed push job(s)${deadLetters > 0 ? ' (pushsync dlq list)' : ''}`);
  return `${out.join('\n')}\n`;
}
