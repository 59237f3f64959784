/** The fields every record carries that decide which version of a key is newest. */
export interface Versioned<K> {
  id: K;
  _op: string;
  _ordering: string;
  _extracted_at: string;
  /** The table generation; records without one are generation 0. */
  _generation?: number;
}

/**
 * The newest record per key, by `_ordering` and then `_extracted_at`; `laterWinsTies`: a record equal on both to the
 * one held replaces it.
 */
export function newestPerKey<R extends Versioned<unknown>>(records: readonly R[], laterWinsTies = true): Map<R['id'], R> {
  const newest = new Map<R['id'], R>();
  for (const r of records) {
    const prev = newest.get(r.id);
    const tie = r._ordering === prev?._ordering && (laterWinsTies ? r._extracted_at >= prev._extracted_at : r._extracted_at > prev._extracted_at);
    if (!prev || r._ordering > prev._ordering || tie) newest.set(r.id, r);
  }
  return newest;
}

/**
 * The current state downstream, as the silver view computes it: only records of the newest table generation count
 * (a `table_recreated` marker starts one), the newest record per key, and no key whose newest record is a delete.
 */
export function currentState<R extends Versioned<unknown>>(records: readonly R[]): Map<R['id'], R> {
  // A loop, not Math.max(...): a spread of a few hundred thousand records overflows the stack.
  let generation = 0;
  for (const r of records) generation = Math.max(generation, r._generation ?? 0);
  const current = records.filter((r) => (r._generation ?? 0) === generation && r._op !== 'table_recreated');
  const newest = newestPerKey(current, false);
  for (const [id, r] of newest) if (r._op === 'delete') newest.delete(id);
  return newest;
}
