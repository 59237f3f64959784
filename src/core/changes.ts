import { AppError } from './errors.js';
import { changeOrderingAt, transactionOrdering } from './lsn.js';

/**
 * Turns a logical replication stream (pgoutput's begin / change / commit messages) into key-level change events.
 * Only keys travel: the row is read from the table when the change is sent, so the record's values are exact
 * (same encoding as every other record) and unchanged TOASTed values can never be mistaken for data.
 */
export type ChangeOp = 'insert' | 'update' | 'delete';

export interface ChangeEvent {
  /** `schema.relname` as the catalog spells them. */
  relation: string;
  op: ChangeOp;
  /** Primary-key values as text, in primary-key order. */
  pk: string[];
  ordering: string;
  /** The table generation of the relation it was streamed from, when the reader knows it (queue/generations.ts). */
  generation?: number | undefined;
}

/** A tuple as the stream delivers it: column name → text value, null, or undefined (unchanged TOAST). */
export type Tuple = Record<string, string | null | undefined>;

export interface RelationKeys {
  primaryKey: string[];
  /**
   * The relation's identity (a Postgres oid) as pushsync resolved the name. A change that names the relation but
   * carries another identity belongs to a table of the same name that was dropped: it is never applied to this one.
   */
  id?: string | undefined;
  /** The table generation of the relation `id` names; set together with `id`. */
  generation?: number | undefined;
}

export class ChangeCollector {
  /** The `_ordering` prefix of the current transaction (its commit LSN); null outside a transaction. */
  private transaction: string | null = null;
  private position = 0;
  private events: ChangeEvent[] = [];
  private foreign = 0;

  /** @param relations the watched relations by `schema.relname`; changes of others are ignored. */
  constructor(private readonly relations: ReadonlyMap<string, RelationKeys>) {}

  get inTransaction(): boolean {
    return this.transaction !== null;
  }

  begin(commitLsn: string): void {
    this.transaction = transactionOrdering(commitLsn);
    this.position = 0;
    this.events = [];
    this.foreign = 0;
  }

  /** The watched relation a change belongs to, or undefined (not watched, or of a dropped table of that name). */
  private watched(relation: string, id: string | undefined): RelationKeys | undefined {
    const keys = this.relations.get(relation);
    if (keys?.id !== undefined && id !== undefined && keys.id !== id) {
      this.foreign += 1;
      return undefined;
    }
    return keys;
  }

  /** The `_ordering` the next change of the current transaction gets; null outside a transaction. */
  nextOrdering(): string | null {
    return this.transaction === null ? null : changeOrderingAt(this.transaction, this.position + 1);
  }

  /** Changes of the current transaction that were ignored because they belong to a dropped table of a watched name. */
  get ignored(): number {
    return this.foreign;
  }

  private key(relation: string, tuple: Tuple | null | undefined, keys: RelationKeys, what: string): string[] | null {
    if (!tuple) return null;
    const values = keys.primaryKey.map((c) => tuple[c]);
    if (values.some((v) => v === undefined || v === null)) {
      throw new AppError(
        'SOURCE_SCHEMA',
        `${what} of ${relation} arrived without its primary key (${keys.primaryKey.join(', ')}); ` +
          `the table needs REPLICA IDENTITY DEFAULT with a primary key, or REPLICA IDENTITY FULL`,
      );
    }
    return values as string[];
  }

  private push(relation: string, op: ChangeOp, pk: string[], keys: RelationKeys): void {
    if (this.transaction === null) throw new AppError('INTERNAL', 'change outside a transaction in the replication stream');
    this.position += 1;
    const event: ChangeEvent = { relation, op, pk, ordering: changeOrderingAt(this.transaction, this.position) };
    // Taken when the change arrives: a re-creation noticed later must not make it the new relation's change.
    if (keys.generation !== undefined) event.generation = keys.generation;
    this.events.push(event);
  }

  insert(relation: string, row: Tuple, id?: string): void {
    const keys = this.watched(relation, id);
    if (!keys) return;
    this.push(relation, 'insert', this.key(relation, row, keys, 'an insert')!, keys);
  }

  /** `oldKey` is the old key (or the whole old row with REPLICA IDENTITY FULL), sent when the key changed. */
  update(relation: string, row: Tuple, oldKey: Tuple | null, id?: string): void {
    const keys = this.watched(relation, id);
    if (!keys) return;
    const pk = this.key(relation, row, keys, 'an update')!;
    const old = this.key(relation, oldKey, keys, 'an update');
    if (old && old.some((v, i) => v !== pk[i])) {
      // A primary-key change is the old key's end and the new key's start.
      this.push(relation, 'delete', old, keys);
      this.push(relation, 'insert', pk, keys);
      return;
    }
    this.push(relation, 'update', pk, keys);
  }

  delete(relation: string, oldKey: Tuple | null, id?: string): void {
    const keys = this.watched(relation, id);
    if (!keys) return;
    // A delete is nothing but its key: with none at all the key check reports it, like a key with missing columns.
    this.push(relation, 'delete', this.key(relation, oldKey ?? {}, keys, 'a delete')!, keys);
  }

  /** Events of the current transaction not yet handed over. */
  get pending(): number {
    return this.events.length;
  }

  /** Hands over the current transaction's events so far, in commit order; later ones keep counting from there. */
  take(): ChangeEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  /** Ends the transaction and hands over its events (those `take` did not), in commit order. */
  commit(): ChangeEvent[] {
    const out = this.events;
    this.transaction = null;
    this.events = [];
    return out;
  }
}
