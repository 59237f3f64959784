import type { StreamLimits } from './batching.js';
import { recordWriter, type Operation, type RecordWriter } from './record.js';
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
  // One read per distinct key still to send; each change remembers which. A key of one column is its own text (a
  // table's keys all have the same columns, so the two forms never meet).
  const keyOf = (pk: readonly string[]): string => (pk.length === 1 ? pk[0]! : JSON.stringify(pk));
  const readOf = new Int32Array(Math.max(0, p.changes.length - p.resumeAt));
  const wanted: string[][] = [];
  const wantedAt = new Map<string, number>();
  const deletes: string[][] = [];
  for (let i = p.resumeAt; i < p.changes.length; i++) {
    const change = p.changes[i]!;
    if (change.op === 'delete') {
      deletes.push(change.pk);
      continue;
    }
    if (stale) continue;
    const key = keyOf(change.pk);
    let at = wantedAt.get(key);
    if (at === undefined) {
      at = wanted.length;
      wantedAt.set(key, at);
      wanted.push(change.pk);
    }
    readOf[i - p.resumeAt] = at;
  }
  const live: Array<{ json: string; deleted: boolean; matched?: boolean | undefined } | undefined> = new Array(wanted.length);
  for (const row of await p.reader.readKeys(wanted, { awaitWriters: true })) live[row.index] = row;
  const deletedJson = await p.reader.keyJson(deletes);

  const extractedAt = (p.now ?? (() => new Date()))().toISOString();
  const ctx = { source: p.source, table: p.table, extractedAt, generation };
  const writers = new Map<Operation, RecordWriter>();
  const writer = (op: Operation): RecordWriter => {
    let w = writers.get(op);
    if (!w) writers.set(op, (w = recordWriter(op, ctx)));
    return w;
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
  let nextDelete = 0;
  for (let i = p.resumeAt; i < p.changes.length; i++) {
    const change = p.changes[i]!;
    if (change.op === 'delete') {
      candidates.push({ key: change.pk, ordering: change.ordering, json: deletedJson[nextDelete++]!, op: 'delete', gone: true });
    } else {
      if (stale) continue;
      const row = live[readOf[i - p.resumeAt]!];
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
    const json = sender.prepared(item.json, p.reader.shape.mayNest, i);
    if (json === null) continue;
    await sender.write(writer(item.op), json, p.changes[i]!.ordering, i);
  }
  return sender.finish();
}
