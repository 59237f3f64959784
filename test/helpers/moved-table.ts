import { expect } from 'vitest';
import { parseConfig, type Config } from '../../src/config.js';
import { closePipeline, createPipeline } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { cdcReset } from '../../src/queue/cdc-admin.js';
import { currentState, type Versioned } from './current-state.js';
import { syncPass } from './pass.js';
import type { Receiver } from './receiver.js';
import { REDIS_URL } from './services.js';

/**
 * Helpers of the tests of a table moved between sync modes, servers or sources: its records downstream, the current
 * state they make, and the `cdc reset` that follows a move.
 */

/** A record of a test table `(id int PRIMARY KEY, v text)` as the receiver stored it. */
export interface VersionedRow extends Versioned<number> {
  v: string;
}

/** Every record the receiver stored for `target`, in the order it received them. */
export function storedRecords<R extends VersionedRow = VersionedRow>(receiver: Receiver, target: string): R[] {
  return (receiver.stored.get(target) ?? []).map((r) => JSON.parse(r) as R);
}

/** The current state downstream (`currentState`) as `{ id, v }` rows sorted by id, to compare with the source's rows. */
export function currentRows(records: readonly VersionedRow[]): { id: number; v: string }[] {
  return [...currentState(records).values()].map((r) => ({ id: r.id, v: r.v })).sort((a, b) => a.id - b.id);
}

/**
 * A source moved to another server (`moved`, its config there): the first pass is refused with `CURSOR_INVALID` (the
 * stream read is another server's), `cdc reset` follows, and the next pass streams from the new server.
 */
export async function moveAndReset(moved: Config, sourceName: string, timeoutMs = 30_000): Promise<void> {
  expect((await syncPass(moved, { timeoutMs })).failed.map((f) => f.reason)).toEqual([expect.stringMatching(/^\[CURSOR_INVALID\] /)]);
  await resetChangeStream(moved, sourceName);
  expect((await syncPass(moved, { timeoutMs })).failed).toEqual([]);
}

/** `pushsync cdc reset --source <sourceName>` (keeping the publication): a pipeline made for it, closed after. */
export async function resetChangeStream(config: Config, sourceName: string): Promise<void> {
  const source = config.sources.find((s) => s.name === sourceName);
  if (!source) throw new Error(`no source ${sourceName} in the config`);
  const ctx = createPipeline(config, createLogger('silent'));
  try {
    await cdcReset(ctx, source, false);
  } finally {
    await closePipeline(ctx);
  }
}

/**
 * The config of one MySQL binlog CDC source `shop` at `url` (a server the source may move to), its changes flushed
 * every 50 ms, streaming its table `items` in batches of 4 rows, delivering to `receiverUrl` with API key `k`.
 */
export function binlogConfig(o: { prefix: string; receiverUrl: string; slot: string; url: string }): Config {
  return parseConfig(
    {
      redis: { url: REDIS_URL, prefix: o.prefix },
      destination: { url: o.receiverUrl, apiKey: 'k' },
      sources: [
        {
          name: 'shop',
          kind: 'mysql',
          url: o.url,
          mode: 'cdc',
          cdc: { slot: o.slot, flushInterval: '50ms' },
          tables: [{ name: 'items', batchRows: 4 }],
        },
      ],
    },
    {},
  );
}

/**
 * The config of one CDC source whose stream keeps running for its table `other` whatever the mode of its table
 * `items`: `mode`, watermark sync on `updated_at` without safety lag, or CDC. `items` batches 4 rows; `tablePrefix`
 * comes before both names (`schema.` on Postgres); `items` adds to the table's settings (a `where`). Delivers to
 * `receiverUrl` with API key `k`.
 */
export function modeConfig(
  mode: 'cdc' | 'watermark',
  o: {
    prefix: string;
    receiverUrl: string;
    source: { name: string; kind: 'postgres' | 'mysql'; url: string; cdc: Record<string, unknown> };
    tablePrefix?: string;
    items?: Record<string, unknown>;
  },
): Config {
  const t = o.tablePrefix ?? '';
  return parseConfig(
    {
      redis: { url: REDIS_URL, prefix: o.prefix },
      destination: { url: o.receiverUrl, apiKey: 'k' },
      sources: [
        {
          ...o.source,
          tables: [
            { name: `${t}other`, mode: 'cdc' },
            { name: `${t}items`, batchRows: 4, mode, ...o.items, ...(mode === 'watermark' ? { watermark: 'updated_at', safetyLag: '0s' } : {}) },
          ],
        },
      ],
    },
    {},
  );
}
