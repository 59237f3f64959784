import type { Config } from '../config.js';
import { allTables } from '../config.js';
import type { ExtractJob, RunReason } from './jobs.js';

/** One extract run to schedule (by the scheduler) or to start now (by a one-shot pass). */
export interface PlannedRun {
  /** Stable id: `source/table`, `source/table/reconcile` or `source/cdc`; the scheduler's id in Redis. */
  id: string;
  /** The job name shown in the dashboard. */
  name: string;
  data: ExtractJob;
  repeat: { every: number } | { pattern: string };
}

/**
 * Every extract run the configuration asks for, in the order a one-shot pass starts them: change streams, then
 * tables, then (with `reconcile`) reconciliations, so a pass's deletes are ordered after its upserts.
 */
export function planRuns(config: Config, reason: RunReason, options: { reconcile: boolean }): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (const s of config.sources.filter((x) => x.tables.some((t) => t.mode === 'cdc'))) {
    runs.push({
      id: `${s.name}/cdc`,
      name: `${s.name} (cdc)`,
      data: { v: 1, kind: 'cdc', source: s.name, table: '', reason },
      repeat: { every: s.cdc.every },
    });
  }
  for (const s of config.debezium) {
    runs.push({
      id: `${s.name}/ingest`,
      name: `${s.name} (ingest)`,
      data: { v: 1, kind: 'ingest', source: s.name, table: '', reason },
      repeat: { every: s.flushInterval },
    });
  }
  const watermark = allTables(config).filter((t) => t.mode === 'watermark');
  for (const t of watermark) {
    runs.push({
      id: `${t.source}/${t.name}`,
      name: `${t.source}.${t.name}`,
      data: { v: 1, kind: 'table', source: t.source, table: t.name, reason },
      repeat: t.cron !== undefined ? { pattern: t.cron } : { every: t.every! },
    });
  }
  if (options.reconcile) {
    for (const t of watermark.filter((x) => x.reconcile)) {
      runs.push({
        id: `${t.source}/${t.name}/reconcile`,
        name: `${t.source}.${t.name} (reconcile)`,
        data: { v: 1, kind: 'reconcile', source: t.source, table: t.name, reason },
        repeat: { every: t.reconcile!.every },
      });
    }
  }
  return runs;
}
