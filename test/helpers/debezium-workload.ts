import { prng } from './prng.js';
import { UNAVAILABLE, keyEvent, pgEvent, type Column } from './debezium-events.js';

/**
 * A seeded workload of one table as the Debezium Postgres connector reports it: a snapshot, then inserts, updates
 * whose unchanged TOASTed columns arrive as the unavailable placeholder, real NULLs, deletes and re-inserts. It keeps
 * the table's state after every step, so a test can compare the silver view with the final state or any earlier one.
 */
export const WORKLOAD_COLUMNS: Column[] = [
  { name: 'id', type: 'int64', optional: false },
  { name: 'body', type: 'string' },
  { name: 'note', type: 'string' },
  { name: 'n', type: 'int64' },
];

export interface WorkloadRow {
  id: string;
  body: string | null;
  note: string | null;
  n: string | null;
}

export interface WorkloadStep {
  /** The event value, as the connector's JSON converter writes it. */
  event: string;
  /** The event key. */
  key: string;
  /** The `_ordering` pushsync gives it. */
  ordering: string;
}

export interface Workload {
  steps: WorkloadStep[];
  /** The table after each step. */
  states: Array<Map<string, WorkloadRow>>;
}

type Cell = string | null | typeof UNAVAILABLE;
const hex16 = (n: number): string => n.toString(16).padStart(16, '0');
const cell = (v: Cell): string => JSON.stringify(v);

export function debeziumWorkload(o: { seed: number; table: string; keys: number; changes: number; firstLsn?: number }): Workload {
  const random = prng(o.seed);
  const state = new Map<string, WorkloadRow>();
  const steps: WorkloadStep[] = [];
  const states: Workload['states'] = [];
  const emit = (id: string, event: string, ordering: string): void => {
    steps.push({ event, key: keyEvent([WORKLOAD_COLUMNS[0]!], { id }), ordering });
    states.push(new Map([...state].map(([k, v]) => [k, { ...v }])));
  };
  const row = (r: WorkloadRow, over: Partial<Record<keyof WorkloadRow, Cell>> = {}): Record<string, string> => ({
    id: r.id,
    body: cell(over.body ?? r.body),
    note: cell(over.note ?? r.note),
    n: r.n ?? 'null',
  });
  const base = o.firstLsn ?? 1000;
  for (let id = 1; id <= o.keys; id++) {
    const r: WorkloadRow = {
      id: String(id),
      body: `body ${id} v0 ${'x'.repeat(200)}`,
      note: `note ${id}`,
      n: String(9007199254740993n + BigInt(id)),
    };
    state.set(r.id, r);
    emit(
      r.id,
      pgEvent({ op: 'r', table: o.table, columns: WORKLOAD_COLUMNS, lsn: base, after: row(r), snapshot: id === o.keys ? 'last' : 'true' }),
      `~${hex16(base)}`,
    );
  }
  let lsn = base + 1000;
  for (let i = 0; i < o.changes; i++) {
    lsn += 10;
    const id = String(1 + Math.floor(random() * o.keys));
    const before = state.get(id);
    const ordering = `~${hex16(lsn)}:${hex16(lsn)}`;
    const at = { table: o.table, columns: WORKLOAD_COLUMNS, lsn, lastCommitLsn: lsn - 5 };
    const dice = random();
    if (!before) {
      const r: WorkloadRow = { id, body: `body ${id} re ${i}`, note: dice < 0.5 ? null : `note ${id} re ${i}`, n: String(i) };
      state.set(id, r);
      emit(id, pgEvent({ ...at, op: 'c', after: row(r) }), ordering);
    } else if (dice < 0.35) {
      // Only the note changed: the TOASTed body arrives as the placeholder.
      const r = { ...before, note: `note ${id} u${i}` };
      state.set(id, r);
      emit(id, pgEvent({ ...at, op: 'u', after: row(r, { body: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.45) {
      // A real NULL next to an unavailable value.
      const r = { ...before, note: null };
      state.set(id, r);
      emit(id, pgEvent({ ...at, op: 'u', after: row(r, { body: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.6) {
      const r = { ...before, body: `body ${id} u${i} ${'y'.repeat(100)}` };
      state.set(id, r);
      emit(id, pgEvent({ ...at, op: 'u', after: row(r, { note: UNAVAILABLE }) }), ordering);
    } else if (dice < 0.8) {
      const r = { ...before, body: `body ${id} full ${i}`, note: `note ${id} full ${i}`, n: String(-i) };
      state.set(id, r);
      emit(id, pgEvent({ ...at, op: 'u', after: row(r) }), ordering);
    } else {
      state.delete(id);
      emit(id, pgEvent({ ...at, op: 'd', before: { id, body: 'null', note: 'null', n: 'null' }, after: null }), ordering);
    }
  }
  return { steps, states };
}

export function sortedRows(state: Map<string, WorkloadRow>): WorkloadRow[] {
  return [...state.values()].sort((a, b) => Number(a.id) - Number(b.id));
}
