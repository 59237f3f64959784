import type { StreamLimits } from './batching.js';
import { RecordSender, type SendSummary } from './sender.js';
import { recordWriter, type Operation } from './record.js';
import { PositionBytes } from './position-log.js';
import { sortableWatermark } from './ordering.js';
import { keyDescriber } from './outgoing.js';
import { needsShaping, shapeRows, type RowRules, type Shaped } from './row-rules.js';
import type { KeyRange, Position } from './cursor.js';
import type { Destination, SourceRow, TableReader } from './ports.js';

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
  /** The rows sort after changes already streamed (an incremental snapshot): see `ReadOptions`. */
  awaitWriters?: boolean | undefined;
  /** The generation of the relation the rows are read from (`_generation`). @defaultValue 0 */
  generation?: number | undefined;
  /** The table's transform and filter ledger; absent: every row is sent as read. */
  rules?: RowRules | undefined;
  now?: () => Date;
  /**
   * Called after each accepted request with the last delivered position, before the next request is sent, so a
   * retry resumes after it. Must be durable when it resolves.
   */
  onDelivered: (after: Position | null, rows: number, latencyMs: number) => Promise<void>;
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
export async function deliverRange(p: DeliverParams): Promise<SendSummary> {
  const now = p.now ?? (() => new Date());
  const describe = keyDescriber(p.reader.shape);
  const sender = new RecordSender<Position>(
    {
      destination: p.destination,
      target: p.target,
      limits: p.limits,
      envelopeBytes: p.envelopeBytes,
      start: p.resumeAfter,
      onDelivered: p.onDelivered,
    },
    (position, record) => describe(position.pk, record),
    () => new PositionBytes(),
  );
  const shaping = needsShaping(p.rules, p.reader);
  const liveOp = p.op ?? 'upsert';
  if (!shaping && p.reader.readRangeEach) return streamRange(p, sender, liveOp, now);
  let after = p.resumeAfter;
  for (;;) {
    const chunk = await p.reader.readRange(p.range, after, p.readRows, p.awaitWriters ? { awaitWriters: true } : undefined);
    if (chunk.length === 0) break;
    const ctx = { source: p.source, table: p.table, extractedAt: now().toISOString(), generation: p.generation };
    const writeLive = recordWriter(liveOp, ctx);
    const writeDeleted = recordWriter('delete', ctx);
    const ordering = (row: SourceRow): string | null => p.ordering ?? sortableWatermark(row.position.wm, p.reader.shape.watermarkKind);
    // Tables without a filter or transform keep the plain path: no per-row parse, no ledger.
    const shaped: Shaped[] | null = shaping
      ? await shapeRows(
          chunk.map((row) => ({
            key: row.position.pk,
            ordering: ordering(row),
            json: row.matched === false ? null : row.json,
            op: row.deleted ? 'delete' : liveOp,
          })),
          p.rules,
          { reader: p.reader, ...ctx },
        )
      : null;
    const mayNest = p.reader.shape.mayNest;
    for (let i = 0; i < chunk.length; i++) {
      const row = chunk[i]!;
      const item = shaped?.[i];
      if (item?.kind === 'skip') continue;
      if (item?.kind === 'fail') {
        sender.reject(item.error, row.position, item.json);
        continue;
      }
      // Without shaping, the row as read (no object per row on this path).
      const json = item ? item.json : row.json;
      const op = item ? item.op : row.deleted ? 'delete' : liveOp;
      const prepared = sender.prepared(json, mayNest, row.position);
      if (prepared === null) continue;
      const write = op === 'delete' ? writeDeleted : op === liveOp ? writeLive : recordWriter(op, ctx);
      await sender.write(write, prepared, ordering(row), row.position);
    }
    after = chunk[chunk.length - 1]!.position;
    if (chunk.length < p.readRows) break;
  }
  return sender.finish();
}

/**
 * The plain path (no filter, no transform) with a reader that hands rows over as they arrive: each row is encoded
 * into the open request the moment it is read and is garbage right after, instead of living, with the rest of its
 * read, through the collections of the young generation. Requests a read fills are sent once it has ended.
 */
async function streamRange(p: DeliverParams, sender: RecordSender<Position>, liveOp: Operation, now: () => Date): Promise<SendSummary> {
  const readRangeEach = p.reader.readRangeEach!.bind(p.reader);
  const readRangeBytes = p.reader.readRangeBytes?.bind(p.reader);
  const mayNest = p.reader.shape.mayNest;
  const watermarkKind = p.reader.shape.watermarkKind;
  let after = p.resumeAfter;
  for (;;) {
    const ctx = { source: p.source, table: p.table, extractedAt: now().toISOString(), generation: p.generation };
    const writeLive = recordWriter(liveOp, ctx);
    const writeDeleted = recordWriter('delete', ctx);
    let last: Position | null = null;
    const count = readRangeBytes
      ? await readRangeBytes(p.range, after, p.readRows, (row) => {
          last = row.position;
          const ordering = p.ordering ?? sortableWatermark(row.position.wm, watermarkKind);
          sender.writeBytesNow(row.deleted ? writeDeleted : writeLive, row, mayNest, ordering, row.position);
        })
      : await readRangeEach(p.range, after, p.readRows, (row) => {
          last = row.position;
          const json = sender.prepared(row.json, mayNest, row.position);
          if (json === null) return;
          const ordering = p.ordering ?? sortableWatermark(row.position.wm, watermarkKind);
          sender.writeNow(row.deleted ? writeDeleted : writeLive, json, ordering, row.position);
        });
    await sender.sendClosed();
    if (count === 0 || last === null) break;
    after = last;
    if (count < p.readRows) break;
  }
  return sender.finish();
}
