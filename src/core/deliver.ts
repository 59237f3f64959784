import { AppError, isAppError } from './errors.js';
import { BatchPacker, prepareRow, type StreamLimits } from './batching.js';
import { recordEncoder, type Operation } from './record.js';
import { sortableWatermark } from './ordering.js';
import type { KeyRange, Position } from './cursor.js';
import type { Destination, TableReader } from './ports.js';

export interface DeliverParams {
  reader: TableReader;
  destination: Destination;
  range: KeyRange;
  /** Resume point inside the range from an earlier attempt (exclusive); null = the range start. */
  resumeAfter: Position | null;
  source: string;
  table: string;
  target: string;
  limits: StreamLimits;
  envelopeBytes: number;
  /** Rows read per query. */
  readRows: number;
  /** Operation of rows not soft-deleted. @defaultValue 'upsert' */
  op?: Operation | undefined;
  /** One `_ordering` for every row instead of the watermark's (a CDC table's snapshot). */
  ordering?: string | undefined;
  now?: () => Date;
  /**
   * Called after each accepted request with the last delivered position, before the next request is sent, so a
   * retry resumes after it. Must be durable when it resolves.
   */
  onDelivered: (after: Position | null, rows: number, latencyMs: number) => Promise<void>;
}

export interface DeliverResult {
  rows: number;
  requests: number;
}

interface Pending {
  records: string[];
  /** Position of each record, parallel to `records`. */
  positions: Position[];
}

interface Failure {
  /** Position just before the failed batch: where a retry must resume to re-send it. */
  resumeAfter: Position | null;
  error: AppError;
  keys?: string[][];
}

/**
 * Delivers one key range: reads it from the source (at push time, so customer rows never sit in Redis),
 * encodes records, packs them within the Stream API limits and sends them in order.
 *
 * Rows that cannot be sent (a field over 1 MB, a request the server calls too large even alone, a batch with
 * rejected rows) do not block the rest of the range: everything else is delivered first, then the job fails with
 * all reasons and its resume point is moved back before the first failure, so retrying it from the dead-letter
 * queue re-sends what failed.
 */
export async function deliverRange(p: DeliverParams): Promise<DeliverResult> {
  const now = p.now ?? (() => new Date());
  let after = p.resumeAfter;
  let delivered = p.resumeAfter;
  let rows = 0;
  let requests = 0;
  const failures: Failure[] = [];
  const packer = new BatchPacker(p.limits, p.envelopeBytes);
  let pendingPositions: Position[] = [];

  const sendBatch = async (batch: Pending): Promise<void> => {
    const startAfter = delivered;
    try {
      const result = await p.destination.send(p.target, batch.records);
      rows += result.rows;
      requests += 1;
      delivered = batch.positions[batch.positions.length - 1]!;
      if (failures.length === 0) await p.onDelivered(delivered, result.rows, result.latencyMs);
    } catch (err) {
      if (!isAppError(err)) throw err;
      if (err.code === 'DEST_TOO_LARGE' && batch.records.length > 1) {
        const half = Math.ceil(batch.records.length / 2);
        await sendBatch({ records: batch.records.slice(0, half), positions: batch.positions.slice(0, half) });
        await sendBatch({ records: batch.records.slice(half), positions: batch.positions.slice(half) });
        return;
      }
      if (err.code === 'DEST_TOO_LARGE' || err.code === 'DEST_ROWS_REJECTED') {
        failures.push({ resumeAfter: startAfter, error: err, keys: batch.positions.slice(0, 20).map((x) => x.pk) });
        delivered = batch.positions[batch.positions.length - 1]!;
        return;
      }
      throw err;
    }
  };

  for (;;) {
    const chunk = await p.reader.readRange(p.range, after, p.readRows);
    if (chunk.length === 0) break;
    const extractedAt = now().toISOString();
    const ctx = { source: p.source, table: p.table, extractedAt };
    const encodeLive = recordEncoder(p.op ?? 'upsert', ctx);
    const encodeDeleted = recordEncoder('delete', ctx);
    for (const row of chunk) {
      let record: string;
      try {
        const prepared = prepareRow(row.json, p.limits, p.reader.shape.mayNest);
        const encode = row.deleted ? encodeDeleted : encodeLive;
        record = encode(prepared.json, p.ordering ?? sortableWatermark(row.position.wm, p.reader.shape.watermarkKind));
      } catch (err) {
        if (!isAppError(err) || err.code !== 'ROW_TOO_LARGE') throw err;
        failures.push({ resumeAfter: delivered, error: err, keys: [row.position.pk] });
        continue;
      }
      const size = BatchPacker.sizeOf(record);
      if (!packer.fits(size)) {
        failures.push({
          resumeAfter: delivered,
          error: new AppError('ROW_TOO_LARGE', `row of ${size} bytes cannot fit in one request`),
          keys: [row.position.pk],
        });
        continue;
      }
      const closed = packer.add(record, size);
      if (closed) {
        const positions = pendingPositions.slice(0, closed.length);
        pendingPositions = pendingPositions.slice(closed.length);
        await sendBatch({ records: closed, positions });
      }
      pendingPositions.push(row.position);
    }
    after = chunk[chunk.length - 1]!.position;
    if (chunk.length < p.readRows) break;
  }
  if (packer.size > 0) await sendBatch({ records: packer.flush(), positions: pendingPositions });

  if (failures.length > 0) {
    const first = failures[0]!;
    await p.onDelivered(first.resumeAfter, 0, 0);
    const codes = [...new Set(failures.map((f) => f.error.code))];
    throw new AppError(
      codes.length === 1 ? codes[0]! : 'DEST_REJECTED',
      `${failures.length} part(s) of this range were not delivered (${rows} rows were): ${failures
        .slice(0, 5)
        .map((f) => `${f.error.message}${f.keys ? ` [keys ${JSON.stringify(f.keys.slice(0, 3))}]` : ''}`)
        .join('; ')}`,
      { details: { delivered: rows, failures: failures.slice(0, 20).map((f) => ({ code: f.error.code, message: f.error.message, keys: f.keys, server: f.error.details })) } },
    );
  }
  return { rows, requests };
}
