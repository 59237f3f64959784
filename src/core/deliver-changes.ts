import { isAppError } from './errors.js';
import { prepareRow, type StreamLimits } from './batching.js';
import { recordEncoder, type Operation } from './record.js';
import { RecordSender, type SendSummary } from './sender.js';
import { keyDescriber } from './outgoing.js';
import { needsShaping, shapeRows, type Candidate, type RowRules, type Shaped } from './row-rules.js';
import type { ChangeOp } from './changes.js';
import type { Destination, TableReader } from './ports.js';

export interface KeyChange {
  op: ChangeOp;
  pk: string[];
  ordering: string;
}

export interface DeliverChangesParams {
  reader: TableReader;
  destination: Destination;
  changes: readonly KeyChange[];
  /** Index of the first change not delivered by an earlier attempt. */
  resumeAt: number;
  source: string;
  table: string;
  target: string;
  limits: StreamLimits;
  envelopeBytes: number;
  /** The table's transform and filter ledger; absent: every row is sent as read. */
  rules?: RowRules | undefined;
  /** The generation of the relation rows are read from now. @defaultValue 0 */
  generation?: number | undefined;
  /**
   * The generation of the relation the changes were streamed from, when known. Older than `generation`: the table
   * was dropped and created again since, so the rows these inserts and updates name went with it (they are not read
   * from the new table, which is snapshotted), and the deletes are sent as the old generation's.
   */
  changesGeneration?: number | undefined;
  now?: () => Date;
  /** After each accepted request: the index of the next change to send. Durable when it resolves. */
  onDelivered: (resumeAt: number, rows: number, latencyMs: number) => Promise<void>;
}

/**
 * Sends change events as records. Inserts and updates are read from the table now, by key: the record then holds
 * the row as it is when sent, encoded exactly like every other record, under the change's `_ordering`. Because the
 * newest change of a key is always read after it committed, the newest record of every key holds the key's
 * current state. A changed row that no longer exists is skipped: its delete follows in the stream. Deletes carry the
 * key columns only.
 */
export async function deliverChanges(p: DeliverChangesParams): Promise<SendSummary> {
  const generation = p.changesGeneration ?? p.generation ?? 0;
  // Changes of a dropped table: only their deletes are history of it; nothing may be read for them from the new one.
  const stale = generation < (p.generation ?? 0);
  const pending = p.changes.slice(p.resumeAt).filter((c) => !stale || c.op === 'delete');
  const keyOf = (pk: readonly string[]): string => JSON.stringify(pk);
  const wanted = [...new Map(pending.filter((c) => c.op !== 'delete').map((c) => [keyOf(c.pk), c.pk])).values()];
  const live = new Map<string, { json: string; deleted: boolean; matched?: boolean | undefined }>();
  for (const row of await p.reader.readKeys(wanted)) live.set(keyOf(wanted[row.index]!), row);
  const deletes = pending.filter((c) => c.op === 'delete');
  const deletedJson = await p.reader.keyJson(deletes.map((c) => c.pk));
  const deleteJson = new Map(deletes.map((c, i) => [c, deletedJson[i]!]));

  const extractedAt = (p.now ?? (() => new Date()))().toISOString();
  const ctx = { source: p.source, table: p.table, extractedAt, generation };
  const encoders = new Map<Operation, ReturnType<typeof recordEncoder>>();
  const encoder = (op: Operation): ReturnType<typeof recordEncoder> => {
    let e = encoders.get(op);
    if (!e) encoders.set(op, (e = recordEncoder(op, ctx)));
    return e;
  };
  const describe = keyDescriber(p.reader.shape);
  // Positions are change indexes; "delivered after i" resumes at i + 1.
  const sender = new RecordSender<number>(
    {
      destination: p.destination,
      target: p.target,
      limits: p.limits,
      envelopeBytes: p.envelopeBytes,
      start: p.resumeAt > 0 ? p.resumeAt - 1 : null,
      onDelivered: (after, rows, latencyMs) => p.onDelivered(after === null ? 0 : after + 1, rows, latencyMs),
    },
    (i, record) => describe(p.changes[i]!.pk, record),
  );
  // One candidate per change still to send; a changed row that no longer exists has none (its delete follows).
  const indexes: number[] = [];
  const candidates: Candidate[] = [];
  for (let i = p.resumeAt; i < p.changes.length; i++) {
    const change = p.changes[i]!;
    if (stale && change.op !== 'delete') continue;
    if (change.op === 'delete') {
      candidates.push({ key: change.pk, ordering: change.ordering, json: deleteJson.get(change)!, op: 'delete', gone: true });
    } else {
      const row = live.get(keyOf(change.pk));
      if (!row) continue;
      candidates.push({
        key: change.pk,
        ordering: change.ordering,
        json: row.matched === false ? null : row.json,
        op: row.deleted ? 'delete' : change.op,
      });
    }
    indexes.push(i);
  }
  const shaped: Shaped[] = needsShaping(p.rules, p.reader)
    ? await shapeRows(candidates, p.rules, { reader: p.reader, ...ctx })
    : candidates.map((c) => ({ kind: 'send', json: c.json!, op: c.op }));
  for (let n = 0; n < candidates.length; n++) {
    const i = indexes[n]!;
    const item = shaped[n]!;
    if (item.kind === 'skip') continue;
    if (item.kind === 'fail') {
      sender.reject(item.error, i, item.json);
      continue;
    }
    try {
      const prepared = prepareRow(item.json, p.limits, p.reader.shape.mayNest);
      await sender.add(encoder(item.op)(prepared.json, p.changes[i]!.ordering), i);
    } catch (err) {
      if (!isAppError(err) || err.code !== 'ROW_TOO_LARGE') throw err;
      sender.reject(err, i, item.json);
    }
  }
  return sender.finish();
}
