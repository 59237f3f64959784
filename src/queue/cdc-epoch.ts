import { AppError } from '../core/errors.js';
import type { Keys, RedisClient } from './redis.js';

/**
 * Where a source's ordering epoch is kept (core/ordering-epoch.ts). Each stream records its epoch in its state hash
 * (`epoch`, absent for a stream started before epochs existed: epoch 0); the source's epoch key holds the newest
 * epoch given out and survives `cdc reset`, which deletes the state. A new stream takes the next epoch, unless the
 * source never had one (no epoch key): the first stream is epoch 0.
 */

/**
 * KEYS[1]: the source's epoch key, KEYS[2]: the stream's state hash; ARGV[1]: the stream's start position. Takes the
 * stream's epoch and records the stream's start with it in one step: a crash in between cannot leave a stream
 * recorded without its epoch. (A crash before it takes another epoch next time: epochs only grow.)
 */
const START_STREAM = `
local e = 0
if redis.call('EXISTS', KEYS[1]) == 1 then e = redis.call('INCR', KEYS[1]) else redis.call('SET', KEYS[1], 0) end
redis.call('HSET', KEYS[2], 'slotStart', ARGV[1], 'ackedLsn', ARGV[1], 'ackExact', '1', 'epoch', e)
return e`;

/** KEYS[1]: the source's epoch key; ARGV[1]: an epoch in use. The key is raised to it when lower or missing. */
const KEEP_EPOCH = `
local c = tonumber(redis.call('GET', KEYS[1]) or '-1')
if c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0`;

/** Records a new stream that starts at `start` and returns its epoch. */
export async function startStream(redis: RedisClient, keys: Keys, source: string, stateKey: string, start: string): Promise<number> {
  return Number(await redis.eval(START_STREAM, 2, keys.cdcEpoch(source), stateKey, start));
}

/** The epoch recorded in a stream's state (`epoch` field): absent is 0, a stream older than epochs. */
export function recordedEpoch(field: string | null | undefined, stateKey: string): number {
  if (field === null || field === undefined) return 0;
  const epoch = Number(field);
  if (!/^\d{1,6}$/.test(field) || !Number.isSafeInteger(epoch))
    throw new AppError('CURSOR_INVALID', `${stateKey}: the stream's ordering epoch ${JSON.stringify(field)} is not a count of up to 6 digits`);
  return epoch;
}

/**
 * Makes sure the source's epoch key knows an epoch in use (a stream started before epochs existed, or the key
 * lost), so that the next stream, after a reset, starts a later one.
 */
export async function keepEpoch(redis: RedisClient, keys: Keys, source: string, epoch: number): Promise<void> {
  await redis.eval(KEEP_EPOCH, 1, keys.cdcEpoch(source), String(epoch));
}

/** The epoch a stream that starts now would take (for `preview` of a source whose stream is not recorded yet). */
export async function nextEpoch(redis: RedisClient, keys: Keys, source: string): Promise<number> {
  const current = await redis.get(keys.cdcEpoch(source));
  return current === null ? 0 : Number(current) + 1;
}
