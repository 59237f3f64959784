/**
 * `_ordering` and identity of Debezium change events, from the source position the connector reports.
 *
 * - **Postgres** (`source.lsn`, and the last commit's LSN from `source.sequence`): `~` + 16 hex digits + `:` + the
 *   change's LSN in 16 hex digits. The first part is the larger of the change's LSN and the previous commit's LSN,
 *   so it grows with commit order; the second orders the changes of one transaction. The first part has the form
 *   of pushsync's own CDC ordering (`~<commit LSN>:<position>`, src/core/lsn.ts), and for one key the two never tie
 *   (a later change of a row is written after the earlier one's commit; the earlier change and its previous commit
 *   are before it), so a table can move between pushsync's CDC and Debezium and keep its order. Snapshot rows carry
 *   `~` + the snapshot's LSN, exactly like pushsync's snapshot rows.
 *
 *   The snapshot floor: Debezium reports no previous commit for the first transaction it streams after its initial
 *   snapshot (`sequence` is `[null, lsn]`), and that transaction can have begun before the snapshot did, so its
 *   change LSNs are older than the snapshot's LSN S although it committed after S (the snapshot did not see it).
 *   By LSN alone it would lose to the stale snapshot row. The rule: a streamed change of a table sorts at or after
 *   the last (initial or blocking) snapshot of that table pushsync received, i.e. its first part is
 *   max(lsn, last commit, S). That is right because the connector streams, after a snapshot at S, only what the
 *   snapshot may not have seen: transactions committed after S (initial snapshot), or the changes since the
 *   position streaming paused at (blocking snapshot), whose last version of a key is at least as new as the
 *   snapshot's. S is kept per table in Redis and applied in the same atomic append (queue/ingest-buffer.ts), since
 *   events of one table can reach different ingest processes. Incremental snapshot rows (`snapshot: incremental`)
 *   neither set nor obey the floor: Debezium's watermarks already order them against the stream.
 * - **MySQL / MariaDB** (`source.file`, `source.pos`, `source.row`): `~` + the binlog file's index (10 digits) +
 *   `:` + the position (20 digits) + `:` + the row in the event (10 digits); snapshot rows stop after the position.
 * - **Any other connector**: `~ts:` + `ts_ms` in 15 digits. Millisecond resolution: two changes of one key within
 *   the same millisecond are ordered by arrival (`_extracted_at`), not by the database.
 */

const hex16 = (n: bigint): string => n.toString(16).padStart(16, '0');
const pad = (n: bigint | number | string, width: number): string => String(n).padStart(width, '0');

export interface PgPosition {
  lsn: bigint;
  /** The LSN of the last commit before this change, from `source.sequence`; null when not reported. */
  lastCommit: bigint | null;
}

export function pgOrdering(p: PgPosition, snapshot: boolean): string {
  if (snapshot) return `~${hex16(p.lsn)}`;
  const first = p.lastCommit !== null && p.lastCommit > p.lsn ? p.lastCommit : p.lsn;
  return `~${hex16(first)}:${hex16(p.lsn)}`;
}

/** What a Postgres change does to its table's snapshot floor (see above). */
export type SnapshotFloor = 'sets' | 'obeys';

/** The floor a snapshot row sets: the first part of its ordering (16 hex digits). */
export function floorOf(snapshotOrdering: string): string {
  return snapshotOrdering.slice(1, 17);
}

/**
 * A streamed change's ordering raised to its table's floor: the rule the append script applies (kept identical
 * to it; this is the statement of it for the tests and readers). Fixed-width hex compares as text.
 */
export function raiseToFloor(ordering: string, floor: string | null): string {
  if (floor === null || ordering.slice(1, 17) >= floor) return ordering;
  return `~${floor}${ordering.slice(17)}`;
}

export interface BinlogPosition {
  /** File name, e.g. `mysql-bin.000003`: the numeric suffix orders files. */
  file: string;
  pos: bigint;
  row: bigint;
}

/** The index of a binlog file name, or null when it has no numeric suffix. */
export function binlogIndex(file: string): bigint | null {
  const m = /\.(\d+)$/.exec(file);
  return m ? BigInt(m[1]!) : null;
}

export function binlogOrdering(p: BinlogPosition, index: bigint, snapshot: boolean): string {
  const head = `~${pad(index, 10)}:${pad(p.pos, 20)}`;
  return snapshot ? head : `${head}:${pad(p.row, 10)}`;
}

export function timeOrdering(tsMs: bigint): string {
  return `~ts:${pad(tsMs, 15)}`;
}
