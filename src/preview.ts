import { allTables, tableSpec, type Config } from './config.js';
import { STREAM_LIMITS } from './core/batching.js';
import { AppError } from './core/errors.js';
import { MemoryLedger } from './core/filter-ledger.js';
import type { ChangeSource, Source } from './core/ports.js';
import { previewRecords, type Preview } from './core/preview.js';
import { Keys, createRedis } from './queue/redis.js';
import { nextEpoch, recordedEpoch } from './queue/cdc-epoch.js';
import { withOrderingEpoch } from './core/ordering-epoch.js';
import { transformLoader } from './transforms.js';

/**
 * `pushsync preview`: the records a first sync would send for the first `limit` rows of a table, with its transform
 * and a ledger that has seen nothing. Reads the sources (and, for a CDC table, the slot position Redis recorded);
 * writes nothing to Redis or the destination.
 */
export async function previewTable(
  config: Config,
  name: string,
  limit: number,
  sources: Map<string, Source>,
  changeSources: Map<string, ChangeSource>,
): Promise<Preview> {
  const table = allTables(config).find((t) => `${t.source}.${t.name}` === name);
  if (!table) {
    throw new AppError(
      'CONFIG_INVALID',
      `no configured table ${name}; use <source>.<table> as in the config (${allTables(config)
        .map((t) => `${t.source}.${t.name}`)
        .join(', ')})`,
    );
  }
  if (table.mode === 'debezium') {
    // Its rows exist only as events as they arrive: there is no table to read ahead of them.
    throw new AppError(
      'CONFIG_INVALID',
      `${name} is a Debezium table: preview reads database tables only (its columns and masks apply as events are taken)`,
    );
  }
  const reader = await sources.get(table.source)!.table(tableSpec(table));
  let snapshot: { ordering: string } | undefined;
  if (table.mode === 'cdc') {
    // A CDC table previews its snapshot, ordered at the slot's recorded start (or where a new slot would start).
    const cdc = changeSources.get(table.source)!;
    const slot = config.sources.find((s) => s.name === table.source)!.cdc.slot;
    const redis = createRedis(config.redis, { connectTimeoutMs: config.redis.connectTimeout, giveUpAfterMs: config.redis.connectTimeout });
    const keys = new Keys(config.redis.prefix);
    const stateKey = keys.cdcState(table.source, slot);
    const [[recorded, recordedAt], next] = await Promise.all([redis.hmget(stateKey, 'slotStart', 'epoch'), nextEpoch(redis, keys)]).finally(() =>
      redis.quit(),
    );
    // Ordered in the recorded stream's epoch, or in the one a new stream would take.
    const epoch = recorded === null || recorded === undefined ? next : recordedEpoch(recordedAt, stateKey);
    snapshot = { ordering: withOrderingEpoch(cdc, epoch).snapshotOrdering(recorded ?? (await cdc.currentPosition())) };
  }
  const filtered = table.where !== undefined || table.transform !== undefined;
  return previewRecords({
    reader,
    source: table.source,
    table: table.name,
    limit,
    limits: { ...STREAM_LIMITS, maxRows: config.destination.maxRows, maxBytes: config.destination.maxBytes },
    safetyLagMs: table.safetyLag,
    rules: filtered
      ? {
          transform: table.transform === undefined ? undefined : await transformLoader()(table.transform),
          ledger: new MemoryLedger(table.onFilteredOut ?? 'delete'),
        }
      : undefined,
    snapshot,
  });
}
