import { AppError } from './errors.js';
import type { StreamLimits } from './batching.js';
import { recordWriter, type Operation, type RecordWriter } from './record.js';
import { RecordSender, type SendSummary } from './sender.js';
import type { Destination } from './ports.js';

/**
 * One buffered change event: a record row that arrived inside the event (Debezium), or why the event could not
 * become one. Ids are the buffer's own, increasing in arrival order.
 */
export type BufferedEntry =
  { id: string; op: Operation; ordering: string; identity: string; row: string; key: string } | { id: string; error: string };

export interface BufferReader {
  /** Entries of the job's range strictly after `after` (null: from the range start), at most `limit`, in order. */
  read(after: string | null, limit: number): Promise<BufferedEntry[]>;
}

export interface DeliverBufferedParams {
  buffer: BufferReader;
  destination: Destination;
  /** Last entry delivered by an earlier attempt (exclusive), or null. */
  resumeAfter: string | null;
  source: string;
  table: string;
  target: string;
  limits: StreamLimits;
  envelopeBytes: number;
  readRows: number;
  now?: () => Date;
  /** After each accepted request: the last delivered entry. Durable when it resolves. */
  onDelivered: (after: string | null, rows: number, latencyMs: number) => Promise<void>;
}

/**
 * Sends buffered events as records, through the same sender as every other record: batching within the limits,
 * oversized rows and rejected batches reported without blocking the rest. An entry that holds an error instead of
 * a row (an event pushsync could not read) fails the job after everything else was delivered, so it waits in the
 * dead-letter queue with its reason.
 */
export async function deliverBuffered(p: DeliverBufferedParams): Promise<SendSummary> {
  const keys = new Map<string, unknown>();
  const sender = new RecordSender<string>(
    {
      destination: p.destination,
      target: p.target,
      limits: p.limits,
      envelopeBytes: p.envelopeBytes,
      start: p.resumeAfter,
      onDelivered: p.onDelivered,
    },
    (id) => keys.get(id) ?? id,
  );
  const ctx = { source: p.source, table: p.table, extractedAt: (p.now ?? (() => new Date()))().toISOString() };
  const writers = new Map<Operation, RecordWriter>();
  const writer = (op: Operation): RecordWriter => {
    let w = writers.get(op);
    if (!w) writers.set(op, (w = recordWriter(op, ctx)));
    return w;
  };
  let after = p.resumeAfter;
  for (;;) {
    const chunk = await p.buffer.read(after, p.readRows);
    for (const entry of chunk) {
      if ('error' in entry) {
        keys.set(entry.id, `event ${entry.id}`);
        sender.reject(new AppError('EVENT_INVALID', entry.error), entry.id);
        continue;
      }
      keys.set(entry.id, JSON.parse(entry.key) as unknown);
      // Rows from events may nest (json columns, structs): the depth check always runs.
      const json = sender.prepared(entry.row, true, entry.id);
      if (json === null) continue;
      await sender.write(writer(entry.op), json, entry.ordering, entry.id, entry.identity);
    }
    if (chunk.length < p.readRows) break;
    after = chunk[chunk.length - 1]!.id;
  }
  return sender.finish();
}
