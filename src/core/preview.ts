import { isAppError } from './errors.js';
import { START_CURSOR, SNAPSHOT_START_CURSOR, cursorAfterRange, nextPhase, type Cursor } from './cursor.js';
import { deliverRange } from './deliver.js';
import type { StreamLimits } from './batching.js';
import type { Destination, TableReader } from './ports.js';
import type { RowRules } from './row-rules.js';

export interface PreviewParams {
  reader: TableReader;
  source: string;
  table: string;
  /** Rows to read, in keyset order from the table's start. */
  limit: number;
  limits: StreamLimits;
  safetyLagMs: number;
  /** The table's transform, and a ledger that has seen nothing (what a first sync decides). */
  rules?: RowRules | undefined;
  /** A CDC table previews its snapshot: this operation and `_ordering`. */
  snapshot?: { ordering: string } | undefined;
  now?: () => Date;
}

export interface Preview {
  /** The records exactly as they would be sent, in order. */
  records: string[];
  /** Why rows among them would not be sent (`[CODE] message`, keys as failures show them). */
  failures: string[];
}

/**
 * The records a first sync would send for the first `limit` rows of a table: the same reads, the same read
 * boundary, every rule and the same encoding as the push worker (`deliverRange` into a destination that keeps what
 * it is given). Nothing is written anywhere.
 */
export async function previewRecords(p: PreviewParams): Promise<Preview> {
  const records: string[] = [];
  const failures: string[] = [];
  const destination: Destination = {
    send: (_target, batch) => {
      records.push(...batch);
      return Promise.resolve({ rows: batch.length, latencyMs: 0 });
    },
    close: () => Promise.resolve(),
  };
  let cursor: Cursor = p.snapshot ? SNAPSHOT_START_CURSOR : START_CURSOR;
  const boundary = p.snapshot ? null : await p.reader.readBoundary(p.safetyLagMs);
  let left = p.limit;
  while (left > 0) {
    const next = await p.reader.nextRange(cursor, left, boundary);
    if (!next) {
      const following = nextPhase(cursor);
      if (!following) break;
      cursor = following;
      continue;
    }
    try {
      await deliverRange({
        reader: p.reader,
        destination,
        range: next.range,
        resumeAfter: null,
        source: p.source,
        table: p.table,
        target: 'preview',
        limits: p.limits,
        envelopeBytes: 0,
        readRows: Math.min(p.limits.maxRows, 5000),
        op: p.snapshot ? 'snapshot' : undefined,
        ordering: p.snapshot?.ordering,
        rules: p.rules,
        now: p.now,
        onDelivered: () => Promise.resolve(),
      });
    } catch (err) {
      if (!isAppError(err)) throw err;
      failures.push(err.toString());
    }
    left -= next.rows;
    cursor = cursorAfterRange(next.range);
  }
  return { records, failures };
}
