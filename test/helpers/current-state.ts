/** The fields every record carries that decide which version of a key is newest. */
export interface Versioned<K> {
  id: K;
  _op: string;
  _ordering: string;
  _extracted_at: string;
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

/** The current state downstream: the newest record per key, and no key whose newest record is a delete. */
export function currentState<R extends Versioned<unknown>>(records: readonly R[]): Map<R['id'], R> {
  const newest = newestPerKey(records, false);
  for (const [id, r] of newest) if (r._op === 'delete') newest.delete(id);
  return newest;
}
