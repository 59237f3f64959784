import { tableSpec, type SourceConfig } from '../config.js';
import type { TableShape } from '../core/ports.js';
import { resetTable } from './table-admin.js';
import type { PipelineContext } from './context.js';
import { findChangeSource, findSource } from './context.js';
import { keepEpoch, recordedEpoch } from './cdc-epoch.js';

/** Facts and repairs of a source's replication slot, for `pushsync cdc` and `pushsync check`. */
export interface CdcStatus {
  source: string;
  slot: string;
  publication: string;
  exists: boolean;
  active: boolean;
  confirmedFlushLsn: string | null;
  lagBytes: number | null;
  /** Upper bound on the age of the oldest unconfirmed change; null when the engine does not measure it. */
  lagSeconds: number | null;
  /** What the durable stream is, e.g. `replication slot pushsync_app`, `binlog stream pushsync_shop`. */
  stream: string;
  /** Settings, retention and privileges the engine reports (MySQL), and the risks among them. */
  facts: string[];
  warnings: string[];
  slotStart: string | null;
  ackedLsn: string | null;
  /** The ordering epoch of the recorded stream (core/ordering-epoch.ts); null when none is recorded. */
  epoch: number | null;
  snapshots: Record<string, string>;
  problems: string[];
}

export function cdcSources(ctx: PipelineContext, name?: string): SourceConfig[] {
  return ctx.config.sources.filter((s) => s.tables.some((t) => t.mode === 'cdc') && (name === undefined || s.name === name));
}

/** The source's CDC tables as the catalog names them; a table that cannot be described now is left out. */
async function captured(ctx: PipelineContext, s: SourceConfig): Promise<TableShape[]> {
  const source = findSource(ctx, s.name);
  const shapes = await Promise.all(
    s.tables
      .filter((t) => t.mode === 'cdc')
      .map((t) =>
        source.table(tableSpec(t)).then(
          (reader) => reader.shape,
          () => null,
        ),
      ),
  );
  return shapes.filter((shape): shape is TableShape => shape !== null);
}

export async function cdcStatus(ctx: PipelineContext, s: SourceConfig): Promise<CdcStatus> {
  const cdc = findChangeSource(ctx, s.name);
  const [info, problems, state, facts] = await Promise.all([
    cdc.status(),
    cdc.prerequisites(),
    ctx.redis.hgetall(ctx.keys.cdcState(s.name, s.cdc.slot)),
    cdc.facts ? captured(ctx, s).then((tables) => cdc.facts!(tables)) : { facts: [], warnings: [] },
  ]);
  if (info.confirmed && state.ackedLsn && cdc.confirmedPast(info.confirmed, state.ackedLsn, !state.ackExact)) {
    problems.push(
      `${cdc.stream} is confirmed at ${info.confirmed}, past the ${state.ackedLsn} pushsync acknowledged: another consumer advanced it; the next run refuses it`,
    );
  }
  const snapshots = Object.fromEntries(
    Object.entries(state)
      .filter(([k]) => k.startsWith('snapshot:'))
      .map(([k, v]) => [k.slice(9), v]),
  );
  return {
    source: s.name,
    slot: s.cdc.slot,
    publication: s.cdc.publication,
    exists: info.exists,
    active: info.active,
    confirmedFlushLsn: info.confirmed,
    lagBytes: info.lagBytes,
    lagSeconds: info.lagSeconds ?? null,
    stream: cdc.stream,
    facts: facts.facts,
    warnings: facts.warnings,
    slotStart: state.slotStart ?? null,
    ackedLsn: state.ackedLsn ?? null,
    epoch: state.slotStart === undefined ? null : recordedEpoch(state.epoch, ctx.keys.cdcState(s.name, s.cdc.slot)),
    snapshots,
    problems,
  };
}

/**
 * Forgets the slot: drops it (when no reader holds it) and pushsync's memory of it, so the next run creates a new
 * slot and snapshots every CDC table of the source again. With `dropPublication`, also removes the publication (to
 * stop capturing altogether).
 */
export async function cdcReset(ctx: PipelineContext, s: SourceConfig, dropPublication: boolean): Promise<void> {
  await findChangeSource(ctx, s.name).drop({ capture: dropPublication });
  const stateKey = ctx.keys.cdcState(s.name, s.cdc.slot);
  // The epoch of the stream forgotten here stays known, so the next stream's orderings sort after its.
  const [started, epoch] = await ctx.redis.hmget(stateKey, 'slotStart', 'epoch');
  if (started !== null) await keepEpoch(ctx.redis, ctx.keys, recordedEpoch(epoch, stateKey));
  await ctx.redis.del(stateKey);
  for (const t of s.tables.filter((x) => x.mode === 'cdc')) await resetTable(ctx, t);
}
