import type { PipelineContext } from './context.js';
import { classify } from './job-errors.js';

/**
 * Whether a source's CDC reader works, kept in its CDC state hash for `status`: a reader whose runs keep failing
 * (a slot another consumer moved, a source that refuses it) delivers nothing, queues nothing and leaves no dead
 * letter, so neither the push queues nor the dead-letter count show it.
 * - `failingSince`: when the first run failed since the reader last worked; `failures`: runs failed since.
 * - `lastError`, `lastErrorAt`: the latest failure (`[CODE] message`), kept after the reader works again.
 */
export interface ReaderFailure {
  failingSince: string;
  failures: number;
  lastError: string;
  lastErrorAt: string;
}

/** Records a failed run. Never throws: the run's own error is what its caller reports. */
export async function recordReaderFailure(ctx: PipelineContext, stateKey: string, err: unknown): Promise<void> {
  const now = String(Date.now());
  await ctx.redis
    .multi()
    .hsetnx(stateKey, 'failingSince', now)
    .hincrby(stateKey, 'failures', 1)
    .hset(stateKey, 'lastError', classify(err).toString(), 'lastErrorAt', now)
    .exec()
    .catch(() => undefined);
}

/** The reader works again (it confirmed a position, or a run ended without error). */
export async function clearReaderFailure(ctx: PipelineContext, stateKey: string): Promise<void> {
  await ctx.redis.hdel(stateKey, 'failingSince', 'failures');
}

/** The reader's failure from its CDC state hash, or null while it works. */
export function readerFailure(state: Record<string, string>): ReaderFailure | null {
  if (state.failingSince === undefined) return null;
  const iso = (ms: string | undefined): string => new Date(Number(ms ?? 0)).toISOString();
  return {
    failingSince: iso(state.failingSince),
    failures: Number(state.failures ?? 0),
    lastError: state.lastError ?? '',
    lastErrorAt: iso(state.lastErrorAt),
  };
}
