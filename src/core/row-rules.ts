import { isAppError, type AppError } from './errors.js';
import type { FilterLedger, Observation } from './filter-ledger.js';
import type { TableReader } from './ports.js';
import type { Operation } from './record.js';
import { applyTransform, type Transform } from './transform.js';

/** The per-row rules of a table that need more than SQL: its transform and the ledger of its filter. */
export interface RowRules {
  transform?: Transform | undefined;
  /**
   * Decides rows outside the filter and deletes of a filtered table (see filter-ledger.ts). Without one, rows
   * outside the filter are skipped and deletes are sent.
   */
  ledger?: FilterLedger | undefined;
}

export interface Candidate {
  /** Primary-key values as the job holds them. */
  key: readonly string[];
  ordering: string | null;
  /** The row's outgoing JSON; null when it is outside the filter. For `gone`, the key-only JSON. */
  json: string | null;
  op: Operation;
  /** The row no longer exists (a delete from a change stream or a reconciliation). */
  gone?: boolean;
}

export type Shaped =
  | { kind: 'send'; json: string; op: Operation }
  | { kind: 'skip' }
  /** The row breaks a rule (its transform threw); `json`: its outgoing text before the transform, to name its key. */
  | { kind: 'fail'; error: AppError; json: string };

export interface ShapeContext {
  reader: TableReader;
  source: string;
  table: string;
  extractedAt: string;
  generation?: number | undefined;
}

/** True when rows need this step at all: tables without a filter or transform keep the plain path. */
export function needsShaping(rules: RowRules | undefined, reader: TableReader): boolean {
  return rules?.transform !== undefined || rules?.ledger !== undefined || reader.shape.filtered === true;
}

/**
 * Applies the transform and the filter to a chunk of rows, in order. Rows outside the filter (or dropped by the
 * transform) and deletes go through the ledger, which answers `send`, `skip` or `delete`; a `delete` of a row that
 * was read becomes a key-only delete record (its key JSON read in one query for the chunk).
 */
export async function shapeRows(candidates: readonly Candidate[], rules: RowRules | undefined, c: ShapeContext): Promise<Shaped[]> {
  const out: Array<Shaped | null> = candidates.map(() => null);
  const json = candidates.map((cand, i) => {
    if (cand.gone || cand.json === null || !rules?.transform) return cand.json;
    try {
      return applyTransform(rules.transform, cand.json, {
        op: cand.op,
        ordering: cand.ordering,
        extractedAt: c.extractedAt,
        generation: c.generation,
        source: c.source,
        table: c.table,
        primaryKey: c.reader.shape.primaryKey,
      });
    } catch (err) {
      if (!isAppError(err) || err.code !== 'TRANSFORM_FAILED') throw err;
      out[i] = { kind: 'fail', error: err, json: cand.json };
      return null;
    }
  });
  const decided = candidates.map((_c, i) => i).filter((i) => out[i] === null);
  const observations: Observation[] = decided.map((i) => ({
    key: candidates[i]!.key,
    ordering: candidates[i]!.ordering ?? '',
    event: candidates[i]!.gone ? 'gone' : json[i] !== null ? 'match' : 'miss',
  }));
  const actions = rules?.ledger
    ? await rules.ledger.observe(observations)
    : observations.map((o) => (o.event === 'match' ? 'send' : o.event === 'gone' ? 'delete' : 'skip'));
  const needKeys = decided.filter((i, n) => actions[n] === 'delete' && !candidates[i]!.gone);
  const keyJson = new Map<number, string>();
  if (needKeys.length > 0) {
    const texts = await c.reader.keyJson(needKeys.map((i) => [...candidates[i]!.key]));
    needKeys.forEach((i, n) => keyJson.set(i, texts[n]!));
  }
  decided.forEach((i, n) => {
    const action = actions[n]!;
    const cand = candidates[i]!;
    if (action === 'skip') out[i] = { kind: 'skip' };
    else if (action === 'delete') out[i] = { kind: 'send', json: cand.gone ? cand.json! : keyJson.get(i)!, op: 'delete' };
    else out[i] = { kind: 'send', json: json[i]!, op: cand.op };
  });
  return out as Shaped[];
}
