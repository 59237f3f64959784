import type { SourceConfig } from '../config.js';
import { compareLsn } from '../core/lsn.js';
import { PostgresCdc } from '../sources/postgres-cdc.js';
import { resetTable } from './table-admin.js';
import type { PipelineContext } from './context.js';

/** Facts and repairs of a source's replication slot, for `pushsync cdc` and `pushsync check`. */
export interface CdcStatus {
  source: string;
  slot: string;
  publication: string;
  exists: boolean;
  active: boolean;
  confirmedFlushLsn: string | null;
  lagBytes: number | null;
  slotStart: string | null;
  ackedLsn: string | null;
  snapshots: Record<string, string>;
  problems: string[];
}

export function cdcSources(ctx: PipelineContext, name?: string): SourceConfig[] {
  return ctx.config.sources.filter((s) => s.tables.some((t) => t.mode === 'cdc') && (name === undefined || s.name === name));
}

function adapter(s: SourceConfig): PostgresCdc {
  return new PostgresCdc(s.name, s.url, s.cdc.publication, s.cdc.slot);
}

export async function cdcStatus(ctx: PipelineContext, s: SourceConfig): Promise<CdcStatus> {
  const cdc = adapter(s);
  try {
    const [info, problems, state] = await Promise.all([cdc.slotInfo(), cdc.prerequisites(), ctx.redis.hgetall(ctx.keys.cdcState(s.name, s.cdc.slot))]);
    if (info.confirmedFlushLsn && state.ackedLsn && state.ackExact && compareLsn(info.confirmedFlushLsn, state.ackedLsn) > 0) {
      problems.push(`slot ${s.cdc.slot} is confirmed at ${info.confirmedFlushLsn}, past the ${state.ackedLsn} pushsync acknowledged: another consumer advanced it; the next run refuses it`);
    }
    const snapshots = Object.fromEntries(Object.entries(state).filter(([k]) => k.startsWith('snapshot:')).map(([k, v]) => [k.slice(9), v]));
    return {
      source: s.name,
      slot: s.cdc.slot,
      publication: s.cdc.publication,
      exists: info.exists,
      active: info.active,
      confirmedFlushLsn: info.confirmedFlushLsn,
      lagBytes: info.lagBytes,
      slotStart: state.slotStart ?? null,
      ackedLsn: state.ackedLsn ?? null,
      snapshots,
      problems,
    };
  } finally {
    await cdc.close();
  }
}

/**
 * Forgets the slot: drops it (when no reader holds it) and pushsync's memory of it, so the next run creates a new
 * slot and snapshots every CDC table of the source again. With `dropPublication`, also removes the publication (to
 * stop capturing altogether).
 */
export async function cdcReset(ctx: PipelineContext, s: SourceConfig, dropPublication: boolean): Promise<void> {
  const cdc = adapter(s);
  try {
    await cdc.dropSlot();
    if (dropPublication) await cdc.dropPublication();
    await ctx.redis.del(ctx.keys.cdcState(s.name, s.cdc.slot));
    for (const t of s.tables.filter((x) => x.mode === 'cdc')) await resetTable(ctx, t);
  } finally {
    await cdc.close();
  }
}
