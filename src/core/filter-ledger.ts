/**
 * Rows outside a table's filter (`where`, or a transform that drops them) never leave, but a row that matched and
 * stops matching must reach the destination as a key-only delete, or its last matching version stays in the
 * current-state view. Only pushsync can know whether a key was ever sent, so it keeps a ledger per filtered table:
 * for each key (a hash of it), the newest `_ordering` it decided about and what it decided. Keys that never matched
 * then never leave, not even as deletes.
 *
 * Decisions are made per key in `_ordering` order, atomically with the ledger's update, so two push jobs holding
 * versions of one key (a range read before an update, a range read after it) cannot both miss the delete: whichever
 * decides second sees what the first recorded. A version older than the newest decided one is never sent (it would
 * overwrite the newer decision). Retrying a job repeats its decisions: a version decided `send` or `delete` is sent
 * again under the same ordering.
 */

/** `match`: the row was read and matches; `miss`: read and outside the filter; `gone`: the row no longer exists. */
export type ObservationEvent = 'match' | 'miss' | 'gone';

export interface Observation {
  /** Primary-key values as push jobs hold them. */
  key: readonly string[];
  /** The version's `_ordering`; '' for rows without one (they sort first). */
  ordering: string;
  event: ObservationEvent;
}

export type FilterAction = 'send' | 'skip' | 'delete';

/** `delete`: a row that stops matching becomes a key-only delete; `skip`: it sends nothing. */
export type OnFilteredOut = 'delete' | 'skip';

/** The port: decides a batch of observations of one table, in order, and remembers them. */
export interface FilterLedger {
  observe(observations: readonly Observation[]): Promise<FilterAction[]>;
}

/**
 * A ledger entry: `m` + ordering: a matching version was sent; `d` + ordering: a delete was sent (the key had been
 * sent before); `s` + ordering: the key was seen outside the filter with nothing of it sent since.
 */
export type LedgerEntry = string;

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The decision for one observation given the key's entry (null: never seen), and the entry to store (null: keep).
 * `queue/filter-ledger.ts` runs the same rules in Redis; the two are tested against one table of cases.
 */
export function decide(entry: LedgerEntry | null, o: Observation, mode: OnFilteredOut): { action: FilterAction; next: LedgerEntry | null } {
  const kind = entry?.[0] ?? null;
  const c = entry === null ? 1 : compare(o.ordering, entry.slice(1));
  if (o.event === 'match') return c >= 0 ? { action: 'send', next: `m${o.ordering}` } : { action: 'skip', next: null };
  if (o.event === 'miss' && mode === 'skip') return { action: 'skip', next: null };
  if (entry === null) return { action: 'skip', next: `s${o.ordering}` };
  if (c < 0) return { action: 'skip', next: null };
  if (kind === 's') return { action: 'skip', next: c > 0 ? `s${o.ordering}` : null };
  return { action: 'delete', next: `d${o.ordering}` };
}

/** A ledger in memory: `pushsync preview` (a first sync's decisions) and tests. */
export class MemoryLedger implements FilterLedger {
  readonly entries = new Map<string, LedgerEntry>();

  constructor(private readonly mode: OnFilteredOut) {}

  observe(observations: readonly Observation[]): Promise<FilterAction[]> {
    return Promise.resolve(
      observations.map((o) => {
        const token = JSON.stringify(o.key);
        const { action, next } = decide(this.entries.get(token) ?? null, o, this.mode);
        if (next !== null) this.entries.set(token, next);
        return action;
      }),
    );
  }
}
